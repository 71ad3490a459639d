"""Metric 14 from Tetragon when it is live, else from /proc/stat's fork counter - and saying which.

:class:`PreferTetragon` wraps the /proc/stat collector (which owns cpu_utilization,
cpu_iowait_ratio and process_churn_per_s) and a :class:`TetragonChurnCollector`, and
stands in for the /proc/stat collector in the collector list, so every metric still has
exactly one owner. Both are read on every tick (the fallback's delta needs its previous
sample even while Tetragon is live); Tetragon's value wins when it has one. Otherwise the
/proc/stat value is used and its ``source`` names the fallback and why Tetragon was not
used ("fallback: /proc/stat forks (Tetragon socket /var/run/tetragon/tetragon.sock:
connection refused)"); when neither has a value, the reason gives both causes.

An exception in either part costs only that part's metrics, as in NodeCollector.
"""

from __future__ import annotations

import logging

from agent.collectors.base import Collector, Measurement, Reading
from agent.collectors.procstat import CHURN_SOURCE
from agent.tetragon.collector import PROCESS_CHURN, ChurnReading, TetragonChurnCollector

log = logging.getLogger(__name__)

#: Source of a churn value read from /proc/stat while Tetragon is configured; {reason} is Tetragon's.
FALLBACK_SOURCE = "fallback: /proc/stat forks ({reason})"


class PreferTetragon:
    def __init__(self, tetragon: TetragonChurnCollector, fallback: Collector):
        if PROCESS_CHURN not in fallback.metrics:
            raise ValueError(f"fallback: {fallback.name} does not provide {PROCESS_CHURN}")
        self.tetragon = tetragon
        self.fallback = fallback
        self.name = f"{fallback.name}+{tetragon.name}"
        self.metrics = tuple(fallback.metrics)
        self.latest: ChurnReading | None = None
        """The latest reading, for per-pod attribution (``latest.pods``)."""

    def read(self) -> ChurnReading:
        base = self._guarded(self.fallback)
        churn = self._guarded(self.tetragon)
        mine = churn.get(PROCESS_CHURN)
        if mine.available:
            chosen = mine
        else:
            chosen = fallback_churn(base.get(PROCESS_CHURN), mine.reason or "Tetragon not measured")
        measurements = tuple(chosen if m.metric == PROCESS_CHURN else m for m in base.measurements)
        if isinstance(churn, ChurnReading) and mine.available:
            reading = ChurnReading(
                self.name,
                base.at,
                measurements,
                churn.pods,
                churn.host_per_s,
                churn.untracked_pods_per_s,
                churn.tetragon,
            )
        else:
            reading = ChurnReading(
                self.name, base.at, measurements, tetragon=churn.tetragon if isinstance(churn, ChurnReading) else ""
            )
        self.latest = reading
        return reading

    def close(self) -> None:
        self.tetragon.close()

    def _guarded(self, c: Collector) -> Reading:
        try:
            return c.read()
        except Exception as err:  # one broken part must not take the other's metrics down
            message = f"collector {c.name} failed: {type(err).__name__}: {err}"
            log.debug("%s", message, exc_info=True)
            return Reading(
                c.name, self.tetragon.clock.monotonic(), tuple(Measurement.missing(m, message) for m in c.metrics)
            )


def fallback_churn(fallback: Measurement, tetragon_reason: str) -> Measurement:
    """The /proc/stat churn relabelled: its source (or reason) says Tetragon was configured but not used."""
    source = FALLBACK_SOURCE.format(reason=tetragon_reason)
    if fallback.available:
        return Measurement.measured(PROCESS_CHURN, fallback.value, source=source)
    own = (fallback.reason or "missing").replace(f" ({CHURN_SOURCE})", "")
    return Measurement.missing(PROCESS_CHURN, f"{tetragon_reason}; fallback /proc/stat: {own}")
