"""Metric 14 from Tetragon: churn arithmetic on an injected clock, per-pod attribution
(parts sum to the node total), honest missing values, and the /proc/stat fallback."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from doubles import FakeClock

from agent.collect import NodeCollector
from agent.collectors.base import FIRST_SAMPLE
from agent.collectors.procstat import CHURN_SOURCE, ProcStatCollector
from agent.tetragon import (
    PodRef,
    PreferTetragon,
    TetragonChurnCollector,
    tetragon_collector,
    tetragon_problems,
    with_tetragon,
)
from agent.tetragon.collector import PROCESS_CHURN, ChurnReading
from agent.tetragon.file_source import ExportFileSource

REPO = Path(__file__).resolve().parent.parent
SHARED_EVENTS = REPO.parent / "shared" / "fixtures" / "tetragon" / "events.json"
AGENT_FIXTURES = Path(__file__).parent / "fixtures" / "agent"


def line(kind: str, pod: tuple[str, str] | None, pid: int = 1) -> bytes:
    process: dict = {"pid": pid, "binary": "/bin/true"}
    if pod is not None:
        process["pod"] = {"namespace": pod[0], "name": pod[1]}
    return json.dumps({kind: {"process": process}, "node_name": "n1"}).encode() + b"\n"


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


@pytest.fixture
def export(tmp_path):
    """An empty export file, a clock, and a Tetragon churn collector following the file."""
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    clock = FakeClock(1000.0)
    return log, clock, TetragonChurnCollector(ExportFileSource(log, clock=clock), clock)


def test_churn_is_exec_plus_exit_per_second_with_per_pod_parts(export):
    log, clock, c = export
    first = c.read()
    assert first.get(PROCESS_CHURN).reason == f"Tetragon {FIRST_SAMPLE}" and first.pods == ()
    web, db = ("shop", "web-0"), ("shop", "db-0")
    append(
        log,
        line("process_exec", web) * 3
        + line("process_exit", web) * 3
        + line("process_exec", db) * 2
        + line("process_exit", None) * 2
        + line("process_kprobe", web) * 5,
    )
    clock.advance(2.0)
    r = c.read()
    assert isinstance(r, ChurnReading) and r.at == clock.t
    assert r.get(PROCESS_CHURN).value == pytest.approx(10 / 2.0)  # kprobe events do not count
    assert r.get(PROCESS_CHURN).source is None  # Tetragon is the schema's first choice
    assert r.per_pod() == {"shop/web-0": 3.0, "shop/db-0": 1.0}
    assert [p.pod for p in r.pods] == [PodRef(*web), PodRef(*db)] and r.pods[0].events == 6
    assert r.host_per_s == 1.0 and r.untracked_pods_per_s == 0.0
    assert r.tetragon == f"Tetragon export file {log}"
    # A quiet interval is a true 0 while the source is live.
    clock.advance(0.5)
    quiet = c.read()
    assert quiet.get(PROCESS_CHURN).value == 0.0 and quiet.pods == ()


def test_rate_uses_the_time_between_reads(export):
    log, clock, c = export
    c.read()
    for seconds, events in ((1.0, 7), (0.25, 3), (4.0, 1)):
        append(log, line("process_exec", ("a", "b")) * events)
        clock.advance(seconds)
        assert c.read().get(PROCESS_CHURN).value == pytest.approx(events / seconds)


def test_parts_sum_to_the_node_total_even_past_the_pod_cap(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    clock = FakeClock(1000.0)
    c = TetragonChurnCollector(ExportFileSource(log, clock=clock, max_pods=3), clock)
    c.read()
    data = b"".join(line("process_exec", ("ns", f"pod-{i % 5}")) for i in range(23)) + line("process_exit", None) * 4
    append(log, data)
    clock.advance(3.0)
    r = c.read()
    total = r.get(PROCESS_CHURN).value
    assert len(r.pods) == 3 and r.untracked_pods_per_s > 0
    assert math.isclose(sum(p.per_s for p in r.pods) + r.host_per_s + r.untracked_pods_per_s, total)
    assert all(p.per_s >= 0 for p in r.pods) and r.pods == tuple(sorted(r.pods, key=lambda p: -p.per_s))


def test_source_coming_up_mid_interval_is_not_a_measurement(tmp_path):
    log = tmp_path / "tetragon.log"
    clock = FakeClock(1000.0)
    c = TetragonChurnCollector(ExportFileSource(log, clock=clock), clock)
    assert c.read().get(PROCESS_CHURN).reason == f"Tetragon export file {log} does not exist (yet)"
    clock.advance(1.0)
    shutil.copy(SHARED_EVENTS, log)
    r = c.read()
    assert r.get(PROCESS_CHURN).value is None
    assert "became live 0.0 s ago, needs a full interval" in r.get(PROCESS_CHURN).reason
    append(log, line("process_exec", None))
    clock.advance(1.0)
    assert c.read().get(PROCESS_CHURN).value == 1.0  # only what arrived in the full interval


def test_tetragon_reporting_drops_makes_the_interval_missing(export):
    log, clock, c = export
    c.read()
    append(log, line("process_exec", None) * 4 + b'{"rate_limit_info":{"number_of_dropped_process_events":"57"}}\n')
    clock.advance(1.0)
    m = c.read().get(PROCESS_CHURN)
    assert m.value is None and "Tetragon dropped 57 process events (rate limit)" in m.reason
    clock.advance(1.0)
    assert c.read().get(PROCESS_CHURN).value == 0.0  # the next interval is clean again


# ------------------------------------------------------------------ PreferTetragon


@pytest.fixture
def proc(tmp_path):
    return Path(shutil.copytree(AGENT_FIXTURES / "proc", tmp_path / "proc"))


def test_fallback_to_proc_stat_says_why_then_tetragon_takes_over(tmp_path, proc):
    log = tmp_path / "tetragon.log"
    clock = FakeClock(1000.0)
    tetragon = TetragonChurnCollector(ExportFileSource(log, clock=clock), clock)
    c = PreferTetragon(tetragon, ProcStatCollector(proc, clock))
    assert c.metrics == ("cpu_utilization", "cpu_iowait_ratio", PROCESS_CHURN) and c.name == "procstat+tetragon"
    down = f"Tetragon export file {log} does not exist (yet)"

    first = c.read()
    assert first.get(PROCESS_CHURN).reason == f"{down}; fallback /proc/stat: {FIRST_SAMPLE}"
    assert first.get("cpu_utilization").reason == FIRST_SAMPLE

    shutil.copy(AGENT_FIXTURES / "proc-later" / "stat", proc / "stat")  # +40 forks
    clock.advance(2.0)
    second = c.read()
    churn = second.get(PROCESS_CHURN)
    assert churn.value == 20.0 and churn.source == f"fallback: /proc/stat forks ({down})"
    assert second.get("cpu_utilization").value == pytest.approx(0.5)  # the other metrics are untouched
    assert second.pods == () and c.latest is second

    log.write_bytes(b"")
    clock.advance(1.0)
    third = c.read()  # Tetragon came up during this interval: still the fallback, saying so
    assert third.get(PROCESS_CHURN).value == 0.0
    assert "became live" in third.get(PROCESS_CHURN).source

    append(log, line("process_exec", ("shop", "web-0")) * 6)
    clock.advance(2.0)
    fourth = c.read()
    assert fourth.get(PROCESS_CHURN).value == 3.0 and fourth.get(PROCESS_CHURN).source is None
    assert fourth.per_pod() == {"shop/web-0": 3.0}

    # Tetragon stops exporting: stale after 300 s, /proc/stat again.
    clock.advance(301.0)
    stale = c.read().get(PROCESS_CHURN)
    assert stale.value == 0.0 and "nothing appended for 301 s" in stale.source


def test_node_vector_carries_the_fallback_source_and_reasons(tmp_path, proc):
    clock = FakeClock(1000.0)
    c = with_tetragon(
        ProcStatCollector(proc, clock), tetragon_collector(export_file=tmp_path / "none.log", clock=clock)
    )
    node = NodeCollector("node-a", [c], clock)
    node.collect()
    shutil.copy(AGENT_FIXTURES / "proc-later" / "stat", proc / "stat")
    clock.advance(2.0)
    v = node.collect()
    assert v.values[14] == 20.0
    assert (
        v.sources[PROCESS_CHURN] == f"fallback: /proc/stat forks (Tetragon export file {tmp_path / 'none.log'} "
        "does not exist (yet))"
    )


def test_a_failing_part_costs_only_its_own_metrics(tmp_path, proc):
    class Broken:
        description = "Tetragon test double"

        def poll(self):
            raise RuntimeError("boom")

        def close(self):
            pass

    clock = FakeClock(1000.0)
    c = PreferTetragon(TetragonChurnCollector(Broken(), clock), ProcStatCollector(proc, clock))
    r = c.read()
    assert (
        r.get(PROCESS_CHURN).reason
        == f"collector tetragon failed: RuntimeError: boom; fallback /proc/stat: {FIRST_SAMPLE}"
    )
    assert r.get("cpu_utilization").reason == FIRST_SAMPLE
    shutil.rmtree(proc)
    r = c.read()
    assert all(m.value is None for m in r.measurements)
    assert "cannot read" in r.get("cpu_utilization").reason


def test_not_configured_is_procstat_alone_and_says_so(proc):
    clock = FakeClock(1000.0)
    procstat = ProcStatCollector(proc, clock)
    assert tetragon_collector(None, None, clock) is None
    assert with_tetragon(procstat, None) is procstat
    assert CHURN_SOURCE == "fallback: /proc/stat forks, Tetragon not configured"


def test_configuration_problems_are_reported_together():
    assert tetragon_problems(None, None) == []
    assert tetragon_problems("/var/log/tetragon/tetragon.log", None) == []
    assert tetragon_problems(None, "unix:///var/run/tetragon/tetragon.sock") == []
    assert tetragon_problems(None, "localhost:54321") == []
    problems = tetragon_problems("tetragon.log", "localhost")
    assert problems == [
        "--tetragon-export and --tetragon-grpc: choose one Tetragon source, not both",
        "--tetragon-export: must be an absolute path, got 'tetragon.log'",
        "--tetragon-grpc: expected unix:///PATH or HOST:PORT, got 'localhost'",
    ]
    assert tetragon_problems(None, "unix:") == ["--tetragon-grpc: no socket path in 'unix:'"]
    with pytest.raises(ValueError, match="choose one"):
        tetragon_collector("/a", "unix:///b")
