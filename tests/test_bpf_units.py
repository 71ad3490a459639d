"""The Python side of bpf/ without a kernel: log2 quantiles on fixed bucket arrays, the
probes' reasons, tracepoint-format parsing, C/Python layout agreement, and the two eBPF
collectors' arithmetic on scripted sources (test doubles for the loaded programs)."""

from __future__ import annotations

import ast
import ctypes
import math
import re
import sys
from pathlib import Path

import pytest
from doubles import FakeClock

from agent.cgroupfs.task_cgroups import TaskCgroups
from agent.collectors import ebpf_biolatency, runqlat_program
from agent.collectors.ebpf_biolatency import NO_IO, BlockIoCollector, BlockIoTotals
from agent.collectors.ebpf_runqueue import NO_CPU_HIERARCHY, NO_SWITCHES, NO_WAITS, V1_SOURCE, RunqueueCollector
from agent.collectors.runqlat_program import CgroupRunqueue, RunqueueTotals, task_state_mask
from agent.ebpf import compile_helper, loader, probes
from agent.ebpf.histogram import HIST_SLOTS, KaLatency, Log2Histogram
from agent.ebpf.maps import sum_percpu
from agent.ebpf.probes import BpfUnavailable, TracepointFormat
from agent.ebpf.program import render_source

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"  # the checkout's sources, which bpf.source_dir() must be


def hist(**slots: int) -> Log2Histogram:
    """hist(s12=5, s3=1): counts by slot index."""
    out = [0] * HIST_SLOTS
    for name, n in slots.items():
        out[int(name[1:])] = n
    return Log2Histogram(tuple(out))


# ------------------------------------------------------------------ log2 histogram


@pytest.mark.parametrize(
    "value, slot",
    [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (1023, 10), (1024, 11), (2**29, 30), (2**30, 31), (2**40, 31)],
)
def test_slot_of_matches_the_kernel_layout(value, slot):
    assert Log2Histogram.slot_of(value) == slot
    lo, hi = Log2Histogram.bounds(slot)
    assert lo <= value < hi


def test_quantile_interpolates_linearly_inside_the_slot():
    # 100 samples in slot 11 = [1024, 2048) µs: rank 99 of 100 -> 1024 + 1024 * 0.99
    assert hist(s11=100).quantile(0.99) == pytest.approx(1024 + 1024 * 0.99)
    # 98 fast samples in slot 4 = [8, 16), 2 slow in slot 13 = [4096, 8192): rank 99 is
    # the first of the two slow ones, half-way into the slot
    assert hist(s4=98, s13=2).quantile(0.99) == pytest.approx(4096 + 4096 * 0.5)
    # 99 fast, 1 slow: rank 99 is the last fast one -> the top of its slot
    assert hist(s4=99, s13=1).quantile(0.99) == pytest.approx(16.0)
    assert hist(s4=99, s13=1).quantile(0.995) == pytest.approx(4096 + 4096 * 0.5)


def test_quantile_edges():
    assert hist().quantile(0.99) is None
    assert hist(s0=10).quantile(0.99) == pytest.approx(0.99)  # slot 0 = [0, 1)
    assert hist(s5=1).quantile(0.0) == pytest.approx(16.0)
    assert hist(s5=1).quantile(1.0) == pytest.approx(32.0)
    # the open-ended last slot gives its lower bound: a known minimum, not an invented maximum
    assert hist(s31=3).quantile(0.99) == float(2**30)
    with pytest.raises(ValueError, match="q: must be within"):
        hist(s1=1).quantile(99)


def test_quantile_is_within_a_factor_of_two_of_the_exact_value():
    samples = [3, 7, 12, 40, 41, 90, 300, 301, 900, 5000] * 10 + [70_000]
    h = Log2Histogram(tuple(sum(1 for s in samples if Log2Histogram.slot_of(s) == i) for i in range(HIST_SLOTS)))
    exact = sorted(samples)[math.ceil(0.99 * len(samples)) - 1]
    assert exact / 2 <= h.quantile(0.99) <= exact * 2


def test_histogram_deltas():
    assert (hist(s3=5, s4=2) - hist(s3=1)).slots == hist(s3=4, s4=2).slots
    assert (hist(s3=1) + hist(s3=2)).total == 3
    with pytest.raises(ValueError, match="slots"):
        hist() - Log2Histogram((0, 0))


def test_sum_percpu_adds_every_u64():
    a, b = KaLatency(), KaLatency()
    a.count, a.sum_ns, a.slots[3] = 2, 10, 2
    b.count, b.sum_ns, b.slots[3], b.slots[31] = 1, 5, 0, 1
    total = sum_percpu([bytes(a), bytes(b)], KaLatency)
    assert (total.count, total.sum_ns, total.slots[3], total.slots[31]) == (3, 15, 2, 1)


# ------------------------------------------------------------------ C and Python agree


def c_enum(source: str, name: str) -> list[str]:
    body = re.search(r"enum " + name + r" \{(.*?)\};", (BPF_DIR / source).read_text(), re.S).group(1)
    names = [m.group(1) for m in re.finditer(r"^\s*(\w+),", body, re.M)]
    assert names[-1].endswith("NCOUNTERS")
    return names[:-1]


def test_counter_order_matches_the_c_enums():
    assert [n.lower() for n in c_enum("runqlat.bpf.c", "ka_rq_counter")] == [
        "rq_" + n for n in runqlat_program.RQ_COUNTERS
    ]
    assert [n.lower() for n in c_enum("biolatency.bpf.c", "ka_bio_counter")] == [
        "bio_" + n for n in ebpf_biolatency.BIO_COUNTERS
    ]


def test_struct_sizes_and_cflags():
    assert ctypes.sizeof(KaLatency) == 8 * (2 + HIST_SLOTS)
    spec = runqlat_program.program_spec(max_cgroups=64, sys_root="/nonexistent")
    flags = spec.cflag_list(BPF_DIR)
    assert f"-I{BPF_DIR}" in flags and f"-DKA_HIST_SLOTS={HIST_SLOTS}" in flags and "-DMAX_CGROUPS=64" in flags
    assert "-DKA_TASK_STATE_MASK=0xff" in flags  # no tracefs there: the documented default
    assert all(len(a.function) <= 15 for s in (spec, ebpf_biolatency.program_spec()) for a in s.attach)
    with pytest.raises(ValueError, match="max_cgroups: must be a positive integer"):
        runqlat_program.program_spec(max_cgroups=0)


def test_render_source_shows_cflags_header_and_program():
    text = render_source(ebpf_biolatency.program_spec(max_disks=8))
    assert text.startswith("// cflags: -I") and "-DMAX_DISKS=8" in text.splitlines()[0]
    assert "// ---- bpf/ka_common.h" in text and "// ---- bpf/biolatency.bpf.c" in text
    assert "int ka_bio_done(" in text


# ------------------------------------------------------------------ tracepoint formats

SCHED_SWITCH_6_18 = """name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;

print fmt: "prev_comm=%s prev_pid=%d prev_state=%s%s ==> next_pid=%d", REC->prev_comm, REC->prev_pid, \
(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 \
| 0x00000040) + 1) << 1) - 1)) ? __print_flags(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | \
0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1), "|", { 0x00000001, "S" }) : "R", \
REC->prev_state & (((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | \
0x00000040) + 1) << 1) ? "+" : "", REC->next_pid
"""


def test_tracepoint_format_and_task_state_mask():
    fmt = TracepointFormat.parse("sched:sched_switch", SCHED_SWITCH_6_18)
    assert fmt.fields["prev_state"] == "long prev_state" and fmt.fields["prev_comm"] == "char prev_comm[16]"
    assert task_state_mask(fmt.print_fmt) == 0xFF  # TASK_REPORT_MAX - 1: "R" and "R+" both runnable
    assert task_state_mask('"%d", REC->prev_state') is None
    assert task_state_mask("REC->prev_state & (__import__('os')) ? 1 : 0") is None
    with pytest.raises(BpfUnavailable, match=r"sched:sched_switch has no field __state in this kernel"):
        probes.require_fields(fmt, ("prev_pid", "__state"))


def test_missing_tracefs_and_tracepoint(tmp_path):
    with pytest.raises(BpfUnavailable) as err:
        probes.find_tracefs(tmp_path)
    assert err.value.reason == (
        f"tracefs not mounted (looked at {tmp_path}/kernel/tracing, "
        f"{tmp_path}/kernel/debug/tracing): mount -t tracefs nodev {tmp_path}/kernel/tracing"
    )
    (tmp_path / "kernel/debug/tracing/events").mkdir(parents=True)
    tracefs = probes.find_tracefs(tmp_path)
    assert tracefs == tmp_path / "kernel/debug/tracing"  # the fallback location
    with pytest.raises(BpfUnavailable, match="tracepoint block:block_rq_issue not in this kernel"):
        probes.read_tracepoint(tracefs, "block:block_rq_issue")


def test_privileges_headers_and_bcc_reasons(tmp_path):
    assert probes.privilege_problem(0, None) is None  # root, capabilities unreadable
    assert probes.privilege_problem(0, 1 << probes.CAP_SYS_ADMIN) is None
    # the kernel checks capabilities, not the uid: root without them cannot load either
    assert probes.privilege_problem(0, 0).endswith("running as uid 0 with CapEff=0x0")
    assert probes.privilege_problem(1000, None).endswith("running as uid 1000 with CapEff unreadable")
    assert probes.privilege_problem(1000, 1 << probes.CAP_SYS_ADMIN) is None
    assert probes.privilege_problem(1000, (1 << probes.CAP_BPF) | (1 << probes.CAP_PERFMON)) is None
    assert probes.privilege_problem(1000, 1 << probes.CAP_BPF) == (
        "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN, or root) to load eBPF tracing programs; "
        "running as uid 1000 with CapEff=0x8000000000"
    )
    with pytest.raises(BpfUnavailable) as err:
        probes.find_kernel_headers("9.9.9-test", environ={}, modules_root=tmp_path, sys_root=tmp_path)
    assert err.value.reason.startswith(
        f"kernel headers not found at {tmp_path}/9.9.9-test/build: apt-get install linux-headers-9.9.9-test"
    )
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel/kheaders.tar.xz").write_bytes(b"")
    assert probes.find_kernel_headers("9.9.9-test", {}, tmp_path, tmp_path) == tmp_path / "kernel/kheaders.tar.xz"
    assert probes.find_kernel_headers("9.9.9-test", {"BCC_KERNEL_SOURCE": "/src"}, tmp_path) == Path("/src")
    with pytest.raises(BpfUnavailable) as err:
        probes.bcc_python(spec_finder=lambda name: None, debian_python=tmp_path / "py", debian_bcc=tmp_path / "b")
    assert (
        err.value.reason == "bcc not installed: apt-get install python3-bpfcc (then `make venv-bcc` links it "
        "into the venv)"
    )


def test_compile_and_attach_failures_are_explained():
    assert (
        loader.explain_failure(
            "x.bpf.c",
            "Exception: Failed to compile BPF module b'x'",
            "/virtual/main.c:3:5: error: use of undeclared identifier 'foo'\n1 error",
        )
        == "compiling bpf/x.bpf.c failed: /virtual/main.c:3:5: error: use of undeclared identifier 'foo'"
    )
    assert "needs CAP_BPF/root" in loader.explain_failure(
        "x.bpf.c", "Exception: Failed to load BPF program b'ka': Operation not permitted", ""
    )
    assert loader.explain_failure("x.bpf.c", "", "Unable to find kernel headers. Try ...").startswith(
        "kernel headers not found at /lib/modules/"
    )
    assert loader.explain_failure("x.bpf.c", "ModuleNotFoundError: No module named 'bcc'", "") == probes.INSTALL_BCC


def test_program_checks_find_the_sources_and_order_the_reasons(tmp_path):
    spec = ebpf_biolatency.program_spec()
    tracefs = tmp_path / "tracing"
    for event in ("block_rq_issue", "block_rq_complete"):
        (tracefs / "events" / "block" / event).mkdir(parents=True)
        (tracefs / "events" / "block" / event / "format").write_text("\tfield:u32 dev;\n\tfield:u64 sector;\n")
    found = probes.check_program(spec, tracefs)
    assert found.check.ok and found.source == BPF_DIR / "biolatency.bpf.c"
    assert [a.tracepoint for a in found.attach] == ["block:block_rq_issue", "block:block_rq_complete"]
    missing = probes.check_program(spec, tracefs, tmp_path)  # no sources there
    assert missing.check.name == "bpf_biolatency"
    assert missing.check.problem == (
        f"eBPF sources not found: {tmp_path}/biolatency.bpf.c (the agent ships bpf/ next to agent/)"
    )
    unchecked = probes.check_program(spec, None)  # without tracefs only the sources are looked at
    assert unchecked.check.ok and "tracepoints not checked" in unchecked.check.found
    # the loader's order: privileges, tracefs, the program, bcc, kernel headers
    host = probes.HostChecks(
        probes.Check("bpf_privileges", None),
        probes.Check("tracefs", None),
        probes.Check("bcc", probes.INSTALL_BCC),
        probes.Check("kernel_headers", "no headers"),
    )
    assert probes.first_problem(host, missing) == missing.check.problem
    assert probes.first_problem(host, found) == probes.INSTALL_BCC


def test_the_compile_helper_imports_only_the_standard_library_and_bcc():
    """It runs as ``python -I compile_helper.py`` under Debian's interpreter too, where
    nothing of this project is importable."""
    tree = ast.parse(Path(compile_helper.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"bcc"}


# ------------------------------------------------------------------ run-queue collector


class ScriptedRunqueue:
    """Plays cumulative totals and per-interval drains, as the loaded program would."""

    def __init__(self, totals: list[RunqueueTotals], drains: list | None = None):
        self._totals = list(totals)
        self._drains = list(drains or [])
        self.closed = False

    def totals(self) -> RunqueueTotals:
        item = self._totals.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def drain(self, cgroups: bool = True, pairs: bool = True):
        c, p = self._drains.pop(0) if self._drains else ({}, {})
        return (c if cgroups else {}), (p if pairs else {})

    def close(self) -> None:
        self.closed = True


def v2_root(tmp_path: Path, layout: str) -> Path:
    base = tmp_path / "sys" / "fs" / "cgroup"
    if layout == "v2":
        base.mkdir(parents=True)
        (base / "cgroup.controllers").write_text("cpu io memory\n")
    elif layout == "hybrid":
        (base / "unified").mkdir(parents=True)
        (base / "unified" / "cgroup.controllers").write_text("\n")
        (base / "unified" / "system.slice").mkdir()
        (base / "cpu,cpuacct").mkdir()
    elif layout == "v1-no-cpu":
        (base / "memory").mkdir(parents=True)
    else:
        (base / "cpu").mkdir(parents=True)
    return tmp_path / "sys"


def test_runqueue_deltas_rates_and_per_cgroup_figures(tmp_path):
    clock = FakeClock(50.0)
    t0 = RunqueueTotals(switches=1000, preemptions=100, cross_cgroup=40, delay=hist(s4=500), delay_sum_ns=9_000_000)
    t1 = RunqueueTotals(
        switches=3000,
        preemptions=900,
        cross_cgroup=440,
        unknown_cgroup=3,
        delay=hist(s4=500, s5=98, s13=2),
        delay_sum_ns=29_000_000,
    )
    cg = CgroupRunqueue(77, 100, 20_000_000, hist(s5=98, s13=2), preemptions_caused=0, preemptions_suffered=400)
    source = ScriptedRunqueue([t0, t1], [({}, {}), ({77: cg}, {(1, 77): 400})])
    c = RunqueueCollector(v2_root(tmp_path, "v2"), clock, source=source)
    clock.advance(2.0)
    r = c.read()
    assert r.interval_s == 2.0 and r.at == clock.t
    assert r.get("runqueue_latency_p99_us").value == pytest.approx(4096 + 4096 * 0.5)  # 98 in [16,32), 2 slow
    assert r.get("cross_cgroup_preemptions_per_s").value == pytest.approx(400 / 2.0)
    assert r.get("cross_cgroup_preemptions_per_s").source is None
    assert r.node.switches == 2000 and r.node.unknown_cgroup == 3 and r.node.delay.total == 100
    assert r.cgroups[77].delay_mean_us == pytest.approx(200.0) and r.preemptions[(1, 77)] == 400
    with pytest.raises(TypeError):
        r.cgroups[1] = cg  # read-only view


def test_runqueue_no_waits_is_missing_and_no_preemption_is_a_real_zero(tmp_path):
    clock = FakeClock(50.0)
    t = RunqueueTotals(switches=10)
    c = RunqueueCollector(v2_root(tmp_path, "v2"), clock, source=ScriptedRunqueue([t, RunqueueTotals(switches=15)]))
    clock.advance(1.0)
    r = c.read()
    assert r.get("runqueue_latency_p99_us").value is None and r.get("runqueue_latency_p99_us").reason == NO_WAITS
    assert r.get("cross_cgroup_preemptions_per_s").value == 0.0


def test_runqueue_no_switch_at_all_means_the_program_is_not_running(tmp_path):
    clock = FakeClock(50.0)
    c = RunqueueCollector(v2_root(tmp_path, "v2"), clock, source=ScriptedRunqueue([RunqueueTotals()] * 2))
    clock.advance(1.0)
    assert c.read().get("cross_cgroup_preemptions_per_s").reason == NO_SWITCHES


def fake_proc(tmp_path: Path, cgroups: dict[int, str]) -> Path:
    """/proc/<pid>/cgroup files as a cgroup v1 (hybrid) host writes them: pid -> cpu path."""
    proc = tmp_path / "proc"
    for pid, path in cgroups.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cgroup").write_text(f"12:memory:{path}\n4:cpu,cpuacct:{path}\n1:name=systemd:/\n0::/\n")
    return proc


def test_cross_cgroup_on_cgroup_v2_is_counted_in_the_kernel(tmp_path):
    clock = FakeClock(50.0)
    source = ScriptedRunqueue([RunqueueTotals(switches=1), RunqueueTotals(switches=2, cross_cgroup=6)])
    c = RunqueueCollector(v2_root(tmp_path, "v2"), clock, source=source)
    assert not c.by_tgid
    clock.advance(2.0)
    got = c.read().get("cross_cgroup_preemptions_per_s")
    assert got.value == 3.0 and got.source is None


@pytest.mark.parametrize("layout", ["v1", "hybrid"])
def test_cross_cgroup_on_cgroup_v1_compares_the_processes_cpu_paths(tmp_path, layout):
    clock = FakeClock(50.0)
    pod = "/kubepods/burstable/pod0f8e6c4d-1111-4a2b-9c3d-5e6f7a8b9c0d/" + "ab" * 32
    proc = fake_proc(tmp_path, {10: "/", 11: "/", 20: pod})
    # tgid pairs (preemptor, victim): 20 preempted 10 (cross) 30 times, 11 preempted 10
    # (same cgroup) 50 times, 99 (already exited) preempted 10 four times
    pairs = {(20, 10): 30, (11, 10): 50, (99, 10): 4}
    source = ScriptedRunqueue(
        [RunqueueTotals(switches=1), RunqueueTotals(switches=500, preemptions=84)], [({}, {}), ({}, pairs)]
    )
    c = RunqueueCollector(v2_root(tmp_path, layout), clock, source=source, proc_root=proc)
    assert c.by_tgid
    clock.advance(2.0)
    r = c.read()
    got = r.get("cross_cgroup_preemptions_per_s")
    assert (got.value, got.source) == (15.0, V1_SOURCE)
    assert dict(r.path_preemptions) == {(pod, "/"): 30} and r.unresolved_preemptions == 4
    assert r.cgroup_path_figures == {"cross_cgroup_preemptions_per_s": {pod: 15.0}}
    assert r.preemptions == {}


def test_cross_cgroup_on_cgroup_v1_without_a_cpu_hierarchy_is_missing(tmp_path):
    clock = FakeClock(50.0)
    sys_root = v2_root(tmp_path, "v1-no-cpu")
    source = ScriptedRunqueue(
        [RunqueueTotals(switches=1), RunqueueTotals(switches=2, preemptions=1)], [({}, {}), ({}, {(1, 2): 1})]
    )
    c = RunqueueCollector(sys_root, clock, source=source, proc_root=fake_proc(tmp_path, {}))
    clock.advance(1.0)
    got = c.read().get("cross_cgroup_preemptions_per_s")
    assert got.value is None and got.reason == NO_CPU_HIERARCHY.format(root=sys_root / "fs" / "cgroup")


def test_task_cgroups_cache_for_a_while_and_forget_exited_processes(tmp_path):
    clock = FakeClock(0.0)
    proc = fake_proc(tmp_path, {7: "/a"})
    tc = TaskCgroups(proc, clock, ttl_s=10.0, max_entries=2)
    assert tc.path(7) == "/a"
    (proc / "7" / "cgroup").write_text("4:cpu,cpuacct:/b\n")
    clock.advance(5.0)
    assert tc.path(7) == "/a"  # within the TTL: the cached path
    clock.advance(5.0)
    assert tc.path(7) == "/b"  # read again
    (proc / "7" / "cgroup").unlink()
    clock.advance(10.0)
    assert tc.path(7) is None and tc.path(8) is None
    (proc / "7" / "cgroup").write_text("4:cpu:/new\n")  # pid reused: seen after the TTL
    assert tc.path(7) is None
    clock.advance(10.0)
    assert tc.path(7) == "/new"
    (proc / "7" / "cgroup").write_text("3:memory:/m\n")  # no cpu controller line
    clock.advance(10.0)
    assert tc.path(7) is None
    for pid in (1, 2, 3):
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "cgroup").write_text(f"4:cpu:/p{pid}\n")
        assert tc.path(pid) == f"/p{pid}"
    assert len(tc._paths) <= 2  # bounded


def test_runqueue_counters_backwards_and_read_errors(tmp_path):
    clock = FakeClock(50.0)
    big, small = RunqueueTotals(switches=100), RunqueueTotals(switches=5)
    source = ScriptedRunqueue([big, small, OSError(9, "Bad file descriptor"), RunqueueTotals(switches=9)])
    c = RunqueueCollector(v2_root(tmp_path, "v2"), clock, source=source)
    clock.advance(1.0)
    assert "went backwards" in c.read().get("runqueue_latency_p99_us").reason
    clock.advance(1.0)
    r = c.read()
    assert (
        r.get("cross_cgroup_preemptions_per_s").reason
        == "reading the eBPF maps of bpf/runqlat.bpf.c failed: Bad file descriptor"
    )
    clock.advance(1.0)
    assert c.read().get("cross_cgroup_preemptions_per_s").value == pytest.approx(0.0)  # rebased on `small`
    c.close()
    assert source.closed and c.read().get("runqueue_latency_p99_us").reason == "collector closed"


def test_unavailable_ebpf_is_reported_not_raised(tmp_path):
    c = RunqueueCollector(sys_root=tmp_path)  # no tracefs in an empty tree
    b = BlockIoCollector(sys_root=tmp_path)
    for reading in (c.read(), b.read()):
        for m in reading.measurements:
            assert m.value is None
            assert m.reason.startswith("tracefs not mounted") or m.reason.startswith("needs CAP_BPF")


# ------------------------------------------------------------------ block-IO collector


class ScriptedBlockIo:
    def __init__(self, totals, drains=None):
        self._totals, self._drains = list(totals), list(drains or [])

    def totals(self):
        return self._totals.pop(0)

    def drain(self):
        return self._drains.pop(0) if self._drains else {}

    def close(self):
        pass


def test_block_io_p99_in_ms_per_device_and_no_io_is_missing(tmp_path):
    sys_root = tmp_path / "sys"
    (sys_root / "dev" / "block").mkdir(parents=True)
    (sys_root / "dev" / "block" / "254:0").symlink_to("../../devices/virtual/block/vda")
    clock = FakeClock(50.0)
    t0 = BlockIoTotals(issued=10, latency=hist(s9=10))
    t1 = BlockIoTotals(issued=110, latency=hist(s9=10, s10=99, s15=1), latency_sum_ns=99_000_000)
    vda = (254 << 20) | 0
    source = ScriptedBlockIo([t0, t1, t1], [{}, {vda: (100, 99_000_000, hist(s10=99, s15=1)), 8 << 20: (0, 0, hist())}])
    c = BlockIoCollector(sys_root, clock, source=source)
    clock.advance(1.0)
    r = c.read()
    # 99 in [512, 1024) µs, 1 in [16384, 32768): rank 99 is the top of slot 10 -> 1.024 ms
    assert r.get("disk_io_latency_p99_ms").value == pytest.approx(1.024)
    assert r.node.completed == 100 and r.node.issued == 100
    assert r.devices["254:0"].name == "vda" and r.devices["254:0"].p99_ms == pytest.approx(1.024)
    assert r.devices["8:0"].name is None and r.devices["8:0"].p99_ms is None
    clock.advance(1.0)
    m = c.read().get("disk_io_latency_p99_ms")
    assert m.value is None and m.reason == NO_IO == "no block IO completed in the interval"
