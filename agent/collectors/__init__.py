"""Collectors: one module per host source, each owning some of the 15 schema metrics.

Every collector takes its root path (``proc_root``, ``sys_root``) and an injected clock,
and returns a frozen :class:`~agent.collectors.base.Reading`. :func:`default_collectors`
is the set this agent version runs. ``runqlat_program`` is the run-queue collector's
eBPF program from Python; the kernel interfaces they share live beside this package
(agent.ebpf, agent.perf, agent.cgroupfs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Collector, Measurement, Reading
from agent.collectors.cgroup_throttle import CgroupThrottleCollector
from agent.collectors.ebpf_biolatency import BlockIoCollector
from agent.collectors.ebpf_runqueue import RunqueueCollector
from agent.collectors.meminfo import MeminfoCollector
from agent.collectors.memory_bandwidth import MemoryBandwidthCollector
from agent.collectors.perf_counters import PerfCountersCollector
from agent.collectors.procstat import ProcStatCollector
from agent.collectors.psi import PsiCollector
from agent.perf.counters import CounterSource, PerfCounters

if TYPE_CHECKING:  # agent.tetragon imports agent.collectors.base: import it lazily, never at the top
    from agent.tetragon import TetragonChurnCollector

__all__ = [
    "Collector",
    "Measurement",
    "Reading",
    "BlockIoCollector",
    "CgroupThrottleCollector",
    "MeminfoCollector",
    "MemoryBandwidthCollector",
    "PerfCountersCollector",
    "ProcStatCollector",
    "PsiCollector",
    "RunqueueCollector",
    "default_collectors",
]


def default_collectors(
    proc_root: str | Path = "/proc",
    sys_root: str | Path = "/sys",
    cgroup_root: str | Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
    tetragon: TetragonChurnCollector | None = None,
    perf: CounterSource | None = None,
) -> list[Collector]:
    """The collectors of this agent version; together they cover all 15 metrics exactly once.

    With ``tetragon`` (agent.tetragon.tetragon_collector), process churn comes from Tetragon
    while it is live and from /proc/stat otherwise, saying so; without it, from /proc/stat.
    ``perf``: the per-CPU hardware counters shared by the perf and bandwidth collectors
    (default: opened on first read; tests pass a recorded source).
    """
    perf = perf or PerfCounters(sys_root, proc_root)
    procstat: Collector = ProcStatCollector(proc_root, clock)
    if tetragon is not None:
        from agent.tetragon import with_tetragon

        procstat = with_tetragon(procstat, tetragon)
    return [
        procstat,
        PsiCollector(proc_root, clock),
        MeminfoCollector(proc_root, clock),
        CgroupThrottleCollector(sys_root, cgroup_root, clock),
        RunqueueCollector(sys_root, clock, proc_root=proc_root),
        BlockIoCollector(sys_root, clock, proc_root=proc_root),
        PerfCountersCollector(perf, clock),
        MemoryBandwidthCollector(sys_root, perf, clock),
    ]
