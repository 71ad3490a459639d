"""ScoringClient and its circuit breaker: unit tests on a fake transport and an injected clock.

The doubles live here: ``ManualClock`` (time moves only when told), ``FakeTransport``
(plays a script of answers and failures, counts calls) and ``FakeRpcError`` (what grpc
raises, with a code and details). The same client against a real aggregator is in
``test_client_integration.py``.
"""

from __future__ import annotations

import math
import threading

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import client as client_module
from client import (
    CircuitState,
    ClientClosed,
    ClientConfigError,
    ClientError,
    InvalidRequest,
    ScoringClient,
    Status,
    build_request,
)
from client.batchscore import score_once
from client.errors import BadResponse
from wire.schema import PodContext, Profile, QoS
from wire.v1 import scoring_pb2

POD = PodContext(
    cpu_request_cores=0.5,
    memory_request_bytes=512 * 2**20,
    profile=Profile.LATENCY_CRITICAL,
    namespace="shop",
    name="checkout-0",
)
NODES = ["n1", "n2", "n3"]


class ManualClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = ""):
        super().__init__(f"{code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def answer(request: scoring_pb2.BatchScoreRequest, scores=None) -> scoring_pb2.BatchScoreResponse:
    """What an aggregator answers: node i scores 90 - 10 i, SCORED, unless told otherwise."""
    resp = scoring_pb2.BatchScoreResponse(model_version="mlp-test", elapsed_us=250, profile=request.pod.profile)
    for i, name in enumerate(request.node_names):
        score = scores[i] if scores else 90.0 - 10 * i
        resp.scores.add(
            node_name=name,
            score=score,
            confidence=0.4,
            reason=f"reason {name}",
            status=scoring_pb2.SCORE_STATUS_SCORED,
            predicted_slowdown=100.0 / score,
            telemetry_age_ms=120,
        )
    return resp


OK = object()
DOWN = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
SLOW = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
BAD = FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "BatchScore rejected: node_names: 'n1' appears more than once")


class FakeTransport:
    """Plays ``outcome`` for every call: OK (a normal answer), an exception to raise, or a
    callable(request) returning either. ``calls`` counts what reached "the network"."""

    def __init__(self, outcome=OK):
        self.outcome = outcome
        self.calls = 0
        self.reconnects = 0
        self.timeouts: list[float] = []
        self.closed = False

    def batch_score(self, request, timeout):
        self.calls += 1
        self.timeouts.append(timeout)
        outcome = self.outcome(request) if callable(self.outcome) else self.outcome
        if outcome is OK:
            return answer(request)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def reconnect(self):
        self.reconnects += 1

    def close(self):
        self.closed = True


def make(outcome=OK, **kw):
    clock = ManualClock()
    transport = FakeTransport(outcome)
    registry = CollectorRegistry()
    kw.setdefault("failure_threshold", 3)
    kw.setdefault("cooldown_s", 10.0)
    c = ScoringClient("aggregator:50051", registry=registry, clock=clock, transport=transport, **kw)
    return c, transport, clock, registry


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


def fail_until_open(c, transport, n):
    transport.outcome = DOWN
    for _ in range(n):
        c.score(POD, NODES)
    assert c.state is CircuitState.OPEN


# --------------------------------------------------------------------------- answers


def test_an_answer_becomes_a_score_result_in_request_order():
    c, transport, _, registry = make()
    r = c.score(POD, ["b", "a", "c"])
    assert [s.name for s in r.scores] == ["b", "a", "c"]
    assert r.answered and not r.fallback and r.fallback_reason == ""
    assert r.model_version == "mlp-test" and r.profile is Profile.LATENCY_CRITICAL and r.server_elapsed_us == 250
    s = r.scores[0]
    assert (s.score, s.status, s.confidence, s.reason, s.telemetry_age_ms) == (
        90.0,
        Status.SCORED,
        0.4,
        "reason b",
        120,
    )
    assert s.predicted_slowdown == pytest.approx(100 / 90)
    assert r.best().name == "b" and [x.name for x in r.ranked()] == ["b", "a", "c"]
    assert r.by_name()["c"].score == 70.0
    assert transport.timeouts == [0.045]  # the design's latency budget is the default deadline
    assert sample(registry, "kubeattention_client_calls_total", result="ok") == 1


def test_nan_slowdown_and_negative_age_become_none():
    def unknown(request):
        resp = scoring_pb2.BatchScoreResponse(model_version="m", profile=1)
        resp.scores.add(
            node_name="ghost",
            score=50,
            status=scoring_pb2.SCORE_STATUS_UNKNOWN_NODE,
            predicted_slowdown=math.nan,
            telemetry_age_ms=-1,
            reason="no telemetry",
        )
        return resp

    c, *_ = make(unknown)
    s = c.score(POD, ["ghost"]).scores[0]
    assert s.status is Status.UNKNOWN_NODE and s.predicted_slowdown is None and s.telemetry_age_ms is None


def test_best_breaks_ties_by_request_order_and_ranked_is_stable():
    c, *_ = make(lambda req: answer(req, [60.0, 80.0, 80.0, 10.0]))
    r = c.score(POD, ["w", "x", "y", "z"])
    assert r.best().name == "x"
    assert [s.name for s in r.ranked()] == ["x", "y", "w", "z"]


def test_an_aggregator_side_fallback_is_reported_as_fallback_but_answered():
    def budget(request):
        resp = scoring_pb2.BatchScoreResponse(model_version="m", profile=1)
        for n in request.node_names:
            resp.scores.add(
                node_name=n,
                score=50,
                status=scoring_pb2.SCORE_STATUS_FALLBACK,
                predicted_slowdown=math.nan,
                reason="scoring overran the 45 ms budget",
            )
        return resp

    c, _, _, registry = make(budget)
    r = c.score(POD, NODES)
    assert r.fallback and r.answered and c.state is CircuitState.CLOSED
    assert sample(registry, "kubeattention_client_calls_total", result="ok") == 1


# --------------------------------------------------------------------------- fallback on failure


@pytest.mark.parametrize(
    "error,label",
    [
        (SLOW, "DEADLINE_EXCEEDED"),
        (DOWN, "UNAVAILABLE"),
        (FakeRpcError(grpc.StatusCode.INTERNAL, "boom"), "INTERNAL"),
        (FakeRpcError(grpc.StatusCode.UNKNOWN, "Exception calling application"), "UNKNOWN"),
        (FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "Method not found!"), "UNIMPLEMENTED"),
        (ConnectionResetError(104, "Connection reset by peer"), "CONNECTION_ERROR"),
        (OSError("network is unreachable"), "CONNECTION_ERROR"),
        (ValueError("Cannot invoke RPC on closed channel!"), "CONNECTION_ERROR"),
    ],
)
def test_any_transport_failure_answers_the_neutral_fallback_and_counts(error, label):
    c, _, _, registry = make(error)
    r = c.score(POD, NODES)
    assert r.fallback and not r.answered and r.model_version == ""
    assert [(s.name, s.score, s.status, s.confidence, s.predicted_slowdown) for s in r.scores] == [
        (n, 50.0, Status.FALLBACK, 0.0, None) for n in NODES
    ]
    assert r.profile is Profile.LATENCY_CRITICAL  # the pod's own, resolved
    assert r.fallback_reason.startswith(f"KubeAttention unavailable: BatchScore failed with {label}")
    assert "1 of 3 consecutive failures before the circuit opens" in r.fallback_reason
    assert all(s.reason == r.fallback_reason for s in r.scores)
    assert c.state is CircuitState.CLOSED and c.breaker.consecutive_failures == 1
    assert sample(registry, "kubeattention_client_failures_total", code=label) == 1
    assert sample(registry, "kubeattention_client_calls_total", result="fallback") == 1


def test_a_deadline_failure_names_the_deadline():
    c, *_ = make(SLOW)
    assert "DEADLINE_EXCEEDED (Deadline Exceeded) after the 45 ms deadline" in c.score(POD, NODES).fallback_reason


def test_an_invalid_argument_in_another_wording_keeps_the_whole_message():
    c, *_ = make(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "something odd happened"))
    with pytest.raises(InvalidRequest) as e:
        c.score(POD, NODES)
    assert e.value.field == "request" and "something odd happened" in str(e.value)


@pytest.mark.parametrize(
    "bad",
    [
        lambda req: _shorter(req),
        lambda req: _with_status(req, 9),
        lambda req: _renamed(req),
    ],
)
def test_an_answer_that_does_not_fit_the_request_is_a_failure(bad):
    c, _, _, registry = make(bad)
    r = c.score(POD, NODES)
    assert r.fallback and "BAD_RESPONSE" in r.fallback_reason
    assert sample(registry, "kubeattention_client_failures_total", code="BAD_RESPONSE") == 1


def _shorter(req):
    resp = answer(req)
    del resp.scores[-1]
    return resp


def _renamed(req):
    resp = answer(req)
    resp.scores[1].node_name = "someone-else"
    return resp


def _with_status(req, status):
    resp = answer(req)
    resp.scores[0].status = status
    return resp


def test_score_once_is_the_same_call_without_breaker_or_fallback():
    transport = FakeTransport()
    r = score_once(transport, POD, build_request(POD, NODES), 0.5)
    assert r.answered and [s.name for s in r.scores] == NODES and transport.timeouts == [0.5]
    transport.outcome = DOWN
    with pytest.raises(grpc.RpcError):
        score_once(transport, POD, build_request(POD, NODES), 0.5)
    transport.outcome = _shorter
    with pytest.raises(BadResponse, match="answer for 2 nodes does not match the 3 candidates"):
        score_once(transport, POD, build_request(POD, NODES), 0.5)


# --------------------------------------------------------------------------- the state machine


def test_threshold_consecutive_failures_open_the_circuit_and_open_answers_without_calling():
    c, transport, clock, registry = make(DOWN)
    c.score(POD, NODES)
    c.score(POD, NODES)
    assert c.state is CircuitState.CLOSED
    third = c.score(POD, NODES)
    assert c.state is CircuitState.OPEN and transport.calls == 3
    assert third.fallback_reason.endswith(
        "circuit open after 3 consecutive failures (last: UNAVAILABLE); retrying in 10.0 s"
    )
    clock.advance(2.8)
    for _ in range(100):
        r = c.score(POD, NODES)
    assert transport.calls == 3
    assert r.fallback and r.fallback_reason == (
        "KubeAttention unavailable: circuit open after 3 consecutive failures (last: UNAVAILABLE); retrying in 7.2 s"
    )
    assert sample(registry, "kubeattention_client_circuit_state") == 2
    assert sample(registry, "kubeattention_client_circuit_opens_total") == 1
    assert sample(registry, "kubeattention_client_calls_total", result="fallback") == 103
    assert sample(registry, "kubeattention_client_failures_total", code="UNAVAILABLE") == 3


def test_the_default_threshold_is_five():
    c, transport, *_ = make(SLOW, failure_threshold=client_module.DEFAULT_FAILURE_THRESHOLD)
    for _ in range(4):
        c.score(POD, NODES)
    assert c.state is CircuitState.CLOSED
    r = c.score(POD, NODES)
    assert c.state is CircuitState.OPEN
    assert "circuit open after 5 consecutive failures (last: DEADLINE_EXCEEDED)" in r.fallback_reason


def test_a_success_resets_the_consecutive_count():
    c, transport, *_ = make()
    for outcome in [DOWN, DOWN, OK, DOWN, DOWN, OK, DOWN, DOWN]:
        transport.outcome = outcome
        c.score(POD, NODES)
    assert c.state is CircuitState.CLOSED and c.breaker.consecutive_failures == 2


def test_after_the_cooldown_one_trial_goes_through_and_its_success_closes():
    c, transport, clock, registry = make()
    fail_until_open(c, transport, 3)
    clock.advance(9.99)
    c.score(POD, NODES)
    assert transport.calls == 3 and c.state is CircuitState.OPEN
    clock.advance(0.01)
    transport.outcome = OK
    r = c.score(POD, NODES)
    assert r.answered and not r.fallback and transport.calls == 4
    assert transport.reconnects == 1  # the trial starts on a fresh connection
    assert c.state is CircuitState.CLOSED and c.breaker.consecutive_failures == 0
    assert sample(registry, "kubeattention_client_circuit_state") == 0
    c.score(POD, NODES)
    assert transport.calls == 5 and transport.reconnects == 1


def test_a_failed_trial_reopens_with_a_fresh_cooldown():
    c, transport, clock, registry = make()
    fail_until_open(c, transport, 3)
    clock.advance(10)
    transport.outcome = SLOW
    r = c.score(POD, NODES)
    assert transport.calls == 4 and c.state is CircuitState.OPEN
    assert r.fallback_reason.endswith(
        "circuit open after 4 consecutive failures (last: DEADLINE_EXCEEDED); retrying in 10.0 s"
    )
    clock.advance(9.5)
    assert c.score(POD, NODES).fallback_reason.endswith("retrying in 0.5 s") and transport.calls == 4
    clock.advance(0.5)
    transport.outcome = OK
    assert c.score(POD, NODES).answered and c.state is CircuitState.CLOSED
    assert sample(registry, "kubeattention_client_circuit_opens_total") == 2


def test_callers_arriving_during_the_trial_get_the_fallback_without_calling():
    c, transport, clock, registry = make()
    fail_until_open(c, transport, 3)
    clock.advance(10)
    during = []

    def trial(request):
        # Another caller arrives while the trial is out (same thread: deterministic).
        during.append(c.score(POD, NODES))
        during.append(sample(registry, "kubeattention_client_circuit_state"))
        return OK

    transport.outcome = trial
    assert c.score(POD, NODES).answered
    assert transport.calls == 4
    r, gauge = during
    assert r.fallback and gauge == 1
    assert r.fallback_reason == (
        "KubeAttention unavailable: circuit half-open after 3 consecutive failures "
        "(last: UNAVAILABLE); a trial call is in flight"
    )


def test_concurrent_callers_let_exactly_one_trial_through():
    c, transport, clock, _ = make()
    fail_until_open(c, transport, 3)
    clock.advance(10)
    release = threading.Event()
    transport.outcome = lambda req: OK if release.wait(10) else DOWN
    results, errors = [], []

    def caller():
        try:
            results.append(c.score(POD, NODES))
        except Exception as e:  # pragma: no cover - surfaces in the assert below
            errors.append(e)

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    # 15 fallbacks come back while the one trial waits.
    pause = threading.Event()
    for _ in range(1000):
        if len(results) == 15:
            break
        pause.wait(0.01)
    assert len(results) == 15 and all(r.fallback for r in results)
    release.set()
    for t in threads:
        t.join(10)
    assert not errors and transport.calls == 4
    assert sum(r.answered for r in results) == 1 and c.state is CircuitState.CLOSED


def test_many_threads_failing_open_the_circuit_once():
    c, transport, _, registry = make(DOWN, failure_threshold=5)
    barrier = threading.Barrier(8)

    def caller():
        barrier.wait()
        for _ in range(50):
            c.score(POD, NODES)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert c.state is CircuitState.OPEN
    assert sample(registry, "kubeattention_client_circuit_opens_total") == 1
    # Calls already out when it opened may finish, but nothing is admitted afterwards.
    assert 5 <= transport.calls <= 5 + 7


def test_a_late_answer_from_before_the_circuit_opened_does_not_close_it():
    c, transport, *_ = make()

    def slow_success(request):
        if transport.calls == 1:  # while this first call is out, others fail and open the circuit
            transport.outcome = DOWN
            for _ in range(3):
                c.score(POD, NODES)
            transport.outcome = slow_success
            assert c.state is CircuitState.OPEN
        return OK

    transport.outcome = slow_success
    assert c.score(POD, NODES).answered  # the caller still gets its answer...
    assert c.state is CircuitState.OPEN  # ...but it does not vouch for the aggregator now


# --------------------------------------------------------------------------- caller errors


def test_invalid_argument_raises_and_does_not_count_toward_opening():
    c, transport, _, registry = make(BAD)
    for _ in range(10):
        with pytest.raises(InvalidRequest) as e:
            c.score(POD, ["n1", "n1"])
        assert str(e.value) == "node_names: 'n1' appears more than once (the aggregator answered INVALID_ARGUMENT)"
        assert e.value.code is grpc.StatusCode.INVALID_ARGUMENT and e.value.field == "node_names"
    assert c.state is CircuitState.CLOSED and c.breaker.consecutive_failures == 0
    assert transport.calls == 10
    assert sample(registry, "kubeattention_client_calls_total", result="invalid") == 10
    assert sample(registry, "kubeattention_client_calls_total", result="fallback") == 0
    assert sample(registry, "kubeattention_client_circuit_opens_total") == 0


def test_invalid_argument_neither_resets_nor_adds_to_the_failure_count():
    c, transport, *_ = make()
    for outcome in [DOWN, DOWN, BAD, BAD]:
        transport.outcome = outcome
        try:
            c.score(POD, NODES)
        except InvalidRequest:
            pass
    assert c.breaker.consecutive_failures == 2 and c.state is CircuitState.CLOSED


def test_an_invalid_trial_frees_the_slot_for_the_next_caller():
    c, transport, clock, _ = make()
    fail_until_open(c, transport, 3)
    clock.advance(10)
    transport.outcome = BAD
    with pytest.raises(InvalidRequest):
        c.score(POD, ["n1", "n1"])
    assert c.state is CircuitState.HALF_OPEN
    transport.outcome = OK
    assert c.score(POD, NODES).answered and c.state is CircuitState.CLOSED


@pytest.mark.parametrize(
    "pod,nodes,field",
    [
        (None, NODES, "pod"),
        ({"cpu_request_cores": 0.5}, NODES, "pod"),
        (POD, "n1", "nodes"),
        (POD, None, "nodes"),
        (POD, ["n1", 7], "nodes[1]"),
        (PodContext(memory_request_bytes=1.5), NODES, "pod.memory_request_bytes"),
        (PodContext(memory_request_bytes=2**70), NODES, "pod.memory_request_bytes"),
        (PodContext(cpu_request_cores="500m"), NODES, "pod.cpu_request_cores"),
        (PodContext(profile=9), NODES, "pod.profile"),
        (PodContext(qos="guaranteed"), NODES, "pod.qos"),
    ],
)
def test_a_request_that_cannot_be_sent_raises_naming_the_field_without_calling(pod, nodes, field):
    c, transport, _, registry = make()
    with pytest.raises(InvalidRequest) as e:
        c.score(pod, nodes)
    assert e.value.field == field and str(e.value).startswith(f"{field}: ") and e.value.code is None
    assert transport.calls == 0 and c.breaker.consecutive_failures == 0
    assert sample(registry, "kubeattention_client_calls_total", result="invalid") == 1


def test_build_request_carries_the_pod_context():
    req = build_request(
        PodContext(
            cpu_request_cores=2.0,
            memory_request_bytes=2**30,
            qos=QoS.GUARANTEED,
            profile=Profile.IO_BOUND,
            priority=1000,
            namespace="ns",
            name="p",
        ),
        ("a", "b"),
    )
    assert list(req.node_names) == ["a", "b"]
    p = req.pod
    assert (p.cpu_request_cores, p.memory_request_bytes, p.qos_class, p.profile, p.priority, p.namespace, p.name) == (
        2.0,
        2**30,
        scoring_pb2.QOS_CLASS_GUARANTEED,
        scoring_pb2.WORKLOAD_PROFILE_IO_BOUND,
        1000,
        "ns",
        "p",
    )
    unset = build_request(PodContext(), ["a"]).pod
    assert unset.qos_class == scoring_pb2.QOS_CLASS_UNSPECIFIED  # the aggregator derives it
    assert unset.profile == scoring_pb2.WORKLOAD_PROFILE_UNSPECIFIED


# --------------------------------------------------------------------------- configuration, lifecycle, metrics


def test_bad_configuration_lists_every_problem():
    with pytest.raises(ClientConfigError) as e:
        ScoringClient("x:1", deadline_s=0, failure_threshold=0, cooldown_s=-1, transport=FakeTransport())
    msg = str(e.value)
    assert "deadline_s: must be a finite number of seconds > 0, got 0" in msg
    assert "failure_threshold: must be an int >= 1, got 0" in msg
    assert "cooldown_s: must be a finite number of seconds >= 0, got -1" in msg
    assert isinstance(e.value, ValueError) and isinstance(e.value, ClientError)
    for kw in ({"deadline_s": math.nan}, {"failure_threshold": 2.5}, {"cooldown_s": math.inf}):
        with pytest.raises(ClientConfigError):
            ScoringClient("x:1", transport=FakeTransport(), **kw)


def test_closing_closes_the_transport_and_later_calls_raise():
    transport = FakeTransport()
    with ScoringClient("x:1", transport=transport) as c:
        c.score(POD, NODES)
    assert transport.closed
    with pytest.raises(ClientClosed):
        c.score(POD, NODES)


def test_metrics_are_exposed_in_the_given_registry():
    c, transport, clock, registry = make()

    def slow(request):
        clock.advance(0.03)  # the injected clock measures the call
        return OK

    transport.outcome = slow
    c.score(POD, NODES)
    text = generate_latest(registry).decode()
    assert "kubeattention_client_circuit_state 0.0" in text
    for result in ("ok", "fallback", "invalid"):
        assert f'kubeattention_client_calls_total{{result="{result}"}}' in text
    assert "kubeattention_client_circuit_opens_total 0.0" in text
    assert 'kubeattention_client_call_duration_seconds_bucket{le="0.045"} 1.0' in text
    assert 'kubeattention_client_call_duration_seconds_bucket{le="0.02"} 0.0' in text
    assert sample(registry, "kubeattention_client_call_duration_seconds_sum") == pytest.approx(0.03)


def test_clients_without_a_registry_do_not_collide():
    a = ScoringClient("x:1", transport=FakeTransport())
    b = ScoringClient("x:1", transport=FakeTransport())
    assert a.metrics.registry is not b.metrics.registry


def test_the_public_api_is_pinned():
    assert sorted(client_module.__all__) == [
        "CircuitBreaker",
        "CircuitState",
        "ClientClosed",
        "ClientConfigError",
        "ClientError",
        "ClientMetrics",
        "DEFAULT_COOLDOWN_S",
        "DEFAULT_DEADLINE_S",
        "DEFAULT_FAILURE_THRESHOLD",
        "GrpcTransport",
        "InvalidRequest",
        "NodeScore",
        "ScoreResult",
        "ScoringClient",
        "Status",
        "Ticket",
        "Transport",
        "build_request",
    ]
    assert (
        client_module.DEFAULT_DEADLINE_S,
        client_module.DEFAULT_FAILURE_THRESHOLD,
        client_module.DEFAULT_COOLDOWN_S,
    ) == (0.045, 5, 10.0)
    assert [(s.name, int(s)) for s in CircuitState] == [("CLOSED", 0), ("HALF_OPEN", 1), ("OPEN", 2)]
    assert issubclass(InvalidRequest, ClientError) and issubclass(ClientClosed, ClientError)
