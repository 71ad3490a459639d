"""CPU throttling of pods: the share of CFS bandwidth periods in which a pod was throttled.

The walk and the arithmetic are agent.cgroupfs.bandwidth's (pod attribution uses the same):
sum(delta nr_throttled) / sum(delta nr_periods) over the *leaf* cgroups (the containers)
under the Kubernetes pod cgroup root, where the kubelet puts each container's limit.

When the root exists but no period elapsed between two readings, the value is 0.0, not
missing: that is a real measurement ("no CPU-limited container ran, so nothing was
throttled"). It is missing when there is no pod root at all, when the cpu controller
gives no bandwidth statistics, and on the first reading (no delta yet).
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.cgroupfs.bandwidth import MAX_CGROUPS, MAX_DEPTH, BandwidthSample, read_bandwidth, throttled_periods
from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import FIRST_SAMPLE, Measurement, Reading, clamp_ratio

log = logging.getLogger(__name__)

CPU_THROTTLED = "cpu_throttled_ratio"

#: Pod cgroup roots tried in order, relative to sys_root (v2 unified, then v1 cpu controller).
ROOT_CANDIDATES = (
    "fs/cgroup/kubepods.slice",
    "fs/cgroup/kubepods",
    "fs/cgroup/cpu,cpuacct/kubepods.slice",
    "fs/cgroup/cpu,cpuacct/kubepods",
    "fs/cgroup/cpu/kubepods.slice",
    "fs/cgroup/cpu/kubepods",
)


class CgroupThrottleCollector:
    name = "cgroup_throttle"
    metrics = (CPU_THROTTLED,)

    def __init__(
        self,
        sys_root: str | Path = "/sys",
        cgroup_root: str | Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
        max_depth: int = MAX_DEPTH,
        max_cgroups: int = MAX_CGROUPS,
    ):
        self.sys_root = Path(sys_root)
        self.explicit_root = Path(cgroup_root) if cgroup_root else None
        self.clock = clock
        self.max_depth = max_depth
        self.max_cgroups = max_cgroups
        self._prev: BandwidthSample | None = None
        self._warned_truncated = False

    @property
    def candidates(self) -> tuple[Path, ...]:
        if self.explicit_root is not None:
            return (self.explicit_root,)
        return tuple(self.sys_root / c for c in ROOT_CANDIDATES)

    def find_root(self) -> Path | None:
        """The pod cgroup root, looked up on every reading so a kubelet starting later is seen."""
        return next((c for c in self.candidates if c.is_dir()), None)

    def sample(self, root: Path) -> BandwidthSample:
        return read_bandwidth(root, self.max_depth, self.max_cgroups)

    def read(self) -> Reading:
        now = self.clock.monotonic()
        return Reading(self.name, now, (self._measure(),))

    def _measure(self) -> Measurement:
        root = self.find_root()
        if root is None:
            self._prev = None
            where = self.explicit_root or self.sys_root / "fs/cgroup"
            looked = ", ".join(str(c.relative_to(where)) if c != where else str(c) for c in self.candidates)
            return Measurement.missing(
                CPU_THROTTLED,
                f"no Kubernetes pod cgroups under {where} (looked at: {looked}); "
                "not a Kubernetes node, or pass --cgroup-root",
            )
        cur = self.sample(root)
        if cur.truncated and not self._warned_truncated:
            log.warning(
                "cgroup walk under %s stopped after %d cgroups (depth <= %d); throttling covers "
                "only the cgroups visited",
                root,
                self.max_cgroups,
                self.max_depth,
            )
            self._warned_truncated = True
        prev, self._prev = self._prev, cur
        if not cur.counters:
            return Measurement.missing(
                CPU_THROTTLED,
                f"cpu.stat under {root} has no nr_periods/nr_throttled "
                "(cpu controller not enabled for the pod cgroups)",
            )
        if prev is None or prev.root != root:
            return Measurement.missing(CPU_THROTTLED, FIRST_SAMPLE)
        periods, throttled = throttled_periods(prev.counters, cur.counters)
        if periods == 0:
            return Measurement.measured(CPU_THROTTLED, 0.0)
        return Measurement.measured(CPU_THROTTLED, clamp_ratio(throttled / periods))
