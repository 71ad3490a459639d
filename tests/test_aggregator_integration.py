"""The aggregator as a real process: real redis-server, real gRPC over loopback, real ONNX model.

Nothing is mocked here. Each test starts redis-server and ``kubeattention aggregator`` on
free loopback ports and talks to them the way agents and schedulers do.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from procs import REPO, Kubeattention, free_port, wait_for_port
from telemetry_factory import batch, telemetry

from wire.v1 import scoring_pb2, scoring_pb2_grpc, telemetry_pb2_grpc

pytestmark = pytest.mark.integration
STALENESS_MS = 3000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


#: Flags that choose transport security; without one the helper runs the aggregator --insecure.
SECURITY_FLAGS = {"--insecure", "--tls-cert", "--auth-token-file", "--auth-tokenreview"}


class Aggregator:
    def __init__(self, redis_url: str, grpc_port: int | None = None, http_port: int | None = None, *extra: str):
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.proc = Kubeattention(
            "aggregator",
            "--redis-url",
            redis_url,
            "--grpc-listen",
            f"127.0.0.1:{self.grpc_port}",
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            "--max-staleness-ms",
            str(STALENESS_MS),
            "--resync-interval-s",
            "0.3",
            *extra,
            *(() if SECURITY_FLAGS & set(extra) else ("--insecure",)),
        )

    def start(self) -> Aggregator:
        self.proc.start()
        wait_for_port(self.http_port, proc=self.proc.proc, timeout=30)
        wait_for_port(self.grpc_port, proc=self.proc.proc, timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.http("/readyz", ok_only=False)[0] != 200:
            time.sleep(0.1)
        return self

    def http(self, path: str, ok_only: bool = True):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                body = r.read().decode()
                return (r.status, body) if not ok_only else body
        except urllib.error.HTTPError as e:
            if ok_only:
                raise
            return e.code, e.read().decode()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@pytest.fixture
def aggregator(redis_server):
    agg = Aggregator(redis_server.url).start()
    yield agg
    agg.proc.stop()


@pytest.fixture
def channel(aggregator):
    ch = grpc.insecure_channel(aggregator.address)
    yield ch
    ch.close()


def push(channel, msg):
    return telemetry_pb2_grpc.TelemetryServiceStub(channel).Push(msg, timeout=5)


def score(channel, req):
    return scoring_pb2_grpc.ScoringServiceStub(channel).BatchScore(req, timeout=5)


def test_push_then_batchscore_with_the_real_model(channel, aggregator):
    ack = push(channel, telemetry("quiet", collected_ms=now_ms()))
    assert abs(ack.received_at_unix_ms - now_ms()) < 5000
    push(
        channel,
        telemetry(
            "busy",
            collected_ms=now_ms(),
            cpu_utilization=1.0,
            cpu_psi_some=0.6,
            cpu_throttled_ratio=0.3,
            process_churn_per_s=800.0,
        ),
    )
    resp = score(channel, batch("busy", "ghost", "quiet"))
    by = {s.node_name: s for s in resp.scores}
    assert [s.node_name for s in resp.scores] == ["busy", "ghost", "quiet"]  # request order
    assert resp.model_version.startswith("mlp-")
    assert by["quiet"].status == by["busy"].status == scoring_pb2.SCORE_STATUS_SCORED
    assert by["quiet"].score > by["busy"].score
    assert 0 < by["busy"].confidence < 1  # LLC and friends are not measured
    assert by["busy"].predicted_slowdown > 1.0
    assert "CPU" in by["busy"].reason and "7 of 15 metrics not measured" in by["busy"].reason
    assert by["ghost"].status == scoring_pb2.SCORE_STATUS_UNKNOWN_NODE and by["ghost"].score == 50
    assert math.isnan(by["ghost"].predicted_slowdown) and by["ghost"].telemetry_age_ms == -1
    assert resp.profile == scoring_pb2.WORKLOAD_PROFILE_LATENCY_CRITICAL and resp.elapsed_us > 0


def test_stale_node_falls_back_while_others_are_scored(channel):
    push(channel, telemetry("old", collected_ms=now_ms() - STALENESS_MS - 2000))
    push(channel, telemetry("new", collected_ms=now_ms()))
    by = {s.node_name: s for s in score(channel, batch("old", "new")).scores}
    assert by["old"].status == scoring_pb2.SCORE_STATUS_STALE and by["old"].score == 50
    assert "over the 3 s limit" in by["old"].reason
    assert by["new"].status == scoring_pb2.SCORE_STATUS_SCORED


def _code_and_details(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda m: setattr(m, "schema_version", 7), "schema_version"),
        (lambda m: m.values.pop(), "values"),
        (lambda m: m.values.__setitem__(0, math.nan), "values[0] (cpu_utilization)"),
        (lambda m: m.values.__setitem__(4, math.inf), "values[4] (io_psi_some)"),
        (lambda m: m.values.__setitem__(8, -1.0), "values[8] (memory_utilization)"),
        (lambda m: m.values.__setitem__(3, 2.0), "values[3] (memory_psi_some)"),
        (lambda m: setattr(m, "node_name", ""), "node_name"),
    ],
)
def test_bad_pushes_are_invalid_argument_naming_the_field_and_keep_accepted_state(channel, mutate, field):
    push(channel, telemetry("keep", collected_ms=now_ms()))
    msg = telemetry("keep", collected_ms=now_ms(), cpu_psi_some=0.9)
    mutate(msg)
    code, details = _code_and_details(lambda: push(channel, msg))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details
    # the earlier, accepted vector is still what is scored
    s = score(channel, batch("keep")).scores[0]
    assert s.status == scoring_pb2.SCORE_STATUS_SCORED and "CPU pressure 90%" not in s.reason


@pytest.mark.parametrize(
    "req,words",
    [
        (batch(), "node_names: empty"),
        (batch(*[f"n{i}" for i in range(100_000)]), "100000 candidates exceed the limit of 5000"),
        (batch("a", "a"), "'a' appears more than once"),
        (batch("a", cpu=math.nan), "pod.cpu_request_cores"),
    ],
)
def test_bad_batchscore_is_invalid_argument(channel, req, words):
    code, details = _code_and_details(lambda: score(channel, req))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details


def test_malformed_protobuf_is_rejected_and_the_server_lives_on(channel):
    for method, message in (
        ("/kubeattention.v1.ScoringService/BatchScore", "kubeattention.v1.BatchScoreRequest"),
        ("/kubeattention.v1.TelemetryService/Push", "kubeattention.v1.NodeTelemetry"),
    ):
        raw = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff\x0f\x08", timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"not a valid {message} protobuf" in e.value.details()
    push(channel, telemetry("alive", collected_ms=now_ms()))
    assert score(channel, batch("alive")).scores[0].status == scoring_pb2.SCORE_STATUS_SCORED


def test_5000_candidates_are_answered(channel):
    for i in range(20):
        push(channel, telemetry(f"n{i}", collected_ms=now_ms(), cpu_psi_some=i / 40))
    resp = score(channel, batch(*[f"n{i}" for i in range(5000)]))
    assert len(resp.scores) == 5000
    scored = [s for s in resp.scores if s.status == scoring_pb2.SCORE_STATUS_SCORED]
    assert len(scored) == 20


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for svc in ("", "kubeattention.v1.ScoringService", "kubeattention.v1.TelemetryService"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"kubeattention.v1.ScoringService", "kubeattention.v1.TelemetryService", "grpc.health.v1.Health"} <= names


def test_http_nodes_metrics_and_probes(channel, aggregator):
    push(channel, telemetry("node-a", collected_ms=now_ms(), cpu_psi_some=0.2))
    score(channel, batch("node-a", "ghost"))
    doc = json.loads(aggregator.http("/v1/nodes"))
    from inference.model import InterferenceModel, validated_on_text

    assert doc["model_validated_on"] == validated_on_text(InterferenceModel.load().metadata)
    node = next(n for n in doc["nodes"] if n["node"] == "node-a")
    assert node["stale"] is False and "llc_miss_ratio" in node["missing"]
    psi = next(m for m in node["metrics"] if m["name"] == "cpu_psi_some")
    assert psi["value"] == 0.2 and psi["unit"] == "ratio"
    llc = next(m for m in node["metrics"] if m["name"] == "llc_miss_ratio")
    assert llc["value"] is None and llc["reason"] == "not collected in this test"
    assert aggregator.http("/v1/nodes/ghost", ok_only=False)[0] == 404
    metrics = aggregator.http("/metrics")
    assert 'kubeattention_aggregator_pushes_total{result="accepted"} 1.0' in metrics
    assert 'kubeattention_aggregator_node_scores_total{status="unknown_node"} 1.0' in metrics
    assert "kubeattention_aggregator_batchscore_duration_seconds_bucket" in metrics
    assert 'kubeattention_aggregator_nodes{state="fresh"} 1.0' in metrics
    assert aggregator.http("/healthz") and aggregator.http("/readyz", ok_only=False)[0] == 200


def test_redis_outage_snapshot_then_stale_then_recovery(redis_server, aggregator, channel):
    push(channel, telemetry("node-a", collected_ms=now_ms()))
    redis_server.stop()
    # pushes are refused with UNAVAILABLE (the agent retries) ...
    code, details = _code_and_details(lambda: push(channel, telemetry("node-a", collected_ms=now_ms())))
    assert code == grpc.StatusCode.UNAVAILABLE and "retry" in details
    # ... while BatchScore keeps answering from the snapshot
    assert score(channel, batch("node-a")).scores[0].status == scoring_pb2.SCORE_STATUS_SCORED
    time.sleep(STALENESS_MS / 1000 + 0.5)
    assert score(channel, batch("node-a")).scores[0].status == scoring_pb2.SCORE_STATUS_STALE
    assert "kubeattention_aggregator_redis_up 0.0" in aggregator.http("/metrics")
    redis_server.start()  # an empty Redis: no persistence in the test
    push(channel, telemetry("node-a", collected_ms=now_ms()))
    assert score(channel, batch("node-a")).scores[0].status == scoring_pb2.SCORE_STATUS_SCORED


def test_state_accepted_before_a_redis_restart_is_written_back(redis_server, aggregator, channel):
    push(channel, telemetry("node-a", collected_ms=now_ms()))
    redis_server.stop()
    redis_server.start()  # comes back empty
    deadline = time.monotonic() + 10
    out = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["redis-cli", "-p", str(redis_server.port), "hget", "ka:node:{node-a}", "mask"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if out:
            break
        time.sleep(0.2)
    assert out == "111110011000001"
    assert score(channel, batch("node-a")).scores[0].status == scoring_pb2.SCORE_STATUS_SCORED


def test_a_restarted_aggregator_rebuilds_its_snapshot_from_redis(redis_server):
    first = Aggregator(redis_server.url).start()
    with grpc.insecure_channel(first.address) as ch:
        push(ch, telemetry("node-a", collected_ms=now_ms()))
    first.proc.stop()
    second = Aggregator(redis_server.url, first.grpc_port, first.http_port).start()
    try:
        with grpc.insecure_channel(second.address) as ch:
            assert score(ch, batch("node-a")).scores[0].status == scoring_pb2.SCORE_STATUS_SCORED
    finally:
        second.proc.stop()


def kubeattention(*args: str, check: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``kubeattention ARGS...`` run to its end, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "kubeattention.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=check,
        timeout=timeout,
    )


def test_aggregator_refuses_bad_flags_with_every_problem_listed(redis_server):
    out = kubeattention("aggregator", "--grpc-listen", "nowhere", "--budget-ms", "0", "--redis-url", "http://x")
    assert out.returncode == 2
    for words in ("--grpc-listen: 'nowhere' is not HOST:PORT", "--budget-ms: must be > 0", "--redis-url"):
        assert words in out.stderr


def test_aggregator_refuses_a_missing_model_file(redis_server, tmp_path):
    out = kubeattention(
        "aggregator", "--redis-url", redis_server.url, "--model", str(tmp_path / "nope.onnx"), "--insecure"
    )
    assert out.returncode == 2 and "cannot load the scoring model" in out.stderr and "nope.onnx" in out.stderr


def test_score_and_inspect_commands(redis_server, aggregator, channel):
    push(channel, telemetry("node-a", collected_ms=now_ms(), cpu_psi_some=0.3))
    score_cmd = ("score", "--insecure", "--aggregator", aggregator.address)
    out = kubeattention(
        *score_cmd,
        "--profile",
        "latency-critical",
        "--cpu",
        "500m",
        "--memory",
        "512Mi",
        "--json",
        "node-a",
        "ghost",
        check=True,
    )
    doc = json.loads(out.stdout)
    assert [s["node"] for s in doc["scores"]] == ["node-a", "ghost"] or doc["scores"][0]["score"] >= 50
    assert {s["status"] for s in doc["scores"]} == {"SCORED", "UNKNOWN_NODE"}
    assert set(doc["scores"][0]) == {"node", "score", "status", "confidence", "predicted_slowdown", "reason"}
    table = kubeattention(*score_cmd, "--cpu", "1", "node-a", check=True).stdout
    assert "RANK" in table and "node-a" in table and "SCORED" in table
    bad = kubeattention(*score_cmd, "--memory", "lots", "node-a")
    assert bad.returncode == 2 and "--memory: 'lots' is not a Kubernetes quantity" in bad.stderr
    dup = kubeattention(*score_cmd, "a", "a")
    assert dup.returncode == 1 and "INVALID_ARGUMENT" in dup.stderr and "more than once" in dup.stderr
    ins = kubeattention("inspect", "--redis-url", redis_server.url, "--json", check=True)
    nodes = json.loads(ins.stdout)["nodes"]
    assert nodes[0]["node"] == "node-a" and "llc_mpki" in nodes[0]["missing"]
    human = kubeattention("inspect", "--redis-url", redis_server.url, "node-a", check=True).stdout
    assert "cpu_psi_some" in human and "30%" in human and "missing: not collected in this test" in human
    none = kubeattention("inspect", "--redis-url", redis_server.url, "ghost")
    assert none.returncode == 1 and "no telemetry for node 'ghost'" in none.stderr


def test_offending_pod_travels_from_push_to_reason_and_nodes_view(channel, aggregator):
    msg = telemetry("busy", collected_ms=now_ms(), cpu_utilization=0.95, cpu_psi_some=0.7)
    msg.top_offenders.add(namespace="batch", name="ffmpeg-7c9d", metric="cpu_utilization", value=0.8)
    push(channel, msg)
    reason = score(channel, batch("busy")).scores[0].reason
    assert "84% from batch/ffmpeg-7c9d" in reason
    node = json.loads(aggregator.http("/v1/nodes/busy"))
    assert node["top_offenders"] == [
        {"namespace": "batch", "name": "ffmpeg-7c9d", "metric": "cpu_utilization", "value": 0.8}
    ]
