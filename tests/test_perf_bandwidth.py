"""Memory bandwidth: resctrl MBM on a fake resctrl tree (tests/fixtures/perf/sys-resctrl),
the LLC-miss x 64 B estimate on recorded counter readings, and this machine (neither)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.collectors.base import FIRST_SAMPLE
from agent.collectors.memory_bandwidth import (
    MEMORY_BANDWIDTH,
    MemoryBandwidthCollector,
    mbm_gbps,
    read_mbm_totals,
    resctrl_status,
)
from agent.perf.counters import PerfCounters
from agent.perf.events import CACHE_MISSES
from agent.perf.intervals import CounterValue, PerfSnapshot

FIXTURES = Path(__file__).parent / "fixtures" / "perf"
SCENARIOS = json.loads((FIXTURES / "counters.json").read_text())["scenarios"]
RESCTRL = "fs/resctrl"


class FakeClock:
    def __init__(self, t: float = 10.0):
        self.t = t

    def monotonic(self) -> float:
        return self.t

    def wall_ms(self) -> int:
        return 1_700_000_000_000


class RecordedCounters:
    """Plays recorded snapshots, as PerfCounters would read them (a PMU this VM lacks)."""

    def __init__(self, name: str, reason: str | None = None, unavailable: dict | None = None):
        self.snapshots = [
            PerfSnapshot({int(c): {e: CounterValue(*v) for e, v in ev.items()} for c, ev in s.items()})
            for s in SCENARIOS[name]["snapshots"]
        ]
        self.reason = reason
        self.unavailable = unavailable or {}

    def snapshot(self):
        return None if self.reason else self.snapshots.pop(0)


def fake_sys(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "sys-resctrl", tmp_path / "sys"))


def advance(sys_root: Path, deltas: dict[str, int]) -> None:
    for rel, d in deltas.items():
        path = sys_root / RESCTRL / rel / "mbm_total_bytes"
        path.write_text(f"{int(path.read_text()) + d}\n")


def test_resctrl_sums_root_and_ctrl_mon_groups_not_mon_groups(tmp_path):
    sys_root = fake_sys(tmp_path)
    totals = read_mbm_totals(sys_root / RESCTRL)
    assert totals == {
        "/mon_L3_00": 10_000_000_000,
        "/mon_L3_01": 8_000_000_000,
        "latency-critical/mon_L3_00": 2_000_000_000,
        "latency-critical/mon_L3_01": 1_000_000_000,
    }


def test_resctrl_bandwidth_over_an_interval(tmp_path):
    sys_root, clock = fake_sys(tmp_path), FakeClock()
    c = MemoryBandwidthCollector(sys_root, perf=RecordedCounters("steady"), clock=clock)
    assert c.read().get(MEMORY_BANDWIDTH).reason == FIRST_SAMPLE
    advance(
        sys_root,
        {
            "mon_data/mon_L3_00": 6_000_000_000,
            "mon_data/mon_L3_01": 4_000_000_000,
            "latency-critical/mon_data/mon_L3_00": 1_500_000_000,
            "latency-critical/mon_data/mon_L3_01": 500_000_000,
            "mon_groups/batch/mon_data/mon_L3_00": 9_000_000_000,
        },
    )  # already inside the root's figure
    clock.t += 2.0
    m = c.read().get(MEMORY_BANDWIDTH)
    assert m.value == pytest.approx(12e9 / 2 / 1e9) and m.source is None  # resctrl is the first choice


def test_resctrl_group_changes_and_unavailable_counters(tmp_path):
    sys_root, clock = fake_sys(tmp_path), FakeClock()
    c = MemoryBandwidthCollector(sys_root, clock=clock)
    c.read()
    new = sys_root / RESCTRL / "batch-ctrl" / "mon_data" / "mon_L3_00"
    new.mkdir(parents=True)
    (new / "mbm_total_bytes").write_text("0\n")
    clock.t += 1.0
    m = c.read().get(MEMORY_BANDWIDTH)
    assert m.value is None and "resctrl groups changed during the interval (batch-ctrl/mon_L3_00)" in m.reason
    (new / "mbm_total_bytes").write_text("Unavailable\n")
    m = c.read().get(MEMORY_BANDWIDTH)
    assert m.value is None and "reads 'Unavailable'" in m.reason and "LLC-miss estimate: no counter source" in m.reason
    with pytest.raises(ValueError, match="went backwards"):
        mbm_gbps({"a": 10}, {"a": 5}, 1.0)


def test_resctrl_without_mbm(tmp_path):
    sys_root = fake_sys(tmp_path)
    (sys_root / RESCTRL / "info/L3_MON/mon_features").write_text("llc_occupancy\n")
    assert "lists no mbm_total_bytes (llc_occupancy)" in resctrl_status(sys_root / RESCTRL)
    shutil.rmtree(sys_root / RESCTRL / "info/L3_MON")
    assert "without L3 monitoring" in resctrl_status(sys_root / RESCTRL)


def test_estimate_from_llc_misses_is_labelled(tmp_path):
    c = MemoryBandwidthCollector(tmp_path, perf=RecordedCounters("steady"), clock=FakeClock())
    assert c.read().get(MEMORY_BANDWIDTH).reason == FIRST_SAMPLE
    m = c.read().get(MEMORY_BANDWIDTH)
    assert m.value == pytest.approx(30e6 * 64 / 1e9)  # 30e6 misses/s x 64 B = 1.92 GB/s
    assert m.source.startswith("estimate: LLC misses x 64 B (perf cache-misses; demand line fills only")
    assert "resctrl: not mounted at" in m.source


def test_estimate_uses_the_sysfs_line_size_and_multiplexing_note(tmp_path):
    sys_root = fake_sys(tmp_path)
    shutil.rmtree(sys_root / RESCTRL)
    (sys_root / "devices/system/cpu/cpu0/cache/index3/coherency_line_size").write_text("128\n")
    c = MemoryBandwidthCollector(sys_root, perf=RecordedCounters("multiplexed"), clock=FakeClock())
    c.read()
    m = c.read().get(MEMORY_BANDWIDTH)
    assert m.value == pytest.approx(30e6 * 128 / 1e9)
    assert "x 128 B" in m.source and "multiplexed, scaled from 25% of the interval" in m.source


def test_estimate_refuses_to_undercount(tmp_path):
    c = MemoryBandwidthCollector(tmp_path, perf=RecordedCounters("restart"), clock=FakeClock())
    c.read()
    m = c.read().get(MEMORY_BANDWIDTH)
    assert m.value is None and m.reason.startswith("LLC-miss estimate would undercount: counters of 1 CPU(s)")


def test_neither_source_gives_both_reasons(tmp_path):
    no_pmu = "no hardware PMU: perf_event_open(PERF_TYPE_HARDWARE) failed with ENOENT"
    perf = RecordedCounters("steady", reason=no_pmu)
    m = MemoryBandwidthCollector(tmp_path, perf=perf, clock=FakeClock()).read().get(MEMORY_BANDWIDTH)
    assert m.value is None
    assert m.reason.startswith(f"resctrl: not mounted at {tmp_path}/fs/resctrl")
    assert m.reason.endswith(f"; LLC-miss estimate: {no_pmu}")
    lacking = RecordedCounters("steady", unavailable={CACHE_MISSES: "this CPU's PMU has no generic cache-misses event"})
    m = MemoryBandwidthCollector(tmp_path, perf=lacking, clock=FakeClock()).read().get(MEMORY_BANDWIDTH)
    assert m.reason.endswith("LLC-miss estimate: this CPU's PMU has no generic cache-misses event")


def test_this_machine_reports_both_reasons():
    """Live: no /sys/fs/resctrl and no PMU on this VM; skipped where either exists."""
    if resctrl_status(Path("/sys/fs/resctrl")) is None:
        pytest.skip("this machine has resctrl MBM")
    perf = PerfCounters()
    c = MemoryBandwidthCollector("/sys", perf=perf)
    m = c.read().get(MEMORY_BANDWIDTH)
    if perf.reason is None:
        pytest.skip("this machine has a PMU: the estimate applies")
    assert m.value is None
    assert m.reason.startswith("resctrl: not mounted at /sys/fs/resctrl")
    assert "LLC-miss estimate: no hardware PMU" in m.reason
