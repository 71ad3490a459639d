"""The whole path with real processes: agents → aggregator → Redis → BatchScore.

A real agent measures this machine, a replay agent plays a recorded node state; both push
to a real aggregator backed by a real redis-server. Then we break things: stop Redis,
kill and restart the aggregator, and check the agents ride it out.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from procs import REPO, Kubeattention, free_ports, wait_for_port
from telemetry_factory import batch

from wire.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.integration
INTERVAL = 0.5
RECORDING = sorted((REPO / "agent" / "recordings").glob("*.jsonl"))[0]


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def wait_for(what: str, ok, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = ok()
            if last:
                return last
        except (OSError, ValueError, KeyError, grpc.RpcError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what}: not true after {timeout}s (last: {last!r})")


class Stack:
    def __init__(self, redis_server):
        self.redis = redis_server
        self.grpc_port, self.http_port, self.agent_port, self.replay_port = free_ports(4)
        self.aggregator = self._aggregator()
        self.agent = Kubeattention(
            "agent",
            "--aggregator",
            f"127.0.0.1:{self.grpc_port}",
            "--insecure",
            "--node-name",
            "live-node",
            "--interval",
            str(INTERVAL),
            "--http-listen",
            f"127.0.0.1:{self.agent_port}",
        )
        self.replay = Kubeattention(
            "agent",
            "--aggregator",
            f"127.0.0.1:{self.grpc_port}",
            "--insecure",
            "--node-name",
            "replayed-node",
            "--replay",
            str(RECORDING),
            "--interval",
            str(INTERVAL),
            "--http-listen",
            f"127.0.0.1:{self.replay_port}",
        )

    def _aggregator(self) -> Kubeattention:
        return Kubeattention(
            "aggregator",
            "--redis-url",
            self.redis.url,
            "--grpc-listen",
            f"127.0.0.1:{self.grpc_port}",
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            "--max-staleness-ms",
            "3000",
            "--resync-interval-s",
            "0.5",
            "--insecure",
        )

    def start_aggregator(self):
        self.aggregator.start()
        wait_for_port(self.grpc_port, proc=self.aggregator.proc, timeout=30)

    def score(self, *nodes):
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as ch:
            resp = scoring_pb2_grpc.ScoringServiceStub(ch).BatchScore(batch(*nodes), timeout=5)
        return {s.node_name: s for s in resp.scores}

    def received_at(self, node: str) -> int:
        doc = json.loads(get(f"http://127.0.0.1:{self.http_port}/v1/nodes/{node}"))
        return doc["received_at_ms"]

    def stop(self):
        for p in (self.agent, self.replay, self.aggregator):
            p.stop()


@pytest.fixture
def stack(redis_server):
    s = Stack(redis_server)
    s.start_aggregator()
    s.agent.start()
    s.replay.start()
    try:
        wait_for(
            "both agents scored",
            lambda: all(
                v.status == scoring_pb2.SCORE_STATUS_SCORED for v in s.score("live-node", "replayed-node").values()
            ),
            timeout=30,
        )
        yield s
    finally:
        s.stop()


def test_live_and_replayed_nodes_are_scored_with_missing_metrics_said(stack):
    scores = stack.score("live-node", "replayed-node")
    for s in scores.values():
        assert 0 < s.score <= 100 and 0 < s.confidence < 1
        assert "metrics not measured" in s.reason
    node = json.loads(get(f"http://127.0.0.1:{stack.agent_port}/v1/node"))
    assert node["node_name"] == "live-node"
    metrics = get(f"http://127.0.0.1:{stack.agent_port}/metrics")
    assert "kubeattention_node_cpu_utilization_ratio" in metrics
    assert "kubeattention_node_llc_miss_ratio" not in metrics  # missing here (no PMU): absent, never 0
    assert re.search(r'kubeattention_agent_pushes_total\{result="ok"\} [1-9]', metrics)


def test_redis_outage_agents_retry_and_recover(stack):
    stack.redis.stop()
    wait_for(
        "agent counts failed pushes",
        lambda: re.search(
            r'kubeattention_agent_pushes_total\{result="error"\} [1-9]',
            get(f"http://127.0.0.1:{stack.agent_port}/metrics"),
        ),
    )
    # still answering, from the snapshot, then stale
    wait_for(
        "node turns stale",
        lambda: stack.score("live-node")["live-node"].status == scoring_pb2.SCORE_STATUS_STALE,
        timeout=10,
    )
    assert get(f"http://127.0.0.1:{stack.agent_port}/readyz")  # the agent keeps collecting
    stack.redis.start()
    wait_for(
        "node fresh again after Redis returns",
        lambda: stack.score("live-node")["live-node"].status == scoring_pb2.SCORE_STATUS_SCORED,
        timeout=20,
    )


def test_aggregator_restart_under_running_agents(stack):
    before = stack.received_at("live-node")
    stack.aggregator.stop()
    time.sleep(3 * INTERVAL)
    assert get(f"http://127.0.0.1:{stack.agent_port}/healthz")  # agent lives on
    stack.aggregator = stack._aggregator()
    t0 = time.monotonic()
    stack.start_aggregator()
    # the node is known from Redis at once, and the agent's next push lands within a few intervals
    wait_for("fresh push after restart", lambda: stack.received_at("live-node") > before, timeout=15)
    reconnect_s = time.monotonic() - t0
    assert reconnect_s < 10, f"agent took {reconnect_s:.1f}s to reach the restarted aggregator"
    # the replay agent reconnects on its own backoff schedule (capped at 5 s)
    wait_for(
        "both agents scored again",
        lambda: (
            {s.status for s in stack.score("live-node", "replayed-node").values()} == {scoring_pb2.SCORE_STATUS_SCORED}
        ),
        timeout=15,
    )
    log = stack.agent.output()
    assert "unreachable" in log and "still collecting" in log
    assert "reconnected to aggregator" in log and "sent latest vector" in log


def test_recording_is_a_real_measurement_with_a_header():
    lines = Path(RECORDING).read_text().splitlines()
    header = json.loads(lines[0])
    assert header["kind"] == "kubeattention.recording" and header["cpu_count"] >= 1
    assert len(lines) > 5
