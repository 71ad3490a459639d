"""CPU throttling of pods: the share of CFS bandwidth periods in which a pod was throttled.

cpu_throttled_ratio = sum(delta nr_throttled) / sum(delta nr_periods), summed over the
*leaf* cgroups (the containers) under the Kubernetes pod cgroup root. CFS enforces a
quota at every level that has one and counts a throttle only where the quota ran out;
the kubelet puts each container's limit on the container cgroup, so that is where the
throttling shows. Summing pod and container levels would count the same periods twice.

cgroup v1 (``cpu`` controller) and v2 both write ``nr_periods`` and ``nr_throttled`` in
``cpu.stat``. When the root exists but no period elapsed between two readings, the value
is 0.0, not missing: that is a real measurement ("no CPU-limited container ran, so
nothing was throttled"). It is missing when there is no pod root at all, when the cpu
controller gives no bandwidth statistics, and on the first reading (no delta yet).

The walk is bounded (``MAX_DEPTH``, ``MAX_CGROUPS``) and tolerates cgroups that vanish
while it runs: a pod that ends between two readings just leaves the sum.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

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
#: kubepods/<qos>/pod<uid>/<container> is depth 3 (systemd driver the same); 6 leaves margin.
MAX_DEPTH = 6
#: Upper bound on cgroup directories visited per reading (a node runs at most a few hundred pods).
MAX_CGROUPS = 5000


@dataclass(frozen=True)
class ThrottleSample:
    """Bandwidth counters of every leaf cgroup under one root, at one instant."""

    root: Path
    counters: dict[str, tuple[int, int]]
    """leaf path -> (nr_periods, nr_throttled); only leaves whose cpu.stat has both."""
    leaves: int
    truncated: bool


def parse_cpu_stat(text: str) -> tuple[int, int] | None:
    """(nr_periods, nr_throttled) from a cpu.stat, or None when the file has no bandwidth stats."""
    fields = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            fields[parts[0]] = parts[1]
    try:
        return int(fields["nr_periods"]), int(fields["nr_throttled"])
    except (KeyError, ValueError):
        return None


def leaf_cgroups(root: Path, max_depth: int = MAX_DEPTH, max_cgroups: int = MAX_CGROUPS) -> tuple[list[Path], bool]:
    """Leaf directories under ``root`` (depth-bounded, count-bounded), and whether the bound cut the walk."""
    leaves: list[Path] = []
    stack = [(root, 0)]
    visited = 0
    while stack:
        path, depth = stack.pop()
        visited += 1
        if visited > max_cgroups:
            return leaves, True
        children: list[Path] = []
        if depth < max_depth:
            try:
                with os.scandir(path) as it:
                    for entry in it:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                children.append(Path(entry.path))
                        except OSError:
                            continue  # vanished between listing and stat
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue  # the cgroup went away mid-walk
        if children:
            stack.extend((c, depth + 1) for c in children)
        else:
            leaves.append(path)
    return leaves, False


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
        self._prev: ThrottleSample | None = None
        self._warned_truncated = False

    @property
    def candidates(self) -> tuple[Path, ...]:
        if self.explicit_root is not None:
            return (self.explicit_root,)
        return tuple(self.sys_root / c for c in ROOT_CANDIDATES)

    def find_root(self) -> Path | None:
        """The pod cgroup root, looked up on every reading so a kubelet starting later is seen."""
        return next((c for c in self.candidates if c.is_dir()), None)

    def sample(self, root: Path) -> ThrottleSample:
        leaves, truncated = leaf_cgroups(root, self.max_depth, self.max_cgroups)
        counters = {}
        for leaf in leaves:
            try:
                text = (leaf / "cpu.stat").read_text()
            except OSError:
                continue  # no cpu.stat here, or the cgroup vanished
            parsed = parse_cpu_stat(text)
            if parsed is not None:
                counters[str(leaf)] = parsed
        return ThrottleSample(root, counters, len(leaves), truncated)

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
        periods = throttled = 0
        for path, (p, t) in cur.counters.items():
            before = prev.counters.get(path)
            if before is None:
                continue  # new container: no baseline yet
            dp, dt = p - before[0], t - before[1]
            if dp < 0 or dt < 0:
                continue  # counters went backwards: the cgroup was recreated under the same name
            periods += dp
            throttled += dt
        if periods == 0:
            return Measurement.measured(CPU_THROTTLED, 0.0)
        return Measurement.measured(CPU_THROTTLED, clamp_ratio(throttled / periods))
