"""``kubeattention calibrate``: real victims, real stress-ng, the agent's real collectors.

The end-to-end test runs one victim (the batch kernel) alone, beside two stress-ng CPU
hogs in a cgroup limited to two cores, and alone again, for one second each (about 25 s
with collector start-up), then resumes the same directory twice: once complete, once
after cutting the last row in half. The cgroup test runs a real stress-ng under a real
CFS quota and reads the kernel's throttling counters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from procs import REPO, cpu_cgroups_or_skip

from contention_lab import antagonists, cgroups, drivers, plan
from scorer.calibration.rows import CalibrationError, load_rows

KA = [sys.executable, "-m", "kubeattention.cli"]
TINY = [
    "--victims",
    "batch",
    "--antagonists",
    "cpu-q200",
    "--repeats",
    "1",
    "--run-seconds",
    "1",
    "--warmup-seconds",
    "1",
    "--state-seconds",
    "1",
    "--no-quiet-wait",
    "--no-progress",
]


def calibrate(out, *extra, env=None, timeout=120):
    return subprocess.run(
        [*KA, "calibrate", "--out", str(out), *TINY, *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_missing_binaries_are_named_with_their_debian_package():
    with pytest.raises(drivers.MissingBinary) as err:
        drivers.require(["redis-server", "redis-benchmark", "fio", "stress-ng"], which=lambda _b: None)
    msg = str(err.value)
    for text in (
        "redis-benchmark (Debian package redis-tools)",
        "fio (Debian package fio)",
        "stress-ng (Debian package stress-ng)",
        "apt-get install fio redis-server redis-tools stress-ng",
    ):
        assert text in msg
    drivers.require(["sh"])  # present: no error


def test_cli_without_stress_ng_on_path_says_which_package(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin")}
    proc = calibrate(tmp_path / "out", env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "stress-ng (Debian package stress-ng)" in proc.stderr
    assert not (tmp_path / "out" / "calibration.jsonl").exists()  # nothing measured, nothing half-written


def test_a_hung_victim_is_killed_at_its_bound():
    t0 = time.monotonic()
    with pytest.raises(drivers.VictimError, match="did not finish within its 1 s bound"):
        drivers._run([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=1.0)
    assert time.monotonic() - t0 < 10


def test_unknown_victim_or_antagonist_is_refused(tmp_path):
    proc = subprocess.run(
        [*KA, "calibrate", "--out", str(tmp_path), "--antagonists", "cpu-q25,disk-99"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--antagonists: unknown 'disk-99'" in proc.stderr


def _row(key, status="ok"):
    return {
        "kind": "kubeattention.calibration",
        "schema_version": 1,
        "key": key,
        "rep": 1,
        "config": "none",
        "antagonist": {},
        "profile": "batch",
        "values": [None] * 15,
        "mask": [False] * 15,
        "status": status,
    }


def test_half_written_last_line_is_dropped_and_other_damage_is_an_error(tmp_path):
    path = tmp_path / "calibration.jsonl"
    good = json.dumps(_row("r1/none/batch")) + "\n"
    path.write_text(good + json.dumps(_row("r1/cpu-2/batch"))[:40])
    assert [r["key"] for r in load_rows(path, repair=True)] == ["r1/none/batch"]
    assert path.read_text() == good  # repaired in place
    path.write_text("{not json\n" + good)
    with pytest.raises(CalibrationError, match=r"calibration.jsonl:1: not JSON"):
        load_rows(path)
    path.write_text(json.dumps({**_row("x"), "schema_version": 99}) + "\n")
    with pytest.raises(CalibrationError, match="schema_version 99 does not match"):
        load_rows(path)


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed (make setup installs it)")
def test_tiny_real_calibration_is_measured_and_resumable(tmp_path):
    out = tmp_path / "cal"
    proc = calibrate(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["key"]: r for r in load_rows(out / "calibration.jsonl")}
    assert set(rows) == {"r1/none/batch", "r1/cpu-q200/batch", "r1/none.1/batch"}
    alone, hog, again_alone = rows["r1/none/batch"], rows["r1/cpu-q200/batch"], rows["r1/none.1/batch"]
    assert alone["status"] == hog["status"] == again_alone["status"] == "ok"
    assert alone["slowdown_p99"] == pytest.approx(1.0) and again_alone["alone_slot"] == 1
    assert hog["alone_key"] == "r1/none/batch" and again_alone["alone_key"] == "r1/none.1/batch"
    assert hog["antagonist"]["command"] == "stress-ng --cpu 2 (cgroup CPU quota 200 % of one core)"
    assert hog["antagonist"]["quota_pct"] == 200
    assert hog["antagonist"]["cgroup_limit"] in (
        "cpu.cfs_quota_us=200000 cpu.cfs_period_us=100000 cpu.shares=2048",
        "cpu.max=200000 100000 cpu.weight=79",
    )
    assert hog["antagonist"]["intensity"]["cpu"] == pytest.approx(min(1.0, 2 / os.cpu_count()))
    # The agent's own collectors measured the node state: two CPU hogs on this machine's
    # cores keep it busy, and the victim beside them was slower than alone (by 5-40 % in
    # runs on this 2-vCPU VM: a 1 s run, so only the direction is asserted).
    cpu = 0
    assert hog["mask"][cpu] and hog["values"][cpu] > 0.8, hog["values"]
    assert hog["slowdown_p99"] > 1.0, (alone["victim"], hog["victim"])
    assert len(hog["samples"]) == 1 and all(m is False for i, m in enumerate(hog["mask"]) if hog["values"][i] is None)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 3 and "cpu-q200" in summary["median_slowdown_p99"]
    assert not list(cgroups.detect().parent.glob("cpu-q200-*"))  # the antagonist's cgroup is gone

    # Resume a complete directory: nothing re-measured.
    before = (out / "calibration.jsonl").read_text()
    again = calibrate(out)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert (out / "calibration.jsonl").read_text() == before

    # Cut the last row in half, as a crash mid-write would: only that run is measured again.
    *first, last = before.splitlines()
    (out / "calibration.jsonl").write_text("\n".join(first) + "\n" + last[: len(last) // 2])
    resumed = calibrate(out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = (out / "calibration.jsonl").read_text().splitlines()
    assert lines[:-1] == first and len(lines) == 3
    assert json.loads(lines[-1])["key"] == json.loads(last)["key"] and json.loads(lines[-1])["status"] == "ok"

    # A directory can gain repetitions (the plan is extended), never lose them.
    fewer = calibrate(out, "--repeats", "0")
    assert fewer.returncode == 2
    assert "plans 1 repetitions; a resumed directory can gain repetitions but not lose them (got 0)" in fewer.stderr
    more = calibrate(out, "--repeats", "2", "--max-minutes", "0")
    assert more.returncode == 3 and "3 runs left" in more.stderr, more.stderr[-2000:]
    assert json.loads((out / "plan.json").read_text())["repeats"] == 2
    assert (out / "calibration.jsonl").read_text().splitlines() == lines  # nothing measured, nothing lost


def test_schedule_puts_alone_runs_first_every_n_and_last_in_a_seeded_order():
    configs = ["none", "cpu-q10", "cpu-q25", "io-q50", "membw-q100", "fork-q200"]
    p = {"antagonists": configs, "repeats": 2, "alone_every": 2, "seed": 5}
    order = plan.schedule(p)
    assert order == plan.schedule(p)  # seeded
    for rep in (1, 2):
        steps = [(slot, c.name) for r, slot, c in order if r == rep]
        assert [name for _, name in steps[::3]] == ["none"] * 3 and steps[-1] == (3, "none")
        assert [slot for slot, name in steps if name == "none"] == [0, 1, 2, 3]
        assert sorted(name for _, name in steps if name != "none") == sorted(configs[1:])
    first, second = ([c.name for r, _, c in order if r == rep] for rep in (1, 2))
    assert first != second  # each repetition in its own order
    keys = {plan.row_key(r, c.name, "batch", slot) for r, slot, c in order}
    assert len(keys) == len(order) and "r2/none.3/batch" in keys and "r1/cpu-q10/batch" in keys


def test_ladder_intensities_follow_the_quota():
    light, heavy = antagonists.BY_NAME["membw-q25"], antagonists.BY_NAME["membw-q200"]
    assert light.intensity(2) == {"cpu": 0.125, "cache": 0.0, "membw": 0.125, "io": 0.0, "fork": 0.0}
    assert heavy.intensity(2)["membw"] == 1.0 and heavy.intensity(4)["membw"] == 0.5
    io = [antagonists.BY_NAME[f"io-q{q}"].intensity(2)["io"] for q in antagonists.QUOTAS_PCT]
    assert io == sorted(io) and io[0] > 0 and io[-1] == 1.0  # 4 hdd workers need 0.8 cores unthrottled
    for kind in antagonists.KIND_WORKERS:  # every kind: monotone light -> heavy, in [0, 1]
        cpu = [antagonists.BY_NAME[f"{kind}-q{q}"].intensity(2)["cpu"] for q in antagonists.QUOTAS_PCT]
        assert cpu == sorted(cpu) and 0 < cpu[0] and cpu[-1] <= 1.0


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed (make setup installs it)")
def test_antagonist_runs_under_its_quota_and_its_cgroup_is_removed(tmp_path):
    h = cpu_cgroups_or_skip()
    config = antagonists.Antagonist("test-cpu-q20", "cpu", {"cpu": 2}, quota_pct=20)
    running = antagonists.RunningAntagonist(config, tmp_path, 30, h)
    try:
        group = running.group.path
        time.sleep(0.5)
        before = running.throttling()
        time.sleep(1.5)
        after = running.throttling()
        procs = (group / "cgroup.procs").read_text().split()
        assert len(procs) >= 3, procs  # stress-ng and both workers joined the group before exec
        periods = after["nr_periods"] - before["nr_periods"]
        throttled = after["nr_throttled"] - before["nr_throttled"]
        # Two CPU hogs against 20 ms per 100 ms: throttled in (nearly) every period.
        assert periods >= 10 and throttled >= 0.8 * periods, (before, after)
        assert running.limit in (
            "cpu.cfs_quota_us=20000 cpu.cfs_period_us=100000 cpu.shares=205",
            "cpu.max=20000 100000 cpu.weight=8",
        )
    finally:
        running.stop()
    assert not group.exists() and running.proc.poll() is not None


def test_stale_groups_of_a_killed_run_are_removed():
    h = cpu_cgroups_or_skip()
    group = cgroups.QuotaGroup(h, "test-stale", 0.1)
    sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=group.preexec)
    try:
        assert str(sleeper.pid) in (group.path / "cgroup.procs").read_text().split()
        assert f"test-stale-{os.getpid()}" in cgroups.remove_stale(h)
        assert sleeper.wait(timeout=10) == -9 and not group.path.exists()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


def test_a_bad_quota_is_refused():
    h = cgroups.Hierarchy(1, Path("/nonexistent"))
    with pytest.raises(cgroups.CgroupError, match="quota: must be > 0 cores, got 0"):
        cgroups.QuotaGroup(h, "x", 0)
    with pytest.raises(cgroups.CgroupError, match="no cgroup cpu controller"):
        cgroups.detect("/nonexistent")


def _measured(key, config, profile, rep, p99, kind="cpu"):
    row = {
        **_row(key),
        "config": config,
        "profile": profile,
        "rep": rep,
        "values": [0.5] + [None] * 14,
        "mask": [True] + [False] * 14,
        "antagonist": {"kind": kind, "intensity": {"cpu": 0.5}},
        "victim": {"p99_ms": p99, "p50_ms": p99 / 2},
        "slowdown_p99": 1.0,
    }
    return row


def test_labels_are_the_configuration_median_or_the_run():
    from scorer.calibration.data import from_rows

    rows = [
        _measured("r1/none/batch", "none", "batch", 1, 10.0, "none"),
        _measured("r1/none.1/batch", "none", "batch", 1, 12.0, "none"),
        _measured("r2/none/batch", "none", "batch", 2, 11.0, "none"),
        *(_measured(f"r{r}/cpu-q50/batch", "cpu-q50", "batch", r, p) for r, p in ((1, 22.0), (2, 33.0), (3, 66.0))),
    ]
    run = from_rows(rows, label="run")
    # every run against the median of the three alone runs (11 ms)
    assert run.slowdown.tolist() == pytest.approx([10 / 11, 12 / 11, 1.0, 2.0, 3.0, 6.0])
    med = from_rows(rows)  # default: config-median
    assert med.label == "config-median"
    assert med.slowdown.tolist() == pytest.approx([1.0, 1.0, 1.0, 3.0, 3.0, 3.0])
    assert med.run_slowdown.tolist() == pytest.approx(run.slowdown.tolist())
    assert med.y.tolist() == pytest.approx(np.log([1, 1, 1, 3, 3, 3]).tolist())
    assert med.kind_groups.tolist() == ["none#r1", "none#r1", "none#r2", "cpu", "cpu", "cpu"]
    with pytest.raises(CalibrationError, match="label: 'mean' is not one of config-median, run"):
        from_rows(rows, label="mean")
