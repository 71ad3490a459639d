"""Collector arithmetic on the checked-in fake trees (tests/fixtures/agent/), and the
same collectors on this machine's real /proc (invariants: ratios in [0, 1], counters grow)."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pytest
from doubles import FakeClock

from agent.cgroupfs.bandwidth import leaf_cgroups, parse_cpu_stat
from agent.collect import NO_COLLECTOR, NodeCollector, availability_changes
from agent.collectors import default_collectors
from agent.collectors.base import FIRST_SAMPLE, Measurement, Reading, all_missing
from agent.collectors.cgroup_throttle import CgroupThrottleCollector
from agent.collectors.meminfo import MeminfoCollector
from agent.collectors.procstat import CHURN_SOURCE, ProcStatCollector, parse_stat
from agent.collectors.psi import PsiCollector
from wire.schema import METRIC_NAMES, METRICS, NUM_METRICS

FIXTURES = Path(__file__).parent / "fixtures" / "agent"
V1_ROOT = "fs/cgroup/cpu,cpuacct/kubepods"
V2_ROOT = "fs/cgroup/kubepods.slice"


def tree(tmp_path: Path, name: str) -> Path:
    """A writable copy of a fixture tree."""
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def values(reading: Reading) -> dict[str, float | None]:
    return {m.metric: m.value for m in reading.measurements}


# ------------------------------------------------------------------ /proc/stat


def test_parse_stat_sums_the_aggregate_line():
    s = parse_stat((FIXTURES / "proc" / "stat").read_text())
    assert s.cpu["iowait"] == 1500 and s.processes == 5000
    assert s.total == 10000 + 500 + 3000 + 80000 + 1500 + 200


def test_procstat_first_reading_is_missing_then_deltas(tmp_path):
    proc, clock = tree(tmp_path, "proc"), FakeClock(100.0, 1_700_000_000_000)
    c = ProcStatCollector(proc, clock)
    first = c.read()
    assert all(m.value is None for m in first.measurements)
    assert first.get("cpu_utilization").reason == FIRST_SAMPLE
    assert CHURN_SOURCE in first.get("process_churn_per_s").reason
    shutil.copy(FIXTURES / "proc-later" / "stat", proc / "stat")
    clock.advance(2.0)
    second = c.read()
    assert second.at == clock.t
    # +1000 jiffies: user 400, system 100, idle 300, iowait 200; 40 forks in 2 s
    assert values(second) == pytest.approx(
        {"cpu_utilization": 0.5, "cpu_iowait_ratio": 0.2, "process_churn_per_s": 20.0}
    )
    assert second.get("process_churn_per_s").source == "fallback: /proc/stat forks, Tetragon not configured"


def test_procstat_counters_going_backwards(tmp_path):
    proc, clock = tree(tmp_path, "proc-later"), FakeClock(100.0, 1_700_000_000_000)
    c = ProcStatCollector(proc, clock)
    c.read()
    shutil.copy(FIXTURES / "proc" / "stat", proc / "stat")  # every counter steps back
    clock.advance(1.0)
    r = c.read()
    assert r.get("cpu_utilization").value is None and "no CPU time elapsed" in r.get("cpu_utilization").reason
    assert r.get("process_churn_per_s").value is None
    assert "went backwards" in r.get("process_churn_per_s").reason


def test_procstat_clamps_a_single_idle_step_back(tmp_path):
    proc, clock = tree(tmp_path, "proc"), FakeClock(100.0, 1_700_000_000_000)
    c = ProcStatCollector(proc, clock)
    c.read()
    text = (proc / "stat").read_text().replace("cpu  10000 500 3000 80000 1500", "cpu  10100 500 3000 80000 1499")
    (proc / "stat").write_text(text)
    clock.advance(1.0)
    assert c.read().get("cpu_utilization").value == 1.0  # iowait -1 clamped to 0; only user moved


def test_procstat_missing_file_and_garbage(tmp_path):
    c = ProcStatCollector(tmp_path, FakeClock(100.0, 1_700_000_000_000))
    r = c.read()
    assert all(m.value is None and "cannot read" in m.reason for m in r.measurements)
    (tmp_path / "stat").write_text("intr 1 2 3\n")
    assert "unexpected format" in c.read().get("cpu_iowait_ratio").reason


# ------------------------------------------------------------------ PSI


def test_psi_avg10_as_ratio():
    r = PsiCollector(FIXTURES / "proc", FakeClock(100.0, 1_700_000_000_000)).read()
    assert values(r) == pytest.approx({"cpu_psi_some": 0.125, "memory_psi_some": 0.0325, "io_psi_some": 0.40})


def test_psi_absent_tells_the_operator_about_the_kernel():
    r = PsiCollector(FIXTURES / "proc-nopsi", FakeClock(100.0, 1_700_000_000_000)).read()
    for m in r.measurements:
        assert m.value is None
        assert "CONFIG_PSI" in m.reason and "psi=1" in m.reason


def test_psi_malformed(tmp_path):
    proc = tree(tmp_path, "proc")
    (proc / "pressure" / "io").write_text("full avg10=1.00\n")
    r = PsiCollector(proc, FakeClock(100.0, 1_700_000_000_000)).read()
    assert r.get("io_psi_some").value is None and "unexpected format" in r.get("io_psi_some").reason
    assert r.get("cpu_psi_some").value == pytest.approx(0.125)


# ------------------------------------------------------------------ meminfo


def test_meminfo_uses_memavailable(tmp_path):
    assert MeminfoCollector(FIXTURES / "proc", FakeClock(100.0, 1_700_000_000_000)).read().get(
        "memory_utilization"
    ).value == pytest.approx(1 - 2_000_000 / 8_000_000)
    proc = tree(tmp_path, "proc")
    (proc / "meminfo").write_text("MemTotal: 100 kB\nMemFree: 10 kB\n")
    m = MeminfoCollector(proc, FakeClock(100.0, 1_700_000_000_000)).read().get("memory_utilization")
    assert m.value is None and "MemAvailable" in m.reason


# ------------------------------------------------------------------ cgroup throttling


def set_counters(sys_root: Path, rel: str, periods: int, throttled: int) -> None:
    path = sys_root / rel / "cpu.stat"
    text = path.read_text().splitlines()
    out = []
    for line in text:
        key = line.split()[0]
        out.append(
            f"nr_periods {periods}"
            if key == "nr_periods"
            else f"nr_throttled {throttled}"
            if key == "nr_throttled"
            else line
        )
    path.write_text("\n".join(out) + "\n")


def test_parse_cpu_stat_v1_v2_and_without_bandwidth():
    assert parse_cpu_stat("nr_periods 10\nnr_throttled 3\nthrottled_time 9\n") == (10, 3)
    v2 = (
        FIXTURES
        / "sys-v2"
        / V2_ROOT
        / "kubepods-burstable.slice/kubepods-burstable-pod3333.slice"
        / "cri-containerd-aaaa.scope"
        / "cpu.stat"
    ).read_text()
    assert parse_cpu_stat(v2) == (2000, 400)
    assert parse_cpu_stat("usage_usec 5\nuser_usec 3\nsystem_usec 2\n") is None


def test_leaves_are_the_containers():
    leaves, truncated = leaf_cgroups(FIXTURES / "sys-v1" / V1_ROOT)
    assert not truncated
    assert sorted(p.name for p in leaves) == ["besteffort", "ctr-a", "ctr-b", "ctr-c"]


def test_walk_is_bounded():
    root = FIXTURES / "sys-v1" / V1_ROOT
    leaves, truncated = leaf_cgroups(root, max_depth=1)
    assert sorted(p.name for p in leaves) == ["besteffort", "burstable", "pod2222"]
    _, truncated = leaf_cgroups(root, max_cgroups=3)
    assert truncated


def test_v1_auto_detected_ratio_over_container_deltas(tmp_path):
    sys_root, clock = tree(tmp_path, "sys-v1"), FakeClock(100.0, 1_700_000_000_000)
    c = CgroupThrottleCollector(sys_root, clock=clock)
    assert c.find_root() == sys_root / V1_ROOT
    assert c.read().get("cpu_throttled_ratio").reason == FIRST_SAMPLE
    set_counters(sys_root, f"{V1_ROOT}/burstable/pod1111/ctr-a", 1100, 130)  # +100 periods, +30 throttled
    set_counters(sys_root, f"{V1_ROOT}/pod2222/ctr-c", 600, 10)  # +100 periods, +10 throttled
    set_counters(sys_root, f"{V1_ROOT}/burstable/pod1111", 5000, 4000)  # pod level: not a leaf, ignored
    clock.advance(1.0)
    assert c.read().get("cpu_throttled_ratio").value == pytest.approx(40 / 200)


def test_v2_systemd_layout(tmp_path):
    sys_root, clock = tree(tmp_path, "sys-v2"), FakeClock(100.0, 1_700_000_000_000)
    c = CgroupThrottleCollector(sys_root, clock=clock)
    assert c.find_root() == sys_root / V2_ROOT
    c.read()
    pod = f"{V2_ROOT}/kubepods-burstable.slice/kubepods-burstable-pod3333.slice"
    set_counters(sys_root, f"{pod}/cri-containerd-aaaa.scope", 2010, 409)
    set_counters(sys_root, f"{pod}/cri-containerd-bbbb.scope", 2010, 0)
    clock.advance(1.0)
    assert c.read().get("cpu_throttled_ratio").value == pytest.approx(9 / 20)


def test_no_period_elapsed_is_a_real_zero(tmp_path):
    sys_root, clock = tree(tmp_path, "sys-v1"), FakeClock(100.0, 1_700_000_000_000)
    c = CgroupThrottleCollector(sys_root, clock=clock)
    c.read()
    clock.advance(1.0)
    m = c.read().get("cpu_throttled_ratio")
    assert m.value == 0.0 and m.reason is None


def test_no_pod_root_is_missing_with_where_we_looked(tmp_path):
    m = CgroupThrottleCollector(tmp_path, clock=FakeClock(100.0, 1_700_000_000_000)).read().get("cpu_throttled_ratio")
    assert m.value is None
    assert m.reason.startswith(f"no Kubernetes pod cgroups under {tmp_path}/fs/cgroup")
    assert "cpu,cpuacct/kubepods.slice" in m.reason and "--cgroup-root" in m.reason
    m = (
        CgroupThrottleCollector(tmp_path, cgroup_root=tmp_path / "nope", clock=FakeClock(100.0, 1_700_000_000_000))
        .read()
        .get("cpu_throttled_ratio")
    )
    assert m.value is None and str(tmp_path / "nope") in m.reason


def test_explicit_root_and_no_bandwidth_stats(tmp_path):
    root = tmp_path / "pods"
    (root / "pod-a" / "ctr").mkdir(parents=True)
    (root / "pod-a" / "ctr" / "cpu.stat").write_text("usage_usec 5\nuser_usec 3\nsystem_usec 2\n")
    m = (
        CgroupThrottleCollector(tmp_path, cgroup_root=root, clock=FakeClock(100.0, 1_700_000_000_000))
        .read()
        .get("cpu_throttled_ratio")
    )
    assert m.value is None and "nr_periods" in m.reason and "cpu controller" in m.reason


def test_vanishing_new_and_recreated_cgroups(tmp_path):
    sys_root, clock = tree(tmp_path, "sys-v1"), FakeClock(100.0, 1_700_000_000_000)
    c = CgroupThrottleCollector(sys_root, clock=clock)
    c.read()
    root = sys_root / V1_ROOT
    shutil.rmtree(root / "pod2222")  # pod ended between readings
    new = root / "burstable" / "pod9999" / "ctr-new"  # pod started: no baseline, skipped this time
    new.mkdir(parents=True)
    (new / "cpu.stat").write_text("nr_periods 50000\nnr_throttled 50000\n")
    set_counters(sys_root, f"{V1_ROOT}/burstable/pod1111/ctr-b", 0, 0)
    set_counters(sys_root, f"{V1_ROOT}/burstable/pod1111/ctr-a", 10, 10)  # went backwards: recreated, skipped
    clock.advance(1.0)
    assert c.read().get("cpu_throttled_ratio").value == 0.0
    set_counters(sys_root, f"{V1_ROOT}/burstable/pod9999/ctr-new", 50010, 50005)
    set_counters(sys_root, f"{V1_ROOT}/burstable/pod1111/ctr-a", 20, 10)
    clock.advance(1.0)
    assert c.read().get("cpu_throttled_ratio").value == pytest.approx(5 / 20)


def test_cgroup_vanishing_mid_walk(tmp_path, monkeypatch):
    """A leaf listed by the walk but gone before its cpu.stat is read is simply left out."""
    import agent.cgroupfs.bandwidth as mod

    sys_root, clock = tree(tmp_path, "sys-v1"), FakeClock(100.0, 1_700_000_000_000)
    root = sys_root / V1_ROOT
    c = CgroupThrottleCollector(sys_root, clock=clock)
    c.read()
    set_counters(sys_root, f"{V1_ROOT}/burstable/pod1111/ctr-a", 1100, 150)
    real_walk = mod.leaf_cgroups

    def walk_then_pod_ends(*args, **kwargs):  # the race, made deterministic
        found = real_walk(*args, **kwargs)
        shutil.rmtree(root / "pod2222")
        return found

    monkeypatch.setattr(mod, "leaf_cgroups", walk_then_pod_ends)
    clock.advance(1.0)
    assert c.read().get("cpu_throttled_ratio").value == pytest.approx(50 / 100)
    assert leaf_cgroups(root / "pod2222") == ([], False)


# ------------------------------------------------------------------ composition


class NoPmu:
    """Stands in for the hardware counters (this test's fake /sys has none to open)."""

    reason = "no hardware PMU (test)"
    unavailable: dict = {}

    def snapshot(self):
        return None


def test_node_collector_on_fake_tree_covers_all_metrics(tmp_path):
    proc, sys_root, clock = tree(tmp_path, "proc"), tree(tmp_path, "sys-v2"), FakeClock(100.0, 1_700_000_000_000)
    nc = NodeCollector("fake-node", default_collectors(proc, sys_root, None, clock, perf=NoPmu()), clock)
    nc.collect()
    shutil.copy(FIXTURES / "proc-later" / "stat", proc / "stat")
    clock.advance(2.0)
    v = nc.collect()
    assert v.node_name == "fake-node" and v.collected_at_ms == clock.wall_ms()
    measured = {m.name for m in METRICS if v.available[m.index]}
    assert measured == {
        "cpu_utilization",
        "cpu_iowait_ratio",
        "cpu_psi_some",
        "memory_psi_some",
        "io_psi_some",
        "cpu_throttled_ratio",
        "memory_utilization",
        "process_churn_per_s",
    }
    assert v.value("cpu_utilization") == pytest.approx(0.5)
    assert v.sources["process_churn_per_s"] == CHURN_SOURCE
    for name in ("runqueue_latency_p99_us", "cross_cgroup_preemptions_per_s", "disk_io_latency_p99_ms"):
        assert v.missing_reasons[name].startswith("tracefs not mounted")  # the fake /sys has no tracefs
    for name in ("llc_miss_ratio", "llc_mpki", "cycles_per_instruction"):
        assert v.missing_reasons[name] == "no hardware PMU (test)"
    assert v.missing_reasons["memory_bandwidth_gbps"].startswith(f"resctrl: not mounted at {sys_root}/fs/resctrl")


class AlwaysMissing:
    """A collector that reports its metrics missing with a fixed reason."""

    def __init__(self, name, metrics, reason, clock):
        self.name, self.metrics, self.reason, self.clock = name, metrics, reason, clock

    def read(self):
        return all_missing(self.name, self.clock.monotonic(), self.metrics, self.reason)


class Broken:
    name = "broken"
    metrics = ("llc_mpki",)

    def read(self):
        raise PermissionError("perf_event_open: EACCES")


class Liar:
    name = "liar"
    metrics = ("cpu_utilization",)

    def read(self):
        return Reading("liar", 0.0, (Measurement.measured("cpu_utilization", 7.0),))


def test_a_broken_collector_costs_only_its_metrics(caplog):
    clock = FakeClock(100.0, 1_700_000_000_000)
    nc = NodeCollector("n", [Broken(), Liar(), AlwaysMissing("p", ("llc_miss_ratio",), "later", clock)], clock)
    v = nc.collect()
    assert v.missing_reasons["llc_mpki"] == "collector broken failed: PermissionError: perf_event_open: EACCES"
    assert "outside the valid range" in v.missing_reasons["cpu_utilization"]
    assert v.missing_reasons["llc_miss_ratio"] == "later"
    assert v.missing_reasons["io_psi_some"] == NO_COLLECTOR
    assert v.available_count == 0
    nc.collect()
    assert sum("collector broken failed" in r.message for r in caplog.records) == 1  # logged once, not per tick


def test_each_metric_has_one_owner():
    clock = FakeClock(100.0, 1_700_000_000_000)
    with pytest.raises(ValueError, match="llc_mpki.*both"):
        NodeCollector("n", [Broken(), Broken()], clock)
    with pytest.raises(ValueError, match="unknown metric"):
        NodeCollector("n", [AlwaysMissing("p", ("bogus",), "x", clock)], clock)


def test_availability_changes_are_reported_once(tmp_path):
    proc, clock = tree(tmp_path, "proc"), FakeClock(100.0, 1_700_000_000_000)
    nc = NodeCollector("n", default_collectors(proc, tmp_path, None, clock), clock)
    first = nc.collect()
    lines = availability_changes(None, first)
    assert any(line.startswith("cpu_utilization missing: first sample") for line in lines)
    shutil.copy(FIXTURES / "proc-later" / "stat", proc / "stat")
    clock.advance(1.0)
    second = nc.collect()
    lines = availability_changes(first, second)
    assert "cpu_utilization is now measured" in lines
    assert not any("llc_mpki" in line for line in lines)  # unchanged reason: no news


# ------------------------------------------------------------------ the real machine


def test_real_proc_invariants():
    nc = NodeCollector("live", default_collectors("/proc", "/sys"))
    nc.collect()
    s1 = parse_stat(Path("/proc/stat").read_text())
    time.sleep(0.3)
    v = nc.collect()
    s2 = parse_stat(Path("/proc/stat").read_text())
    assert s2.processes >= s1.processes
    assert all(s2.cpu[k] >= s1.cpu[k] for k in ("user", "system", "steal"))
    for m in METRICS:
        if v.available[m.index] and m.unit == "ratio":
            assert 0.0 <= v.values[m.index] <= 1.0, m.name
    assert v.available[METRIC_NAMES.index("cpu_utilization")]
    assert v.available[METRIC_NAMES.index("memory_utilization")]
    assert v.value("process_churn_per_s") >= 0.0
    if Path("/proc/pressure/cpu").exists():
        assert v.available[METRIC_NAMES.index("cpu_psi_some")]
    assert len(v.values) == NUM_METRICS and all(math.isnan(x) for x, ok in zip(v.values, v.available) if not ok)


def test_real_cgroup_root_detection_reports_honestly():
    c = CgroupThrottleCollector("/sys")
    m = c.read().get("cpu_throttled_ratio")
    assert m.value is None  # never a value without a delta, and never 0 without pods
    if c.find_root() is None:
        assert m.reason.startswith("no Kubernetes pod cgroups under /sys/fs/cgroup (looked at: kubepods.slice, ")
