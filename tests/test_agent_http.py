"""The agent's HTTP surface through FastAPI's TestClient (real app, real registry)."""

from __future__ import annotations

import math
import warnings

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.exposition import AgentMetrics
from agent.http_app import build_app
from agent.latest_vector import LatestVector
from agent.vector import NodeVector
from wire.schema import METRIC_BY_NAME, METRIC_NAMES, METRICS, NUM_METRICS

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2; the client works the same
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

T0_MS = 1_700_000_000_000


class FakeClock:
    def __init__(self):
        self.ms = T0_MS

    def monotonic(self) -> float:
        return self.ms / 1000

    def wall_ms(self) -> int:
        return self.ms


def vector(collected_at_ms: int = T0_MS) -> NodeVector:
    values = [0.3] * NUM_METRICS
    available = [True] * NUM_METRICS
    reasons = {}
    values[METRIC_NAMES.index("runqueue_latency_p99_us")] = 2400.0
    values[METRIC_NAMES.index("memory_bandwidth_gbps")] = 12.5
    for name in ("cpu_throttled_ratio", "llc_mpki"):
        i = METRIC_NAMES.index(name)
        values[i], available[i] = math.nan, False
        reasons[name] = f"{name} cannot be measured here"
    return NodeVector("node-a", collected_at_ms, tuple(values), tuple(available), reasons)


@pytest.fixture
def setup():
    store, clock = LatestVector(), FakeClock()
    metrics = AgentMetrics(store, "node-a", "9.9.9")
    client = TestClient(build_app(store, metrics, interval_s=1.0, clock=clock))
    return store, metrics, clock, client


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def test_healthz_always_and_readyz_after_first_vector(setup):
    store, _, clock, client = setup
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503 and "no vector collected yet" in r.text
    assert client.get("/v1/node").status_code == 503
    store.publish(vector())
    clock.ms += 400
    r = client.get("/readyz")
    assert r.status_code == 200 and "13/15 metrics measured" in r.text


def test_readyz_turns_503_when_collection_is_stuck(setup):
    store, _, clock, client = setup
    store.publish(vector())
    clock.ms += 60_000
    r = client.get("/readyz")
    assert r.status_code == 503 and "60.0 s old" in r.text
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_metrics_missing_metric_is_absent_not_zero(setup):
    store, metrics, _, client = setup
    assert "kubeattention_node_cpu_utilization_ratio" not in scrape(client)  # nothing before the first vector
    store.publish(vector())
    samples = scrape(client)
    assert METRIC_BY_NAME["cpu_throttled_ratio"].prom_name not in samples
    assert METRIC_BY_NAME["llc_mpki"].prom_name not in samples
    assert samples["kubeattention_node_cpu_utilization_ratio"][0].value == pytest.approx(0.3)
    # base units: run-queue p99 in seconds, memory bandwidth in bytes per second
    assert samples["kubeattention_node_runqueue_latency_p99_seconds"][0].value == pytest.approx(0.0024)
    assert samples["kubeattention_node_memory_bandwidth_bytes_per_second"][0].value == pytest.approx(12.5e9)
    avail = {s.labels["metric"]: s.value for s in samples["kubeattention_node_metric_available"]}
    assert set(avail) == set(METRIC_NAMES)
    assert avail["cpu_throttled_ratio"] == 0.0 and avail["cpu_utilization"] == 1.0
    exposed = {m.prom_name for m in METRICS} & set(samples)
    assert len(exposed) == 13


def test_agent_metrics(setup):
    store, metrics, _, client = setup
    store.publish(vector())
    metrics.record_push(True, 1_700_000_001.5)
    metrics.record_push(False, 1_700_000_002.5)
    metrics.record_push(False, 1_700_000_003.5)
    metrics.collect_duration.observe(0.002)
    samples = scrape(client)
    pushes = {s.labels["result"]: s.value for s in samples["kubeattention_agent_pushes_total"]}
    assert pushes == {"ok": 1.0, "error": 2.0}
    assert samples["kubeattention_agent_last_push_success_timestamp_seconds"][0].value == 1_700_000_001.5
    assert samples["kubeattention_agent_collect_duration_seconds_count"][0].value == 1.0
    info = samples["kubeattention_agent_info"][0]
    assert info.labels == {"version": "9.9.9", "node": "node-a"} and info.value == 1.0


def test_v1_node_shape(setup):
    store, _, clock, client = setup
    store.publish(vector())
    clock.ms += 1500
    body = client.get("/v1/node").json()
    assert body["node_name"] == "node-a"
    assert body["collected_at_ms"] == T0_MS
    assert body["collected_at"].startswith("2023-11-14T22:13:20")
    assert body["age_seconds"] == pytest.approx(1.5)
    assert body["mask"] == [name not in ("cpu_throttled_ratio", "llc_mpki") for name in METRIC_NAMES]
    assert body["missing_reasons"] == {
        "cpu_throttled_ratio": "cpu_throttled_ratio cannot be measured here",
        "llc_mpki": "llc_mpki cannot be measured here",
    }
    metric = body["metrics"][METRIC_NAMES.index("runqueue_latency_p99_us")]
    assert metric == {"name": "runqueue_latency_p99_us", "unit": "us", "value": 2400.0, "available": True}
    missing = body["metrics"][METRIC_NAMES.index("llc_mpki")]
    assert missing["value"] is None and missing["available"] is False and missing["reason"]


def test_each_app_has_its_own_registry():
    clients = []
    for node in ("node-a", "node-b"):
        store = LatestVector()
        clients.append(TestClient(build_app(store, AgentMetrics(store, node, "1"), interval_s=1.0)))
    nodes = [scrape(c)["kubeattention_agent_info"][0].labels["node"] for c in clients]
    assert nodes == ["node-a", "node-b"]
