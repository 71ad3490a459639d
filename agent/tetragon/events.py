"""The small frozen records a Tetragon event becomes, whatever it arrived by (file or gRPC).

Only what process churn and its per-pod attribution need is kept: the kind (exec or
exit), when, which pid and binary, and the pod (``None`` for a host process). A
``rate_limit_info`` event becomes :class:`RateLimited`: Tetragon telling us it dropped
events, so a count over that interval would be an undercount.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime


class EventKind(enum.Enum):
    EXEC = "exec"
    EXIT = "exit"


#: JSON key / oneof member name of each kind in Tetragon's GetEventsResponse.
KIND_BY_KEY: dict[str, EventKind] = {"process_exec": EventKind.EXEC, "process_exit": EventKind.EXIT}
RATE_LIMIT_KEY = "rate_limit_info"


@dataclass(frozen=True)
class PodRef:
    """The Kubernetes pod a process ran in."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ProcessEvent:
    kind: EventKind
    time: float | None
    """When Tetragon observed it, Unix seconds (UTC); None when the event carries no time."""
    pid: int | None
    binary: str
    pod: PodRef | None
    """None for a host process (no pod)."""
    node_name: str | None = None


@dataclass(frozen=True)
class RateLimited:
    """Tetragon's rate limiter dropped ``dropped`` process events."""

    dropped: int
    time: float | None = None


# RFC 3339 as Tetragon (protojson) writes timestamps: 2022-10-18T03:16:21.373327754Z
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 timestamp; raises ValueError naming the text."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    offset = 0
    if m.group(9):
        hours, minutes = int(m.group(10)), int(m.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError(f"timestamp offset out of range: {text[:64]!r}")
        offset = (1 if m.group(9) == "+" else -1) * (hours * 3600 + minutes * 60)
    if second > 60:  # 60: a leap second
        raise ValueError(f"timestamp out of range: {text[:64]!r}")
    try:
        base = datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()
    except ValueError:
        raise ValueError(f"timestamp out of range: {text[:64]!r}") from None
    fraction = int(m.group(7).ljust(9, "0")) / 1e9 if m.group(7) else 0.0
    return base + second - offset + fraction
