"""Hardware counters: the arithmetic on recorded readings (tests/fixtures/perf/counters.json),
the syscall layer against the real kernel (software events stand in for the PMU this VM
lacks), and start-up detection - live here (no PMU), and with a scripted kernel for the
errors this machine cannot produce (EACCES, a PMU without cache events, a group too big)."""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doubles import FakeClock

from agent.collectors.base import FIRST_SAMPLE
from agent.collectors.perf_counters import CPI, LLC_MISS_RATIO, LLC_MPKI, PerfCountersCollector, perf_measurements
from agent.cpu_lists import parse_cpu_list
from agent.perf.counters import PerfCounters, probe_pmu
from agent.perf.events import CACHE_MISSES, CACHE_REFERENCES, CYCLES, EVENTS, INSTRUCTIONS
from agent.perf.intervals import CounterValue, PerfSnapshot, counter_delta, interval_counts
from agent.perf.syscalls import (
    ATTR_DISABLED,
    PERF_ATTR_SIZE_VER8,
    PERF_FORMAT_GROUP,
    PERF_TYPE_SOFTWARE,
    PerfEventAttr,
    parse_group_read,
)

FIXTURES = Path(__file__).parent / "fixtures" / "perf"
SCENARIOS = json.loads((FIXTURES / "counters.json").read_text())["scenarios"]
STEADY = {LLC_MISS_RATIO: 30 / 70, LLC_MPKI: 12.0, CPI: 1.56}


def snapshot(raw: dict) -> PerfSnapshot:
    return PerfSnapshot({int(cpu): {e: CounterValue(*v) for e, v in events.items()} for cpu, events in raw.items()})


def scenario(name: str) -> tuple[PerfSnapshot, PerfSnapshot]:
    first, second = SCENARIOS[name]["snapshots"]
    return snapshot(first), snapshot(second)


def metrics_of(measurements) -> dict[str, float | None]:
    return {m.metric: m.value for m in measurements}


# ------------------------------------------------------------------ arithmetic on recorded readings


def test_steady_interval():
    counts = interval_counts(*scenario("steady"))
    assert counts.totals == {CYCLES: 3.9e9, INSTRUCTIONS: 2.5e9, CACHE_REFERENCES: 70e6, CACHE_MISSES: 30e6}
    assert counts.rates[CACHE_MISSES] == pytest.approx(30e6)
    assert counts.cpus == (0, 1) and counts.complete and counts.running_share == 1.0
    out = perf_measurements(counts)
    assert metrics_of(out) == pytest.approx(STEADY)
    assert all(m.source is None for m in out)  # a clean interval needs no note


@pytest.mark.parametrize("name", ["multiplexed", "wrap"])
def test_multiplexing_and_wrap_give_the_steady_figures(name):
    counts = interval_counts(*scenario(name))
    assert metrics_of(perf_measurements(counts)) == pytest.approx(STEADY)
    assert counts.totals[CYCLES] == pytest.approx(3.9e9)


def test_multiplexing_is_scaled_and_said():
    counts = interval_counts(*scenario("multiplexed"))
    assert counts.running_share == pytest.approx(0.25)
    assert counts.totals[CACHE_MISSES] == pytest.approx(30e6)  # raw 6e6 x 2 + 4.5e6 x 4
    assert counts.coverage() == "perf counters: multiplexed, scaled from 25% of the interval"
    assert all(m.source == counts.coverage() for m in perf_measurements(counts))


@pytest.mark.parametrize("name, why", [("restart", "counter restarted"), ("starved", "never scheduled")])
def test_a_restarted_or_starved_cpu_is_left_out(name, why):
    counts = interval_counts(*scenario(name))
    assert counts.cpus == (0,) and not counts.complete and why in counts.excluded[1]
    assert metrics_of(perf_measurements(counts)) == pytest.approx({LLC_MISS_RATIO: 0.3, LLC_MPKI: 6.0, CPI: 1.3})
    assert "1 of 2 CPUs (cpu1: " in perf_measurements(counts)[0].source


def test_zero_denominators_are_missing_not_zero():
    out = {m.metric: m for m in perf_measurements(interval_counts(*scenario("idle")))}
    assert all(m.value is None for m in out.values())
    assert out[LLC_MISS_RATIO].reason == "no cache-references counted in the interval: llc_miss_ratio undefined"
    assert "no instructions counted" in out[LLC_MPKI].reason and "no instructions counted" in out[CPI].reason


def test_counter_delta_wrap_versus_restart():
    assert counter_delta(5, 7) == 2
    assert counter_delta(2**64 - 10, 5) == 15  # wrapped
    assert counter_delta(10**12, 10) is None  # far below: reopened, not wrapped


def test_no_cpu_measurable_and_miss_ratio_noise():
    first, second = scenario("restart")
    only_cpu1 = PerfSnapshot({1: first.cpus[1]}), PerfSnapshot({1: second.cpus[1]})
    m = perf_measurements(interval_counts(*only_cpu1))[0]
    assert m.value is None and m.reason.startswith("no CPU's counters were measurable this interval (cpu1: counter")

    def one(misses, refs):
        snap = lambda m_, r_, t: PerfSnapshot(
            {
                0: {
                    CACHE_MISSES: CounterValue(m_, t, t),  # noqa: E731
                    CACHE_REFERENCES: CounterValue(r_, t, t),
                    INSTRUCTIONS: CounterValue(t, t, t),
                    CYCLES: CounterValue(t, t, t),
                }
            }
        )
        return perf_measurements(interval_counts(snap(0, 0, 1), snap(misses, refs, 2)))[0]

    assert one(102, 100).value == 1.0  # scaling noise clipped
    far = one(150, 100)
    assert far.value is None and "not comparable" in far.reason


def test_group_read_layout_and_cpu_lists():
    data = (
        (4).to_bytes(8, "little")
        + (100).to_bytes(8, "little")
        + (50).to_bytes(8, "little")
        + b"".join(v.to_bytes(8, "little") for v in (1, 2, 3, 4))
    )
    if sys.byteorder == "little":
        assert parse_group_read(data, EVENTS) == {e: CounterValue(v, 100, 50) for e, v in zip(EVENTS, (1, 2, 3, 4))}
    with pytest.raises(ValueError, match="expected 4"):
        parse_group_read(data[:40], EVENTS)
    assert parse_cpu_list("0-3,5,7-8\n") == [0, 1, 2, 3, 5, 7, 8]


# ------------------------------------------------------------------ struct perf_event_attr vs the C header

HEADER_FIELDS = (
    "type",
    "size",
    "config",
    "sample_period",
    "sample_type",
    "read_format",
    "wakeup_events",
    "bp_type",
    "config1",
    "config2",
    "branch_sample_type",
    "sample_regs_user",
    "sample_stack_user",
    "clockid",
    "sample_regs_intr",
    "aux_watermark",
    "sample_max_stack",
    "aux_sample_size",
    "sig_data",
)


def test_attr_layout_matches_the_installed_kernel_header(tmp_path):
    header = Path("/usr/include/linux/perf_event.h")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not header.exists() or cc is None:
        pytest.skip("needs a C compiler and linux/perf_event.h (linux-libc-dev)")
    prints = "\n".join(f'printf("{f} %zu\\n", offsetof(struct perf_event_attr, {f}));' for f in HEADER_FIELDS)
    src = tmp_path / "attr.c"
    src.write_text(f"""#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <linux/perf_event.h>
int main(void) {{
    struct perf_event_attr a; unsigned long long word;
    {prints}
    printf("sizeof %zu\\n", sizeof(a));
    memset(&a, 0, sizeof(a)); a.disabled = 1;
    memcpy(&word, (char *)&a + offsetof(struct perf_event_attr, read_format) + 8, 8);
    printf("disabled_word %llu\\n", word);
    return 0;
}}
""")
    subprocess.run([cc, "-o", str(tmp_path / "attr"), str(src)], check=True, capture_output=True)
    out = dict(
        line.split()
        for line in subprocess.run(
            [str(tmp_path / "attr")], check=True, capture_output=True, text=True
        ).stdout.splitlines()
    )
    for f in HEADER_FIELDS:
        assert getattr(PerfEventAttr, f).offset == int(out[f]), f
    assert PerfEventAttr.flags.offset == PerfEventAttr.read_format.offset + 8
    assert int(out["disabled_word"]) == ATTR_DISABLED
    # the header may predate config3 (VER7 = 128) or include it (VER8 = 136)
    assert int(out["sizeof"]) in (PerfEventAttr.config3.offset, PERF_ATTR_SIZE_VER8)
    assert ctypes.sizeof(PerfEventAttr) == PERF_ATTR_SIZE_VER8


# ------------------------------------------------------------------ the real kernel

#: perf's software events, mapped onto our event names: the same syscalls, group, read format.
#: cpu-clock (ns, so it checks the timing fields), context-switches, page-faults, cpu-migrations.
SOFTWARE = {CYCLES: 0, INSTRUCTIONS: 3, CACHE_REFERENCES: 2, CACHE_MISSES: 4}


def test_syscall_path_on_the_real_kernel_with_software_events():
    dev = PerfCounters(event_type=PERF_TYPE_SOFTWARE, configs=SOFTWARE)
    try:
        first = dev.snapshot()
        if first is None and "not permitted" in (dev.reason or ""):
            pytest.skip(f"system-wide counting not permitted here: {dev.reason}")
        assert first is not None, dev.reason
        assert dev.events == EVENTS and all(c.grouped for c in dev._open)
        time.sleep(0.1)
        second = dev.snapshot()
        counts = interval_counts(first, second)
    finally:
        dev.close()
    assert dev.snapshot() is None and dev.reason == "perf counters closed"
    assert counts.complete and sorted(counts.cpus) == sorted(second.cpus)
    assert counts.running_share == 1.0  # software events never multiplex
    for cpu in counts.cpus:
        before, after = first.cpus[cpu][CYCLES], second.cpus[cpu][CYCLES]
        enabled = after.enabled_ns - before.enabled_ns
        assert 0.08e9 < enabled < 2e9 and after.running_ns - before.running_ns == enabled
        # cpu-clock counts the nanoseconds the event was enabled: the read format's fields line up
        assert after.value - before.value == pytest.approx(enabled, rel=0.05)


def test_live_detection_reports_the_missing_pmu(caplog):
    status = probe_pmu()
    if status.ok:
        pytest.skip(f"this machine has a PMU ({', '.join(status.events)})")
    assert status.reason.startswith("no hardware PMU: perf_event_open(PERF_TYPE_HARDWARE) failed with ENOENT")
    assert set(status.unavailable) == set(EVENTS)
    caplog.set_level(logging.INFO)
    c = PerfCountersCollector(PerfCounters(), FakeClock(50.0))
    for _ in range(3):
        reading = c.read()
        assert all(m.value is None and m.reason == status.reason for m in reading.measurements)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "missing on this node: no hardware PMU" in warnings[0].getMessage()


# ------------------------------------------------------------------ scripted kernel: errors this VM cannot raise


class ScriptedKernel:
    """perf_event_open that fails or counts as told; reads return linearly growing counts."""

    def __init__(self, fail=None, running_share: float = 1.0):
        self.fail = fail or (lambda attr, cpu, group_fd: None)
        self.running_share = running_share
        self.fds: dict[int, tuple] = {}  # fd -> (cpu, config, group leader fd or -1, read_format)
        self.next_fd = 100
        self.t = 1_000_000_000
        """Nanoseconds the counters have been enabled; tests advance it between snapshots."""

    def perf_event_open(self, attr, pid, cpu, group_fd, flags):
        assert pid == -1 and attr.size == PERF_ATTR_SIZE_VER8
        code = self.fail(attr, cpu, group_fd)
        if code:
            raise OSError(code, os.strerror(code))
        fd, self.next_fd = self.next_fd, self.next_fd + 1
        self.fds[fd] = (cpu, attr.config, group_fd, attr.read_format)
        return fd

    def ioctl(self, fd, request, arg):
        pass

    def close(self, fd):
        self.fds.pop(fd)

    def read(self, fd, size):
        t = self.t
        cpu, config, _, fmt = self.fds[fd]
        running = int(t * self.running_share)
        per_config = {0: 2_000, 1: 1_000, 2: 40, 3: 10}  # cycles, instructions, refs, misses per running us
        if fmt & PERF_FORMAT_GROUP:
            members = [f for f, (c, _, g, _) in self.fds.items() if f == fd or g == fd]
            values = [per_config[self.fds[f][1]] * running // 1000 for f in members]
            words = [len(values), t, running, *values]
        else:
            words = [per_config[config] * running // 1000, t, running]
        return b"".join(w.to_bytes(8, sys.byteorder) for w in words)


def test_permission_denied_names_the_fix(tmp_path, caplog):
    proc = tmp_path / "proc"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/perf_event_paranoid").write_text("2\n")
    dev = PerfCounters(tmp_path, proc, ScriptedKernel(fail=lambda *a: errno.EACCES), cpus=[0, 1])
    assert dev.snapshot() is None
    assert dev.reason.startswith("not permitted to count system-wide (EACCES): needs CAP_PERFMON")
    assert "kernel.perf_event_paranoid <= 0 (it is 2)" in dev.reason


def test_pmu_without_cache_events_still_gives_cpi():
    kernel = ScriptedKernel(fail=lambda attr, cpu, g: errno.EOPNOTSUPP if attr.config in (2, 3) else None)
    clock = FakeClock(50.0)
    c = PerfCountersCollector(PerfCounters(Path("/nonexistent"), syscalls=kernel, cpus=[0, 1]), clock)
    first = {m.metric: m for m in c.read().measurements}
    assert first[CPI].reason == FIRST_SAMPLE
    assert first[LLC_MISS_RATIO].reason == (
        "cache-misses: this CPU's PMU has no generic cache-misses event "
        "(EOPNOTSUPP); cache-references: this CPU's PMU has no generic "
        "cache-references event (EOPNOTSUPP)"
    )
    kernel.t *= 2
    second = {m.metric: m for m in c.read().measurements}
    assert second[CPI].value == pytest.approx(2.0)
    assert second[LLC_MPKI].value is None and "cache-misses" in second[LLC_MPKI].reason


def test_group_rejected_falls_back_to_separate_scaled_counters():
    # EINVAL when a member joins a group: the PMU can never hold all four at once
    kernel = ScriptedKernel(
        fail=lambda attr, cpu, group_fd: errno.EINVAL if group_fd != -1 else None, running_share=0.5
    )
    dev = PerfCounters(Path("/nonexistent"), syscalls=kernel, cpus=[0, 1, 2])
    first = dev.snapshot()
    assert [c.grouped for c in dev._open] == [False, False, False] and not dev.failed_cpus
    kernel.t *= 3
    counts = interval_counts(first, dev.snapshot())
    assert counts.running_share == 0.5 and counts.cpus == (0, 1, 2)
    assert metrics_of(perf_measurements(counts)) == pytest.approx({LLC_MISS_RATIO: 0.25, LLC_MPKI: 10.0, CPI: 2.0})
    dev.close()
    assert not kernel.fds  # every fd closed, including those of the abandoned groups


def test_a_cpu_that_cannot_be_opened_is_left_out_and_said():
    kernel = ScriptedKernel(fail=lambda attr, cpu, g: errno.EMFILE if cpu == 1 else None)
    dev = PerfCounters(Path("/nonexistent"), syscalls=kernel, cpus=[0, 1])
    c = PerfCountersCollector(dev, FakeClock(50.0))
    c.read()
    kernel.t *= 2
    m = c.read().get(CPI)
    assert m.value == pytest.approx(2.0)
    assert "1 of 2 CPUs (cpu1: out of file descriptors (EMFILE)" in m.source
