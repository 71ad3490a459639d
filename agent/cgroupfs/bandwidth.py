"""CFS bandwidth counters of the leaf cgroups under a root: the one walk behind every throttled ratio.

The node's ``cpu_throttled_ratio`` (agent.collectors.cgroup_throttle) and each pod's
(agent.pods.cpu) are sum(delta nr_throttled) / sum(delta nr_periods) over the *leaf*
cgroups (the containers) under the Kubernetes pod cgroup root. CFS enforces a quota at
every level that has one and counts a throttle only where the quota ran out; the kubelet
puts each container's limit on the container cgroup, so that is where the throttling
shows. Summing pod and container levels would count the same periods twice.

cgroup v1 (``cpu`` controller) and v2 both write ``nr_periods`` and ``nr_throttled`` in
``cpu.stat``. The walk is bounded (``MAX_DEPTH``, ``MAX_CGROUPS``) and tolerates cgroups
that vanish while it runs: a pod that ends between two readings just leaves the sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.cgroupfs.hierarchies import child_cgroups

#: kubepods/<qos>/pod<uid>/<container> is depth 3 (systemd driver the same); 6 leaves margin.
MAX_DEPTH = 6
#: Upper bound on cgroup directories visited per reading (a node runs at most a few hundred pods).
MAX_CGROUPS = 5000


def cpu_stat_fields(text: str) -> dict[str, int]:
    """The ``name value`` lines of a cpu.stat with an integer value."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_cpu_stat(text: str) -> tuple[int, int] | None:
    """(nr_periods, nr_throttled) from a cpu.stat, or None when the file has no bandwidth stats."""
    fields = cpu_stat_fields(text)
    if "nr_periods" in fields and "nr_throttled" in fields:
        return fields["nr_periods"], fields["nr_throttled"]
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
                children = child_cgroups(path)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue  # the cgroup went away mid-walk
        if children:
            stack.extend((c, depth + 1) for c in children)
        else:
            leaves.append(path)
    return leaves, False


@dataclass(frozen=True)
class BandwidthSample:
    """Bandwidth counters of every leaf cgroup under one root, at one instant."""

    root: Path
    counters: Mapping[str, tuple[int, int]]
    """leaf path relative to ``root`` (``.`` for the root itself) -> (nr_periods, nr_throttled);
    only leaves whose cpu.stat has both."""
    leaves: int
    truncated: bool


def read_bandwidth(root: Path, max_depth: int = MAX_DEPTH, max_cgroups: int = MAX_CGROUPS) -> BandwidthSample:
    leaves, truncated = leaf_cgroups(root, max_depth, max_cgroups)
    counters = {}
    for leaf in leaves:
        try:
            text = (leaf / "cpu.stat").read_text()
        except OSError:
            continue  # no cpu.stat here, or the cgroup vanished
        parsed = parse_cpu_stat(text)
        if parsed is not None:
            counters[str(leaf.relative_to(root))] = parsed
    return BandwidthSample(root, counters, len(leaves), truncated)


def throttled_periods(prev: Mapping[str, tuple[int, int]], cur: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """(elapsed periods, throttled periods) between two readings, summed over the leaves in both.

    A new leaf has no baseline yet; a leaf whose counters went backwards was recreated under
    the same name. Both are left out of this interval.
    """
    periods = throttled = 0
    for leaf, (p, t) in cur.items():
        before = prev.get(leaf)
        if before is None:
            continue
        dp, dt = p - before[0], t - before[1]
        if dp < 0 or dt < 0:
            continue
        periods += dp
        throttled += dt
    return periods, throttled
