"""Tetragon's JSON export format, one line at a time.

Tetragon writes one ``GetEventsResponse`` per line as protojson: a single event key
(``process_exec``, ``process_exit``, ``process_kprobe``, ...) next to envelope keys
(``node_name``, ``time``, ...). :func:`parse_line` turns a line into a record, says it is
an event of another kind (:class:`Ignored`), or raises :class:`MalformedLine` with one of a
fixed set of reasons. :class:`LineParser` does the same but never raises: it counts every
line as parsed, ignored (by kind) or rejected (by reason), so ``parsed + ignored +
rejected`` always equals the lines fed.

Lines of a known other kind are recognised by their leading key and not decoded at all:
Tetragon emits kprobe and tracepoint events at far higher rates than exec/exit, and
their content does not matter here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from agent.tetragon.events import (
    KIND_BY_KEY,
    RATE_LIMIT_KEY,
    EventKind,
    PodRef,
    ProcessEvent,
    RateLimited,
    parse_rfc3339,
)

#: Keys of GetEventsResponse that are not the event itself.
ENVELOPE_KEYS = frozenset({"node_name", "time", "aggregation_info", "cluster_name", "node_labels"})
#: Event kinds of Tetragon's EventType (lower-cased oneof names) that churn ignores.
OTHER_KINDS = frozenset(
    {
        "process_kprobe",
        "process_tracepoint",
        "process_loader",
        "process_uprobe",
        "process_throttle",
        "process_lsm",
        "process_usdt",
        "process_dns",
        "test",
    }
)
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1

# Rejection reasons: a fixed set, so counters keyed by them stay bounded.
NOT_UTF8 = "not UTF-8"
NOT_JSON = "not JSON"
NOT_OBJECT = "not a JSON object"
EMPTY = "empty line"
NO_EVENT = "no event key"
SEVERAL_EVENTS = "more than one event key"
BAD_FIELD = "bad field"
REJECTION_REASONS = (NOT_UTF8, NOT_JSON, NOT_OBJECT, EMPTY, NO_EVENT, SEVERAL_EVENTS, BAD_FIELD)

#: Distinct ignored kinds counted by name; further ones are counted under OTHER_KIND.
MAX_IGNORED_KINDS = 32
OTHER_KIND = "other"
MAX_KIND_CHARS = 64

_LEADING_KEY = re.compile(rb'\A\s*\{\s*"([a-z_]{1,40})"\s*:')
#: What an event key (a GetEventsResponse oneof member in protojson) looks like.
_EVENT_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)


class MalformedLine(ValueError):
    """A line that is not a Tetragon event; ``reason`` is one of REJECTION_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Ignored:
    """A well-formed event of a kind churn does not count."""

    kind: str


Parsed = ProcessEvent | RateLimited | Ignored


def parse_line(line: bytes | str) -> Parsed:
    """One line of Tetragon's JSON export (without its newline); raises MalformedLine."""
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
    if not raw.strip():
        raise MalformedLine(EMPTY)
    lead = _LEADING_KEY.match(raw)
    if lead is not None and lead.group(1).decode() in OTHER_KINDS:
        return Ignored(lead.group(1).decode())
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MalformedLine(NOT_UTF8, str(err)) from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise MalformedLine(NOT_JSON, str(err)[:200]) from None
    if not isinstance(obj, dict):
        raise MalformedLine(NOT_OBJECT, type(obj).__name__)
    return parse_event(obj)


def parse_event(obj: dict[str, Any]) -> Parsed:
    """A decoded GetEventsResponse object (protojson field names); raises MalformedLine."""
    keys = [k for k in obj if k not in ENVELOPE_KEYS]
    if not keys:
        raise MalformedLine(NO_EVENT)
    if len(keys) > 1:
        raise MalformedLine(SEVERAL_EVENTS, ", ".join(sorted(keys)[:4])[:200])
    key = keys[0]
    payload = obj[key]
    node_name = _optional_str(obj, "node_name", "node_name")
    kind = KIND_BY_KEY.get(key)
    if kind is not None:
        return _process_event(kind, key, payload, obj.get("time"), node_name)
    if key == RATE_LIMIT_KEY:
        return _rate_limited(payload, obj.get("time"))
    if not _EVENT_KEY.fullmatch(key):
        raise MalformedLine(NO_EVENT, f"unexpected key {key[:MAX_KIND_CHARS]!r}")
    if not isinstance(payload, dict):
        raise MalformedLine(BAD_FIELD, f"{key}: expected an object, got {type(payload).__name__}")
    return Ignored(key)


def _process_event(kind: EventKind, key: str, payload: Any, time: Any, node_name: str | None) -> ProcessEvent:
    if not isinstance(payload, dict):
        raise MalformedLine(BAD_FIELD, f"{key}: expected an object, got {type(payload).__name__}")
    process = payload.get("process")
    if not isinstance(process, dict):
        raise MalformedLine(BAD_FIELD, f"{key}.process: expected an object, got {type(process).__name__}")
    pid = process.get("pid")
    if pid is not None and (type(pid) is not int or not 0 <= pid <= UINT32_MAX):
        raise MalformedLine(BAD_FIELD, f"{key}.process.pid: expected a uint32, got {pid!r:.40}")
    binary = _optional_str(process, "binary", f"{key}.process.binary") or ""
    pod = _pod(process.get("pod"), f"{key}.process.pod")
    # GetEventsResponse.time; ProcessExit also has its own time in newer Tetragon versions.
    when = _time(time, "time") if time is not None else _time(payload.get("time"), f"{key}.time")
    return ProcessEvent(kind, when, pid, binary, pod, node_name)


def _pod(pod: Any, where: str) -> PodRef | None:
    if pod is None:
        return None
    if not isinstance(pod, dict):
        raise MalformedLine(BAD_FIELD, f"{where}: expected an object, got {type(pod).__name__}")
    namespace = _optional_str(pod, "namespace", f"{where}.namespace")
    name = _optional_str(pod, "name", f"{where}.name")
    if not name:
        return None  # Tetragon knows no pod for this process: count it as a host process
    return PodRef(namespace or "", name)


def _rate_limited(payload: Any, time: Any) -> RateLimited:
    if not isinstance(payload, dict):
        raise MalformedLine(BAD_FIELD, f"{RATE_LIMIT_KEY}: expected an object, got {type(payload).__name__}")
    value = payload.get("number_of_dropped_process_events", 0)
    # protojson writes uint64 as a decimal string; accept a plain number too.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if type(value) is not int or not 0 <= value <= UINT64_MAX:
        raise MalformedLine(
            BAD_FIELD, f"{RATE_LIMIT_KEY}.number_of_dropped_process_events: expected a uint64, got {value!r:.40}"
        )
    return RateLimited(value, _time(time, "time") if time is not None else None)


def _optional_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedLine(BAD_FIELD, f"{where}: expected a string, got {type(value).__name__}")
    return value


def _time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedLine(BAD_FIELD, f"{where}: expected an RFC 3339 string, got {type(value).__name__}")
    try:
        return parse_rfc3339(value)
    except ValueError as err:
        raise MalformedLine(BAD_FIELD, f"{where}: {err}") from None


@dataclass(frozen=True)
class ParseCounts:
    """Lines seen since start, by outcome. ``parsed + ignored + rejected`` = lines fed."""

    parsed: dict[str, int]
    """exec / exit / rate_limit_info -> lines."""
    ignored: dict[str, int]
    """event kind -> lines (at most MAX_IGNORED_KINDS kinds, the rest under 'other')."""
    rejected: dict[str, int]
    """rejection reason -> lines."""

    @property
    def total(self) -> int:
        return sum(self.parsed.values()) + sum(self.ignored.values()) + sum(self.rejected.values())


class OutcomeCounter:
    """Events seen since start, by outcome; bounded (kinds capped, reasons a fixed set). Not thread-safe."""

    def __init__(self) -> None:
        self._parsed: Counter[str] = Counter()
        self._ignored: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self.last_rejection: str | None = None
        """The latest rejection with its detail, for logs and status pages."""

    def count_parsed(self, record: ProcessEvent | RateLimited) -> None:
        self._parsed[record.kind.value if isinstance(record, ProcessEvent) else RATE_LIMIT_KEY] += 1

    def count_ignored(self, kind: str) -> None:
        kind = kind[:MAX_KIND_CHARS]
        if kind not in self._ignored and len(self._ignored) >= MAX_IGNORED_KINDS:
            kind = OTHER_KIND
        self._ignored[kind] += 1

    def reject(self, reason: str, detail: str | None = None, lines: int = 1) -> None:
        """Count ``lines`` rejected (malformed, too long, cut off by rotation, ...)."""
        self._rejected[reason] += lines
        self.last_rejection = detail or reason

    def counts(self) -> ParseCounts:
        return ParseCounts(dict(self._parsed), dict(self._ignored), dict(self._rejected))


class LineParser(OutcomeCounter):
    """:func:`parse_line` that never raises and counts every outcome (not thread-safe)."""

    def feed(self, line: bytes | str) -> ProcessEvent | RateLimited | None:
        """The record for ``line``, or None when it was ignored or rejected (and counted)."""
        try:
            result = parse_line(line)
        except MalformedLine as err:
            self.reject(err.reason, str(err))
            return None
        if isinstance(result, Ignored):
            self.count_ignored(result.kind)
            return None
        self.count_parsed(result)
        return result
