"""The client's Prometheus metrics (``kubeattention_client_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from client.circuit_breaker import CircuitState

CALL_DURATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.045, 0.1, 0.25, 1.0)


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
