"""The rebalancer: simulated API server, real kubernetes client, real gRPC.

The Kubernetes API server is simulated (tests/fixtures/k8s/apiserver.py: recorded Node,
Pod, Status and Eviction objects over HTTP on 127.0.0.1) because none can run on this
machine; the rebalancer uses the real ``kubernetes`` client against it, and the server
records every request, so "a dry run touches nothing" is checked on the wire.

Scores come from a small real gRPC ScoringService started in the test that answers
scores chosen per node, so the gap / floor / max-moves rules are checked against exact
numbers; the last test uses the real aggregator process and real pushes instead.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent import futures

import grpc
import pytest
from fixtures.k8s.apiserver import FakeApiServer, Reply, load, pod

from client.result import NodeScore
from controllers import rebalancer as rebalance
from controllers.rebalance_rules import judge
from wire.schema import QoS
from wire.status import Status
from wire.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.integration

#: Infeasible nodes score highest: if a filter were missing they would win.
NODE_SCORES = {
    "node-a": 25.0,
    "node-b": 70.0,
    "node-e": 90.0,
    "cp-1": 99.0,
    "node-c": 99.0,
    "node-d": 99.0,
    "node-gpu": 99.0,
}
INFEASIBLE = {"cp-1", "node-c", "node-d", "node-gpu"}
SEARCH = "shop/search-5c6d7e8f9-qw7rt"
WEB_1, WEB_2 = "shop/web-7d4b9c8f6d-x2x9k", "shop/web-7d4b9c8f6d-q8w7e"


class ChosenScores(scoring_pb2_grpc.ScoringServiceServicer):
    """BatchScore answering chosen per-node scores (a number = SCORED, (score, status) otherwise)."""

    def __init__(self, scores: dict):
        self.scores = dict(scores)
        self.requests: list[scoring_pb2.BatchScoreRequest] = []

    def BatchScore(self, request, context):
        self.requests.append(request)
        out = []
        for n in request.node_names:
            v = self.scores.get(n, (50.0, Status.UNKNOWN_NODE))
            score, status = (v, Status.SCORED) if isinstance(v, float) else v
            out.append(
                scoring_pb2.NodeScore(
                    node_name=n,
                    score=score,
                    status=status,
                    confidence=0.5,
                    telemetry_age_ms=100,
                    predicted_slowdown=100 / score if status is Status.SCORED else math.nan,
                    reason=f"chosen score for {n}",
                )
            )
        return scoring_pb2.BatchScoreResponse(
            scores=out, model_version="chosen-scores", profile=request.pod.profile or 1
        )


@pytest.fixture
def scoring():
    servicer = ChosenScores(NODE_SCORES)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.address = f"127.0.0.1:{port}"
    yield servicer
    server.stop(0)


def cluster_pods() -> list[dict]:
    return [
        load("pod-deployment-running.json"),  # web, Deployment shop/web, node-a
        pod(name="web-7d4b9c8f6d-q8w7e", uid="uid-web-2"),  # a second replica of it, node-a
        load("pod-init-containers.json"),  # search: needs 2 cores, node-a
        pod("pod-sidecar-overhead.json", node="node-e"),  # payments on the good node
        load("pod-statefulset-guaranteed.json"),  # cache-1, node-b (2.1 cores)
        load("pod-job-besteffort.json"),  # node-b
        load("pod-daemonset.json"),  # node-a
        load("pod-mirror-static.json"),  # node-b
        load("pod-bare.json"),  # node-a, no controller
        pod(name="coredns-5d78c9869d-7xk2p", uid="uid-coredns", namespace="kube-system"),  # node-a
        load("pod-evicted.json"),  # Failed: neither considered nor occupying node-b
        load("pod-unbound-pending.json"),
    ]


@pytest.fixture
def apiserver():
    server = FakeApiServer().start()
    server.pods = cluster_pods()
    yield server
    server.stop()


def run_cli(apiserver, scoring, tmp_path, *flags: str, capsys=None) -> tuple[int, str]:
    p = argparse.ArgumentParser()
    rebalance.configure_parser(p)
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    args = p.parse_args(["--aggregator", scoring.address, "--insecure", "--kubeconfig", str(kubeconfig), *flags])
    code = rebalance.run(args)
    return code, capsys.readouterr().out if capsys else ""


def run_json(apiserver, scoring, tmp_path, capsys, *flags: str) -> tuple[int, dict]:
    code, out = run_cli(apiserver, scoring, tmp_path, "--json", *flags, capsys=capsys)
    return code, json.loads(out)


def posts(apiserver, suffix: str = "") -> list:
    return [r for r in apiserver.seen("POST") if r.path.endswith(suffix)]


# ---------------------------------------------------------------------- dry run


def test_dry_run_recommends_and_touches_nothing(apiserver, scoring, tmp_path, capsys):
    code, doc = run_json(apiserver, scoring, tmp_path, capsys)
    assert code == 0 and doc["dry_run"] is True
    assert [
        (m["namespace"] + "/" + m["pod"], m["node"], m["target"], m["gain"], m["action"]) for m in doc["moves"]
    ] == [
        (SEARCH, "node-a", "node-e", 65.0, "recommended"),
        (WEB_2, "node-a", "node-e", 65.0, "recommended"),
    ]
    assert [(m["namespace"] + "/" + m["pod"], m["action"], m["detail"]) for m in doc["deferred"]] == [
        (WEB_1, "deferred", "another pod of Deployment shop/web moves this round")
    ]
    assert doc["skipped"] == {
        "DaemonSet pod": 1,
        "current node at or above floor": 3,
        "mirror/static pod": 1,
        "no controller": 1,
        "system namespace": 1,
    }
    assert doc["examined"] == 10 and doc["model_version"] == "chosen-scores"
    assert (
        doc["moves"][0]["node_reason"] == "chosen score for node-a"
        and doc["moves"][0]["workload"] == "Deployment shop/search"
    )
    # nothing but reads reached the API server
    assert apiserver.seen("POST") == [] and {r.method for r in apiserver.requests} == {"GET"}
    assert {r.path for r in apiserver.requests} == {"/api/v1/pods", "/api/v1/nodes"}


def test_table_output(apiserver, scoring, tmp_path, capsys):
    code, out = run_cli(apiserver, scoring, tmp_path, capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(
        "rebalance (dry run): 10 running pods examined, 3 qualify, 2 selected (max 5, gap 20, "
        "floor 40) · model chosen-scores"
    )
    assert any(
        SEARCH in line and "node-e" in line and "65.0" in line and line.endswith("recommended") for line in lines
    )
    assert any(WEB_1 in line and "deferred: another pod of Deployment shop/web" in line for line in lines)
    assert "not moved: 1 DaemonSet pod, 3 current node at or above floor" in out


def test_candidates_are_only_nodes_the_scheduler_could_use(apiserver, scoring, tmp_path, capsys):
    run_json(apiserver, scoring, tmp_path, capsys)
    by_pod = {r.pod.name: list(r.node_names) for r in scoring.requests}
    for name, nodes in by_pod.items():
        assert not INFEASIBLE & set(nodes), (name, nodes)  # cordoned, NotReady, untolerated taints
    assert by_pod["web-7d4b9c8f6d-x2x9k"] == ["node-a", "node-b", "node-e"]  # current node first
    assert by_pod["search-5c6d7e8f9-qw7rt"] == ["node-a", "node-e"]  # 2 cores do not fit beside node-b's 2.3
    assert by_pod["cache-1"] == ["node-b", "node-e"]  # node-a holds 2.9 of its 3.92 cores already
    # the pod context travels as the extender would send it
    cache = next(r for r in scoring.requests if r.pod.name == "cache-1")
    assert cache.pod.namespace == "shop" and cache.pod.qos_class == int(QoS.GUARANTEED)
    assert cache.pod.profile == scoring_pb2.WORKLOAD_PROFILE_CACHE_SENSITIVE and cache.pod.priority == 1_000_000
    assert cache.pod.cpu_request_cores == pytest.approx(2.1)
    skipped = {"node-exporter-4kq9d", "haproxy-node-b", "debug-shell", "coredns-5d78c9869d-7xk2p"}
    assert not skipped & set(by_pod)


# ---------------------------------------------------------------------- the rules


def test_gap_and_floor(apiserver, scoring, tmp_path, capsys):
    _, doc = run_json(apiserver, scoring, tmp_path, capsys, "--gap", "66")
    assert doc["moves"] == [] and doc["skipped"]["no candidate better by the gap"] == 3
    _, doc = run_json(apiserver, scoring, tmp_path, capsys, "--gap", "65")  # best - current >= gap qualifies
    assert len(doc["moves"]) == 2
    _, doc = run_json(apiserver, scoring, tmp_path, capsys, "--floor", "25")  # current < floor is required
    assert doc["moves"] == [] and doc["skipped"]["current node at or above floor"] == 6
    _, doc = run_json(apiserver, scoring, tmp_path, capsys, "--floor", "75")  # now node-b's 70 is low too
    assert {m["node"] for m in doc["moves"] + doc["deferred"]} == {"node-a", "node-b"}
    assert {m["pod"] for m in doc["moves"] + doc["deferred"] if m["node"] == "node-b"} == {
        "cache-1",
        "report-29134560-8tq2w",
    }
    assert apiserver.seen("POST") == []


def test_max_moves(apiserver, scoring, tmp_path, capsys):
    _, doc = run_json(apiserver, scoring, tmp_path, capsys, "--max-moves", "1")
    assert [m["pod"] for m in doc["moves"]] == ["search-5c6d7e8f9-qw7rt"]
    assert [m["detail"] for m in doc["deferred"]] == ["--max-moves 1 reached"] * 2


def test_stale_or_unknown_nodes_never_drive_a_move(apiserver, scoring, tmp_path, capsys):
    scoring.scores["node-a"] = (25.0, Status.STALE)
    _, doc = run_json(apiserver, scoring, tmp_path, capsys)
    assert doc["moves"] == [] and doc["skipped"]["current node stale"] == 3
    scoring.scores["node-a"] = 25.0
    scoring.scores["node-e"] = (90.0, Status.STALE)  # the best target is stale: node-b (70) is the best scored one
    _, doc = run_json(apiserver, scoring, tmp_path, capsys)
    assert {(m["target"], m["gain"]) for m in doc["moves"]} == {("node-b", 45.0)}


def scored(node: str, score: float, status: Status = Status.SCORED) -> NodeScore:
    return NodeScore(node, score, status, 0.5, None, "")


@pytest.mark.parametrize(
    "current, others, expected",
    [
        (scored("a", 30), [scored("b", 50)], "b"),
        (scored("a", 30), [scored("b", 49.9)], "no candidate better by the gap"),
        (scored("a", 40), [scored("b", 90)], "current node at or above floor"),
        (scored("a", 10, Status.FALLBACK), [scored("b", 90)], "current node fallback"),
        (scored("a", 10), [scored("b", 90, Status.UNKNOWN_NODE)], "no scored candidate node"),
        (scored("a", 10), [scored("c", 80), scored("b", 80)], "b"),  # ties by name
    ],
)
def test_judge(current, others, expected):
    best, why = judge(current, others, gap=20, floor=40)
    assert (best.name if best else why) == expected


def test_config_is_validated_all_at_once(tmp_path, capsys):
    p = argparse.ArgumentParser()
    rebalance.configure_parser(p)
    args = p.parse_args(
        [
            "--gap",
            "0",
            "--floor",
            "120",
            "--max-moves",
            "0",
            "--aggregator",
            "nowhere",
            "--kubeconfig",
            str(tmp_path / "missing"),
        ]
    )
    assert rebalance.run(args) == 2
    err = capsys.readouterr().err
    for field in ("--gap", "--floor", "--max-moves", "--aggregator", "missing"):
        assert field in err


# ---------------------------------------------------------------------- evictions and events


def test_evict_honours_pdb_429_and_one_pod_per_workload(apiserver, scoring, tmp_path, capsys):
    apiserver.script("eviction", Reply(429, load("status-429-pdb.json"), {"Retry-After": "10"}))
    code, doc = run_json(apiserver, scoring, tmp_path, capsys, "--evict")
    assert code == 0 and doc["dry_run"] is False
    results = {m["pod"]: (m["action"], m["detail"]) for m in doc["moves"]}
    assert results["search-5c6d7e8f9-qw7rt"][0] == "blocked"  # the first eviction met the budget
    assert (
        "The disruption budget web-pdb needs 2 healthy pods and has 2 currently" in results["search-5c6d7e8f9-qw7rt"][1]
    )
    assert results["web-7d4b9c8f6d-q8w7e"][0] == "evicted"
    evictions = posts(apiserver, "/eviction")
    # one request per selected pod: the blocked one is not retried, and the second web replica is not touched
    assert [r.path for r in evictions] == [
        "/api/v1/namespaces/shop/pods/search-5c6d7e8f9-qw7rt/eviction",
        "/api/v1/namespaces/shop/pods/web-7d4b9c8f6d-q8w7e/eviction",
    ]
    body = evictions[1].body
    assert body["apiVersion"] == "policy/v1" and body["kind"] == "Eviction"
    assert body["metadata"] == {"name": "web-7d4b9c8f6d-q8w7e", "namespace": "shop"}
    assert body["deleteOptions"]["preconditions"] == {"uid": "uid-web-2"}
    assert posts(apiserver, "/events") == []


def test_eviction_of_a_vanished_pod_and_api_failures_are_reported(apiserver, scoring, tmp_path, capsys):
    apiserver.script("eviction", Reply(404, load("status-404-pod.json")), Reply(500, load("status-500.json")))
    code, doc = run_json(apiserver, scoring, tmp_path, capsys, "--evict")
    assert [m["action"] for m in doc["moves"]] == ["gone", "failed"]
    assert "etcdserver: request timed out" in doc["moves"][1]["detail"]
    assert code == 1


def test_events_in_a_dry_run(apiserver, scoring, tmp_path, capsys):
    code, doc = run_json(apiserver, scoring, tmp_path, capsys, "--events")
    assert code == 0 and [m["event"] for m in doc["moves"]] == ["posted", "posted"]
    assert posts(apiserver, "/eviction") == []
    events = posts(apiserver, "/events")
    assert [e.path for e in events] == ["/api/v1/namespaces/shop/events"] * 2
    ev = events[0].body
    assert ev["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "search-5c6d7e8f9-qw7rt",
        "namespace": "shop",
        "uid": "8d9e0f1a-2b3c-4d4e-9f5a-6b7c8d9e0f1a",
    }
    assert ev["reason"] == "KubeAttentionRebalance" and ev["type"] == "Normal" and ev["count"] == 1
    assert ev["source"] == {"component": "kubeattention-rebalancer"}
    assert ev["metadata"]["name"].startswith("search-5c6d7e8f9-qw7rt.")
    assert ev["message"] == (
        "KubeAttention: node node-a scores 25 (chosen score for node-a); node node-e scores 90: "
        "move recommended (dry run, not evicted)"
    )
    assert ev["firstTimestamp"].startswith(time.strftime("%Y-", time.gmtime()))


def test_events_say_what_the_eviction_did(apiserver, scoring, tmp_path, capsys):
    apiserver.script("eviction", Reply(429, load("status-429-pdb.json")))
    run_json(apiserver, scoring, tmp_path, capsys, "--evict", "--events")
    messages = [e.body["message"] for e in posts(apiserver, "/events")]
    assert "eviction blocked: PodDisruptionBudget: Cannot evict pod" in messages[0]
    assert messages[1].endswith("evicted so the scheduler can place it elsewhere")


# ---------------------------------------------------------------------- failures


def test_unreachable_aggregator_fails_the_round_without_writes(apiserver, tmp_path, capsys):
    class Nowhere:
        address = "127.0.0.1:1"

    code, _ = run_cli(apiserver, Nowhere, tmp_path, "--evict", "--timeout", "0.5")
    assert code == 1
    assert "aggregator 127.0.0.1:1 answered UNAVAILABLE" in capsys.readouterr().err
    assert apiserver.seen("POST") == []


def test_api_error_fails_the_round(apiserver, scoring, tmp_path, capsys):
    apiserver.script("nodes", Reply(500, load("status-500.json")))
    code, _ = run_cli(apiserver, scoring, tmp_path)
    assert code == 1
    assert "Kubernetes API: HTTP 500" in capsys.readouterr().err
    assert scoring.requests == []


# ---------------------------------------------------------------------- with the real aggregator


def test_with_the_real_aggregator_and_pushed_telemetry(redis_server, apiserver, tmp_path, capsys):
    """Real aggregator process, real pushes, real ONNX model: the contended node's pods are recommended away."""
    from telemetry_factory import telemetry
    from test_aggregator_integration import Aggregator

    from wire.v1 import telemetry_pb2_grpc

    agg = Aggregator(redis_server.url).start()
    try:
        now = time.time_ns() // 1_000_000
        with grpc.insecure_channel(agg.address) as ch:
            push = telemetry_pb2_grpc.TelemetryServiceStub(ch).Push
            push(
                telemetry(
                    "node-a",
                    collected_ms=now,
                    cpu_utilization=1.0,
                    cpu_psi_some=0.86,
                    cpu_throttled_ratio=0.3,
                    process_churn_per_s=900.0,
                ),
                timeout=5,
            )
            for quiet in ("node-b", "node-e"):
                push(telemetry(quiet, collected_ms=now), timeout=5)

        class Real:
            address = agg.address

        code, doc = run_json(apiserver, Real, tmp_path, capsys)
    finally:
        agg.proc.stop()
    assert code == 0 and doc["model_version"].startswith("mlp-")
    moved = {(m["node"], m["target"]) for m in doc["moves"]}
    assert moved and all(node == "node-a" and target in ("node-b", "node-e") for node, target in moved)
    assert all(m["node_score"] < 40 and m["gain"] >= 20 for m in doc["moves"])
    assert "CPU" in doc["moves"][0]["node_reason"]
    assert apiserver.seen("POST") == []
