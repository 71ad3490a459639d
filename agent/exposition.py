"""Prometheus exposition: the latest vector as gauges, plus the agent's own health.

Node gauges are built at scrape time from the latest vector (a custom collector, no
state copied into client objects). A missing metric is absent from /metrics - not 0 -
and ``kubeattention_node_metric_available{metric=...}`` says 0 for it. Every
:class:`AgentMetrics` owns its registry, so several agents (or tests) can coexist.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector

from agent.latest_vector import LatestVector
from wire.schema import METRICS

#: Collection takes about a millisecond; the buckets resolve 0.5 ms to 1 s.
COLLECT_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class NodeVectorCollector(PromCollector):
    """Builds constant gauges from the store's latest vector on each scrape."""

    def __init__(self, store: LatestVector):
        self.store = store

    def collect(self):
        vector, _ = self.store.latest()
        if vector is None:
            return
        for m, value, ok in zip(METRICS, vector.values, vector.available):
            if ok:
                yield GaugeMetricFamily(
                    m.prom_name, f"{m.label} ({m.source}), latest node vector", value=value * m.prom_factor
                )
        avail = GaugeMetricFamily(
            "kubeattention_node_metric_available",
            "1 if the agent measures this metric on this node, 0 if it is missing",
            labels=["metric"],
        )
        for m, ok in zip(METRICS, vector.available):
            avail.add_metric([m.name], 1.0 if ok else 0.0)
        yield avail
        yield GaugeMetricFamily(
            "kubeattention_agent_last_collect_timestamp_seconds",
            "Unix time at which the latest vector was collected",
            value=vector.collected_at_ms / 1000.0,
        )


class AgentMetrics:
    """The agent's registry: node gauges from the store and the agent's own counters."""

    def __init__(self, store: LatestVector, node_name: str, version: str):
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(NodeVectorCollector(store))
        self.pushes = Counter(
            "kubeattention_agent_pushes", "Pushes to the aggregator by result", ["result"], registry=self.registry
        )
        for result in ("ok", "error"):
            self.pushes.labels(result)
        self.last_push_success = Gauge(
            "kubeattention_agent_last_push_success_timestamp_seconds",
            "Unix time of the last push the aggregator accepted",
            registry=self.registry,
        )
        self.collect_duration = Histogram(
            "kubeattention_agent_collect_duration_seconds",
            "Time to collect one node vector",
            buckets=COLLECT_DURATION_BUCKETS,
            registry=self.registry,
        )
        Info("kubeattention_agent", "Agent build and node", registry=self.registry).info(
            {"version": version, "node": node_name}
        )

    def record_push(self, ok: bool, at_unix_s: float) -> None:
        self.pushes.labels("ok" if ok else "error").inc()
        if ok:
            self.last_push_success.set(at_unix_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
