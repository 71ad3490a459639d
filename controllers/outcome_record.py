"""One recorded outcome: the JSON record (what ``--export`` writes and ``kubeattention train
--outcomes`` reads), its ``ka:outcomes`` stream fields, and the dump of that stream."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from controllers.pod_outcome import OUTCOME_WEIGHTS, Tracked
from wire.schema import OUTCOME_RECORD_KIND, OUTCOME_RECORD_VERSION, SCHEMA_VERSION


def build_record(t: Tracked, outcome: str, now: float) -> dict:
    d = t.decision
    assert d is not None  # callers check; not input validation
    i = d.candidates.index(t.node) if t.node in d.candidates else None
    return {
        "kind": OUTCOME_RECORD_KIND,
        "version": OUTCOME_RECORD_VERSION,
        "pod_uid": t.uid,
        "pod_namespace": t.namespace,
        "pod_name": t.name,
        "workload": t.workload,
        "node": t.node,
        "outcome": outcome,
        "weight": OUTCOME_WEIGHTS[outcome],
        "bound_at_ms": int(t.bound_at * 1000),
        "recorded_at_ms": int(now * 1000),
        "observed_after_s": round(now - t.bound_at, 3),
        "restart_count": t.obs.restarts,
        "termination_reasons": sorted(t.obs.termination_reasons),
        "disruption": t.obs.disruption,
        "decision": {
            "ts_ms": d.ts_ms,
            "mode": d.mode,
            "model_version": d.model_version,
            "recommended": d.recommended,
            "followed": bool(d.recommended) and d.recommended == t.node,
            "node_was_candidate": i is not None,
            "score_on_node": d.scores[i] if i is not None else None,
            "status_on_node": d.statuses[i] if i is not None and i < len(d.statuses) else None,
            "predicted_slowdown_on_node": d.slowdowns[i] if i is not None and i < len(d.slowdowns) else None,
        },
        "pod": dict(d.pod),
        "telemetry": t.telemetry,
        "telemetry_problem": t.telemetry_problem,
        "metric_schema_version": SCHEMA_VERSION,
        "observed_slowdown": None,
    }


def stream_fields(record: dict) -> dict[str, str]:
    return {
        "pod_uid": record["pod_uid"],
        "pod_namespace": record["pod_namespace"],
        "pod_name": record["pod_name"],
        "node": record["node"],
        "outcome": record["outcome"],
        "weight": repr(record["weight"]),
        "decision_ts_ms": str(record["decision"]["ts_ms"]),
        "recorded_at_ms": str(record["recorded_at_ms"]),
        "record": json.dumps(record, sort_keys=True),
    }


def dump_stream(client: redis.Redis, key: str, path: Path, page: int = 10_000) -> int:
    """Write every record in the outcomes stream to ``path`` as JSONL; returns the count."""
    n, start = 0, "-"
    with path.open("w", encoding="utf-8") as f:
        while True:
            entries = client.xrange(key, min=start, count=page)
            for entry_id, fields in entries:
                if fields.get("record"):
                    f.write(fields["record"] + "\n")
                    n += 1
                start = f"({entry_id}"
            if len(entries) < page:
                return n
