"""What the churn collector needs from a Tetragon event source (export file or gRPC)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agent.tetragon.parse import ParseCounts
from agent.tetragon.tally import Tally


@dataclass(frozen=True)
class SourceStatus:
    live: bool
    """True while events can arrive: the file is open and fresh, or the stream is connected."""
    reason: str | None = None
    """Why the source is not live (operator-facing, names the file or socket)."""
    live_since: float | None = None
    """Monotonic time at which the current live period began (None when not live)."""

    def __post_init__(self) -> None:
        if self.live and self.live_since is None:
            raise ValueError("live_since: a live source needs the time it became live")
        if not self.live and not self.reason:
            raise ValueError("reason: a source that is not live needs a reason")


class EventSource(Protocol):
    description: str
    """E.g. "Tetragon export file /var/log/tetragon/tetragon.log"."""

    def poll(self) -> None:
        """Bring in what arrived since the last poll (file: read it; gRPC: nothing to do)."""

    def take(self) -> Tally:
        """Counts since the previous take; starts the next interval."""

    def status(self) -> SourceStatus: ...

    def counts(self) -> ParseCounts:
        """Events since start by outcome (parsed by kind, ignored by kind, rejected by reason)."""

    def close(self) -> None: ...
