"""Pusher against a real gRPC server on loopback (a tiny TelemetryService defined here)."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from concurrent import futures

import grpc
import pytest
from procs import free_port

from agent.latest_vector import LatestVector
from agent.push import DEFAULT_BACKOFF, DEFAULT_BACKOFF_CAP_S, DEFAULT_BACKOFF_INITIAL_S, DEFAULT_BACKOFF_JITTER, Pusher
from agent.vector import NodeVector
from wire.backoff import Backoff
from wire.client_security import ClientSecurity
from wire.schema import METRIC_NAMES, NUM_METRICS
from wire.v1 import telemetry_pb2, telemetry_pb2_grpc

FAST = Backoff(initial_s=0.05, cap_s=0.2, jitter=DEFAULT_BACKOFF_JITTER)


class TelemetrySink(telemetry_pb2_grpc.TelemetryServiceServicer):
    """Records every push; can reject (INVALID_ARGUMENT) or stall (to trip the deadline)."""

    def __init__(self, reject: str | None = None, stall_s: float = 0.0):
        self.reject = reject
        self.stall_s = stall_s
        self.calls = 0
        self.received: list[telemetry_pb2.NodeTelemetry] = []
        self._cond = threading.Condition()

    def Push(self, request, context):
        with self._cond:
            self.calls += 1
            self._cond.notify_all()
        if self.stall_s:
            time.sleep(self.stall_s)
        if self.reject:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, self.reject)
        with self._cond:
            self.received.append(request)
            self._cond.notify_all()
        now = time.time_ns() // 1_000_000
        return telemetry_pb2.PushAck(received_at_unix_ms=now, clock_offset_ms=now - request.collected_at_unix_ms)

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)


class SinkServer:
    """A real grpc.server on a fixed loopback port; can be started after the agent."""

    def __init__(self, sink: TelemetrySink, port: int | None = None):
        self.sink = sink
        self.port = port or free_port()
        self.server: grpc.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SinkServer:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(self.sink, self.server)
        self.server.add_insecure_port(self.target)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None)
            self.server = None


def vector(stamp: int, node: str = "node-a") -> NodeVector:
    values = [0.1] * NUM_METRICS
    available = [True] * NUM_METRICS
    i = METRIC_NAMES.index("llc_mpki")
    values[i], available[i] = math.nan, False
    return NodeVector(
        node, 1_700_000_000_000 + stamp, tuple(values), tuple(available), {"llc_mpki": "no perf counters"}
    )


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def pushers():
    started: list[Pusher] = []
    yield started
    for p in started:
        p.stop()


def start_pusher(pushers, target, store, **kwargs) -> Pusher:
    results: list[bool] = []
    p = Pusher(
        target,
        store,
        backoff=kwargs.pop("backoff", FAST),
        on_result=lambda ok, at: results.append(ok),
        rng=random.Random(1),
        security=kwargs.pop("security", ClientSecurity(insecure=True)),
        **kwargs,
    )
    p.results = results
    p.start()
    pushers.append(p)
    return p


def test_backoff_defaults_grow_cap_and_jitter():
    assert (DEFAULT_BACKOFF_INITIAL_S, DEFAULT_BACKOFF_CAP_S) == (0.5, 5.0)
    b, rng = DEFAULT_BACKOFF, random.Random(7)
    for failures, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (50, 5.0)]:
        delays = [b.delay(failures, rng.random) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert max(delays) - min(delays) > base * 0.3  # jittered, not constant
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s=6.0, cap_s=5.0)


def test_pushes_the_vector_over_grpc(pushers):
    server = SinkServer(TelemetrySink()).start()
    try:
        store = LatestVector()
        pusher = start_pusher(pushers, server.target, store)
        store.publish(vector(1))
        assert server.sink.wait_for(lambda s: len(s.received) == 1)
        msg = server.sink.received[0]
        assert msg.node_name == "node-a" and msg.collected_at_unix_ms == 1_700_000_000_001
        assert len(msg.values) == NUM_METRICS and math.isnan(msg.values[METRIC_NAMES.index("llc_mpki")])
        assert dict(msg.missing_reasons) == {"llc_mpki": "no perf counters"}
        store.publish(vector(2))
        assert server.sink.wait_for(lambda s: len(s.received) == 2)
        assert wait_until(lambda: len(pusher.results) == 2)  # the ack reaches the agent after the server saw it
        assert pusher.results == [True, True] and pusher.failures == 0
    finally:
        server.stop()


def test_aggregator_down_at_start_then_up_gets_latest_vector_only(pushers, caplog):
    caplog.set_level(logging.DEBUG, logger="agent.push")
    server = SinkServer(TelemetrySink())  # not started yet
    store = LatestVector()
    pusher = start_pusher(pushers, server.target, store)
    store.publish(vector(1))
    assert wait_until(lambda: pusher.failures >= 3)
    store.publish(vector(2))  # the agent keeps collecting meanwhile
    store.publish(vector(3))
    server.start()
    try:
        assert server.sink.wait_for(lambda s: len(s.received) >= 1)
        time.sleep(0.3)  # room for a wrongly replayed backlog to show up
        stamps = [m.collected_at_unix_ms - 1_700_000_000_000 for m in server.sink.received]
        assert stamps == [3]
        assert wait_until(lambda: pusher.failures == 0)
    finally:
        server.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # a state change is logged once, retries only at DEBUG
    assert warnings[0].startswith(f"aggregator {server.target} unreachable (UNAVAILABLE: ")
    assert "retrying in" in warnings[0] and "still collecting" in warnings[0]
    reconnected = [r.getMessage() for r in caplog.records if "reconnected" in r.getMessage()]
    assert len(reconnected) == 1
    assert reconnected[0].startswith(f"reconnected to aggregator {server.target} after ")
    assert "failed pushes; sent latest vector" in reconnected[0]


def test_invalid_argument_is_logged_and_not_retried(pushers, caplog):
    server = SinkServer(TelemetrySink(reject="values[3]: 1.7 outside [0, 1]")).start()
    try:
        store = LatestVector()
        pusher = start_pusher(pushers, server.target, store)
        store.publish(vector(1))
        assert server.sink.wait_for(lambda s: s.calls == 1)
        assert wait_until(lambda: pusher.rejected == 1)
        time.sleep(0.5)  # several backoff periods: a retry would have happened by now
        assert server.sink.calls == 1
        assert pusher.results == [False] and pusher.rejected == 1
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "rejected" in errors[0] and "INVALID_ARGUMENT: values[3]: 1.7 outside [0, 1]" in errors[0]
        store.publish(vector(2))  # the next vector is pushed (and refused) on its own
        assert server.sink.wait_for(lambda s: s.calls == 2)
    finally:
        server.stop()


def test_deadline_exceeded_is_retried(pushers):
    sink = TelemetrySink(stall_s=0.6)
    server = SinkServer(sink).start()
    try:
        store = LatestVector()
        pusher = start_pusher(pushers, server.target, store, deadline_s=0.2)
        store.publish(vector(1))
        assert sink.wait_for(lambda s: s.calls >= 2)  # first call timed out, then retried
        assert wait_until(lambda: len(pusher.results) >= 1) and pusher.results[0] is False
        sink.stall_s = 0.0
        assert sink.wait_for(lambda s: len(s.received) >= 2)
    finally:
        server.stop()


def test_stop_is_prompt_while_backing_off(pushers):
    store = LatestVector()
    pusher = start_pusher(pushers, f"127.0.0.1:{free_port()}", store, backoff=Backoff(30.0, 30.0))
    store.publish(vector(1))
    time.sleep(0.2)
    started = time.monotonic()
    pusher.stop()
    assert not pusher.is_alive()
    assert time.monotonic() - started < 10.0  # not the 15-30 s backoff
