"""Metrics this agent version does not collect yet, each with an honest reason.

They are real collectors in the pipeline that always report their metrics missing, so
the reason travels to /metrics, /v1/node and the aggregator. Replacing one with a real
collector (same ``metrics``) is a one-line change in :func:`agent.collectors.default_collectors`.
"""

from __future__ import annotations

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Reading, all_missing


class PendingCollector:
    """Reports ``metrics`` missing with ``reason`` on every reading."""

    def __init__(self, name: str, metrics: tuple[str, ...], reason: str, clock: Clock = SYSTEM_CLOCK):
        self.name = name
        self.metrics = metrics
        self.reason = reason
        self.clock = clock

    def read(self) -> Reading:
        return all_missing(self.name, self.clock.monotonic(), self.metrics, self.reason)


def pending_collectors(clock: Clock = SYSTEM_CLOCK) -> list[PendingCollector]:
    return [
        PendingCollector("ebpf_runqueue", ("runqueue_latency_p99_us", "cross_cgroup_preemptions_per_s"),
                         "not collected yet: eBPF run-queue collector (bpf/) not in this agent version", clock),
        PendingCollector("perf_counters", ("llc_miss_ratio", "llc_mpki", "cycles_per_instruction"),
                         "not collected yet: perf counters collector not in this agent version", clock),
        PendingCollector("memory_bandwidth", ("memory_bandwidth_gbps",),
                         "not collected yet: resctrl memory-bandwidth collector (and its LLC-miss x 64 B "
                         "fallback) not in this agent version", clock),
        PendingCollector("ebpf_biolatency", ("disk_io_latency_p99_ms",),
                         "not collected yet: eBPF block-IO latency collector (bpf/) not in this agent version", clock),
    ]
