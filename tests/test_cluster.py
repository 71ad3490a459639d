"""Redis Cluster and several aggregator replicas, on real processes.

A real 3-master + 3-replica Redis Cluster on loopback ports (tests/redis_cluster.py), the
real store and the real ``kubeattention aggregator``. A master is killed with SIGKILL and
its replica promoted by the cluster itself; nothing is simulated.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import grpc
import pytest
from redis_cluster import NODE_TIMEOUT_MS, RedisClusterProcs
from telemetry_factory import batch, telemetry
from test_aggregator_integration import Aggregator, kubeattention

from aggregator.store import Keys, RedisStore, cluster_nodes
from aggregator.validate import validate_telemetry
from wire.v1 import scoring_pb2, scoring_pb2_grpc, telemetry_pb2_grpc

pytestmark = pytest.mark.integration

#: Longest a push may keep failing after a master dies: detection (cluster-node-timeout),
#: the replica's election, and the client's re-read of the slot map.
FAILOVER_BOUND_S = NODE_TIMEOUT_MS / 1000 + 6.0


def start_aggregator(url: str, *extra: str) -> Aggregator:
    return Aggregator(url, None, None, "--insecure", *extra).start()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def cluster():
    c = RedisClusterProcs().start()
    yield c
    c.stop()


def test_cluster_url_lists_every_start_up_node_and_keeps_credentials_out_of_messages():
    first, nodes = cluster_nodes("redis+cluster://ka:s3cret@10.0.0.1:7000,10.0.0.2:7001/0?ssl_cert_reqs=none")
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert first == "redis://ka:s3cret@10.0.0.1:7000/0?ssl_cert_reqs=none"
    assert cluster_nodes("rediss+cluster://h:1")[0] == "rediss://h:1"
    with pytest.raises(ValueError, match="'h' in redis\\+cluster:// is not HOST:PORT"):
        cluster_nodes("redis+cluster://h:1,h")


def test_node_keys_share_a_slot_and_updates_reach_every_node(cluster):
    store = RedisStore(cluster.url)
    try:
        assert store.where.startswith("cluster 127.0.0.1:")
        for name in ("n1", "node-b", "ip-10-0-0-7.ec2.internal"):
            slots = {
                cluster.cli(cluster.ports[0], "cluster", "keyslot", k).strip()
                for k in (store.keys.node(name), store.keys.history(name))
            }
            assert len(slots) == 1, f"{name}: node hash and history on different slots {slots}"
        # a subscriber on a master that holds none of the keys still sees the update
        owner = cluster.master_for_key(store.keys.node("n1"))
        other = next(p for p in cluster.ports if p != owner and cluster.role(p) == "master")
        sub = subprocess.Popen(
            ["redis-cli", "-p", str(other), "subscribe", store.keys.updates], stdout=subprocess.PIPE, text=True
        )
        time.sleep(0.3)
        rec = validate_telemetry(telemetry("n1", collected_ms=now_ms()), now_ms())
        store.write(rec)
        time.sleep(0.3)
        sub.terminate()
        assert f"n1 {rec.received_at_ms}" in sub.communicate(timeout=5)[0]
        records, problems = store.read_all()
        assert problems == [] and "n1" in {r.node_name for r in records}
        assert store.read_node("n1").received_at_ms == rec.received_at_ms
        # the operator's view reads the cluster too
        out = kubeattention("inspect", "--redis-url", cluster.url, "--json", "n1", timeout=60)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["redis"].startswith("cluster ") and doc["nodes"][0]["node"] == "n1"
    finally:
        store.close()


def test_cluster_url_that_reaches_no_node_refuses_to_start_with_the_nodes_named():
    unreachable = "redis+cluster://127.0.0.1:1,127.0.0.1:2"
    out = kubeattention("aggregator", "--redis-url", unreachable, "--insecure", timeout=60)
    assert out.returncode == 2
    assert "cannot start" in out.stderr and "127.0.0.1:1" in out.stderr


def test_aggregator_keeps_pushing_and_scoring_through_a_master_failover(cluster):
    # the default staleness limit (10 s): a ~2.5 s failover must not turn a node stale; the
    # tests' usual 3 s would, by a few hundred ms, for a node whose last push was just before it
    agg = start_aggregator(cluster.url, "--max-staleness-ms", "10000")
    names = [f"node-{i}" for i in range(30)]
    stop = threading.Event()
    push_log: list[tuple[float, str, bool]] = []
    score_errors: list[str] = []
    score_calls = [0]
    try:
        with grpc.insecure_channel(agg.address) as ch:
            push = telemetry_pb2_grpc.TelemetryServiceStub(ch).Push
            score = scoring_pb2_grpc.ScoringServiceStub(ch).BatchScore
            for n in names:
                push(telemetry(n, collected_ms=now_ms()), timeout=5)

            def pusher():
                while not stop.is_set():
                    for n in names:
                        try:
                            push(telemetry(n, collected_ms=now_ms()), timeout=5)
                            push_log.append((time.monotonic(), n, True))
                        except grpc.RpcError as e:
                            assert e.code() == grpc.StatusCode.UNAVAILABLE, e.details()
                            push_log.append((time.monotonic(), n, False))
                    time.sleep(0.05)

            def scorer():
                while not stop.is_set():
                    try:
                        resp = score(batch(*names), timeout=2)
                        score_calls[0] += 1
                        bad = [s.node_name for s in resp.scores if s.status != scoring_pb2.SCORE_STATUS_SCORED]
                        if bad:
                            score_errors.append(f"not SCORED: {bad[:3]}")
                    except grpc.RpcError as e:
                        score_errors.append(f"{e.code()}: {e.details()}")
                    time.sleep(0.02)

            threads = [threading.Thread(target=pusher), threading.Thread(target=scorer)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            victim = cluster.master_for_key(Keys().node("node-0"))
            killed_at = time.monotonic()
            cluster.kill(victim)
            promoted_after = cluster.wait_failover(victim)
            time.sleep(3.0)
            stop.set()
            for t in threads:
                t.join(10)
        # every push after the kill succeeded again within the bound, and none failed after it
        failures = [t - killed_at for t, _, ok in push_log if not ok and t >= killed_at]
        last_failure = max(failures, default=0.0)
        assert last_failure < FAILOVER_BOUND_S, f"pushes failed until {last_failure:.1f} s after the kill"
        after = {n for t, n, ok in push_log if ok and t > killed_at + last_failure}
        assert after == set(names), f"no successful push after the failover for {set(names) - after}"
        # BatchScore answered every call, from the snapshot, all fresh
        assert score_calls[0] > 20 and score_errors == []
        # the promoted replica holds the node hashes the dead master had
        store = RedisStore(cluster.url)
        try:
            records, problems = store.read_all()
            assert problems == [] and set(names) <= {r.node_name for r in records}
        finally:
            store.close()
        print(
            f"\nfailover: replica promoted {promoted_after:.2f} s after SIGKILL of the master on port {victim}; "
            f"pushes failed for {last_failure:.2f} s ({len(failures)} UNAVAILABLE answers)"
        )
    finally:
        stop.set()
        agg.proc.stop()


def _scores(channel, names):
    resp = scoring_pb2_grpc.ScoringServiceStub(channel).BatchScore(batch(*names), timeout=5)
    return [(s.node_name, s.status, round(s.score, 6), round(s.predicted_slowdown, 6)) for s in resp.scores]


@pytest.mark.parametrize("where", ["single", "cluster"])
def test_two_aggregators_on_one_redis_give_identical_scores(where, cluster, redis_server):
    url = cluster.url if where == "cluster" else redis_server.url
    # B resyncs only every 60 s: within the test, only ka:updates can bring it A's pushes
    a = start_aggregator(url)
    b = start_aggregator(url, "--resync-interval-s", "60")  # the later flag wins
    names = [f"rep-{i}" for i in range(12)]
    try:
        with grpc.insecure_channel(a.address) as ca, grpc.insecure_channel(b.address) as cb:
            push = telemetry_pb2_grpc.TelemetryServiceStub(ca).Push
            for i, n in enumerate(names):
                push(telemetry(n, collected_ms=now_ms(), cpu_psi_some=i / 20, cpu_utilization=0.1 + i / 15), timeout=5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _scores(ca, names) != _scores(cb, names):
                time.sleep(0.05)
            sa, sb = _scores(ca, names), _scores(cb, names)
            assert sa == sb
            assert {s[1] for s in sa} == {scoring_pb2.SCORE_STATUS_SCORED}
            assert len({s[2] for s in sa}) > 1  # the nodes differ, so equal answers are not trivially equal
            # an update of one node reaches B too
            push(telemetry("rep-0", collected_ms=now_ms(), cpu_psi_some=0.9, cpu_utilization=1.0), timeout=5)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 5 and _scores(cb, names)[0] != _scores(ca, names)[0]:
                time.sleep(0.02)
            assert _scores(cb, names) == _scores(ca, names) and _scores(ca, names)[0] != sa[0]
    finally:
        a.proc.stop()
        b.proc.stop()
