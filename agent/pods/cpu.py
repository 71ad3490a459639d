"""Per-pod CPU time and CFS throttling per interval, in schema units.

CPU time is the pod cgroup's (cgroup v1 ``cpuacct.usage``, v2 ``cpu.stat`` usage_usec:
hierarchical, all its containers). Throttling is the node collector's walk over the leaf
cgroups (agent.cgroupfs.bandwidth), grouped by the pod each leaf is in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.cgroupfs.bandwidth import BandwidthSample, cpu_stat_fields, read_bandwidth, throttled_periods
from agent.cgroupfs.hierarchies import child_cgroups
from agent.clock import SYSTEM_CLOCK, Clock
from agent.cpu_lists import online_cpus
from agent.pods.cgroup_path import pod_component

CPU_UTILIZATION = "cpu_utilization"
CPU_THROTTLED = "cpu_throttled_ratio"
_POD_ROOT_NAMES = ("kubepods.slice", "kubepods")
_V1_USAGE_HIERARCHIES = ("cpu,cpuacct", "cpuacct,cpu", "cpuacct")
_V1_THROTTLE_HIERARCHIES = ("cpu,cpuacct", "cpuacct,cpu", "cpu")
#: kubepods/<qos>/pod<uid> is depth 2; systemd the same; 3 leaves margin.
POD_MAX_DEPTH = 3


@dataclass(frozen=True)
class PodCgroupRoots:
    """Where pod cgroups live: the hierarchy with CPU time and the one with CFS bandwidth stats."""

    usage: Path
    throttle: Path
    version: int

    @classmethod
    def find(cls, sys_root: str | Path = "/sys") -> PodCgroupRoots | None:
        base = Path(sys_root) / "fs" / "cgroup"
        if (base / "cgroup.controllers").exists():
            root = next((base / n for n in _POD_ROOT_NAMES if (base / n).is_dir()), None)
            return cls(root, root, 2) if root else None

        def first(hierarchies):
            return next((base / h / n for h in hierarchies for n in _POD_ROOT_NAMES if (base / h / n).is_dir()), None)

        usage, throttle = first(_V1_USAGE_HIERARCHIES), first(_V1_THROTTLE_HIERARCHIES)
        return cls(usage, throttle, 1) if usage and throttle else None

    @classmethod
    def for_root(cls, root: str | Path) -> PodCgroupRoots:
        """One explicit root (the agent's ``--cgroup-root``) for both: v2, or v1 with cpu and cpuacct
        co-mounted. Under a v1 ``cpu``-only root pods have throttling figures but no CPU time."""
        root = Path(root)
        return cls(root, root, 2 if (root / "cgroup.controllers").exists() else 1)


@dataclass(frozen=True)
class PodCpuSample:
    at: float
    usage_ns: Mapping[str, int]
    """pod UID -> cumulative CPU time of the pod cgroup (hierarchical: all its containers)."""
    bandwidth: Mapping[str, Mapping[str, tuple[int, int]]]
    """pod UID -> leaf cgroup (its path under the pod root: the containers) -> (nr_periods, nr_throttled)."""


def pod_dirs(root: Path, max_depth: int = POD_MAX_DEPTH) -> dict[str, Path]:
    """pod UID -> pod cgroup directory under a kubepods root (bounded walk)."""
    found: dict[str, Path] = {}
    stack = [(root, 0)]
    while stack:
        path, depth = stack.pop()
        try:
            children = child_cgroups(path)
        except OSError:
            continue
        for child in children:
            uid = pod_component(child.name)
            if uid is not None:
                found[uid] = child
            elif depth + 1 < max_depth:
                stack.append((child, depth + 1))
    return found


def _read_usage_ns(pod: Path, version: int) -> int | None:
    try:
        if version == 1:
            return int((pod / "cpuacct.usage").read_text())
        usec = cpu_stat_fields((pod / "cpu.stat").read_text()).get("usage_usec")
        return None if usec is None else usec * 1000
    except (OSError, ValueError):
        return None


def bandwidth_by_pod(sample: BandwidthSample) -> dict[str, dict[str, tuple[int, int]]]:
    """The leaves of one bandwidth walk grouped by the pod whose cgroup they are in (others left out)."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for leaf, counters in sample.counters.items():
        uid = next((u for part in leaf.split("/") if (u := pod_component(part)) is not None), None)
        if uid is not None:
            out.setdefault(uid, {})[leaf] = counters
    return out


#: How often PodCpuSampler looks again for pod cgroup roots it did not find.
ROOTS_RETRY_S = 30.0


class PodCpuSampler:
    """Per-pod CPU share of the node and CFS throttled ratio, per interval between two reads.

    ``read()`` returns ``{"cpu_utilization": {uid: share}, "cpu_throttled_ratio": {uid: ratio}}``
    in schema units: CPU time / (interval x online CPUs), and throttled / elapsed periods
    summed over the pod's containers. A pod is left out of a metric for an interval when it
    has no baseline yet, its counters went backwards (recreated), or (throttling) it has no
    CPU limit and so no periods elapsed. The first call only sets the baseline.
    """

    def __init__(
        self,
        sys_root: str | Path = "/sys",
        roots: PodCgroupRoots | None = None,
        cpu_count: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.sys_root = Path(sys_root)
        self.explicit = roots
        self.cpu_count = cpu_count or len(online_cpus(self.sys_root)) or os.cpu_count() or 1
        self.clock = clock
        self._prev: PodCpuSample | None = None
        self._roots: PodCgroupRoots | None = None
        self._roots_retry_at = float("-inf")

    def sample(self) -> PodCpuSample | None:
        roots = self.explicit or self._find_roots()
        if roots is None:
            return None
        now = self.clock.monotonic()
        usage = {}
        for uid, path in pod_dirs(roots.usage).items():
            if (ns := _read_usage_ns(path, roots.version)) is not None:
                usage[uid] = ns
        bandwidth = bandwidth_by_pod(read_bandwidth(roots.throttle))
        return PodCpuSample(now, usage, bandwidth)

    def _find_roots(self) -> PodCgroupRoots | None:
        """Auto-detected roots; where there are none (not a Kubernetes node yet), look again
        only every ROOTS_RETRY_S rather than walking /sys/fs/cgroup every interval."""
        now = self.clock.monotonic()
        if self._roots is None and now < self._roots_retry_at:
            return None
        if self._roots is None:
            self._roots = PodCgroupRoots.find(self.sys_root)
            self._roots_retry_at = now + ROOTS_RETRY_S
        return self._roots

    def read(self) -> dict[str, dict[str, float]]:
        cur = self.sample()
        prev, self._prev = self._prev, cur
        return per_pod_figures(prev, cur, self.cpu_count) if prev is not None and cur is not None else {}


def per_pod_figures(prev: PodCpuSample, cur: PodCpuSample, cpu_count: int) -> dict[str, dict[str, float]]:
    """The pure half of :class:`PodCpuSampler`: two samples -> per-pod figures per metric."""
    seconds = cur.at - prev.at
    share: dict[str, float] = {}
    if seconds > 0 and cpu_count > 0:
        for uid, ns in cur.usage_ns.items():
            before = prev.usage_ns.get(uid)
            if before is not None and ns >= before:
                share[uid] = min((ns - before) / 1e9 / (seconds * cpu_count), 1.0)
    throttled: dict[str, float] = {}
    for uid, leaves in cur.bandwidth.items():
        periods, hits = throttled_periods(prev.bandwidth.get(uid, {}), leaves)
        if periods > 0:
            throttled[uid] = min(hits / periods, 1.0)
    return {CPU_UTILIZATION: share, CPU_THROTTLED: throttled}
