"""ScoringClient against a real aggregator subprocess, a real redis-server and real gRPC.

Nothing is mocked. The outage test kills the aggregator, watches the circuit open and
stop calling, restarts the aggregator on the same port and lets the half-open trial close
the circuit. It drives the cool-down with a manual clock, so "the trial happens only after
the cool-down" is checked exactly instead of by sleeping; everything else runs in real time.
"""

from __future__ import annotations

import signal
import time
import urllib.request

import grpc
import pytest
from procs import Kubeattention, RedisServer, free_ports, wait_for_port
from prometheus_client import CollectorRegistry, generate_latest
from telemetry_factory import telemetry
from test_client import POD, ManualClock

from client import CircuitState, GrpcTransport, InvalidRequest, ScoringClient, Status
from wire.client_security import ClientSecurity
from wire.schema import Profile
from wire.v1 import telemetry_pb2_grpc

pytestmark = pytest.mark.integration

#: Generous for a loaded CI machine; the default 45 ms deadline is exercised on its own.
RELAXED_DEADLINE_S = 2.0
#: The aggregators here run --insecure (transport security is tests/test_security*.py's subject).
PLAINTEXT = ClientSecurity(insecure=True)


class Aggregator:
    """``kubeattention aggregator`` on fixed loopback ports, so a restart keeps its address."""

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.grpc_port, self.http_port = free_ports(2)
        self.proc: Kubeattention | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> Aggregator:
        self.proc = Kubeattention(
            "aggregator",
            "--redis-url",
            self.redis_url,
            "--grpc-listen",
            self.address,
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            "--resync-interval-s",
            "0.3",
            "--insecure",
        ).start()
        wait_for_port(self.grpc_port, proc=self.proc.proc, timeout=30)
        deadline = time.monotonic() + 15
        while self._get("/readyz") != 200:
            if time.monotonic() > deadline or self.proc.proc.poll() is not None:
                raise TimeoutError(f"aggregator not ready:\n{self.proc.output()}")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.stop(sig)

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as r:
                return r.status
        except OSError:
            return 0

    def batchscore_requests(self) -> float:
        """BatchScore calls this aggregator process has received (its own /metrics)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("kubeattention_aggregator_batchscore_requests_total{")
        )

    def push(self, *messages) -> None:
        with grpc.insecure_channel(self.address) as ch:
            stub = telemetry_pb2_grpc.TelemetryServiceStub(ch)
            for m in messages:
                stub.Push(m, timeout=5)


class CountingTransport:
    """The real GrpcTransport, counting the calls that reach the network."""

    def __init__(self, address: str):
        self.inner = GrpcTransport(address, PLAINTEXT)
        self.calls = 0

    def batch_score(self, request, timeout):
        self.calls += 1
        return self.inner.batch_score(request, timeout)

    def reconnect(self):
        self.inner.reconnect()

    def close(self):
        self.inner.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def push_fleet(agg: Aggregator) -> None:
    agg.push(
        telemetry("quiet", collected_ms=now_ms()),
        telemetry(
            "busy",
            collected_ms=now_ms(),
            cpu_utilization=1.0,
            cpu_psi_some=0.6,
            cpu_throttled_ratio=0.3,
            process_churn_per_s=800.0,
        ),
    )


@pytest.fixture(scope="module")
def redis_url():
    server = RedisServer().start()
    yield server.url
    server.cleanup()


@pytest.fixture(scope="module")
def aggregator(redis_url):
    agg = Aggregator(redis_url).start()
    push_fleet(agg)
    yield agg
    agg.stop()


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


def test_scores_come_back_from_the_real_model(aggregator):
    registry = CollectorRegistry()
    with ScoringClient(
        aggregator.address, security=PLAINTEXT, deadline_s=RELAXED_DEADLINE_S, registry=registry
    ) as client:
        push_fleet(aggregator)  # fresh, whatever ran before
        r = client.score(POD, ["busy", "ghost", "quiet"])
    assert r.answered and not r.fallback and r.model_version.startswith("mlp-")
    assert [s.name for s in r.scores] == ["busy", "ghost", "quiet"]
    by = r.by_name()
    assert by["quiet"].status is by["busy"].status is Status.SCORED
    assert by["quiet"].score > by["busy"].score and by["busy"].predicted_slowdown > 1.0
    assert by["ghost"].status is Status.UNKNOWN_NODE and by["ghost"].score == 50
    assert by["ghost"].predicted_slowdown is None and by["ghost"].telemetry_age_ms is None
    assert "CPU" in by["busy"].reason and r.profile is Profile.LATENCY_CRITICAL
    assert r.best().name == "quiet"
    assert sample(registry, "kubeattention_client_calls_total", result="ok") == 1


def test_the_default_45_ms_deadline_is_met_on_loopback(aggregator):
    with ScoringClient(aggregator.address, security=PLAINTEXT) as client:
        assert client.deadline_s == 0.045
        results = [client.score(POD, ["busy", "quiet"]) for _ in range(20)]
    # A loaded machine may miss one; the budget is met as a rule.
    assert sum(r.answered for r in results) >= 18


#: gRPC deadlines have millisecond resolution: a 1 µs deadline lasts up to 1 ms, and a
#: one-node call on loopback sometimes fits. 5 000 candidates never do.
MANY = [f"node-{i}" for i in range(5000)]


def test_a_tiny_deadline_is_deadline_exceeded_and_counts_as_a_failure(aggregator):
    registry = CollectorRegistry()
    with ScoringClient(
        aggregator.address, security=PLAINTEXT, deadline_s=0.000001, failure_threshold=2, registry=registry
    ) as client:
        first = client.score(POD, MANY)
        assert first.fallback and not first.answered and len(first.scores) == 5000
        assert "BatchScore failed with DEADLINE_EXCEEDED" in first.fallback_reason
        assert client.state is CircuitState.CLOSED and client.breaker.consecutive_failures == 1
        second = client.score(POD, MANY)
        assert client.state is CircuitState.OPEN
        assert second.fallback_reason.endswith(
            "circuit open after 2 consecutive failures (last: DEADLINE_EXCEEDED); retrying in 10.0 s"
        )
    assert sample(registry, "kubeattention_client_failures_total", code="DEADLINE_EXCEEDED") == 2
    assert sample(registry, "kubeattention_client_circuit_opens_total") == 1


def test_invalid_argument_raises_and_does_not_open_the_circuit(aggregator):
    registry = CollectorRegistry()
    with ScoringClient(
        aggregator.address, security=PLAINTEXT, deadline_s=RELAXED_DEADLINE_S, failure_threshold=2, registry=registry
    ) as client:
        for _ in range(5):
            with pytest.raises(InvalidRequest) as e:
                client.score(POD, ["quiet", "quiet"])
            assert e.value.code is grpc.StatusCode.INVALID_ARGUMENT
            assert "'quiet' appears more than once" in str(e.value)
        with pytest.raises(InvalidRequest, match="node_names: empty"):
            client.score(POD, [])
        assert client.state is CircuitState.CLOSED and client.breaker.consecutive_failures == 0
        assert client.score(POD, ["quiet"]).answered
    assert sample(registry, "kubeattention_client_calls_total", result="invalid") == 6
    assert sample(registry, "kubeattention_client_circuit_opens_total") == 0


def test_outage_opens_the_circuit_stops_calling_and_a_restart_closes_it(redis_url):
    agg = Aggregator(redis_url).start()
    push_fleet(agg)
    clock = ManualClock()
    registry = CollectorRegistry()
    transport = CountingTransport(agg.address)
    client = ScoringClient(
        agg.address,
        security=PLAINTEXT,
        deadline_s=RELAXED_DEADLINE_S,
        failure_threshold=3,
        cooldown_s=10,
        registry=registry,
        clock=clock,
        transport=transport,
    )
    try:
        assert client.score(POD, ["quiet"]).answered

        agg.stop(signal.SIGKILL)
        for _ in range(3):
            t0 = time.monotonic()
            r = client.score(POD, ["quiet", "busy"])
            took = time.monotonic() - t0
            assert r.fallback and [s.score for s in r.scores] == [50.0, 50.0]
            assert "BatchScore failed with UNAVAILABLE" in r.fallback_reason
            assert took < 1.0, f"a refused connection should fail fast, took {took:.3f} s"
        assert client.state is CircuitState.OPEN and transport.calls == 4
        assert r.fallback_reason.endswith(
            "circuit open after 3 consecutive failures (last: UNAVAILABLE); retrying in 10.0 s"
        )

        # Open: answered at once, nothing reaches the network.
        t0 = time.perf_counter()
        for _ in range(1000):
            r = client.score(POD, ["quiet", "busy"])
        per_call = (time.perf_counter() - t0) / 1000
        assert transport.calls == 4 and r.fallback and "circuit open" in r.fallback_reason
        assert per_call < 0.001, f"an open circuit answered in {per_call * 1e6:.0f} µs per call"

        agg.start()  # same ports
        push_fleet(agg)
        clock.advance(9.9)  # still cooling down: the restarted aggregator is not called
        assert client.score(POD, ["quiet"]).fallback
        assert transport.calls == 4 and agg.batchscore_requests() == 0

        clock.advance(0.1)  # cool-down over: one trial goes through, succeeds, closes the circuit
        r = client.score(POD, ["busy", "quiet"])
        assert r.answered and not r.fallback and r.best().name == "quiet"
        assert client.state is CircuitState.CLOSED and transport.calls == 5
        assert agg.batchscore_requests() == 1

        text = generate_latest(registry).decode()
        assert "kubeattention_client_circuit_state 0.0" in text
        assert "kubeattention_client_circuit_opens_total 1.0" in text
        assert 'kubeattention_client_calls_total{result="ok"} 2.0' in text
        assert 'kubeattention_client_calls_total{result="fallback"} 1004.0' in text
        assert 'kubeattention_client_failures_total{code="UNAVAILABLE"} 3.0' in text
        assert "kubeattention_client_call_duration_seconds_count 1006.0" in text
    finally:
        client.close()
        agg.stop()
