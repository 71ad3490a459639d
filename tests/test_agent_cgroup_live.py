"""Real CFS throttling: a busy loop in a CPU-limited cgroup must show up as throttling.

Needs root and a cgroup cpu controller (v1 /sys/fs/cgroup/cpu, or v2 with "cpu" in
cgroup.controllers). The cgroups are created under a test-only parent and removed after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cgroupfs.bandwidth import parse_cpu_stat
from agent.collectors.cgroup_throttle import CgroupThrottleCollector

V1_CPU = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")
PERIOD_US = 10_000
QUOTA_US = 1_000  # 10 % of one CPU: a busy loop is throttled in nearly every period


def cpu_hierarchy() -> tuple[str, Path] | None:
    if (V1_CPU / "cpu.cfs_quota_us").exists():
        return "v1", V1_CPU
    controllers = V2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return "v2", V2
    return None


def rmdir_tree(path: Path) -> None:
    """Remove a cgroup subtree, children first (cgroupfs needs rmdir, not unlink)."""
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        child.rmdir()
    path.rmdir()


@pytest.fixture
def limited_cgroup():
    """(pod cgroup root, container leaf) with a CPU quota, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    found = cpu_hierarchy()
    if found is None:
        pytest.skip("no cgroup cpu controller (neither v1 /sys/fs/cgroup/cpu nor v2 with 'cpu' enabled)")
    version, base = found
    root = base / f"ka-test-pods-{os.getpid()}"
    leaf = root / "pod-busy" / "ctr-busy"
    leaf.mkdir(parents=True)
    try:
        if version == "v1":
            (leaf / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (leaf / "cpu.cfs_quota_us").write_text(str(QUOTA_US))
        else:
            for level in (root, root / "pod-busy"):
                (level / "cgroup.subtree_control").write_text("+cpu")
            (leaf / "cpu.max").write_text(f"{QUOTA_US} {PERIOD_US}")
        yield root, leaf
    finally:
        rmdir_tree(root)


def test_busy_loop_in_limited_cgroup_is_throttled(limited_cgroup):
    root, leaf = limited_cgroup
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        (leaf / "cgroup.procs").write_text(str(busy.pid))
        collector = CgroupThrottleCollector(cgroup_root=root)
        first = collector.read().get("cpu_throttled_ratio")
        assert first.value is None  # no delta yet
        time.sleep(0.6)
        ratio = collector.read().get("cpu_throttled_ratio").value
        periods, throttled = parse_cpu_stat((leaf / "cpu.stat").read_text())
    finally:
        busy.kill()
        busy.wait()
    assert periods > 0 and throttled > 0, "the kernel itself saw no throttling"
    assert ratio is not None and 0.0 < ratio <= 1.0
    assert ratio > 0.5  # 10 % quota against a busy loop: most periods are throttled


def test_limited_but_idle_cgroup_reads_zero(limited_cgroup):
    root, _ = limited_cgroup
    collector = CgroupThrottleCollector(cgroup_root=root)
    collector.read()
    time.sleep(0.2)
    assert collector.read().get("cpu_throttled_ratio").value == 0.0
