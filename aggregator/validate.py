"""Validation of what crosses the aggregator's boundary: pushed telemetry and score requests.

Every rejection is an ``InvalidInput`` naming the field and the offending value, so an
operator reading the agent's log or a scheduler's error knows what to fix.
"""

from __future__ import annotations

import math

import numpy as np

from aggregator.errors import InvalidInput
from aggregator.node_record import NodeRecord, Offender
from wire.schema import METRIC_BY_NAME, METRICS, NUM_METRICS, SCHEMA_VERSION, PodContext, Profile, QoS, k8s_name_problem
from wire.v1 import scoring_pb2, telemetry_pb2

MAX_AGENT_VERSION = 64
MAX_REASON = 512
MAX_OFFENDERS = 32


def check_node_name(name: str, field: str = "node_name") -> str:
    if (problem := k8s_name_problem(name)) is not None:
        raise InvalidInput(field, problem)
    return name


def validate_telemetry(msg: telemetry_pb2.NodeTelemetry, received_at_ms: int) -> NodeRecord:
    if msg.schema_version != SCHEMA_VERSION:
        raise InvalidInput("schema_version", f"got {msg.schema_version}, this aggregator speaks {SCHEMA_VERSION}")
    name = check_node_name(msg.node_name)
    if len(msg.values) != NUM_METRICS:
        raise InvalidInput("values", f"expected {NUM_METRICS} values in schema order, got {len(msg.values)}")
    if len(msg.available) != NUM_METRICS:
        raise InvalidInput("available", f"expected {NUM_METRICS} mask bits, got {len(msg.available)}")
    if msg.collected_at_unix_ms <= 0:
        raise InvalidInput(
            "collected_at_unix_ms", f"must be a positive Unix time in ms, got {msg.collected_at_unix_ms}"
        )
    # plain Python floats in the loop (numpy scalar access costs more than the checks)
    raw, available = list(msg.values), list(msg.available)
    for m in METRICS:
        v = raw[m.index]
        if not available[m.index]:
            raw[m.index] = math.nan  # whatever was sent for a missing metric is not kept
            continue
        if not math.isfinite(v):
            raise InvalidInput(
                f"values[{m.index}] ({m.name})",
                f"{v} is not a finite number; send NaN with available=false for a missing metric",
            )
        if not (m.lo <= v <= m.hi):
            raise InvalidInput(
                f"values[{m.index}] ({m.name})", f"{v} is outside the valid range [{m.lo:g}, {m.hi:g}] {m.unit}"
            )
    values = np.array(raw, dtype=np.float64)
    mask = np.array(available, dtype=bool)
    if len(msg.agent_version) > MAX_AGENT_VERSION:
        raise InvalidInput("agent_version", f"longer than {MAX_AGENT_VERSION} characters")
    reasons = {}
    for key, text in msg.missing_reasons.items():
        if key not in METRIC_BY_NAME:
            raise InvalidInput("missing_reasons", f"{key[:80]!r} is not a metric name of schema {SCHEMA_VERSION}")
        reasons[key] = text[:MAX_REASON]
    return NodeRecord(
        node_name=name,
        values=values,
        mask=mask,
        collected_at_ms=int(msg.collected_at_unix_ms),
        received_at_ms=received_at_ms,
        schema_version=int(msg.schema_version),
        agent_version=msg.agent_version,
        missing_reasons=reasons,
        offenders=validate_offenders(msg.top_offenders),
    )


def validate_offenders(offenders) -> tuple[Offender, ...]:
    if len(offenders) > MAX_OFFENDERS:
        raise InvalidInput("top_offenders", f"{len(offenders)} entries, more than the {MAX_OFFENDERS} accepted")
    out = []
    for i, o in enumerate(offenders):
        field = f"top_offenders[{i}]"
        for part, text in (("namespace", o.namespace), ("name", o.name)):
            if (problem := k8s_name_problem(text)) is not None:
                raise InvalidInput(f"{field}.{part}", problem)
        metric = METRIC_BY_NAME.get(o.metric)
        if metric is None:
            raise InvalidInput(f"{field}.metric", f"{o.metric[:80]!r} is not a metric name of schema {SCHEMA_VERSION}")
        if not math.isfinite(o.value) or not (0 <= o.value <= metric.hi):
            raise InvalidInput(f"{field}.value", f"{o.value} is outside [0, {metric.hi:g}] {metric.unit}")
        out.append(Offender(o.namespace, o.name, o.metric, float(o.value)))
    return tuple(out)


_QOS = {
    scoring_pb2.QOS_CLASS_UNSPECIFIED: None,
    scoring_pb2.QOS_CLASS_GUARANTEED: QoS.GUARANTEED,
    scoring_pb2.QOS_CLASS_BURSTABLE: QoS.BURSTABLE,
    scoring_pb2.QOS_CLASS_BEST_EFFORT: QoS.BEST_EFFORT,
}


def pod_from_proto(pod: scoring_pb2.PodContext) -> PodContext:
    if not math.isfinite(pod.cpu_request_cores) or pod.cpu_request_cores < 0:
        raise InvalidInput("pod.cpu_request_cores", f"must be a finite number >= 0, got {pod.cpu_request_cores}")
    if pod.memory_request_bytes < 0:
        raise InvalidInput("pod.memory_request_bytes", f"must be >= 0, got {pod.memory_request_bytes}")
    if pod.qos_class not in _QOS:
        raise InvalidInput("pod.qos_class", f"unknown QoS class {pod.qos_class}")
    if pod.profile == scoring_pb2.WORKLOAD_PROFILE_UNSPECIFIED:
        profile = None
    else:
        try:
            profile = Profile(pod.profile)
        except ValueError:
            raise InvalidInput("pod.profile", f"unknown workload profile {pod.profile}") from None
    return PodContext(
        cpu_request_cores=float(pod.cpu_request_cores),
        memory_request_bytes=int(pod.memory_request_bytes),
        qos=_QOS[pod.qos_class],
        profile=profile,
        priority=int(pod.priority),
        namespace=pod.namespace,
        name=pod.name,
    )


def validate_batch(req: scoring_pb2.BatchScoreRequest, max_candidates: int) -> tuple[PodContext, list[str]]:
    names = list(req.node_names)
    if not names:
        raise InvalidInput("node_names", "empty: send at least one candidate node")
    if len(names) > max_candidates:
        raise InvalidInput(
            "node_names",
            f"{len(names)} candidates exceed the limit of {max_candidates} (aggregator flag --max-candidates)",
        )
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        raise InvalidInput("node_names", f"{dup!r} appears more than once; list each candidate once")
    for i, n in enumerate(names):
        if not n:
            raise InvalidInput(f"node_names[{i}]", "must not be empty")
    return pod_from_proto(req.pod), names
