"""The public client library: BatchScore with a deadline, a circuit breaker and a neutral
fallback, for any Python scheduler or tool (``from client import ScoringClient``), and
``kubeattention score`` (``client.score_cli``).

``ScoringClient`` lives in ``client.batchscore``; the request, the result, the transport,
the circuit breaker, the metrics and the exceptions each have a module of their own. The
names below are the API a caller may rely on (``tests/test_client.py`` pins them).

Imports ``wire`` and ``inference`` (the fallback score), never the aggregator: a
scheduler plugin or a controller links this and talks gRPC.
"""

from client.batchscore import DEFAULT_COOLDOWN_S, DEFAULT_DEADLINE_S, DEFAULT_FAILURE_THRESHOLD, ScoringClient
from client.circuit_breaker import CircuitBreaker, CircuitState, Ticket
from client.errors import ClientClosed, ClientConfigError, ClientError, InvalidRequest
from client.metrics import ClientMetrics
from client.request import build_request
from client.result import NodeScore, ScoreResult
from client.transport import GrpcTransport, Transport
from wire.status import Status

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
