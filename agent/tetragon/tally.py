"""Counting events between two collector reads, in bounded memory, safe across threads.

A source adds each record as it arrives (from the collector's thread for the export
file, from its own thread for gRPC); the collector takes the counts once per interval,
which starts the next interval at zero. At most ``max_pods`` distinct pods are counted by
name per interval; events of further pods still count toward the node total.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from agent.tetragon.events import EventKind, PodRef, ProcessEvent, RateLimited

#: Distinct pods counted by name per interval (a node runs at most a few hundred).
DEFAULT_MAX_PODS = 4096


@dataclass(frozen=True)
class Tally:
    """What a source saw during one interval."""

    execs: int = 0
    exits: int = 0
    host: int = 0
    """Events of host processes (no pod)."""
    pods: Mapping[PodRef, int] = field(default_factory=lambda: MappingProxyType({}))
    untracked_pods: int = 0
    """Events of pods beyond the ``max_pods`` counted by name."""
    dropped: int = 0
    """Process events Tetragon reported dropping (rate_limit_info) during the interval."""
    incomplete: str | None = None
    """Why the counts may not cover the whole interval (e.g. the reader fell behind)."""

    @property
    def events(self) -> int:
        return self.execs + self.exits


class TallyCounter:
    def __init__(self, max_pods: int = DEFAULT_MAX_PODS):
        if max_pods < 0:
            raise ValueError(f"max_pods: must be >= 0, got {max_pods!r}")
        self.max_pods = max_pods
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._execs = self._exits = self._host = self._untracked = self._dropped = 0
        self._pods: dict[PodRef, int] = {}
        self._incomplete: str | None = None

    def add(self, record: ProcessEvent | RateLimited) -> None:
        with self._lock:
            if isinstance(record, RateLimited):
                self._dropped += record.dropped
                return
            if record.kind is EventKind.EXEC:
                self._execs += 1
            else:
                self._exits += 1
            pod = record.pod
            if pod is None:
                self._host += 1
            elif pod in self._pods or len(self._pods) < self.max_pods:
                self._pods[pod] = self._pods.get(pod, 0) + 1
            else:
                self._untracked += 1

    def mark_incomplete(self, reason: str) -> None:
        with self._lock:
            self._incomplete = reason

    def take(self) -> Tally:
        """The counts since the previous take (or creation); the next interval starts at zero."""
        with self._lock:
            tally = Tally(
                self._execs,
                self._exits,
                self._host,
                MappingProxyType(self._pods),
                self._untracked,
                self._dropped,
                self._incomplete,
            )
            self._reset()
        return tally
