"""Collectors: one module per host source, each owning some of the 15 schema metrics.

Every collector takes its root path (``proc_root``, ``sys_root``) and an injected clock,
and returns a frozen :class:`~agent.collectors.base.Reading`. :func:`default_collectors`
is the set this agent version runs; a new collector replaces a pending one here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Collector, Measurement, Reading
from agent.collectors.cgroup_throttle import CgroupThrottleCollector
from agent.collectors.meminfo import MeminfoCollector
from agent.collectors.pending import PendingCollector, pending_collectors
from agent.collectors.procstat import ProcStatCollector
from agent.collectors.psi import PsiCollector

if TYPE_CHECKING:  # agent.tetragon imports agent.collectors.base: import it lazily, never at the top
    from agent.tetragon import TetragonChurnCollector

__all__ = ["Collector", "Measurement", "Reading", "CgroupThrottleCollector", "MeminfoCollector",
           "PendingCollector", "ProcStatCollector", "PsiCollector", "default_collectors"]


def default_collectors(proc_root: str | Path = "/proc", sys_root: str | Path = "/sys",
                       cgroup_root: str | Path | None = None, clock: Clock = SYSTEM_CLOCK,
                       tetragon: TetragonChurnCollector | None = None) -> list[Collector]:
    """The collectors of this agent version; together they cover all 15 metrics exactly once.

    With ``tetragon`` (agent.tetragon.tetragon_collector), process churn comes from Tetragon
    while it is live and from /proc/stat otherwise, saying so; without it, from /proc/stat.
    """
    procstat: Collector = ProcStatCollector(proc_root, clock)
    if tetragon is not None:
        from agent.tetragon import with_tetragon
        procstat = with_tetragon(procstat, tetragon)
    return [
        procstat,
        PsiCollector(proc_root, clock),
        MeminfoCollector(proc_root, clock),
        CgroupThrottleCollector(sys_root, cgroup_root, clock),
        *pending_collectors(clock),
    ]
