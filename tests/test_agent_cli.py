"""The ``kubeattention agent`` and ``kubeattention record`` commands, end to end.

The agent runs as a real subprocess pushing over real gRPC to a test TelemetryService and
serving real HTTP; record runs in-process on this machine's /proc.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

import httpx
import pytest
from procs import Kubeattention, free_port, wait_for_port
from test_agent_push import SinkServer, TelemetrySink

from agent.config import DEFAULT_AGGREGATOR, DEFAULT_HTTP_LISTEN, DEFAULT_INTERVAL_S, AgentConfig, ConfigError
from agent.main import configure_parser
from agent.recording_file import HEADER_KIND, RecordingError, read_recording
from agent.replay import ReplaySource
from kubeattention import cli
from wire import __version__
from wire.schema import METRIC_BY_NAME, METRIC_NAMES, NUM_METRICS, SCHEMA_VERSION

FIXTURES = Path(__file__).parent / "fixtures" / "agent"
RECORDING = FIXTURES / "recording.jsonl"
RECORDINGS = Path(__file__).parent.parent / "agent" / "recordings"
STATES = ("quiet", "cpu-contended", "io-contended", "memory-contended")


@pytest.fixture
def sink_server():
    server = SinkServer(TelemetrySink()).start()
    yield server
    server.stop()


def start_agent(*args: str) -> tuple[Kubeattention, int]:
    http_port = free_port()
    agent = Kubeattention("agent", "--http-listen", f"127.0.0.1:{http_port}", *args).start()
    try:
        wait_for_port(http_port, proc=agent.proc)
    except Exception as e:
        agent.stop()
        raise AssertionError(f"agent did not start:\n{agent.output()}") from e
    return agent, http_port


def test_agent_process_pushes_and_serves_metrics(sink_server):
    agent, port = start_agent(
        "--aggregator", sink_server.target, "--insecure", "--node-name", "it-node", "--interval", "0.2"
    )
    try:
        assert sink_server.sink.wait_for(lambda s: len(s.received) >= 2, timeout=15), agent.output()
        msg = sink_server.sink.received[-1]
        assert msg.node_name == "it-node" and msg.schema_version == SCHEMA_VERSION
        assert msg.agent_version == __version__ and len(msg.values) == NUM_METRICS
        assert msg.available[METRIC_NAMES.index("cpu_utilization")]  # the baseline tick makes it measured
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert httpx.get(f"{base}/healthz").status_code == 200
        text = httpx.get(f"{base}/metrics").text
        assert "kubeattention_node_cpu_utilization_ratio " in text
        assert f'kubeattention_agent_info{{node="it-node",version="{__version__}"}} 1.0' in text
        assert 'kubeattention_agent_pushes_total{result="ok"}' in text
        node = httpx.get(f"{base}/v1/node").json()
        for name, ok in zip(METRIC_NAMES, node["mask"]):
            if not ok:  # a missing metric is absent from /metrics, never 0
                assert METRIC_BY_NAME[name].prom_name + " " not in text
                assert node["missing_reasons"][name]
        assert not node["mask"][METRIC_NAMES.index("llc_mpki")]
    finally:
        code = agent.stop(signal.SIGTERM)
    output = agent.output()
    assert code == 0, output
    assert "received SIGTERM, shutting down" in output and "agent stopped" in output
    assert "Traceback" not in output


def test_replay_agent_plays_the_recording_with_fresh_stamps(sink_server):
    recorded = read_recording(RECORDING).vectors
    before_ms = time.time_ns() // 1_000_000
    agent, port = start_agent(
        "--replay",
        str(RECORDING),
        "--node-name",
        "replay-1",
        "--aggregator",
        sink_server.target,
        "--insecure",
        "--interval",
        "0.1",
    )
    try:
        assert sink_server.sink.wait_for(lambda s: len(s.received) >= 4, timeout=15), agent.output()
        node = httpx.get(f"http://127.0.0.1:{port}/v1/node").json()
    finally:
        code = agent.stop(signal.SIGINT)
    assert code == 0, agent.output()
    got = sink_server.sink.received[:4]
    assert [m.node_name for m in got] == ["replay-1"] * 4
    assert all(m.collected_at_unix_ms >= before_ms for m in got)
    cpu = METRIC_NAMES.index("cpu_utilization")
    expected = [recorded[i % 3].values[cpu] for i in range(4)]  # loops at the end
    assert [m.values[cpu] for m in got] == expected
    assert dict(got[0].missing_reasons) == recorded[0].missing_reasons
    assert node["node_name"] == "replay-1"
    assert "replaying 3 vectors of 'fixture-cpu'" in agent.output()


def test_http_port_in_use_is_a_clear_error(sink_server):
    blocker, port = start_agent("--aggregator", "none", "--node-name", "a")
    try:
        other = Kubeattention("agent", "--http-listen", f"127.0.0.1:{port}", "--aggregator", "none").start()
        assert other.proc.wait(20) == 1
        assert f"cannot serve HTTP on 127.0.0.1:{port}" in other.output()
    finally:
        assert blocker.stop() == 0


def parse_agent_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(list(argv))


def test_config_defaults_and_node_name_from_environment_at_run_time():
    args = parse_agent_args("--insecure")
    config = AgentConfig.from_args(args, {"NODE_NAME": "worker-7"})
    assert config.node_name == "worker-7"
    assert (
        (config.aggregator, config.interval_s, config.http_listen)
        == (DEFAULT_AGGREGATOR, DEFAULT_INTERVAL_S, DEFAULT_HTTP_LISTEN)
        == ("127.0.0.1:50051", 1.0, "0.0.0.0:9101")
    )
    assert (config.http_host, config.http_port) == ("0.0.0.0", 9101)
    assert (
        AgentConfig.from_args(parse_agent_args("--node-name", "flag-wins", "--insecure"), {"NODE_NAME": "x"}).node_name
        == "flag-wins"
    )
    assert AgentConfig.from_args(args, {}).node_name  # falls back to the hostname
    assert not AgentConfig.from_args(parse_agent_args("--aggregator", "none"), {}).push_enabled


def test_config_reports_every_error_together():
    args = parse_agent_args(
        "--node-name",
        "Bad_Name",
        "--interval",
        "-1",
        "--aggregator",
        "nohost",
        "--http-listen",
        "0.0.0.0:99999",
        "--proc-root",
        "/nonexistent",
        "--insecure",
    )
    with pytest.raises(ConfigError) as info:
        AgentConfig.from_args(args, {})
    fields = [e.split(":")[0] for e in info.value.errors]
    assert fields == ["--node-name", "--aggregator", "--interval", "--http-listen", "--proc-root"]


def test_agent_command_exits_2_on_bad_config(capsys):
    assert cli.main(["agent", "--interval", "0", "--node-name", "UPPER"]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration" in err and "--interval" in err and "--node-name" in err
    assert cli.main(["agent", "--replay", "/nonexistent.jsonl"]) == 2


def test_record_writes_header_and_vectors_then_replays(tmp_path, capsys):
    out = tmp_path / "rec.jsonl"
    code = cli.main(
        [
            "record",
            "--out",
            str(out),
            "--duration",
            "0.6",
            "--interval",
            "0.2",
            "--label",
            "quiet",
            "--note",
            "pytest",
            "--node-name",
            "rec-node",
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 1 + 3
    header = lines[0]
    assert header["kind"] == HEADER_KIND and header["label"] == "quiet" and header["note"] == "pytest"
    assert header["schema_version"] == SCHEMA_VERSION and header["agent_version"] == __version__
    assert header["kernel"] and header["hostname"] and header["cpu_count"] >= 1 and header["started_at"]
    recording = read_recording(out)
    assert len(recording.vectors) == 3
    stamps = [v.collected_at_ms for v in recording.vectors]
    assert stamps == sorted(stamps) and all(v.node_name == "rec-node" for v in recording.vectors)
    assert all(v.available[METRIC_NAMES.index("cpu_utilization")] for v in recording.vectors)
    assert "wrote 3 vectors" in capsys.readouterr().out

    class Clock:
        def monotonic(self):
            return 0.0

        def wall_ms(self):
            return 1_900_000_000_000

    replay = ReplaySource(out, "replayed", Clock())
    first = replay.collect()
    assert first.node_name == "replayed" and first.collected_at_ms == 1_900_000_000_000
    assert first.to_json()["metrics"] == recording.vectors[0].to_json()["metrics"]


def test_bad_recording_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = RECORDING.read_text().splitlines()
    lines[2] = lines[2].replace('"schema_version":1', '"schema_version":99')
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingError, match=r"bad.jsonl:3: schema_version"):
        read_recording(bad)
    (tmp_path / "empty.jsonl").write_text(lines[0] + "\n")
    with pytest.raises(RecordingError, match="no vectors"):
        read_recording(tmp_path / "empty.jsonl")


@pytest.mark.parametrize("label", STATES)
def test_checked_in_recordings_are_valid_and_replayable(label):
    path = RECORDINGS / f"{label}.jsonl"
    recording = read_recording(path)
    assert recording.header["label"] == label and recording.header["note"]
    assert recording.header["schema_version"] == SCHEMA_VERSION
    assert 20 <= len(recording.vectors) <= 40
    for v in recording.vectors:  # measured here: /proc/stat, PSI, meminfo; never a fake 0 for the rest
        assert v.available[METRIC_NAMES.index("cpu_utilization")]
        assert not v.available[METRIC_NAMES.index("llc_mpki")] and v.missing_reasons["llc_mpki"]
    assert ReplaySource(path, "replayed").collect().node_name == "replayed"


def test_recorded_states_differ_where_they_should():
    def median(label, metric):
        values = sorted(v.value(metric) for v in read_recording(RECORDINGS / f"{label}.jsonl").vectors)
        return values[len(values) // 2]

    assert median("cpu-contended", "cpu_psi_some") > 0.5 > median("quiet", "cpu_psi_some")
    assert median("io-contended", "io_psi_some") > 0.2 > median("quiet", "io_psi_some")
    assert median("io-contended", "cpu_iowait_ratio") > 0.2 > median("quiet", "cpu_iowait_ratio")
    assert median("memory-contended", "memory_utilization") > 0.5 > median("quiet", "memory_utilization")
