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

The network sits behind :class:`~client.transport.Transport`, so the breaker's logic is
tested with a fake transport and an injected clock; :class:`~client.transport.GrpcTransport`
is the real one (one long-lived channel). State and outcomes are Prometheus metrics in the
registry the caller gives.

:func:`score_once` is the same call without breaker or fallback, for one-shot tools whose
caller handles a failure itself (``kubeattention score``, ``kubeattention rebalance``).

The pieces live beside this module: ``client.request`` (the request), ``client.result``
(the answer), ``client.transport``, ``client.circuit_breaker``, ``client.metrics``,
``client.errors``; ``client`` itself names the public API.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import grpc
from prometheus_client import CollectorRegistry

from client.circuit_breaker import CircuitBreaker, CircuitState, Ticket
from client.errors import BadResponse, ClientClosed, ClientConfigError, InvalidRequest
from client.metrics import ClientMetrics
from client.request import build_request
from client.result import ScoreResult, decode_response, fallback_result
from client.transport import GrpcTransport, Transport
from wire.client_security import ClientSecurity, TokenFileError
from wire.schema import PodContext
from wire.v1 import scoring_pb2

#: Per-call deadline: the design's BatchScore latency budget.
DEFAULT_DEADLINE_S = 0.045
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN_S = 10.0
#: gRPC codes that are the caller's fault: raised, never counted against the aggregator.
CALLER_ERROR_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT})
#: Failure label for an exception that is not a gRPC status (socket error, broken channel).
CONNECTION_ERROR = "CONNECTION_ERROR"
#: Failure label for an answer that does not match the request (wrong length, unknown status).
BAD_RESPONSE = "BAD_RESPONSE"
_MAX_DETAIL_CHARS = 200


def score_once(
    transport: Transport, pod: PodContext, request: scoring_pb2.BatchScoreRequest, deadline_s: float
) -> ScoreResult:
    """One BatchScore of ``request`` (``build_request(pod, nodes)``) on ``transport``: no breaker,
    no fallback. Raises BadResponse for an answer that does not fit the request, and whatever
    the transport raises (grpc.RpcError, OSError, TokenFileError) for a failed call."""
    return decode_response(transport.batch_score(request, deadline_s), pod, request.node_names)


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


def _grpc_transport(address: str, security: ClientSecurity | None) -> GrpcTransport:
    if security is None:
        raise ClientConfigError(
            "security: say how to reach the aggregator: ClientSecurity(tls_ca=..., "
            "[tls_cert=..., tls_key=...], [token_file=...]) or ClientSecurity(insecure=True)"
        )
    try:
        return GrpcTransport(address, security)
    except (ValueError, TokenFileError) as e:
        raise ClientConfigError(f"security: {e}") from None


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
        # before the metrics: a client refused for its settings leaves the caller's registry as it was
        self._transport = transport if transport is not None else _grpc_transport(address, security)
        self.address = address
        self.deadline_s = float(deadline_s)
        self.metrics = ClientMetrics(registry)
        self.breaker = CircuitBreaker(failure_threshold, float(cooldown_s), clock, self.metrics.state_changed)
        self._clock = clock
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
            return fallback_result(pod, names, f"KubeAttention unavailable: {ticket.denial}")
        try:
            if ticket.trial:
                self._transport.reconnect()
            result = score_once(self._transport, pod, request, self.deadline_s)
        except BadResponse as e:  # an answer that does not fit the request: a server fault
            return self._fail(ticket, pod, names, BAD_RESPONSE, str(e))
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
        self.breaker.succeeded(ticket)
        self.metrics.ok.inc()
        return result

    def _fail(self, ticket: Ticket, pod: PodContext, names: Sequence[str], code: str, details: str) -> ScoreResult:
        state = self.breaker.failed(ticket, code)
        self.metrics.failures.labels(code).inc()
        self.metrics.fallback.inc()
        what = f"{code} ({details})" if details else code
        deadline = f" after the {self.deadline_s * 1000:g} ms deadline" if code == "DEADLINE_EXCEEDED" else ""
        return fallback_result(
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
