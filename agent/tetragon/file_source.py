"""Tetragon events from its JSON export file, read when the collector reads.

Tetragon writes its events to ``--export-filename`` (the Helm chart's default is
``/var/log/tetragon/tetragon.log``) and rotates it itself. :class:`ExportFileSource`
follows that file (:mod:`agent.tetragon.follow`), parses each line
(:mod:`agent.tetragon.parse`) and counts the events (:mod:`agent.tetragon.tally`).

The file existing says little about Tetragon being alive, so the source also goes stale:
when nothing at all has been appended for ``stale_after_s`` (a Kubernetes node execs
something every few seconds: probes, runc, shells), the source reports itself not live
and the churn metric falls back to /proc/stat instead of reporting a confident 0.
"""

from __future__ import annotations

from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock
from agent.tetragon.follow import DEFAULT_BUDGET_BYTES, DEFAULT_MAX_LINE_BYTES, FileFollower
from agent.tetragon.parse import LineParser, ParseCounts
from agent.tetragon.source import SourceStatus
from agent.tetragon.tally import DEFAULT_MAX_PODS, Tally, TallyCounter

DEFAULT_EXPORT_FILE = Path("/var/log/tetragon/tetragon.log")
DEFAULT_STALE_AFTER_S = 300.0


class ExportFileSource:
    def __init__(
        self,
        path: str | Path = DEFAULT_EXPORT_FILE,
        *,
        clock: Clock = SYSTEM_CLOCK,
        stale_after_s: float | None = DEFAULT_STALE_AFTER_S,
        max_pods: int = DEFAULT_MAX_PODS,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        start_at_end: bool = True,
    ):
        if stale_after_s is not None and not stale_after_s > 0:
            raise ValueError(f"stale_after_s: must be > 0 or None, got {stale_after_s!r}")
        self.path = Path(path)
        self.description = f"Tetragon export file {self.path}"
        self.clock = clock
        self.stale_after_s = stale_after_s
        self._follower = FileFollower(
            self.path, start_at_end=start_at_end, max_line_bytes=max_line_bytes, budget_bytes=budget_bytes
        )
        self._parser = LineParser()
        self._tally = TallyCounter(max_pods)
        self._live_since: float | None = None
        self._last_line_at: float | None = None
        self._dropped_counted: dict[str, int] = {}

    @property
    def follower(self) -> FileFollower:
        return self._follower

    def poll(self) -> None:
        now = self.clock.monotonic()
        was_open = self._follower.is_open
        was_stale = self._stale(now)
        lines = self._follower.poll()
        if not self._follower.is_open:
            self._live_since = self._last_line_at = None
        elif not was_open:
            self._live_since = self._last_line_at = now
        if lines:
            if was_stale:
                self._live_since = now  # events resumed: only the next full interval counts
            self._last_line_at = now
        for line in lines:
            record = self._parser.feed(line)
            if record is not None:
                self._tally.add(record)
        for reason, total in self._follower.dropped.items():
            if (new := total - self._dropped_counted.get(reason, 0)) > 0:
                self._parser.reject(reason, f"{reason} in {self.path}", new)
                self._dropped_counted[reason] = total
        if self._follower.behind:
            self._tally.mark_incomplete(
                f"{self.description}: more than {self._follower.budget_bytes} bytes "
                "appended since the last read; reading behind"
            )

    def take(self) -> Tally:
        return self._tally.take()

    def status(self) -> SourceStatus:
        if not self._follower.is_open:
            return SourceStatus(False, f"Tetragon export file {self._follower.problem}")
        now = self.clock.monotonic()
        if self._stale(now):
            return SourceStatus(
                False,
                f"{self.description}: nothing appended for {now - self._last_line_at:.0f} s "
                "(is Tetragon still exporting events?)",
            )
        return SourceStatus(True, None, self._live_since)

    def counts(self) -> ParseCounts:
        return self._parser.counts()

    def close(self) -> None:
        self._follower.close()

    def _stale(self, now: float) -> bool:
        return (
            self.stale_after_s is not None
            and self._last_line_at is not None
            and now - self._last_line_at > self.stale_after_s
        )
