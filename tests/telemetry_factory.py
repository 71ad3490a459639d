"""Builders for well-formed protocol messages that tests then break one field at a time."""

from __future__ import annotations

import math

from wire.schema import METRICS, SCHEMA_VERSION
from wire.v1 import scoring_pb2, telemetry_pb2

#: A quiet node as this VM measures it: /proc, PSI and cgroups only.
PROC_ONLY = {
    "cpu_utilization": 0.05,
    "cpu_iowait_ratio": 0.0,
    "cpu_psi_some": 0.01,
    "memory_psi_some": 0.0,
    "io_psi_some": 0.0,
    "cpu_throttled_ratio": 0.0,
    "memory_utilization": 0.3,
    "process_churn_per_s": 5.0,
}


def telemetry(node="node-a", collected_ms=1_700_000_000_000, **overrides) -> telemetry_pb2.NodeTelemetry:
    metrics = {**PROC_ONLY, **overrides}
    values = [metrics.get(m.name, math.nan) for m in METRICS]
    return telemetry_pb2.NodeTelemetry(
        schema_version=SCHEMA_VERSION,
        node_name=node,
        collected_at_unix_ms=collected_ms,
        values=values,
        available=[not math.isnan(v) for v in values],
        missing_reasons={m.name: "not collected in this test" for m in METRICS if m.name not in metrics},
        agent_version="test",
    )


def batch(*nodes, profile=scoring_pb2.WORKLOAD_PROFILE_LATENCY_CRITICAL, cpu=0.5) -> scoring_pb2.BatchScoreRequest:
    return scoring_pb2.BatchScoreRequest(
        pod=scoring_pb2.PodContext(cpu_request_cores=cpu, memory_request_bytes=512 * 2**20, profile=profile),
        node_names=list(nodes),
    )
