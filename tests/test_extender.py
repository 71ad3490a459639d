"""The kube-scheduler extender: request bodies shaped exactly as kube-scheduler sends them.

Unit tests drive scheduling.extender.Extender over a real snapshot and the real ONNX model;
integration tests POST to a real aggregator subprocess backed by a real redis-server. No
kube-scheduler runs here (no control plane on these machines): its requests are the
recorded bodies in tests/fixtures/extender/.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from doubles import ManualClock
from telemetry_factory import telemetry

from aggregator.batch import BatchScorer
from aggregator.errors import InvalidInput
from aggregator.snapshot import Snapshot
from aggregator.validate import validate_telemetry
from inference.model import InterferenceModel
from kubeapi.pods import pod_context
from scheduling.extender import SHADOW_SCORE, Extender, parse_args

FIXTURES = Path(__file__).parent / "fixtures" / "extender"
MODEL = InterferenceModel.load()


def body(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def make_extender(shadow=False, record=None, nodes=("node-quiet", "node-busy", "node-stale")):
    clock = ManualClock()
    snap = Snapshot()
    states = {"node-quiet": {}, "node-busy": {"cpu_utilization": 1.0, "cpu_psi_some": 0.9}, "node-stale": {}}
    for name in nodes:
        collected = clock() - (60_000 if name == "node-stale" else 0)
        snap.upsert(validate_telemetry(telemetry(name, collected_ms=collected, **states.get(name, {})), clock()))
    snap.recompute_fleet_median(clock(), 10_000)
    scorer = BatchScorer(snap, MODEL, max_staleness_ms=10_000, budget_ms=1000, clock_ms=clock)
    return Extender(scorer, pod_context, shadow=shadow, max_candidates=5000, record=record, clock_ms=clock)


@pytest.mark.parametrize("fixture", ["args_nodenames.json", "args_lowercase.json", "args_nodelist.json"])
def test_prioritize_accepts_every_casing_and_answers_host_priority_list(fixture):
    out = make_extender().prioritize(body(fixture))
    assert [h["Host"] for h in out] == ["node-quiet", "node-busy", "node-stale", "node-unknown"]
    by = {h["Host"]: h["Score"] for h in out}
    assert all(isinstance(s, int) and 0 <= s <= 10 for s in by.values())
    assert by["node-quiet"] > by["node-busy"]
    assert by["node-stale"] == by["node-unknown"] == 5  # the neutral fallback 50 -> 5


def test_shadow_prioritize_is_neutral_but_records_the_recommendation():
    recorded = []
    out = make_extender(shadow=True, record=recorded.append).prioritize(body("args_nodenames.json"))
    assert {h["Score"] for h in out} == {SHADOW_SCORE}
    (d,) = recorded
    assert d.mode == "shadow" and d.recommended == "node-quiet"
    assert d.pod_namespace == "shop" and d.pod_name == "checkout-7d9f8b6c5-x2x9z"
    assert d.pod_uid == "5b0c1e7e-3c1d-4a8e-9a55-2f6e3c9d1a10"
    assert d.statuses == ["SCORED", "SCORED", "STALE", "UNKNOWN_NODE"]
    assert d.slowdowns[2] is None and d.slowdowns[0] >= 1.0
    assert d.pod["profile"] == "latency-critical" and d.pod["qos"] == "GUARANTEED"
    assert d.recommended_reason


def test_filter_removes_only_scored_nodes_over_the_pods_tolerance_with_a_message():
    out = make_extender().filter(body("args_nodenames.json"))  # max-slowdown 2.0 in the fixture
    assert "node-busy" in out["FailedNodes"]
    assert "exceeds this pod's kubeattention.io/max-slowdown 2" in out["FailedNodes"]["node-busy"]
    assert out["NodeNames"] == ["node-quiet", "node-stale", "node-unknown"]  # stale/unknown never filtered
    assert out["Error"] == "" and out["FailedAndUnresolvableNodes"] == {}


def test_filter_with_full_nodelist_answers_a_nodelist():
    out = make_extender().filter(body("args_nodelist.json"))
    assert [i["metadata"]["name"] for i in out["Nodes"]["items"]] == ["node-quiet", "node-stale", "node-unknown"]
    assert out["Nodes"]["kind"] == "NodeList" and out["NodeNames"] is None


def test_filter_without_tolerance_or_in_shadow_mode_removes_nothing():
    args = body("args_nodenames.json")
    del args["Pod"]["metadata"]["annotations"]["kubeattention.io/max-slowdown"]
    assert make_extender().filter(args)["FailedNodes"] == {}
    assert make_extender(shadow=True).filter(body("args_nodenames.json"))["FailedNodes"] == {}


def test_unknown_fields_and_empty_lists():
    args = body("args_nodenames.json")
    args["SomethingNew"] = {"x": 1}
    args["Pod"]["spec"]["futureField"] = [1, 2]
    assert len(make_extender().prioritize(args)) == 4
    args["NodeNames"] = []
    assert make_extender().prioritize(args) == []
    assert make_extender().filter(args)["NodeNames"] == []


def test_5000_nodes():
    args = body("args_nodenames.json")
    args["NodeNames"] = [f"n{i}" for i in range(4997)] + ["node-quiet", "node-busy", "node-stale"]
    out = make_extender().prioritize(args)
    assert len(out) == 5000 and out[-3]["Score"] > out[-2]["Score"]


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda b: b.pop("Pod"), "Pod"),
        (lambda b: b.update(NodeNames=None), "NodeNames"),
        (lambda b: b.update(NodeNames="node-a"), "NodeNames"),
        (lambda b: b.update(NodeNames=["a", ""]), "NodeNames"),
        (lambda b: b.update(NodeNames=[f"n{i}" for i in range(5001)]), "NodeNames"),
        (
            lambda b: b["Pod"]["metadata"]["annotations"].update({"kubeattention.io/max-slowdown": "fast"}),
            "metadata.annotations[kubeattention.io/max-slowdown]",
        ),
    ],
)
def test_bad_args_name_the_field(mutate, field):
    args = body("args_nodenames.json")
    mutate(args)
    ext = make_extender()
    with pytest.raises(InvalidInput) as e:
        ext.filter(args) if "max-slowdown" in field else ext.prioritize(args)
    assert e.value.field == field


def test_duplicate_node_names_are_rejected():
    args = body("args_nodenames.json")
    args["NodeNames"] = ["node-quiet", "node-quiet"]
    with pytest.raises(InvalidInput, match="more than once"):
        make_extender().prioritize(args)


def test_parse_args_reads_nodelist_names():
    a = parse_args(body("args_nodelist.json"), 5000)
    assert a.node_names == ["node-quiet", "node-busy", "node-stale", "node-unknown"] and a.nodes is not None
    broken = copy.deepcopy(body("args_nodelist.json"))
    broken["Nodes"]["items"][1]["metadata"].pop("name")
    with pytest.raises(InvalidInput, match=r"Nodes.items\[1\].metadata.name"):
        parse_args(broken, 5000)


# ---------------------------------------------------------------- over HTTP, real processes


def post(port: int, path: str, data: bytes):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.integration
@pytest.mark.parametrize("shadow", [False, True])
def test_extender_over_http_records_decisions_in_redis(redis_server, shadow):
    import grpc
    from test_aggregator_integration import Aggregator, now_ms, push

    agg = Aggregator(redis_server.url, None, None, *(["--shadow"] if shadow else [])).start()
    try:
        with grpc.insecure_channel(agg.address) as ch:
            push(ch, telemetry("node-quiet", collected_ms=now_ms()))
            push(ch, telemetry("node-busy", collected_ms=now_ms(), cpu_utilization=1.0, cpu_psi_some=0.9))
        raw = (FIXTURES / "args_nodenames.json").read_bytes()
        status, out = post(agg.http_port, "/scheduler/prioritize", raw)
        assert status == 200 and len(out) == 4
        scores = {h["Host"]: h["Score"] for h in out}
        if shadow:
            assert set(scores.values()) == {SHADOW_SCORE}
        else:
            assert scores["node-quiet"] > scores["node-busy"]
        status, out = post(agg.http_port, "/scheduler/filter", raw)
        assert status == 200 and ("node-busy" in out["FailedNodes"]) is (not shadow)
        status, out = post(agg.http_port, "/scheduler/prioritize", b"{not json")
        assert status == 400 and out["Error"].startswith("body: not JSON")
        status, out = post(agg.http_port, "/scheduler/prioritize", b'{"NodeNames": ["a"]}')
        assert status == 400 and "Pod" in out["Error"]
        deadline = time.monotonic() + 5
        entries = []
        while time.monotonic() < deadline and not entries:
            entries = json.loads(
                subprocess.run(
                    ["redis-cli", "-p", str(redis_server.port), "--json", "xrange", "ka:decisions", "-", "+"],
                    capture_output=True,
                    text=True,
                ).stdout
                or "[]"
            )
            time.sleep(0.1)
        assert entries, "no decision recorded in ka:decisions"
        metrics = agg.http("/metrics")
        assert 'kubeattention_extender_requests_total{result="ok",verb="prioritize"}' in metrics
    finally:
        agg.proc.stop()


def test_shadow_annotations_are_written_on_the_pod_through_the_api(tmp_path):
    """The Kubernetes API server is simulated (no control plane here): the real kubernetes
    client sends the patch over real HTTP to tests/fixtures/k8s/apiserver.py."""
    from fixtures.k8s.apiserver import FakeApiServer, pod

    from aggregator.config import AggregatorConfig
    from kubeattention.aggregator_process import pod_annotator

    api = FakeApiServer().start()
    try:
        api.pods = [pod(name="checkout-7d9f8b6c5-x2x9z", namespace="shop", uid="u1", node=None)]
        cfg = AggregatorConfig(
            shadow=True,
            annotate_pods=True,
            insecure=True,
            kubeconfig=str(api.write_kubeconfig(tmp_path / "kubeconfig")),
        )
        recorded = []
        make_extender(shadow=True, record=recorded.append).prioritize(body("args_nodenames.json"))
        pod_annotator(cfg)(recorded[0])
        (patch,) = api.seen("PATCH")
        annotations = patch.body["metadata"]["annotations"]
        assert annotations["kubeattention.io/recommended-node"] == "node-quiet"
        assert float(annotations["kubeattention.io/score"]) > 50
        assert "latency-critical pod" in annotations["kubeattention.io/reason"]
        assert api.pods[0]["metadata"]["annotations"]["kubeattention.io/recommended-node"] == "node-quiet"
    finally:
        api.stop()
