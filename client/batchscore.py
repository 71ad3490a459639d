"""ScoringClient: BatchScore for any Python scheduler or tool, behind a circuit breaker.

A scheduler must place pods whether or not KubeAttention answers. So the client never
raises for a transport failure: every failed call (deadline exceeded, aggregator down,
server error) answers with the neutral fallback — score 50 for every candidate, status
FALLBACK and a reason saying why — within the call's deadline (default 45 ms, the
design's latency budget).

After ``failure_threshold`` consecutive failures the circuit *opens*: calls answer with
the fallback at once, without touching the network, for ``cooldown_s``. Then one
*half-open* trial call goes through (concurrent callers meanwhile get the fallback); its
success closes the circuit, its failure re-opens it for a fresh cool-down.

Only the caller's own mistakes raise (:class:`InvalidRequest`): a request that cannot be
encoded, or one the aggregator answers with INVALID_ARGUMENT (duplicate or malformed
node names, NaN requests, ...). Those say nothing about the aggregator's health and
neither open nor close the circuit.

The network sits behind :class:`Transport`, so the breaker's logic is tested with a fake
transport and an injected clock; :class:`GrpcTransport` is the real one (one long-lived
channel). State and outcomes are Prometheus metrics in the registry the caller gives.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aggregator.batch import Status
from inference.scoring import FALLBACK_SCORE
from wire.client_security import ClientSecurity, TokenFileError, metadata
from wire.schema import PodContext, Profile, QoS
from wire.v1 import scoring_pb2, scoring_pb2_grpc

__all__ = [
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_DEADLINE_S",
    "DEFAULT_FAILURE_THRESHOLD",
    "CircuitBreaker",
    "CircuitState",
    "ClientClosed",
    "ClientConfigError",
    "ClientError",
    "ClientMetrics",
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

log = logging.getLogger(__name__)

#: Per-call deadline: the design's BatchScore latency budget.
DEFAULT_DEADLINE_S = 0.045
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN_S = 10.0
#: gRPC's own reconnect backoff. Its default grows to 120 s, and while a channel backs off
#: every call fails at once: after an aggregator restart (a rolling update) the client
#: must be connected again within a second, not count failures for minutes.
RECONNECT_BACKOFF_INITIAL_S = 0.1
RECONNECT_BACKOFF_MAX_S = 1.0
#: Largest response accepted: 5 000 candidates with long reasons fit with room.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
#: gRPC codes that are the caller's fault: raised, never counted against the aggregator.
CALLER_ERROR_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT})
#: Failure label for an exception that is not a gRPC status (socket error, broken channel).
CONNECTION_ERROR = "CONNECTION_ERROR"
#: Failure label for an answer that does not match the request (wrong length, unknown status).
BAD_RESPONSE = "BAD_RESPONSE"
CALL_DURATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.045, 0.1, 0.25, 1.0)
_MAX_DETAIL_CHARS = 200
_PROFILE_VALUES = frozenset(int(p) for p in Profile)
_STATUS_BY_VALUE = {int(s): s for s in Status}


# --------------------------------------------------------------------------- exceptions


class ClientError(Exception):
    """Base of everything the client raises on purpose. Transport failures never raise."""


class ClientConfigError(ClientError, ValueError):
    """A constructor argument is invalid; the message names it and its value."""


class InvalidRequest(ClientError, ValueError):
    """The request is the caller's mistake: it cannot be encoded, or the aggregator
    answered INVALID_ARGUMENT. Not counted toward opening the circuit."""

    def __init__(self, field: str, problem: str, code: grpc.StatusCode | None = None):
        self.field = field
        self.problem = problem
        self.code = code
        """``grpc.StatusCode.INVALID_ARGUMENT`` when the aggregator rejected it, None when the
        client refused to send it."""
        super().__init__(f"{field}: {problem}")


class ClientClosed(ClientError):
    """``score()`` was called after ``close()``."""


# --------------------------------------------------------------------------- results


class NodeScore(NamedTuple):
    """One candidate's answer. A named tuple: building 5 000 of them per call costs half
    what frozen dataclasses do."""

    name: str
    score: float
    """0-100, higher is better; 50 for STALE, UNKNOWN_NODE and FALLBACK."""
    status: Status
    confidence: float
    """0-1; 0 for fallbacks."""
    predicted_slowdown: float | None
    """Predicted tail-latency slowdown (1.0 = as if alone); None unless SCORED."""
    reason: str
    telemetry_age_ms: int | None = None
    """Age of the telemetry used; None when there was none (unknown node, client fallback)."""


@dataclass(frozen=True)
class ScoreResult:
    scores: tuple[NodeScore, ...]
    """One per candidate, in request order."""
    model_version: str
    """The aggregator's model; "" when the client answered with the fallback."""
    profile: Profile
    """The profile scored for (the aggregator's, or the pod's resolved one on fallback)."""
    answered: bool
    """True when the aggregator answered this call, False when the client fell back."""
    fallback_reason: str = ""
    """Why the client fell back ("" when the aggregator answered)."""
    server_elapsed_us: int | None = None

    @property
    def fallback(self) -> bool:
        """Every node holds the neutral fallback: the client fell back, or the aggregator
        itself did (model failure, budget overrun). The reasons say why."""
        return not self.answered or (bool(self.scores) and all(s.status is Status.FALLBACK for s in self.scores))

    def ranked(self) -> list[NodeScore]:
        """Best first; ties keep the request order (the caller's own preference)."""
        return sorted(self.scores, key=lambda s: -s.score)

    def best(self) -> NodeScore | None:
        """The highest-scored node (first in request order among equals); None if no nodes.

        On a fallback every node scores 50, so this is the caller's first candidate: the
        fallback is neutral and leaves the choice to the scheduler's other criteria.
        """
        return max(self.scores, key=lambda s: s.score, default=None)

    def by_name(self) -> dict[str, NodeScore]:
        return {s.name: s for s in self.scores}


def _fallback_result(pod: PodContext, nodes: Sequence[str], reason: str) -> ScoreResult:
    return ScoreResult(
        scores=tuple(NodeScore(n, FALLBACK_SCORE, Status.FALLBACK, 0.0, None, reason) for n in nodes),
        model_version="",
        profile=pod.resolved_profile(),
        answered=False,
        fallback_reason=reason,
    )


def _from_proto(resp: scoring_pb2.BatchScoreResponse, pod: PodContext, nodes: Sequence[str]) -> ScoreResult:
    """Raises ValueError when the answer does not fit the request (a server fault)."""
    status, isnan = _STATUS_BY_VALUE, math.isnan
    try:
        scores = tuple(
            NodeScore(
                s.node_name,
                s.score,
                status[s.status],
                s.confidence,
                None if isnan(s.predicted_slowdown) else s.predicted_slowdown,
                s.reason,
                None if s.telemetry_age_ms < 0 else s.telemetry_age_ms,
            )
            for s in resp.scores
        )
    except KeyError as e:
        raise ValueError(f"unknown score status {e.args[0]}") from None
    if len(scores) != len(nodes) or any(a.name != b for a, b in zip(scores, nodes)):
        raise ValueError(f"answer for {len(scores)} nodes does not match the {len(nodes)} candidates asked for")
    # An unknown profile (a newer aggregator) is not worth failing the call over.
    profile = Profile(resp.profile) if resp.profile in _PROFILE_VALUES else pod.resolved_profile()
    return ScoreResult(
        scores=scores,
        model_version=resp.model_version,
        profile=profile,
        answered=True,
        server_elapsed_us=resp.elapsed_us,
    )


# --------------------------------------------------------------------------- request


def build_request(pod: PodContext, nodes: Sequence[str]) -> scoring_pb2.BatchScoreRequest:
    """The BatchScore request for ``pod`` and ``nodes``; InvalidRequest names what cannot be sent.

    Only what protobuf cannot carry is checked here; the aggregator owns every other rule
    (empty list, duplicates, limits, NaN) and answers INVALID_ARGUMENT naming the field.
    """
    if not isinstance(pod, PodContext):
        raise InvalidRequest("pod", f"must be a wire.schema.PodContext, got {type(pod).__name__} {pod!r:.60}")
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Iterable):
        raise InvalidRequest("nodes", f"must be a list of node names, got {type(nodes).__name__} {nodes!r:.60}")
    names = list(nodes)
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise InvalidRequest(f"nodes[{i}]", f"must be a str, got {type(n).__name__} {n!r:.60}")
    msg = scoring_pb2.PodContext()
    for field in ("namespace", "name", "cpu_request_cores", "memory_request_bytes", "priority"):
        value = getattr(pod, field)
        try:
            setattr(msg, field, value)
        except (TypeError, ValueError) as e:
            raise InvalidRequest(f"pod.{field}", f"{value!r} cannot be sent: {e}") from None
    for field, enum_type, proto_field in (("qos", QoS, "qos_class"), ("profile", Profile, "profile")):
        value = getattr(pod, field)
        try:
            setattr(msg, proto_field, 0 if value is None else int(enum_type(value)))
        except (TypeError, ValueError):
            raise InvalidRequest(
                f"pod.{field}",
                f"{value!r} is not a {enum_type.__name__} ({', '.join(m.name for m in enum_type)}) or None",
            ) from None
    return scoring_pb2.BatchScoreRequest(pod=msg, node_names=names)


# --------------------------------------------------------------------------- transport


class Transport(Protocol):
    def batch_score(self, request: scoring_pb2.BatchScoreRequest, timeout: float) -> scoring_pb2.BatchScoreResponse:
        """One BatchScore call; raises grpc.RpcError (or OSError) on failure."""

    def reconnect(self) -> None:
        """Start afresh before a half-open trial, so the trial measures the aggregator and
        not the connection's own retry state."""

    def close(self) -> None: ...


class GrpcTransport:
    """ScoringService.BatchScore over one long-lived channel, secured as ``security`` says (TLS,
    a client certificate, a bearer token re-read when its file changes; plaintext only with
    ``insecure=True``); gRPC reconnects underneath.

    The channel is replaced only before a half-open trial: a channel that saw the
    aggregator die sits in gRPC's reconnect backoff and fails calls at once until its next
    attempt, so a trial on it could fail against an aggregator that is already back.
    """

    def __init__(self, address: str, security: ClientSecurity):
        try:
            security.check()
            self._tokens = security.token_source()
        except (ValueError, TokenFileError) as e:
            raise ClientConfigError(f"security: {e}") from None
        self.address = address
        self.security = security
        self._lock = threading.Lock()
        self._channel, self._stub = self._open()

    def _open(self):
        channel = self.security.channel(
            self.address,
            options=[
                ("grpc.initial_reconnect_backoff_ms", int(RECONNECT_BACKOFF_INITIAL_S * 1000)),
                ("grpc.max_reconnect_backoff_ms", int(RECONNECT_BACKOFF_MAX_S * 1000)),
                ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
                ("grpc.http2.bdp_probe", 0),
                # Own subchannels: with gRPC's global pool a new channel would inherit the old
                # connection's backoff, and reconnect() would start nothing afresh.
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        return channel, scoring_pb2_grpc.ScoringServiceStub(channel)

    def batch_score(self, request: scoring_pb2.BatchScoreRequest, timeout: float) -> scoring_pb2.BatchScoreResponse:
        return self._stub.BatchScore(request, timeout=timeout, metadata=metadata(self._tokens))

    def reconnect(self) -> None:
        with self._lock:
            old = self._channel
            self._channel, self._stub = self._open()
        old.close()  # calls still out on it end CANCELLED; they were let through before the outage

    def close(self) -> None:
        with self._lock:
            self._channel.close()


# --------------------------------------------------------------------------- circuit breaker


class CircuitState(enum.IntEnum):
    """Values are those of the ``kubeattention_client_circuit_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class Ticket:
    """Permission for one call. ``generation`` ties its outcome to the state it was let
    through in: an outcome from an older state (a slow call finishing after the circuit
    opened) is not counted."""

    allowed: bool
    generation: int
    trial: bool = False
    denial: str = ""
    """Why the call is not let through, when it is not."""


class CircuitBreaker:
    """CLOSED -> OPEN after ``failure_threshold`` consecutive failures; OPEN -> HALF_OPEN when
    a call arrives after ``cooldown_s``; that one trial call closes it or re-opens it.

    Thread-safe; never calls out while holding its lock except ``on_change`` (keep it quick).
    """

    def __init__(
        self,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float],
        on_change: Callable[[CircuitState, CircuitState], None] | None = None,
    ):
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change or (lambda old, new: None)
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._generation = 0
        self._failures = 0
        self._last_failure = ""
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def last_failure(self) -> str:
        return self._last_failure

    def admit(self) -> Ticket:
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return Ticket(True, self._generation)
            if self._state is CircuitState.OPEN:
                remaining = self._opened_at + self.cooldown_s - self._clock()
                if remaining > 0:
                    return Ticket(False, self._generation, denial=self._open_text(remaining))
                self._move(CircuitState.HALF_OPEN)
            if self._trial_in_flight:
                return Ticket(
                    False,
                    self._generation,
                    denial=f"circuit half-open after {self._failures} consecutive failures "
                    f"(last: {self._last_failure}); a trial call is in flight",
                )
            self._trial_in_flight = True
            return Ticket(True, self._generation, trial=True)

    def succeeded(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.generation != self._generation:
                return
            self._failures = 0
            self._trial_in_flight = False
            if self._state is not CircuitState.CLOSED:
                log.info("KubeAttention aggregator answered the trial call: circuit closed")
                self._move(CircuitState.CLOSED)

    def failed(self, ticket: Ticket, code: str) -> str:
        """Counts a failure labelled ``code``; returns the circuit's state in words."""
        with self._lock:
            if ticket.generation != self._generation:
                # The circuit changed state while this call was out; it was decided without it.
                return self._describe()
            self._failures += 1
            self._last_failure = code
            self._trial_in_flight = False
            if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._move(CircuitState.OPEN)
                log.warning("KubeAttention aggregator: %s", self._open_text(self.cooldown_s))
            return self._describe()

    def released(self, ticket: Ticket) -> None:
        """The call proved nothing either way (the caller's own error): free the trial slot."""
        with self._lock:
            if ticket.trial and ticket.generation == self._generation:
                self._trial_in_flight = False

    # Called with the lock held.
    def _move(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        self._generation += 1
        self._on_change(old, new)

    def _open_text(self, remaining_s: float) -> str:
        return (
            f"circuit open after {self._failures} consecutive failures (last: {self._last_failure}); "
            f"retrying in {max(remaining_s, 0.0):.1f} s"
        )

    def _describe(self) -> str:
        if self._state is CircuitState.OPEN:
            return self._open_text(self._opened_at + self.cooldown_s - self._clock())
        if self._state is CircuitState.HALF_OPEN:
            return f"circuit half-open after {self._failures} consecutive failures"
        return f"{self._failures} of {self.failure_threshold} consecutive failures before the circuit opens"


# --------------------------------------------------------------------------- metrics


class ClientMetrics:
    """The client's Prometheus metrics, defined once, in the caller's registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.circuit_state = Gauge(
            "kubeattention_client_circuit_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", registry=r
        )
        calls = Counter(
            "kubeattention_client_calls",
            "score() calls by outcome: ok (the aggregator "
            "answered), fallback (neutral scores, see reasons), invalid (caller error, raised)",
            ["result"],
            registry=r,
        )
        self.ok, self.fallback, self.invalid = (calls.labels(x) for x in ("ok", "fallback", "invalid"))
        self.failures = Counter(
            "kubeattention_client_failures", "Failed BatchScore calls by gRPC code", ["code"], registry=r
        )
        self.duration = Histogram(
            "kubeattention_client_call_duration_seconds",
            "score() time as the caller sees it, fallbacks included",
            buckets=CALL_DURATION_BUCKETS,
            registry=r,
        )
        self.opens = Counter("kubeattention_client_circuit_opens", "Times the circuit opened", registry=r)

    def state_changed(self, old: CircuitState, new: CircuitState) -> None:
        self.circuit_state.set(int(new))
        if new is CircuitState.OPEN:
            self.opens.inc()


# --------------------------------------------------------------------------- the client


def _check_config(deadline_s, failure_threshold, cooldown_s) -> None:
    problems = []
    if (
        isinstance(deadline_s, bool)
        or not isinstance(deadline_s, (int, float))
        or not math.isfinite(deadline_s)
        or deadline_s <= 0
    ):
        problems.append(f"deadline_s: must be a finite number of seconds > 0, got {deadline_s!r}")
    if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
        problems.append(f"failure_threshold: must be an int >= 1, got {failure_threshold!r}")
    if (
        isinstance(cooldown_s, bool)
        or not isinstance(cooldown_s, (int, float))
        or not math.isfinite(cooldown_s)
        or cooldown_s < 0
    ):
        problems.append(f"cooldown_s: must be a finite number of seconds >= 0, got {cooldown_s!r}")
    if problems:
        raise ClientConfigError("; ".join(problems))


def _describe_error(err: BaseException) -> tuple[str, str]:
    """(label, words) for a failed call: the gRPC code name, or CONNECTION_ERROR."""
    if isinstance(err, grpc.RpcError) and callable(getattr(err, "code", None)):
        code = err.code()
        details = err.details() if callable(getattr(err, "details", None)) else ""
        label = code.name if isinstance(code, grpc.StatusCode) else CONNECTION_ERROR
    else:
        label, details = CONNECTION_ERROR, f"{type(err).__name__}: {err}"
    details = (details or "").strip()
    if len(details) > _MAX_DETAIL_CHARS:
        details = details[: _MAX_DETAIL_CHARS - 1] + "…"
    return label, details


def _rejected(err: grpc.RpcError) -> InvalidRequest:
    """InvalidRequest from the aggregator's INVALID_ARGUMENT, with the field it named.

    The aggregator answers "BatchScore rejected: FIELD: PROBLEM"; anything else keeps the
    whole message under the field "request".
    """
    details = (err.details() or "").strip()
    field, sep, problem = details.removeprefix("BatchScore rejected: ").partition(": ")
    if not sep or not field or " " in field:
        field, problem = "request", details or err.code().name
    return InvalidRequest(field, f"{problem} (the aggregator answered {err.code().name})", err.code())


class ScoringClient:
    """BatchScore with a deadline, a neutral fallback and a circuit breaker. Thread-safe:
    share one client (one channel) across a scheduler's threads. ::

        client = ScoringClient("kubeattention-aggregator.kubeattention-system.svc:50051",
                               security=ClientSecurity(tls_ca="ca.pem", tls_cert="scheduler.pem",
                                                       tls_key="scheduler-key.pem"),
                               registry=prometheus_client.REGISTRY)
        result = client.score(PodContext(cpu_request_cores=0.5, profile=Profile.LATENCY_CRITICAL), nodes)
        result.best().name, result.fallback, result.fallback_reason

    ``deadline_s`` bounds each call (gRPC deadlines have millisecond resolution, so anything
    under 1 ms acts as up to 1 ms). ``failure_threshold`` consecutive failures open the
    circuit for ``cooldown_s``. ``registry`` receives the ``kubeattention_client_*`` metrics
    (a private registry when None; one client per registry). ``clock`` (monotonic seconds)
    times the cool-down and the call-duration histogram. ``security`` says how to reach the
    aggregator (``ClientSecurity(tls_ca=..., tls_cert=..., tls_key=..., token_file=...)``, or
    ``ClientSecurity(insecure=True)`` for plaintext); required unless ``transport`` replaces gRPC (tests).
    """

    def __init__(
        self,
        address: str,
        *,
        deadline_s: float = DEFAULT_DEADLINE_S,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: Transport | None = None,
        security: ClientSecurity | None = None,
    ):
        _check_config(deadline_s, failure_threshold, cooldown_s)
        if transport is None and security is None:
            raise ClientConfigError(
                "security: say how to reach the aggregator: ClientSecurity(tls_ca=..., "
                "[tls_cert=..., tls_key=...], [token_file=...]) or ClientSecurity(insecure=True)"
            )
        self.address = address
        self.deadline_s = float(deadline_s)
        self.metrics = ClientMetrics(registry)
        self.breaker = CircuitBreaker(failure_threshold, float(cooldown_s), clock, self.metrics.state_changed)
        self._clock = clock
        self._transport = transport if transport is not None else GrpcTransport(address, security)
        self._closed = False

    @property
    def state(self) -> CircuitState:
        return self.breaker.state

    def score(self, pod: PodContext, nodes: Sequence[str]) -> ScoreResult:
        """Scores for ``nodes`` in request order; the neutral fallback when the aggregator
        cannot answer in time. Raises only :class:`InvalidRequest` and :class:`ClientClosed`."""
        if self._closed:
            raise ClientClosed(f"ScoringClient({self.address!r}) is closed")
        t0 = self._clock()
        try:
            return self._score(pod, nodes)
        finally:
            self.metrics.duration.observe(max(self._clock() - t0, 0.0))

    def _score(self, pod: PodContext, nodes: Sequence[str]) -> ScoreResult:
        try:
            request = build_request(pod, nodes)
        except InvalidRequest:
            self.metrics.invalid.inc()
            raise
        names = request.node_names
        ticket = self.breaker.admit()
        if not ticket.allowed:
            self.metrics.fallback.inc()
            return _fallback_result(pod, names, f"KubeAttention unavailable: {ticket.denial}")
        try:
            if ticket.trial:
                self._transport.reconnect()
            resp = self._transport.batch_score(request, self.deadline_s)
        except grpc.RpcError as e:
            if callable(getattr(e, "code", None)) and e.code() in CALLER_ERROR_CODES:
                self.breaker.released(ticket)
                self.metrics.invalid.inc()
                raise _rejected(e) from None
            return self._fail(ticket, pod, names, *_describe_error(e))
        except Exception as e:  # socket errors, a broken channel: never the caller's problem
            return self._fail(ticket, pod, names, *_describe_error(e))
        except BaseException:  # KeyboardInterrupt and friends: free a half-open trial slot
            self.breaker.released(ticket)
            raise
        try:
            result = _from_proto(resp, pod, names)
        except (ValueError, TypeError) as e:  # an answer that does not fit the request: a server fault
            return self._fail(ticket, pod, names, BAD_RESPONSE, str(e))
        self.breaker.succeeded(ticket)
        self.metrics.ok.inc()
        return result

    def _fail(self, ticket: Ticket, pod: PodContext, names: Sequence[str], code: str, details: str) -> ScoreResult:
        state = self.breaker.failed(ticket, code)
        self.metrics.failures.labels(code).inc()
        self.metrics.fallback.inc()
        what = f"{code} ({details})" if details else code
        deadline = f" after the {self.deadline_s * 1000:g} ms deadline" if code == "DEADLINE_EXCEEDED" else ""
        return _fallback_result(
            pod, names, f"KubeAttention unavailable: BatchScore failed with {what}{deadline}; {state}"
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()

    def __enter__(self) -> ScoringClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
