"""RedisStore against a real redis-server on a loopback port."""

import math
import subprocess
import time

import numpy as np
import pytest
import redis
from telemetry_factory import telemetry

from aggregator.errors import StoreUnavailable
from aggregator.store import CorruptRecord, RedisStore, decode_record, encode_record
from aggregator.validate import validate_telemetry

NOW = time.time_ns() // 1_000_000  # ka:nodes is pruned against the wall clock (TTL 1 h here)


@pytest.fixture
def store(redis_server):
    s = RedisStore(redis_server.url, node_ttl_s=3600, history_maxlen=5)
    yield s
    s.close()


def test_layout_is_readable_with_plain_redis_cli(store, redis_server):
    store.write(validate_telemetry(telemetry("node-a"), NOW))
    cli = ["redis-cli", "-p", str(redis_server.port)]
    keys = set(subprocess.check_output(cli + ["--scan"], text=True).split())
    assert keys == {"ka:node:{node-a}", "ka:nodes", "ka:history:{node-a}"}
    assert subprocess.check_output(cli + ["hget", "ka:node:{node-a}", "memory_utilization"], text=True).strip() == "0.3"
    # a missing metric has no field at all: never a 0
    assert subprocess.check_output(cli + ["hexists", "ka:node:{node-a}", "llc_miss_ratio"], text=True).strip() == "0"
    assert subprocess.check_output(cli + ["hget", "ka:node:{node-a}", "mask"], text=True).strip() == "111110011000001"
    ttl = int(subprocess.check_output(cli + ["ttl", "ka:node:{node-a}"], text=True))
    assert 3500 < ttl <= 3600
    assert subprocess.check_output(cli + ["zscore", "ka:nodes", "node-a"], text=True).strip() == str(NOW)


def test_roundtrip_keeps_values_mask_and_reasons(store):
    msg = telemetry("node-a", cpu_psi_some=0.25)
    msg.top_offenders.add(namespace="batch", name="ffmpeg-7c9d", metric="process_churn_per_s", value=3.5)
    rec = validate_telemetry(msg, NOW)
    store.write(rec)
    back = store.read_node("node-a")
    assert back.node_name == "node-a" and back.received_at_ms == NOW
    assert np.array_equal(back.mask, rec.mask)
    assert np.allclose(back.values[rec.mask], rec.values[rec.mask])
    assert np.isnan(back.values[~rec.mask]).all()
    assert back.missing_reasons == rec.missing_reasons
    assert back.offenders == rec.offenders and back.offenders[0].pod == "batch/ffmpeg-7c9d"
    assert store.read_node("nobody") is None


def test_a_metric_that_goes_missing_loses_its_old_value(store):
    store.write(validate_telemetry(telemetry("node-a", cpu_psi_some=0.25), NOW))
    msg = telemetry("node-a")
    msg.available[2] = False
    msg.values[2] = math.nan
    store.write(validate_telemetry(msg, NOW + 1000))
    assert not store.read_node("node-a").mask[2]
    assert "cpu_psi_some" not in store.client.hgetall("ka:node:{node-a}")


def test_history_is_capped_and_updates_are_published(store):
    ps = store.pubsub()
    ps.subscribe("ka:updates")
    ps.get_message(timeout=1)
    for i in range(50):
        store.write(validate_telemetry(telemetry("node-a"), NOW + i))
    assert store.client.xlen("ka:history:{node-a}") < 50  # approximate MAXLEN trims in whole macro-nodes
    assert len(store.history("node-a", count=3)) == 3
    msg = ps.get_message(timeout=1)
    assert msg["data"] == f"node-a {NOW}"


def test_one_flush_publishes_one_message_that_every_replica_applies_line_by_line(store, redis_server):
    from aggregator.refresher import Refresher
    from aggregator.snapshot import Snapshot

    ps = store.pubsub()
    ps.subscribe("ka:updates")
    ps.get_message(timeout=1)
    a, b = validate_telemetry(telemetry("node-a"), NOW), validate_telemetry(telemetry("node-b"), NOW + 5)
    store._write_batch([a, b])  # what one group commit of two pushes sends
    msg = ps.get_message(timeout=1)
    assert msg["data"] == f"node-a {NOW}\nnode-b {NOW + 5}"
    assert ps.get_message(timeout=0.2) is None  # one message per flush, not per push
    assert store.client.zscore("ka:nodes", "node-b") == NOW + 5

    replica = RedisStore(redis_server.url)  # another aggregator: it wrote neither node
    snap = Snapshot()
    Refresher(replica, snap, interval_s=60, max_staleness_ms=10_000, clock_ms=lambda: NOW)._apply(msg["data"])
    assert snap.received_at("node-a") == NOW and snap.received_at("node-b") == NOW + 5
    replica.close()


def test_read_all_skips_expired_nodes_and_reports_corrupt_ones(store):
    store.write(validate_telemetry(telemetry("node-a"), NOW))
    store.write(validate_telemetry(telemetry("node-b"), NOW))
    store.client.delete("ka:node:{node-a}")  # as if its TTL ran out
    store.client.hset("ka:node:{node-c}", mapping={"mask": "1"})
    store.client.zadd("ka:nodes", {"node-c": NOW})
    records, problems = store.read_all()
    assert [r.node_name for r in records] == ["node-b"]
    assert len(problems) == 1 and "node-c" in problems[0] and "mask" in problems[0]


def test_index_prunes_entries_past_the_ttl(store):
    store.write(validate_telemetry(telemetry("old"), NOW))
    store.write(validate_telemetry(telemetry("new"), NOW + 59_000))  # TTL 3600 s
    assert store.read_index(now_ms=NOW + 3_601_000) == {"new": NOW + 59_000}
    assert store.client.zscore("ka:nodes", "old") is None


@pytest.mark.parametrize(
    "change,words",
    [
        ({"mask": "10"}, "mask"),
        ({"cpu_utilization": "nan"}, "cpu_utilization"),
        ({"cpu_utilization": "7"}, "cpu_utilization"),
        ({"collected_at_ms": "soon"}, "soon"),
        ({"missing_reasons": "[1]"}, "missing_reasons"),
        ({"offenders": "[[1, 2]]"}, "node-a"),
    ],
)
def test_decode_names_what_is_corrupt(change, words):
    fields = encode_record(validate_telemetry(telemetry("node-a"), NOW))
    fields.update(change)
    with pytest.raises(CorruptRecord, match=words):
        decode_record("node-a", fields)


def test_decode_of_absent_field():
    fields = encode_record(validate_telemetry(telemetry("node-a"), NOW))
    del fields["received_at_ms"]
    with pytest.raises(CorruptRecord, match="received_at_ms"):
        decode_record("node-a", fields)


def test_redis_gone_is_store_unavailable_naming_where(redis_server):
    store = RedisStore(redis_server.url)
    redis_server.stop()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{redis_server.port}"):
        store.write(validate_telemetry(telemetry(), NOW))
    with pytest.raises(StoreUnavailable):
        store.read_all()
    assert store.ping() is False
    redis_server.start()
    store.write(validate_telemetry(telemetry(), NOW))
    assert store.read_node("node-a") is not None
    assert isinstance(store.client, redis.Redis)
