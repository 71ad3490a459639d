"""Cumulative counter readings and what one interval between two of them counted.

**Multiplexing.** When more events are open than the PMU has counters, the kernel rotates
them and each counter runs only part of the time. Every read carries ``time_enabled`` and
``time_running`` (``PERF_FORMAT_TOTAL_TIME_ENABLED | _RUNNING``); like ``perf stat -I``,
the delta of the raw count is scaled by d(enabled)/d(running) of the same interval. A
counter that did not run at all in an interval cannot be scaled and leaves its CPU out of
that interval.

**Wrap and restart.** The kernel presents 64-bit counts. A count below its previous value
is taken as a 2**64 wrap when the wrapped delta is plausible (< ``MAX_PLAUSIBLE_DELTA``),
otherwise as a restart (the counter was reopened or reset): that CPU is left out of
that interval, never turned into a huge or negative number.

Pure functions over recorded :class:`PerfSnapshot` values, unit-tested on readings in
tests/fixtures/perf/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.perf.events import EVENTS

#: A wrapped delta larger than this is a restart, not a wrap: 2**48 events is ~8 hours at
#: 10**10 events per second, far beyond any interval.
MAX_PLAUSIBLE_DELTA = 2**48
U64 = 2**64


@dataclass(frozen=True)
class CounterValue:
    """One event on one CPU as read: the cumulative count and the kernel's timing (ns)."""

    value: int
    enabled_ns: int
    running_ns: int


@dataclass(frozen=True)
class PerfSnapshot:
    """Cumulative readings of every open counter at one instant: cpu -> event -> value."""

    cpus: Mapping[int, Mapping[str, CounterValue]]
    unreadable: Mapping[int, str] = field(default_factory=dict)
    """CPUs whose counters could not be read this time, with why."""


def counter_delta(prev: int, cur: int) -> int | None:
    """``cur - prev`` for a u64 counter: modulo 2**64 when that is plausible, None on a restart."""
    d = cur - prev
    if d >= 0:
        return d
    wrapped = d + U64
    return wrapped if wrapped <= MAX_PLAUSIBLE_DELTA else None


def scaled_delta(prev: CounterValue, cur: CounterValue) -> tuple[float, float, float]:
    """(scaled count delta, enabled seconds, running share) of one counter over an interval.

    Raises ValueError with the reason when the interval cannot be measured on this counter.
    """
    dv = counter_delta(prev.value, cur.value)
    de = counter_delta(prev.enabled_ns, cur.enabled_ns)
    dr = counter_delta(prev.running_ns, cur.running_ns)
    if dv is None or de is None or dr is None or dr > de:
        raise ValueError("counter restarted (went backwards)")
    if de == 0:
        raise ValueError("counter not enabled during the interval (CPU offline?)")
    if dr == 0:
        raise ValueError("counter never scheduled on the PMU during the interval (multiplexed out)")
    return dv * de / dr, de / 1e9, dr / de


@dataclass(frozen=True)
class IntervalCounts:
    """Event counts of one interval, summed over the CPUs whose every counter was measurable."""

    totals: Mapping[str, float]
    """event -> scaled count delta, summed over ``cpus``."""
    rates: Mapping[str, float]
    """event -> events per second: sum over ``cpus`` of count / that CPU's enabled time."""
    cpus: tuple[int, ...]
    excluded: Mapping[int, str]
    """CPU -> why it is left out of this interval."""
    running_share: float
    """Smallest share of the interval any used counter actually ran (1.0 = no multiplexing)."""

    @property
    def complete(self) -> bool:
        return not self.excluded

    def coverage(self) -> str | None:
        """Human note on multiplexing or left-out CPUs; None when the interval is clean."""
        notes = []
        if self.excluded:
            detail = "; ".join(f"cpu{c}: {why}" for c, why in sorted(self.excluded.items()))
            notes.append(f"{len(self.cpus)} of {len(self.cpus) + len(self.excluded)} CPUs ({detail})")
        if self.running_share < 1.0:
            notes.append(f"multiplexed, scaled from {self.running_share:.0%} of the interval")
        return "perf counters: " + ", ".join(notes) if notes else None


def interval_counts(prev: PerfSnapshot, cur: PerfSnapshot, events: tuple[str, ...] = EVENTS) -> IntervalCounts:
    """Sum the scaled per-CPU deltas of ``events`` between two snapshots."""
    totals = dict.fromkeys(events, 0.0)
    rates = dict.fromkeys(events, 0.0)
    used: list[int] = []
    excluded: dict[int, str] = dict(cur.unreadable)
    share = 1.0
    for cpu in sorted(set(prev.cpus) | set(cur.cpus)):
        if cpu in excluded:
            continue
        before, after = prev.cpus.get(cpu), cur.cpus.get(cpu)
        if before is None or after is None:
            excluded[cpu] = "no baseline reading" if before is None else "no current reading"
            continue
        try:
            deltas = {}
            for event in events:
                if event not in before or event not in after:
                    raise ValueError(f"{event} not read")
                deltas[event] = scaled_delta(before[event], after[event])
        except ValueError as err:
            excluded[cpu] = str(err)
            continue
        used.append(cpu)
        for event, (count, seconds, running) in deltas.items():
            totals[event] += count
            rates[event] += count / seconds
            share = min(share, running)
    return IntervalCounts(totals, rates, tuple(used), excluded, share)
