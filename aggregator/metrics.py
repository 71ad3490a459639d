"""The aggregator's Prometheus metrics, defined once, on a registry per instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily

from aggregator.model_store import REFUSAL_REASONS
from wire.status import Status

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.045, 0.1, 0.25, 1.0)


class AggregatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pushes = Counter("kubeattention_aggregator_pushes", "Telemetry pushes by result", ["result"], registry=r)
        self.push_accepted = self.pushes.labels("accepted")
        self.push_invalid = self.pushes.labels("invalid")
        self.push_unavailable = self.pushes.labels("unavailable")
        self.push_shed = self.pushes.labels("shed")  # refused at once: --max-inflight-pushes reached
        self.requests = Counter(
            "kubeattention_aggregator_batchscore_requests", "BatchScore calls by result", ["result"], registry=r
        )
        self.req_ok = self.requests.labels("ok")
        self.req_invalid = self.requests.labels("invalid")
        self.duration = Histogram(
            "kubeattention_aggregator_batchscore_duration_seconds",
            "Server-side BatchScore time",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "kubeattention_aggregator_fallbacks",
            "BatchScore calls answered with the neutral fallback",
            ["reason"],
            registry=r,
        )
        self.fallback_budget = self.fallbacks.labels("budget")
        self.fallback_error = self.fallbacks.labels("error")
        node_scores = Counter(
            "kubeattention_aggregator_node_scores", "Per-node scores returned, by status", ["status"], registry=r
        )
        #: by wire.status.Status (an int status value finds its child too)
        self.node_scores = {s: node_scores.labels(s.label) for s in Status}
        self.redis_up = Gauge("kubeattention_aggregator_redis_up", "1 when the last Redis call succeeded", registry=r)
        self.last_sync = Gauge(
            "kubeattention_aggregator_last_redis_sync_timestamp_seconds",
            "When the snapshot last read Redis in full",
            registry=r,
        )
        self.corrupt = Counter(
            "kubeattention_aggregator_corrupt_records", "Node hashes in Redis that could not be decoded", registry=r
        )
        self.model_info = Info(
            "kubeattention_aggregator_model",
            "The model answering BatchScore: version, source (file or redis), sha256 prefix",
            registry=r,
        )
        self.model_reloads = Counter(
            "kubeattention_aggregator_model_reloads", "Models swapped in from Redis without a restart", registry=r
        )
        self.model_refused = Counter(
            "kubeattention_aggregator_model_refused",
            "Models in Redis refused (the previous model kept serving), by reason",
            ["reason"],
            registry=r,
        )
        for reason in REFUSAL_REASONS:
            self.model_refused.labels(reason)
        self.extender_requests = Counter(
            "kubeattention_extender_requests", "Scheduler extender calls", ["verb", "result"], registry=r
        )
        self.extender_duration = Histogram(
            "kubeattention_extender_duration_seconds",
            "Scheduler extender call time",
            ["verb"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions_dropped = Counter(
            "kubeattention_decisions_dropped",
            "Decisions not recorded in ka:decisions (queue full or Redis down)",
            registry=r,
        )
        self.auth_refusals = Counter(
            "kubeattention_aggregator_auth_refusals",
            "Calls refused for their identity (aggregator/security/auth.py), by endpoint "
            "(push, batchscore, extender) and code",
            ["endpoint", "code"],
            registry=r,
        )


class SnapshotCollector:
    """Node counts by freshness, computed at scrape time from the snapshot."""

    def __init__(self, snapshot, clock_ms, max_staleness_ms: int):
        self.snapshot, self.clock_ms, self.max_staleness_ms = snapshot, clock_ms, max_staleness_ms

    def collect(self):
        now = self.clock_ms()
        g = GaugeMetricFamily("kubeattention_aggregator_nodes", "Nodes in the snapshot by freshness", labels=["state"])
        recs = self.snapshot.records()
        stale = sum(1 for r in recs if r.age_ms(now) > self.max_staleness_ms)
        g.add_metric(["fresh"], len(recs) - stale)
        g.add_metric(["stale"], stale)
        yield g
        skewed = GaugeMetricFamily(
            "kubeattention_aggregator_clock_skewed_nodes",
            "Nodes whose receipt and collection stamps differ by more than "
            "snapshot.CLOCK_SKEW_WARN_MS (agent clock off, or pushes delayed)",
        )
        skewed.add_metric([], self.snapshot.skewed_nodes())
        yield skewed
        if recs:  # no nodes, no skew to report (never a made-up 0)
            worst = GaugeMetricFamily(
                "kubeattention_aggregator_clock_skew_max_seconds",
                "Largest |receipt - collection| over the nodes in the snapshot",
            )
            worst.add_metric([], max(abs(r.clock_skew_ms) for r in recs) / 1000)
            yield worst
