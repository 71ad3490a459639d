"""The gRPC source against a real gRPC server on a unix socket: an in-test implementation of
the vendored tetragon.FineGuidanceSensors/GetEvents streaming exec/exit events; a dead socket
reported with its reason, then reconnection when the server comes (back)."""

from __future__ import annotations

import queue
import random
import socket
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from agent.tetragon import api_pb2
from agent.tetragon.collector import PROCESS_CHURN, TetragonChurnCollector
from agent.tetragon.events import EventKind, PodRef
from agent.tetragon.grpc_source import (
    GET_EVENTS_METHOD,
    SERVICE_NAME,
    UNKNOWN_KIND,
    GrpcEventSource,
    record_from_response,
    unix_socket_path,
)
from wire.backoff import Backoff

FAST = Backoff(initial_s=0.05, cap_s=0.2, jitter=0.0)
_END = object()


class FakeTetragon:
    """FineGuidanceSensors.GetEvents on a unix socket; ``send`` streams to every open call."""

    def __init__(self, path: Path, implement: bool = True):
        self.path = path
        self.implement = implement
        self.requests: list[api_pb2.GetEventsRequest] = []
        self._queues: list[queue.Queue] = []
        self.server: grpc.Server | None = None

    def start(self) -> FakeTetragon:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        if self.implement:
            self.server.add_generic_rpc_handlers(
                (
                    grpc.method_handlers_generic_handler(
                        SERVICE_NAME,
                        {
                            "GetEvents": grpc.unary_stream_rpc_method_handler(
                                self._get_events,
                                request_deserializer=api_pb2.GetEventsRequest.FromString,
                                response_serializer=None,
                            ),  # responses are sent as bytes (see send_raw)
                        },
                    ),
                )
            )
        self.server.add_insecure_port(f"unix://{self.path}")
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None).wait(5)
        self.server = None

    def calls(self) -> int:
        return len(self._queues)

    def send(self, *responses: api_pb2.GetEventsResponse) -> None:
        for r in responses:
            self.send_raw(r.SerializeToString())

    def send_raw(self, data: bytes) -> None:
        for q in self._queues:
            q.put(data)

    def end_streams(self) -> None:
        for q in self._queues:
            q.put(_END)

    def _get_events(self, request, context):
        self.requests.append(request)
        q: queue.Queue = queue.Queue()
        self._queues.append(q)
        try:
            while context.is_active():
                try:
                    item = q.get(timeout=0.02)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                yield item
        finally:
            self._queues.remove(q)


def exec_event(pid: int, pod: tuple[str, str] | None = None, exit_: bool = False) -> api_pb2.GetEventsResponse:
    process = api_pb2.Process(exec_id=f"e{pid}", binary="/bin/true")
    process.pid.value = pid
    if pod is not None:
        process.pod.namespace, process.pod.name = pod
        process.pod.container.name = "main"
    r = api_pb2.GetEventsResponse(node_name="n1")
    r.time.FromSeconds(1_714_557_600)
    if exit_:
        r.process_exit.process.CopyFrom(process)
        r.process_exit.signal = "SIGTERM"
    else:
        r.process_exec.process.CopyFrom(process)
    return r


def kprobe_event_bytes() -> bytes:
    """A process_kprobe response (oneof field 9, not in the vendored subset) plus node_name."""
    body = b"\x0a\x00"  # ProcessKprobe { process: {} }
    return bytes([9 << 3 | 2, len(body)]) + body + api_pb2.GetEventsResponse(node_name="n1").SerializeToString()


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def down(src: GrpcEventSource):
    """The source's status when it is not live, else None."""
    st = src.status()
    return None if st.live else st


@pytest.fixture
def sock(tmp_path):
    path = tmp_path / "tetragon.sock"
    assert len(str(path)) < 100, "unix socket paths are limited to 107 bytes"
    return path


@pytest.fixture
def cleanup():
    items = []
    yield items
    for item in reversed(items):
        (item.close if hasattr(item, "close") else item.stop)()


def test_method_and_conversion_match_tetragon():
    assert GET_EVENTS_METHOD == "/tetragon.FineGuidanceSensors/GetEvents"
    assert unix_socket_path("unix:///var/run/tetragon/tetragon.sock") == "/var/run/tetragon/tetragon.sock"
    assert unix_socket_path("unix:relative.sock") == "relative.sock" and unix_socket_path("localhost:54321") is None
    e = record_from_response(exec_event(7, ("shop", "web-0"), exit_=True))
    assert (e.kind, e.pid, e.pod, e.binary, e.time, e.node_name) == (
        EventKind.EXIT,
        7,
        PodRef("shop", "web-0"),
        "/bin/true",
        1_714_557_600.0,
        "n1",
    )
    assert record_from_response(api_pb2.GetEventsResponse.FromString(kprobe_event_bytes())) == UNKNOWN_KIND


def test_events_stream_in_and_are_counted_exactly(sock, cleanup):
    server = FakeTetragon(sock).start()
    cleanup.append(server)
    src = GrpcEventSource(f"unix://{sock}", backoff=FAST)
    cleanup.append(src)
    src.start()
    wait_for(lambda: src.status().live and server.calls(), what="the stream")
    # The request asks Tetragon for exec, exit and rate-limit events only.
    assert list(server.requests[0].allow_list[0].event_set) == [
        api_pb2.PROCESS_EXEC,
        api_pb2.PROCESS_EXIT,
        api_pb2.RATE_LIMIT_INFO,
    ]
    server.send(*(exec_event(i, ("shop", f"web-{i % 2}")) for i in range(5)))
    server.send(exec_event(10, None, exit_=True), exec_event(11, ("shop", "web-0"), exit_=True))
    server.send_raw(kprobe_event_bytes())
    wait_for(lambda: src.counts().total == 8, what="8 messages")
    tally = src.take()
    assert (tally.execs, tally.exits, tally.host) == (5, 2, 1)
    assert dict(tally.pods) == {PodRef("shop", "web-0"): 4, PodRef("shop", "web-1"): 2}
    assert src.counts().ignored == {UNKNOWN_KIND: 1}
    rate_limit = api_pb2.GetEventsResponse()
    rate_limit.rate_limit_info.number_of_dropped_process_events = 12
    server.send(rate_limit)
    wait_for(lambda: src.counts().parsed.get("rate_limit_info"), what="the rate-limit event")
    assert src.take().dropped == 12


def test_churn_from_the_stream_with_an_injected_clock(sock, cleanup):
    class Clock:
        t = 50.0

        def monotonic(self):
            return self.t

        def wall_ms(self):
            return int(self.t * 1000)

    clock = Clock()
    server = FakeTetragon(sock).start()
    cleanup.append(server)
    src = GrpcEventSource(f"unix://{sock}", clock=clock, backoff=FAST).start()
    cleanup.append(src)
    c = TetragonChurnCollector(src, clock)
    wait_for(lambda: src.status().live and server.calls(), what="the stream")
    clock.t += 1.0
    c.read()  # baseline, after the source became live
    server.send(*(exec_event(i, ("a", "b")) for i in range(6)), *(exec_event(i, None, exit_=True) for i in range(3)))
    wait_for(lambda: src.counts().total == 9, what="9 events")
    clock.t += 3.0
    r = c.read()
    assert r.get(PROCESS_CHURN).value == pytest.approx(3.0)
    assert r.per_pod() == {"a/b": 2.0} and r.host_per_s == 1.0


def test_dead_socket_is_reported_then_the_server_comes_and_events_flow(sock, cleanup):
    src = GrpcEventSource(f"unix://{sock}", backoff=FAST, rng=random.Random(1)).start()
    cleanup.append(src)
    st = wait_for(lambda: (s := src.status()).reason and "not connected yet" not in s.reason and s, what="a reason")
    assert not st.live
    assert (
        st.reason == f"Tetragon socket {sock}: no such socket (is Tetragon running, and its socket "
        "directory mounted here?)"
    )

    # A socket file nobody listens on (Tetragon died and left it behind).
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    wait_for(lambda: src.status().reason == f"Tetragon socket {sock}: connection refused", what="connection refused")

    sock.unlink()
    server = FakeTetragon(sock).start()
    cleanup.append(server)
    wait_for(lambda: src.status().live and server.calls(), what="reconnection")
    server.send(exec_event(1, ("x", "y")))
    wait_for(lambda: src.counts().total == 1, what="an event after reconnecting")

    # Tetragon restarts: the stream breaks, the source says so, then resumes on the new server.
    server.stop()
    st = wait_for(lambda: down(src), what="the outage")
    assert st.reason.startswith(f"Tetragon socket {sock}: ") or "UNAVAILABLE" in st.reason
    server = FakeTetragon(sock).start()
    cleanup.append(server)
    wait_for(lambda: src.status().live and server.calls(), what="the second reconnection")
    server.send(exec_event(2, None), exec_event(3, None, exit_=True))
    wait_for(lambda: src.counts().total == 3, what="events after the restart")
    tally = src.take()
    assert (tally.execs, tally.exits) == (2, 1) and src.connects >= 2


def test_stream_ended_by_the_server_reconnects(sock, cleanup):
    server = FakeTetragon(sock).start()
    cleanup.append(server)
    src = GrpcEventSource(f"unix://{sock}", backoff=Backoff(initial_s=0.3, cap_s=0.3, jitter=0.0)).start()
    cleanup.append(src)
    wait_for(lambda: src.status().live and server.calls(), what="the stream")
    first_since = src.status().live_since
    server.end_streams()
    st = wait_for(lambda: down(src), what="the end of the stream")
    assert st.reason == f"Tetragon gRPC unix://{sock}: Tetragon ended the event stream"
    wait_for(lambda: src.status().live and server.calls(), what="a new stream")
    assert src.status().live_since > first_since and src.connects == 2


def test_a_server_without_tetragon_api_is_named(sock, cleanup):
    server = FakeTetragon(sock, implement=False).start()
    cleanup.append(server)
    src = GrpcEventSource(f"unix://{sock}", backoff=FAST).start()
    cleanup.append(src)
    st = wait_for(lambda: (s := src.status()).reason and "UNIMPLEMENTED" in s.reason and s, what="UNIMPLEMENTED")
    assert "is a Tetragon agent listening there?" in st.reason


def test_close_stops_the_thread_promptly(sock):
    server = FakeTetragon(sock).start()
    try:
        src = GrpcEventSource(f"unix://{sock}", backoff=FAST).start()
        wait_for(lambda: src.status().live and server.calls(), what="the stream")
        started = time.monotonic()
        src.close()
        assert time.monotonic() - started < 2.0 and not src._thread.is_alive()
    finally:
        server.stop()


def test_bad_address_is_refused():
    with pytest.raises(ValueError, match="address: expected unix:///PATH or HOST:PORT"):
        GrpcEventSource("tetragon.sock")
