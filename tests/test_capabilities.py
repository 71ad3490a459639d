"""The capability report: on this machine (no PMU, no resctrl: metrics 9-12 missing with those
reasons), on fake trees where everything, or nothing, is present, and against the eBPF
collectors: where the sources are missing, ``--check`` says so with the collectors' words."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.capabilities import FALLBACK, MEASURED, MISSING, SOURCES, assess, check_capabilities
from agent.collectors.ebpf_biolatency import BlockIoCollector
from agent.collectors.ebpf_runqueue import RunqueueCollector
from agent.collectors.memory_bandwidth import MemoryBandwidthCollector
from agent.collectors.perf_counters import PerfCountersCollector
from agent.ebpf.probes import INSTALL_BCC, BpfUnavailable, effective_capabilities
from agent.perf.counters import PerfCounters, PmuStatus
from wire.schema import METRIC_NAMES

RESCTRL_TREE = Path(__file__).parent / "fixtures" / "perf" / "sys-resctrl"
PERF_METRICS = ("llc_miss_ratio", "llc_mpki", "cycles_per_instruction")
PMU_OK = PmuStatus(("cycles", "instructions", "cache-references", "cache-misses"), None, {})
NO_PMU = PmuStatus((), "no hardware PMU: perf_event_open(PERF_TYPE_HARDWARE) failed with ENOENT", {})


#: Every tracepoint the two eBPF programs attach to, with the fields they read.
TRACEPOINTS = {
    "sched/sched_switch": ("prev_pid", "prev_state", "next_pid"),
    "sched/sched_wakeup": ("pid",),
    "sched/sched_wakeup_new": ("pid",),
    "block/block_rq_issue": ("dev", "sector"),
    "block/block_rq_complete": ("dev", "sector"),
}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def no_bcc() -> str:
    raise BpfUnavailable(INSTALL_BCC)


def full_node(tmp_path: Path) -> dict:
    """Fake roots of a node that has everything."""
    proc, sys_root, modules = tmp_path / "proc", tmp_path / "sys", tmp_path / "modules"
    write(proc / "stat", "cpu  1 2 3 4 5 6 7 8 0 0\nprocesses 10\n")
    write(proc / "meminfo", "MemTotal: 100 kB\nMemAvailable: 50 kB\n")
    for res in ("cpu", "memory", "io"):
        write(proc / "pressure" / res, "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    write(proc / "self/status", "Name:\tpython\nCapEff:\t000001ffffffffff\n")
    write(proc / "sys/kernel/osrelease", "6.8.0-40-generic\n")
    (modules / "6.8.0-40-generic/build/include").mkdir(parents=True)
    for tracepoint, fields in TRACEPOINTS.items():
        write(
            sys_root / "kernel/tracing/events" / tracepoint / "format",
            "".join(f"\tfield:long {f};\toffset:8;\tsize:8;\tsigned:1;\n" for f in fields),
        )
    write(sys_root / "fs/cgroup/cgroup.controllers", "cpu memory io\n")
    (sys_root / "fs/cgroup/kubepods.slice").mkdir()
    shutil.copytree(RESCTRL_TREE / "fs/resctrl", sys_root / "fs/resctrl")
    write(tmp_path / "tetragon/tetragon.log", "")
    return dict(
        proc_root=proc,
        sys_root=sys_root,
        modules_root=modules,
        tetragon_paths=(tmp_path / "tetragon/tetragon.log",),
        find_bcc=lambda: "/usr/bin/python3",
        pmu=lambda: PMU_OK,
    )


def test_sources_follow_the_schema():
    assert tuple(SOURCES) == METRIC_NAMES


def test_a_node_with_everything(tmp_path):
    report = check_capabilities(**full_node(tmp_path))
    assert [m.status for m in report.metrics] == [MEASURED] * 15
    assert all(m.missing == () for m in report.metrics)
    assert report.get("memory_bandwidth_gbps").source == "resctrl mbm_total_bytes"
    assert report.get("process_churn_per_s").source == "Tetragon exec+exit events"
    assert report.probe("bpf_privileges").detail == "effective: CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON"


def test_fallbacks_and_their_reasons(tmp_path):
    opts = full_node(tmp_path)
    shutil.rmtree(opts["sys_root"] / "fs/resctrl")
    (tmp_path / "tetragon/tetragon.log").unlink()
    report = check_capabilities(**opts)
    bw = report.get("memory_bandwidth_gbps")
    assert (bw.status, bw.source, bw.blocked_by) == (FALLBACK, "estimate: LLC misses x 64 B (perf)", ("resctrl",))
    assert bw.missing[0].startswith("resctrl mbm_total_bytes: resctrl: not mounted at")
    churn = report.get("process_churn_per_s")
    assert (churn.status, churn.source) == (FALLBACK, "/proc/stat processes counter")
    assert "no Tetragon export file or socket" in churn.missing[0]


def test_a_bare_node_says_what_each_metric_lacks(tmp_path):
    (tmp_path / "proc").mkdir()
    write(tmp_path / "proc/self/status", "CapEff:\t0000000000000000\n")
    report = check_capabilities(
        tmp_path / "proc",
        tmp_path / "sys",
        modules_root=tmp_path / "modules",
        tetragon_paths=(tmp_path / "none",),
        find_bcc=no_bcc,
        pmu=lambda: NO_PMU,
    )
    assert all(m.status == MISSING and m.missing and m.source is None for m in report.metrics)
    rq = report.get("runqueue_latency_p99_us")
    assert rq.blocked_by == ("bpf_privileges", "bcc", "kernel_headers", "tracefs")
    assert any("needs CAP_BPF and CAP_PERFMON" in line for line in rq.missing)
    assert any("install python3-bpfcc" in line for line in rq.missing)
    assert report.get("cpu_psi_some").missing == (
        f"/proc/pressure/cpu avg10: psi_cpu: {tmp_path}/proc/pressure/cpu does not exist "
        "(kernel without CONFIG_PSI, or booted without psi=1)",
    )
    assert report.get("memory_bandwidth_gbps").blocked_by == ("resctrl", "pmu")
    assert report.get("cross_cgroup_preemptions_per_s").blocked_by[-1] == "cgroups"
    assert "without a cpu controller hierarchy" in report.probe("cgroups").detail
    assert report.render_table().startswith("0/15 metrics measurable on this node")


@pytest.mark.parametrize("unified", [False, True], ids=["v1-only", "v1-hybrid"])
def test_cgroup_v1_hosts_tell_cgroups_apart_by_the_cpu_hierarchy(tmp_path, unified):
    opts = full_node(tmp_path)
    base = opts["sys_root"] / "fs/cgroup"
    (base / "cgroup.controllers").unlink()
    (base / "kubepods.slice").rename(base / "kubepods")
    if unified:  # the unified hierarchy holds nothing: its ids cannot tell pods apart either way
        write(base / "unified/cgroup.controllers", "")
    report = check_capabilities(**opts)
    xcg = report.get("cross_cgroup_preemptions_per_s")
    assert xcg.status == MISSING and xcg.blocked_by == ("cgroups",)
    assert xcg.missing[0].endswith("so cross-cgroup preemptions cannot be counted")
    assert report.get("runqueue_latency_p99_us").status == MEASURED
    (base / "cpu,cpuacct").mkdir()
    report = check_capabilities(**opts)
    assert report.get("cross_cgroup_preemptions_per_s").status == MEASURED
    assert report.probe("cgroups").detail.startswith(f"cgroup v1 cpu hierarchy at {base / 'cpu,cpuacct'}")


def test_assess_is_pure_over_probe_records(tmp_path):
    report = check_capabilities(**full_node(tmp_path))
    again = assess(report.probes)
    assert again == report.metrics


def test_check_and_the_ebpf_collectors_agree_when_the_sources_are_missing(tmp_path):
    """An install without the bpf/ sources: each eBPF collector reports them missing, and
    ``--check`` calls its metrics missing for that very reason, in the same words (the same
    source lookup and probes decide both)."""
    opts = full_node(tmp_path)
    empty = tmp_path / "no-bpf-sources"
    empty.mkdir()
    report = check_capabilities(**opts, bpf_dir=empty)
    table = report.render_table()
    collectors = (
        RunqueueCollector(opts["sys_root"], proc_root=opts["proc_root"], bpf_dir=empty),
        BlockIoCollector(opts["sys_root"], proc_root=opts["proc_root"], bpf_dir=empty),
    )
    for collector in collectors:
        for m in collector.read().measurements:
            assert m.value is None and m.reason.startswith(f"eBPF sources not found: {empty}/"), m
            cap = report.get(m.metric)
            ((source, _),) = SOURCES[m.metric]
            assert (cap.status, cap.source) == (MISSING, None)
            assert len(cap.blocked_by) == 1 and cap.missing == (f"{source}: {cap.blocked_by[0]}: {m.reason}",)
            assert m.reason in table
    assert table.startswith("12/15 metrics measurable on this node")
    # the sources where the collectors look for them: nothing against these metrics any more
    assert all(m.status == MEASURED for m in check_capabilities(**opts).metrics)


def test_live_report_on_this_machine():
    report = check_capabilities()
    json.dumps(report.to_json())  # ready for /v1/node
    table = report.render_table()
    assert all(name in table for name in METRIC_NAMES)
    assert report.get("cpu_utilization").status == MEASURED
    assert report.get("memory_utilization").status == MEASURED
    assert effective_capabilities(Path("/proc")) is not None
    pmu = report.probe("pmu")
    if pmu.ok:
        pytest.skip("this machine has a PMU; the rest is about machines without one")
    assert pmu.detail.startswith("no hardware PMU: perf_event_open(PERF_TYPE_HARDWARE) failed with ENOENT")
    for name in PERF_METRICS:
        m = report.get(name)
        assert m.status == MISSING and m.blocked_by == ("pmu",) and "no hardware PMU" in m.missing[0]
    # the report and the collectors tell the operator the same thing
    perf = PerfCounters()
    reading = PerfCountersCollector(perf).read()
    assert all(m.reason == pmu.detail for m in reading.measurements)
    bw = report.get("memory_bandwidth_gbps")
    if report.probe("resctrl").ok:
        assert bw.status == MEASURED
    else:
        assert bw.status == MISSING and bw.blocked_by == ("resctrl", "pmu")
        assert "not mounted at /sys/fs/resctrl" in bw.missing[0] and "no hardware PMU" in bw.missing[1]
        live = MemoryBandwidthCollector("/sys", perf=perf).read().get("memory_bandwidth_gbps")
        assert live.value is None and "not mounted at /sys/fs/resctrl" in live.reason
