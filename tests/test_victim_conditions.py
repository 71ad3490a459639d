"""The calibration's victim conditions: the open-loop load generator, the kept-awake vCPUs, the
victims' own cgroups and the neighbours without a CPU limit — each with the real thing.

``ka-loadgen`` is the Go binary ``make setup`` builds into the venv (Go ships on this kind of
machine); the test skips, saying how to build it, where it is absent. Cgroups need root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from procs import cpu_cgroups_or_skip, free_port

from agent.cgroupfs.hierarchies import cgroup_v2_root
from contention_lab import antagonists, cgroups, drivers, keep_awake

LOADGEN = drivers.loadgen_path()
needs_loadgen = pytest.mark.skipif(LOADGEN is None, reason=f"ka-loadgen not built: {drivers.LOADGEN_HINT}")


@pytest.fixture()
def redis_port(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (make setup installs it)")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield port
    proc.kill()
    proc.wait()


def loadgen(*args, timeout=60):
    return subprocess.run([LOADGEN, *args], capture_output=True, text=True, timeout=timeout)


@needs_loadgen
def test_loadgen_sends_at_the_rate_asked_and_reports_latency(redis_port):
    proc = loadgen("--addr", f"127.0.0.1:{redis_port}", "--rate", "2000", "--connections", "3", "--seconds", "2")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["sent"] == r["completed"] == 4000  # every request of the 2 s schedule, none lost
    assert r["achieved_per_s"] == pytest.approx(2000)
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["p999_ms"] <= r["max_ms"]
    assert r["due_p99_ms"] >= r["send_lag_p99_ms"] >= 0
    assert "open loop" in r["latency_measured_from"]
    # It really is Redis answering: the key it set is there with the value size asked for.
    got = subprocess.run(["redis-cli", "-p", str(redis_port), "strlen", "kubeattention:victim"], capture_output=True)
    assert got.stdout.strip() == b"64"


@needs_loadgen
def test_loadgen_refuses_bad_flags_and_a_dead_server_with_a_clear_message():
    bad = loadgen("--rate", "0")
    assert bad.returncode == 1 and "--rate: must be in (0, 1e6] requests/s, got 0" in bad.stderr
    dead = loadgen("--addr", f"127.0.0.1:{free_port()}", "--seconds", "1")
    assert dead.returncode == 1 and "cannot connect to 127.0.0.1:" in dead.stderr and "refused" in dead.stderr


@needs_loadgen
def test_the_latency_critical_victim_runs_redis_in_its_own_cgroup(redis_port, tmp_path):
    kind, v2 = cgroup_v2_root()
    if v2 is None or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified)")
    victim = drivers.RedisVictim(rate_per_s=1000, connections=2)
    group = cgroups.VictimGroup("test-latency-critical", v2)
    victim.group = group
    try:
        victim.start(tmp_path, 1)
        assert str(victim.proc.pid) in (group.path / "cgroup.procs").read_text().split()
        before, t0 = group.snapshot(), time.monotonic()
        result = victim.run(1, 30)
        d = cgroups.delta(before, group.snapshot(), time.monotonic() - t0)
        assert result["ops"] == 1000 and result["p99_ms"] > 0 and "open loop" in result["command"]
        # redis-server's own CPU time and stalls over the run (the client stays outside the cgroup).
        assert d["cpu_stat_usage_usec"] > 0
        for k in ("cpu_some_ratio", "memory_some_ratio", "io_some_ratio", "cpu_full_ratio"):
            assert 0.0 <= d[k] <= 1.0, (k, d)
    finally:
        victim.stop()
        group.remove()
    assert not group.path.exists()


def test_a_missing_loadgen_is_named_with_how_to_build_it(monkeypatch):
    monkeypatch.setenv("KA_LOADGEN", "/nonexistent/ka-loadgen")
    with pytest.raises(drivers.MissingBinary, match=r"missing ka-loadgen \(looked in /nonexistent/ka-loadgen\).*make"):
        drivers.require(["ka-loadgen"])


def test_idle_pollers_run_at_sched_idle_and_are_gone_after():
    pollers = keep_awake.IdlePollers(2)
    with pollers:
        pids = [p.pid for p in pollers.procs]
        assert len(pids) == 2
        assert all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in pids)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    with keep_awake.IdlePollers(0) as none:
        assert none.procs == []


def test_pm_qos_request_says_whether_it_is_held_and_honoured(tmp_path):
    driver = tmp_path / "current_driver"
    driver.write_text("none\n")
    unwritable = keep_awake.PmQosRequest(0, device=tmp_path / "no-such-device", driver_file=driver)
    d = unwritable.describe()
    assert d["held"] is False and "cannot hold a PM QoS request" in d["note"]
    if os.access(keep_awake.PM_QOS_DEVICE, os.W_OK):
        with keep_awake.PmQosRequest(0, driver_file=driver) as held:
            assert held.describe() == {
                "held": True,
                "cpuidle_driver": "none",
                "honoured": False,
                "note": "held, but the kernel has no cpuidle driver (none), so it changes nothing here",
            }
        driver.write_text("haltpoll\n")
        with keep_awake.PmQosRequest(0, driver_file=driver) as held:
            assert held.describe()["honoured"] is True


def test_unlimited_neighbours_have_no_quota_and_the_kubelets_shares():
    be, burst = antagonists.BY_NAME["cpu-besteffort"], antagonists.BY_NAME["mixed-burstable"]
    assert be.quota_pct is None and be.shares == 2 and be.needs_cgroup
    assert burst.shares == 1024 and burst.intensity(2)["cpu"] == 1.0  # uses every CPU it can get
    assert be.describe() == "stress-ng --cpu 2 (cgroup without a CPU quota, cpu.shares 2)"
    names = [a.name for a in antagonists.CONFIGS]
    assert names[0] == "none" and len(names) == len(set(names)) == 1 + 30 + 8


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed (make setup installs it)")
def test_a_besteffort_neighbour_runs_in_its_cgroup_without_a_quota(tmp_path):
    h = cpu_cgroups_or_skip()
    running = antagonists.RunningAntagonist(antagonists.BY_NAME["cpu-besteffort"], tmp_path, 20, h)
    try:
        assert running.limit in (
            "cpu.cfs_quota_us=-1 cpu.cfs_period_us=100000 cpu.shares=2",
            "cpu.max=max 100000 cpu.weight=1",
        )
        time.sleep(0.5)
        assert len((running.group.path / "cgroup.procs").read_text().split()) >= 3
    finally:
        running.stop()
