"""Tetragon events from its gRPC API: ``tetragon.FineGuidanceSensors/GetEvents``.

A daemon thread holds one server-streaming GetEvents call, asking Tetragon (through an
allow-list filter) for exec, exit and rate-limit events only, and counts what arrives.
When the socket is dead or the stream ends, it reports the source not live with a reason
("Tetragon socket /var/run/tetragon/tetragon.sock: connection refused") and reconnects
with capped exponential backoff. The source is live from the moment the channel is
connected (a quiet node sends nothing, and that is a true 0) until the call ends.

Messages come from the vendored subset of Tetragon's API (proto/tetragon/api.proto,
generated into :mod:`agent.tetragon.api_pb2`); the method is bound directly on the channel,
so no generated service stub is needed.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import stat
import threading

import grpc

from agent.clock import SYSTEM_CLOCK, Clock
from agent.tetragon import api_pb2
from agent.tetragon.events import KIND_BY_KEY, RATE_LIMIT_KEY, PodRef, ProcessEvent, RateLimited
from agent.tetragon.parse import OutcomeCounter, ParseCounts
from agent.tetragon.source import SourceStatus
from agent.tetragon.tally import DEFAULT_MAX_PODS, Tally, TallyCounter
from wire.address import AddressError, parse_host_port
from wire.backoff import Backoff

log = logging.getLogger(__name__)

DEFAULT_GRPC_ADDRESS = "unix:///var/run/tetragon/tetragon.sock"
DEFAULT_BACKOFF = Backoff(initial_s=0.5, cap_s=10.0, jitter=0.2)
#: While Tetragon stays unreachable, repeat the warning at most this often.
STILL_DOWN_REMINDER_S = 300.0

_SERVICE = api_pb2.DESCRIPTOR.services_by_name["FineGuidanceSensors"]
SERVICE_NAME = _SERVICE.full_name
GET_EVENTS_METHOD = f"/{SERVICE_NAME}/{_SERVICE.methods_by_name['GetEvents'].name}"

#: Only what churn counts: Tetragon filters server-side (kprobe events can be far more numerous).
CHURN_REQUEST = api_pb2.GetEventsRequest(
    allow_list=[api_pb2.Filter(event_set=[api_pb2.PROCESS_EXEC, api_pb2.PROCESS_EXIT, api_pb2.RATE_LIMIT_INFO])]
)

UNKNOWN_KIND = "unknown (not in the vendored API subset)"


def unix_socket_path(address: str) -> str | None:
    """The filesystem path of a ``unix:`` gRPC address, else None."""
    if not address.startswith("unix:"):
        return None
    path = address[len("unix:") :]
    return path[2:] if path.startswith("//") else path


def grpc_address_problem(address: str) -> str | None:
    """Why ``address`` is not a gRPC address this source can dial, or None."""
    if address.startswith("unix:"):
        return None if unix_socket_path(address) else f"no socket path in {address!r}"
    try:
        parse_host_port(address.removeprefix("dns:///"))
    except AddressError:
        return f"expected unix:///PATH or HOST:PORT, got {address!r}"
    return None


def probe_unix_socket(path: str) -> str | None:
    """Why nothing accepts connections on the unix socket ``path``, or None when something does."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such socket (is Tetragon running, and its socket directory mounted here?)"
    except OSError as err:
        return (err.strerror or str(err)).lower()
    if not stat.S_ISSOCK(st.st_mode):
        return "not a socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except ConnectionRefusedError:
            return "connection refused"
        except OSError as err:
            return (err.strerror or str(err)).lower()
    return None


def record_from_response(response: api_pb2.GetEventsResponse) -> ProcessEvent | RateLimited | str:
    """The record of one GetEventsResponse, or the name of its (ignored) event kind."""
    which = response.WhichOneof("event")
    when = response.time.seconds + response.time.nanos / 1e9 if response.HasField("time") else None
    if which == RATE_LIMIT_KEY:
        return RateLimited(response.rate_limit_info.number_of_dropped_process_events, when)
    kind = KIND_BY_KEY.get(which or "")
    if kind is None:
        return which or UNKNOWN_KIND
    process = getattr(response, which).process
    pod = None
    if process.HasField("pod") and process.pod.name:
        pod = PodRef(process.pod.namespace, process.pod.name)
    pid = process.pid.value if process.HasField("pid") else None
    return ProcessEvent(kind, when, pid, process.binary, pod, response.node_name or None)


class GrpcEventSource:
    """GetEvents in a daemon thread; :meth:`start` it, :meth:`close` it."""

    def __init__(
        self,
        address: str = DEFAULT_GRPC_ADDRESS,
        *,
        clock: Clock = SYSTEM_CLOCK,
        backoff: Backoff = DEFAULT_BACKOFF,
        rng: random.Random | None = None,
        max_pods: int = DEFAULT_MAX_PODS,
        request: api_pb2.GetEventsRequest = CHURN_REQUEST,
    ):
        if (problem := grpc_address_problem(address)) is not None:
            raise ValueError(f"address: {problem}")
        self.address = address
        self.socket_path = unix_socket_path(address)
        self.description = f"Tetragon gRPC {address}"
        self.clock = clock
        self.backoff = backoff
        self.request = request
        self.rng = rng or random.Random()
        self._tally = TallyCounter(max_pods)
        self._outcomes = OutcomeCounter()
        self._lock = threading.Lock()
        self._attempt = 0
        self._live_since: float | None = None
        self._reason = f"{self.description}: not connected yet"
        self._call: grpc.Call | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tetragon-grpc", daemon=True)
        self.connects = 0
        """Times the channel became connected (1 + reconnections)."""

    # ---------------------------------------------------------------- EventSource

    def poll(self) -> None:
        """Nothing to do: the thread counts events as they arrive."""

    def take(self) -> Tally:
        return self._tally.take()

    def status(self) -> SourceStatus:
        with self._lock:
            if self._live_since is not None:
                return SourceStatus(True, None, self._live_since)
            return SourceStatus(False, self._reason)

    def counts(self) -> ParseCounts:
        with self._lock:
            return self._outcomes.counts()

    def start(self) -> GrpcEventSource:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        failures = 0
        down_logged_at: float | None = None
        while not self._stop.is_set():
            was_live, reason = self._stream_once()
            if self._stop.is_set():
                break
            failures = 1 if was_live else failures + 1
            delay = self.backoff.delay(failures, self.rng.random)
            now = self.clock.monotonic()
            if was_live or down_logged_at is None or now - down_logged_at >= STILL_DOWN_REMINDER_S:
                log.warning("%s; process churn falls back to /proc/stat; retrying in %.1f s", reason, delay)
                down_logged_at = now
            self._stop.wait(delay)

    def _stream_once(self) -> tuple[bool, str]:
        """One channel, one GetEvents call; returns (was it ever live, why it ended)."""
        with self._lock:
            self._attempt += 1
            attempt = self._attempt
        channel = grpc.insecure_channel(self.address)
        live = threading.Event()

        def on_state(state: grpc.ChannelConnectivity) -> None:
            if state is grpc.ChannelConnectivity.READY:
                self._set_live(attempt, live)

        channel.subscribe(on_state, try_to_connect=True)
        reason = f"{self.description}: stream interrupted"
        try:
            get_events = channel.unary_stream(
                GET_EVENTS_METHOD,
                request_serializer=api_pb2.GetEventsRequest.SerializeToString,
                response_deserializer=api_pb2.GetEventsResponse.FromString,
            )
            call = get_events(self.request, wait_for_ready=False)
            with self._lock:
                self._call = call
            if self._stop.is_set():
                call.cancel()
            for response in call:
                self._set_live(attempt, live)  # a message proves it, whatever the connectivity callback says
                self._count(response)
            reason = f"{self.description}: Tetragon ended the event stream"
        except grpc.RpcError as err:
            reason = self._describe(err)
        except Exception as err:  # the thread must survive anything and keep retrying
            log.exception("%s: unexpected error in the event stream", self.description)
            reason = f"{self.description}: {type(err).__name__}: {err}"
        finally:
            with self._lock:
                self._attempt += 1  # late connectivity callbacks of this channel are void from here
                self._live_since = None
                self._reason = reason
                self._call = None
            channel.unsubscribe(on_state)
            channel.close()
        return live.is_set(), reason

    def _set_live(self, attempt: int, live: threading.Event) -> None:
        with self._lock:
            if attempt != self._attempt or self._live_since is not None:
                return
            self._live_since = self.clock.monotonic()
            self.connects += 1
        live.set()
        log.info("%s: connected; counting exec/exit events", self.description)

    def _count(self, response: api_pb2.GetEventsResponse) -> None:
        record = record_from_response(response)
        if not isinstance(record, str):
            self._tally.add(record)  # before the outcome counts: whoever sees the count finds the event
        with self._lock:
            if isinstance(record, str):
                self._outcomes.count_ignored(record)
            else:
                self._outcomes.count_parsed(record)

    def _describe(self, err: grpc.RpcError) -> str:
        code = err.code() if hasattr(err, "code") else None
        details = err.details() if hasattr(err, "details") else str(err)
        if code is grpc.StatusCode.UNAVAILABLE and self.socket_path is not None:
            problem = probe_unix_socket(self.socket_path)
            if problem is not None:
                return f"Tetragon socket {self.socket_path}: {problem}"
        name = code.name if code is not None else "UNKNOWN"
        hint = " (is a Tetragon agent listening there?)" if code is grpc.StatusCode.UNIMPLEMENTED else ""
        return f"{self.description}: {name}: {details}{hint}"
