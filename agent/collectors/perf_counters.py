"""Hardware performance counters: LLC miss ratio, LLC MPKI and CPI of the whole node.

Per online CPU the agent opens four ``PERF_TYPE_HARDWARE`` counters - cache-misses,
cache-references, instructions, cycles - counting every process on that CPU
(``pid=-1, cpu=N``; this needs CAP_PERFMON or CAP_SYS_ADMIN, or
``kernel.perf_event_paranoid <= 0``). Each interval the metrics come from the deltas
summed over CPUs::

    llc_miss_ratio         = d(cache-misses) / d(cache-references)
    llc_mpki               = d(cache-misses) / (d(instructions) / 1000)
    cycles_per_instruction = d(cycles) / d(instructions)

The counting is agent.perf's (the device, the syscall layer, the interval arithmetic
with multiplex scaling and wrap handling); this module turns one interval's counts into
the three metrics (:func:`perf_measurements`, pure) and is the collector.

A ratio with a zero denominator (no cache references, no instructions in the interval)
is missing with that reason, not 0.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import FIRST_SAMPLE, Measurement, Reading, all_missing
from agent.perf.counters import CounterSource
from agent.perf.events import CACHE_MISSES, CACHE_REFERENCES, CYCLES, EVENTS, INSTRUCTIONS
from agent.perf.intervals import IntervalCounts, PerfSnapshot, interval_counts

LLC_MISS_RATIO = "llc_miss_ratio"
LLC_MPKI = "llc_mpki"
CPI = "cycles_per_instruction"

#: Which events each metric needs (numerator, denominator).
METRIC_EVENTS: dict[str, tuple[str, str]] = {
    LLC_MISS_RATIO: (CACHE_MISSES, CACHE_REFERENCES),
    LLC_MPKI: (CACHE_MISSES, INSTRUCTIONS),
    CPI: (CYCLES, INSTRUCTIONS),
}

#: A miss ratio up to this much above 1 is scaling noise and is clipped to 1; beyond it the
#: events are not comparable on this CPU and the ratio is reported missing.
RATIO_NOISE = 1.05


def lacking_events(metric: str, unavailable: Mapping[str, str]) -> str | None:
    """Why ``metric`` cannot be computed because one of its events is not counted, or None."""
    lacking = [f"{e}: {unavailable[e]}" for e in METRIC_EVENTS[metric] if e in unavailable]
    return "; ".join(lacking) or None


def perf_measurements(counts: IntervalCounts, unavailable: Mapping[str, str] | None = None) -> tuple[Measurement, ...]:
    """The three metrics from one interval's counts; ``unavailable`` maps event -> why it is not counted."""
    out = []
    for metric, (num_event, den_event) in METRIC_EVENTS.items():
        if lacking := lacking_events(metric, unavailable or {}):
            out.append(Measurement.missing(metric, lacking))
            continue
        if not counts.cpus:
            detail = "; ".join(f"cpu{c}: {why}" for c, why in sorted(counts.excluded.items())) or "no CPUs"
            out.append(Measurement.missing(metric, f"no CPU's counters were measurable this interval ({detail})"))
            continue
        num, den = counts.totals[num_event], counts.totals[den_event]
        if den <= 0:
            out.append(Measurement.missing(metric, f"no {den_event} counted in the interval: {metric} undefined"))
            continue
        value = num / den
        if metric == LLC_MPKI:
            value *= 1000.0
        elif metric == LLC_MISS_RATIO and value > 1.0:
            if value > RATIO_NOISE:
                out.append(
                    Measurement.missing(
                        metric,
                        f"cache-misses ({num:.0f}) exceed cache-references "
                        f"({den:.0f}): the two events are not comparable here",
                    )
                )
                continue
            value = 1.0
        out.append(Measurement(metric, value, None, counts.coverage()))
    return tuple(out)


class PerfCountersCollector:
    name = "perf_counters"
    metrics = (LLC_MISS_RATIO, LLC_MPKI, CPI)

    def __init__(self, source: CounterSource, clock: Clock = SYSTEM_CLOCK):
        self.source = source
        self.clock = clock
        self._prev: PerfSnapshot | None = None

    def read(self) -> Reading:
        now = self.clock.monotonic()
        snap = self.source.snapshot()
        if snap is None:
            self._prev = None
            return all_missing(self.name, now, self.metrics, self.source.reason or "perf counters unavailable")
        prev, self._prev = self._prev, snap
        unavailable = self.source.unavailable
        if prev is None:
            return Reading(
                self.name,
                now,
                tuple(Measurement.missing(m, lacking_events(m, unavailable) or FIRST_SAMPLE) for m in self.metrics),
            )
        counted = tuple(e for e in EVENTS if e not in unavailable)
        return Reading(self.name, now, perf_measurements(interval_counts(prev, snap, counted), unavailable))
