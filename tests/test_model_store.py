"""Model checks, the ka:model:* keys and the reloader, in-process: real redis-server, real ONNX Runtime.

The integration side (aggregator subprocesses, gRPC, the CLI) is in test_model_serving.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time

import numpy as np
import pytest
import redis
from doubles import FormulaModel, ManualClock
from model_files import default_with, linear_model
from telemetry_factory import telemetry

from aggregator.batch import BatchScorer
from aggregator.metrics import AggregatorMetrics
from aggregator.model_reload import ModelReloader, ServingModel, serving_model_from_file
from aggregator.model_store import KEEP_VERSIONS, ModelConflict, ModelRefused, ModelStore, check_model, sha256_hex
from aggregator.snapshot import Snapshot
from aggregator.store import RedisStore
from aggregator.validate import validate_telemetry
from inference.model import DEFAULT_MODEL_PATH, InterferenceModel
from wire import schema
from wire.schema import PodContext, Profile

DEFAULT_BYTES = DEFAULT_MODEL_PATH.read_bytes()


def refusal(data: bytes) -> ModelRefused:
    with pytest.raises(ModelRefused) as info:
        check_model(data, "test.onnx")
    return info.value


# ----------------------------------------------------------------------------- check_model


def test_the_shipped_model_and_a_linear_model_pass_the_checks():
    assert check_model(DEFAULT_BYTES, "default").version.startswith("mlp-")
    m = check_model(linear_model("lin-1", bias=float(np.log(2.0))), "lin")
    assert m.version == "lin-1"
    # the warm-up really ran the graph: log slowdown log(2) -> slowdown 2 everywhere
    x = np.zeros((3, schema.NUM_FEATURES), dtype=np.float32)
    np.testing.assert_allclose(m.predict_slowdown(x), 2.0, rtol=1e-6)


@pytest.mark.parametrize(
    "data, reason, words",
    [
        (b"", "corrupt", "empty (0 bytes)"),
        (b"this is not protobuf at all", "corrupt", "not a loadable ONNX model"),
        (DEFAULT_BYTES[: len(DEFAULT_BYTES) // 2], "corrupt", "not a loadable ONNX model"),
        (
            default_with(schema_version="2", model_version="mlp-schema2"),
            "mismatch",
            "schema_version is 2, this code speaks 1",
        ),
        (
            default_with(feature_names=json.dumps(list(reversed(schema.FEATURE_NAMES)))),
            "mismatch",
            "feature_names differ from schema.FEATURE_NAMES at column 0: 'priority' != 'cpu_utilization'",
        ),
        (linear_model("lin-25", width=25), "mismatch", "has shape [None, 25], expected [None, 26]"),
        (linear_model("lin-out", output="probability"), "mismatch", "output is 'probability'"),
        (linear_model("bad version/with slash"), "mismatch", "model_version 'bad version/with slash' is not"),
        (linear_model("lin-nan", weight=float("nan")), "warmup", "predicted NaN or infinite slowdowns"),
    ],
)
def test_bad_models_are_refused_with_the_reason(data, reason, words):
    e = refusal(data)
    assert e.reason == reason
    assert words in str(e) and "test.onnx" in str(e)


def test_metadata_without_the_required_keys_is_a_mismatch():
    import onnx

    m = onnx.load_from_string(linear_model("lin-x"))
    del m.metadata_props[:]
    e = refusal(m.SerializeToString())
    assert e.reason == "mismatch" and "metadata lacks model_version" in str(e)


# ---------------------------------------------------------------------------- ModelStore


@pytest.fixture
def models(redis_server):
    store = RedisStore(redis_server.url)
    yield ModelStore(store.client, "ka:", store.where)
    store.close()


@pytest.fixture
def raw(redis_server):
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield r
    r.close()


def test_publish_writes_the_documented_keys_and_announces_it(models, raw):
    ps = raw.pubsub()
    ps.subscribe("ka:model:updates")
    assert ps.get_message(timeout=2)["type"] == "subscribe"  # subscribed before the publish
    data = linear_model("lin-1")
    published, changed = models.publish(data, "lin-1", "lin.onnx", by="alice@laptop", now_ms=1_700_000_000_000)
    assert changed and published.version == "lin-1" and published.previous == ""
    active = raw.hgetall("ka:model:{active}")
    assert set(active) == {
        "version",
        "sha256",
        "size_bytes",
        "onnx_base64",
        "published_at_ms",
        "published_by",
        "source",
        "previous",
    }
    assert base64.b64decode(active["onnx_base64"]) == data
    assert active["sha256"] == hashlib.sha256(data).hexdigest() and active["size_bytes"] == str(len(data))
    assert active["published_by"] == "alice@laptop" and active["source"] == "lin.onnx"
    assert raw.hgetall("ka:model:{active}:version:lin-1") == active
    assert raw.zrange("ka:model:{active}:history", 0, -1, withscores=True) == [("lin-1", 1_700_000_000_000)]
    msg = ps.get_message(timeout=2)
    assert msg["type"] == "message" and msg["data"] == f"lin-1 {active['sha256']}"
    ps.close()
    assert models.read_active().data == data


def test_publishing_the_same_bytes_again_changes_nothing(models, raw):
    data = linear_model("lin-1")
    models.publish(data, "lin-1", "a.onnx", now_ms=1000)
    _, changed = models.publish(data, "lin-1", "a.onnx", now_ms=2000)
    assert not changed and raw.hget("ka:model:{active}", "published_at_ms") == "1000"


def test_one_version_names_one_model(models, raw):
    models.publish(linear_model("lin-1"), "lin-1", "a.onnx")
    other = linear_model("lin-1", bias=0.5)
    with pytest.raises(ModelConflict, match="'lin-1' was already published with different bytes"):
        models.publish(other, "lin-1", "b.onnx")
    assert base64.b64decode(raw.hget("ka:model:{active}", "onnx_base64")) == linear_model("lin-1")


def test_rollback_reactivates_the_previous_version(models):
    one, two = linear_model("lin-1"), linear_model("lin-2", bias=0.3)
    models.publish(one, "lin-1", "1.onnx", now_ms=1000)
    models.publish(two, "lin-2", "2.onnx", now_ms=2000)
    now, replaced = models.rollback(now_ms=3000)
    assert now.version == "lin-1" and now.data == one and replaced.version == "lin-2"
    assert models.active_head()[:2] == ("lin-1", sha256_hex(one))
    assert models.read_active().previous == "lin-2"
    now, _ = models.rollback(now_ms=4000)  # and back again
    assert now.version == "lin-2"
    with pytest.raises(ModelConflict, match="'lin-9' is not kept"):
        models.rollback("lin-9")


def test_only_the_last_versions_are_kept(models, raw):
    for i in range(KEEP_VERSIONS + 2):
        models.publish(linear_model(f"lin-{i}", bias=i / 10), f"lin-{i}", "x.onnx", now_ms=1000 + i)
    kept = [m.version for m, _ in models.history()]
    assert kept == [f"lin-{i}" for i in range(KEEP_VERSIONS + 1, 1, -1)]
    assert not raw.exists("ka:model:{active}:version:lin-0") and not raw.exists("ka:model:{active}:version:lin-1")
    assert models.read_active().version == f"lin-{KEEP_VERSIONS + 1}"


def test_a_damaged_active_hash_is_refused_with_the_field_named(models, raw):
    data = linear_model("lin-1")
    models.publish(data, "lin-1", "a.onnx")
    raw.hset("ka:model:{active}", "onnx_base64", base64.b64encode(data[:-10]).decode())
    with pytest.raises(ModelRefused, match="hash to sha256 .* the hash says") as info:
        models.read_active()
    assert info.value.reason == "checksum"
    raw.hdel("ka:model:{active}", "onnx_base64")
    with pytest.raises(ModelRefused, match="onnx_base64 absent") as info:
        models.read_active()
    assert info.value.reason == "incomplete"
    # publishing the same bytes again repairs it (not "already active")
    _, changed = models.publish(data, "lin-1", "a.onnx")
    assert changed and models.read_active().data == data


# -------------------------------------------------------------------------- ModelReloader


def _reloader(models, redis_server, metrics, installed):
    file_model = serving_model_from_file(InterferenceModel.load())
    store = RedisStore(redis_server.url)
    return ModelReloader(models, store.pubsub, file_model, installed.append, interval_s=60, metrics=metrics)


def _sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels or None)


def test_reloader_swaps_valid_models_and_refuses_bad_ones_once(models, raw, redis_server, caplog):
    metrics, installed = AggregatorMetrics(), []
    reloader = _reloader(models, redis_server, metrics, installed)
    assert reloader.check_once() == "none-published"
    models.publish(DEFAULT_BYTES, reloader.current.version, "default.onnx")
    assert reloader.check_once() == "unchanged"  # Redis holds the very bytes already served

    models.publish(linear_model("lin-1"), "lin-1", "lin.onnx")
    assert reloader.check_once() == "swapped"
    assert installed[-1].version == "lin-1" and installed[-1].origin == "redis"
    assert (
        _sample(
            metrics,
            "kubeattention_aggregator_model_info",
            version="lin-1",
            source="redis",
            sha256=installed[-1].sha256[:12],
        )
        == 1
    )
    assert _sample(metrics, "kubeattention_aggregator_model_reloads_total") == 1

    # a mismatched model written straight into Redis (bypassing publish's checks)
    bad = default_with(schema_version="2", model_version="mlp-schema2")
    raw.hset(
        "ka:model:{active}",
        mapping={
            "version": "mlp-schema2",
            "sha256": sha256_hex(bad),
            "onnx_base64": base64.b64encode(bad).decode(),
            "published_at_ms": "5",
        },
    )
    with caplog.at_level(logging.ERROR, logger="aggregator.model_reload"):
        assert reloader.check_once() == "refused"
        assert reloader.check_once() == "refused"  # remembered: not reloaded, not logged again
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "refusing model mlp-schema2" in errors[0] and "schema_version is 2" in errors[0]
    assert "still serving lin-1" in errors[0]
    assert _sample(metrics, "kubeattention_aggregator_model_refused_total", reason="mismatch") == 1
    assert reloader.current.version == "lin-1" and len(installed) == 1

    # the same bad bytes published again (a new publication) are looked at again, and refused again
    raw.hset("ka:model:{active}", "published_at_ms", "6")
    assert reloader.check_once() == "refused"
    assert _sample(metrics, "kubeattention_aggregator_model_refused_total", reason="mismatch") == 2

    models.publish(linear_model("lin-2", bias=0.1), "lin-2", "lin2.onnx")
    assert reloader.check_once() == "swapped" and reloader.current.version == "lin-2"


def test_reloader_keeps_serving_when_redis_is_down(models, redis_server, caplog):
    metrics, installed = AggregatorMetrics(), []
    reloader = _reloader(models, redis_server, metrics, installed)
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="aggregator.model_reload"):
        assert reloader.check_once() == "unavailable"
        assert reloader.check_once() == "unavailable"
    warnings = [r.getMessage() for r in caplog.records if "cannot check Redis" in r.getMessage()]
    assert len(warnings) == 1 and "still serving mlp-" in warnings[0]
    redis_server.start()
    models.publish(linear_model("lin-1"), "lin-1", "lin.onnx")
    assert reloader.check_once() == "swapped"


def test_reloader_threads_follow_a_publish_through_pubsub(models, redis_server):
    installed, swapped = [], threading.Event()

    def install(serving: ServingModel) -> None:
        installed.append(serving)
        swapped.set()

    file_model = serving_model_from_file(InterferenceModel.load())
    store = RedisStore(redis_server.url)
    # interval 60 s: only the pub/sub message can trigger the reload within the wait below
    reloader = ModelReloader(models, store.pubsub, file_model, install, interval_s=60)
    reloader.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not store.client.pubsub_numsub("ka:model:updates")[0][1]:
            time.sleep(0.02)
        models.publish(linear_model("lin-1"), "lin-1", "lin.onnx")
        assert swapped.wait(5), "the published model was not picked up within 5 s"
        assert installed[-1].version == "lin-1"
    finally:
        reloader.stop()
        store.close()


# ------------------------------------------------------------------ BatchScorer and a swap


class GatedModel(FormulaModel):
    """A FormulaModel whose predict waits until released, to hold a call in flight."""

    def __init__(self, version: str):
        super().__init__()
        self.version = version
        self.entered, self.release = threading.Event(), threading.Event()

    def predict_slowdown(self, x):
        self.entered.set()
        self.release.wait(5)
        return super().predict_slowdown(x)


def test_a_call_in_flight_finishes_on_and_names_the_model_it_started_with():
    clock = ManualClock()
    snap = Snapshot()
    snap.upsert(validate_telemetry(telemetry("a", collected_ms=clock(), cpu_psi_some=0.2), clock()))
    old, new = GatedModel("old-1"), FormulaModel()
    new.version = "new-2"
    scorer = BatchScorer(snap, old, max_staleness_ms=10_000, budget_ms=10_000, clock_ms=clock)
    pod = PodContext(cpu_request_cores=0.5, profile=Profile.LATENCY_CRITICAL)
    results = []
    t = threading.Thread(target=lambda: results.append(scorer.score(pod, ["a"])))
    t.start()
    assert old.entered.wait(5)
    scorer.model = new  # what the reloader's install does
    old.release.set()
    t.join(5)
    assert results[0].model_version == "old-1" and results[0].status.tolist() == [1]
    after = scorer.score(pod, ["a"])
    # Each model was asked twice for its one request: the scores, then the reason (every metric's
    # effect, one batched call: inference.scoring.effects) — the old model named its own reason.
    assert after.model_version == "new-2" and new.calls == 2 and old.calls == 2
    # nothing cached from the old model leaks into the new one's answer: same reason, same node row
    assert after.reasons == results[0].reasons


def test_publish_rollback_and_reload_work_on_a_redis_cluster():
    """The {active} hash tag keeps every model key on one slot; the announcement crosses nodes."""
    from redis_cluster import RedisClusterProcs

    cluster = RedisClusterProcs(masters=3, replicas_per_master=0).start()
    try:
        store = RedisStore(cluster.url)
        models = ModelStore(store.client, "ka:", store.where)
        installed, swapped = [], threading.Event()

        def install(serving: ServingModel) -> None:
            installed.append(serving)
            swapped.set()

        reloader = ModelReloader(
            models, store.pubsub, serving_model_from_file(InterferenceModel.load()), install, interval_s=60
        )
        assert reloader.check_once() == "none-published"
        reloader.start()
        try:
            time.sleep(0.5)  # let the subscription settle; a missed message would only delay to the 60 s check
            for i in range(KEEP_VERSIONS + 1):
                models.publish(linear_model(f"lin-{i}", bias=i / 10), f"lin-{i}", "x.onnx", now_ms=1000 + i)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (not installed or installed[-1].version != f"lin-{KEEP_VERSIONS}"):
                time.sleep(0.02)
            assert installed and installed[-1].version == f"lin-{KEEP_VERSIONS}"
        finally:
            reloader.stop()
        assert len(models.history()) == KEEP_VERSIONS
        now, replaced = models.rollback(now_ms=9000)
        assert now.version == f"lin-{KEEP_VERSIONS - 1}" and replaced.version == f"lin-{KEEP_VERSIONS}"
        store.close()
    finally:
        cluster.stop()


def test_keys_follow_the_configured_prefix():
    from aggregator.model_store import ModelKeys

    k = ModelKeys("prod:")
    assert (k.active, k.version("mlp-1"), k.history, k.updates) == (
        "prod:model:{active}",
        "prod:model:{active}:version:mlp-1",
        "prod:model:{active}:history",
        "prod:model:updates",
    )
