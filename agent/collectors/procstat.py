"""/proc/stat: CPU busy and IO-wait shares, and the fork rate (process churn fallback).

All three are deltas between two readings, so the first reading reports them missing.
CPU time per field is clamped at 0 between readings: with NO_HZ the kernel's idle and
iowait counters can step back by a tick, as top(1) also tolerates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import (
    FIRST_SAMPLE,
    Measurement,
    Reading,
    all_missing,
    clamp_ratio,
    describe_os_error,
    read_text,
)

CPU_UTILIZATION = "cpu_utilization"
CPU_IOWAIT = "cpu_iowait_ratio"
PROCESS_CHURN = "process_churn_per_s"

#: Where process churn comes from in this agent version (Tetragon is the first choice).
CHURN_SOURCE = "fallback: /proc/stat forks, Tetragon not configured"

# Field order of the aggregate "cpu" line (proc(5)). guest/guest_nice are already
# included in user/nice, so they are not part of the total.
_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class StatSample:
    """Raw counters of one /proc/stat reading: CPU jiffies by state and forks since boot."""

    cpu: dict[str, int]
    processes: int | None

    @property
    def total(self) -> int:
        return sum(self.cpu.values())


def parse_stat(text: str) -> StatSample:
    """Parse /proc/stat; raises ValueError when the aggregate cpu line is absent or malformed."""
    cpu: dict[str, int] | None = None
    processes = None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "cpu":
            nums = [int(x) for x in parts[1 : 1 + len(_CPU_FIELDS)]]
            if len(nums) < 5:  # user nice system idle iowait is the minimum we need
                raise ValueError(f"aggregate cpu line has {len(nums)} fields, expected at least 5")
            nums += [0] * (len(_CPU_FIELDS) - len(nums))
            cpu = dict(zip(_CPU_FIELDS, nums))
        elif parts[0] == "processes" and len(parts) > 1:
            processes = int(parts[1])
    if cpu is None:
        raise ValueError("no aggregate 'cpu' line")
    return StatSample(cpu, processes)


class ProcStatCollector:
    name = "procstat"
    metrics = (CPU_UTILIZATION, CPU_IOWAIT, PROCESS_CHURN)

    def __init__(self, proc_root: str | Path = "/proc", clock: Clock = SYSTEM_CLOCK):
        self.path = Path(proc_root) / "stat"
        self.clock = clock
        self._prev: tuple[float, StatSample] | None = None

    def read(self) -> Reading:
        now = self.clock.monotonic()
        try:
            sample = parse_stat(read_text(self.path))
        except OSError as err:
            self._prev = None
            return all_missing(self.name, now, self.metrics, describe_os_error(self.path, err))
        except ValueError as err:
            self._prev = None
            return all_missing(self.name, now, self.metrics, f"unexpected format in {self.path}: {err}")
        prev, self._prev = self._prev, (now, sample)
        if prev is None:
            return Reading(
                self.name,
                now,
                (
                    Measurement.missing(CPU_UTILIZATION, FIRST_SAMPLE),
                    Measurement.missing(CPU_IOWAIT, FIRST_SAMPLE),
                    Measurement.missing(PROCESS_CHURN, f"{FIRST_SAMPLE} ({CHURN_SOURCE})"),
                ),
            )
        prev_at, prev_sample = prev
        cpu, iowait = self._cpu(prev_sample, sample)
        return Reading(self.name, now, (cpu, iowait, self._churn(prev_sample, sample, now - prev_at)))

    @staticmethod
    def _cpu(prev: StatSample, cur: StatSample) -> tuple[Measurement, Measurement]:
        delta = {k: max(cur.cpu[k] - prev.cpu[k], 0) for k in _CPU_FIELDS}
        total = sum(delta.values())
        if total <= 0:
            reason = "no CPU time elapsed between the two readings of /proc/stat (interval too short?)"
            return Measurement.missing(CPU_UTILIZATION, reason), Measurement.missing(CPU_IOWAIT, reason)
        idle = delta["idle"] + delta["iowait"]
        return (
            Measurement.measured(CPU_UTILIZATION, clamp_ratio(1.0 - idle / total)),
            Measurement.measured(CPU_IOWAIT, clamp_ratio(delta["iowait"] / total)),
        )

    @staticmethod
    def _churn(prev: StatSample, cur: StatSample, seconds: float) -> Measurement:
        if cur.processes is None or prev.processes is None:
            return Measurement.missing(PROCESS_CHURN, f"no 'processes' line in /proc/stat ({CHURN_SOURCE})")
        if seconds <= 0:
            return Measurement.missing(PROCESS_CHURN, f"no time elapsed between readings ({CHURN_SOURCE})")
        forks = cur.processes - prev.processes
        if forks < 0:
            return Measurement.missing(
                PROCESS_CHURN,
                f"processes counter went backwards ({prev.processes} -> {cur.processes}); "
                f"new baseline taken ({CHURN_SOURCE})",
            )
        return Measurement.measured(PROCESS_CHURN, forks / seconds, source=CHURN_SOURCE)
