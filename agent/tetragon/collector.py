"""Metric 14, process_churn_per_s, from Tetragon: (exec + exit events) / seconds.

:class:`TetragonChurnCollector` is a Collector (agent/collectors/base.py) owning only
``process_churn_per_s``. Each read counts the events its source saw since the previous
read and divides by the time between the two reads (injected clock). It returns a
:class:`ChurnReading`: the measurement plus the same rate per pod for attribution.

It reports the metric missing, with a reason, rather than a number it cannot stand by:
on the first read; when the source is not live (no file, dead socket, stale export);
when the source became live during the interval (events before that were not seen);
when Tetragon reported dropping events (rate limit) or the reader fell behind.
:class:`agent.tetragon.fallback.PreferTetragon` then uses /proc/stat instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import FIRST_SAMPLE, Measurement, Reading
from agent.tetragon.events import PodRef
from agent.tetragon.source import EventSource
from agent.tetragon.tally import Tally

PROCESS_CHURN = "process_churn_per_s"


@dataclass(frozen=True)
class PodChurn:
    pod: PodRef
    events: int
    """exec + exit events of this pod's processes during the interval."""
    per_s: float


@dataclass(frozen=True)
class ChurnReading(Reading):
    """A Reading with the churn's attribution: filled only when Tetragon measured the metric."""

    pods: tuple[PodChurn, ...] = ()
    """Per-pod churn, highest first (ties by namespace/name); pods with no event are absent."""
    host_per_s: float | None = None
    """Churn of host processes (outside any pod)."""
    untracked_pods_per_s: float | None = None
    """Churn of pods beyond the per-interval cap on pods counted by name (normally 0)."""
    tetragon: str = ""
    """The Tetragon source behind this reading, e.g. "Tetragon gRPC unix:///var/run/tetragon/tetragon.sock"."""

    def per_pod(self) -> dict[str, float]:
        """ "namespace/name" -> exec+exit events per second."""
        return {str(p.pod): p.per_s for p in self.pods}

    @property
    def pod_figures(self) -> dict[str, dict[tuple[str, str], float]]:
        """For agent.attribution: metric -> (namespace, name) -> events per second."""
        return {PROCESS_CHURN: {(p.pod.namespace, p.pod.name): p.per_s for p in self.pods}} if self.pods else {}


class TetragonChurnCollector:
    name = "tetragon"
    metrics = (PROCESS_CHURN,)

    def __init__(self, source: EventSource, clock: Clock = SYSTEM_CLOCK):
        self.source = source
        self.clock = clock
        self._prev_at: float | None = None

    def read(self) -> ChurnReading:
        now = self.clock.monotonic()
        self.source.poll()
        tally = self.source.take()
        status = self.source.status()
        prev_at, self._prev_at = self._prev_at, now
        if not status.live:
            return self._missing(now, status.reason or "Tetragon source not live")
        if prev_at is None:
            return self._missing(now, f"Tetragon {FIRST_SAMPLE}")
        seconds = now - prev_at
        if seconds <= 0:
            return self._missing(now, "Tetragon: no time elapsed between readings")
        if status.live_since is not None and status.live_since > prev_at:
            return self._missing(
                now,
                f"{self.source.description}: became live {now - status.live_since:.1f} s ago, needs a full interval",
            )
        if tally.dropped:
            return self._missing(
                now,
                f"{self.source.description}: Tetragon dropped {tally.dropped} process events "
                "(rate limit), the count would be low",
            )
        if tally.incomplete:
            return self._missing(now, tally.incomplete)
        return churn_reading(self.name, now, tally, seconds, self.source.description)

    def close(self) -> None:
        self.source.close()

    def _missing(self, now: float, reason: str) -> ChurnReading:
        return ChurnReading(
            self.name, now, (Measurement.missing(PROCESS_CHURN, reason),), tetragon=self.source.description
        )


def churn_reading(name: str, at: float, tally: Tally, seconds: float, tetragon: str = "") -> ChurnReading:
    """The rates of one interval's counts; per-pod, host and untracked parts sum to the node total."""
    pods = sorted(
        (PodChurn(pod, n, n / seconds) for pod, n in tally.pods.items()),
        key=lambda p: (-p.events, p.pod.namespace, p.pod.name),
    )
    return ChurnReading(
        name,
        at,
        (Measurement.measured(PROCESS_CHURN, tally.events / seconds),),
        pods=tuple(pods),
        host_per_s=tally.host / seconds,
        untracked_pods_per_s=tally.untracked_pods / seconds,
        tetragon=tetragon,
    )
