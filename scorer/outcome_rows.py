"""Observed training rows from the outcomes JSONL of ``kubeattention outcome-collector --export``.

``kubeattention train --outcomes FILE`` adds them to the *training* split: the node's
vector and mask at decision time plus the pod context, with the record's
``observed_slowdown`` as the label and its outcome weight (running 1, evicted and
oom_killed 3, ...) as the sample weight. Pod status carries no latency, so only rows whose
``observed_slowdown`` a latency source filled in are used; the others (and rows without
telemetry, with weight 0, or from another metric schema) are skipped and counted. A line
that is not an outcome record is a :class:`~scorer.training.TrainError` naming the line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scorer import dataset
from scorer.training import TrainError
from wire import schema
from wire.schema import OUTCOME_RECORD_KIND


@dataclass(frozen=True)
class OutcomeRows:
    """Training rows from an outcomes JSONL: X (n, 26) float32, y log slowdown, sample weights."""

    X: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    lines: int
    skipped: dict
    data_hash: str

    def summary(self) -> dict:
        return {
            "rows_used": int(len(self.y)),
            "lines": self.lines,
            "skipped": dict(self.skipped),
            "data_hash": self.data_hash,
        }


def _outcome_row(rec: dict) -> tuple[np.ndarray, float, float] | str:
    """(X row, log slowdown, weight), or why the row is skipped. Raises ValueError/KeyError/TypeError if malformed."""
    if rec.get("kind") != OUTCOME_RECORD_KIND:
        raise ValueError(f"kind is {rec.get('kind')!r}, not {OUTCOME_RECORD_KIND!r}")
    weight = float(rec["weight"])
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"weight {weight!r} is not a finite number >= 0")
    pod = rec["pod"]
    qos = str(pod.get("qos") or "").upper().replace("-", "_").replace("BESTEFFORT", "BEST_EFFORT")
    if qos and qos not in schema.QoS.__members__:
        raise ValueError(f"pod.qos {pod['qos']!r} is not a QoS class")
    ctx = schema.PodContext(
        cpu_request_cores=float(pod["cpu_request_cores"]),
        memory_request_bytes=int(pod["memory_request_bytes"]),
        qos=schema.QoS[qos] if qos else None,
        profile=schema.Profile.parse(pod["profile"]) if pod.get("profile") else None,
        priority=int(pod.get("priority") or 0),
    )
    features = schema.pod_features(ctx)  # validates the requests
    if rec.get("observed_slowdown") is None:
        return "no observed_slowdown"
    slowdown = float(rec["observed_slowdown"])
    if not math.isfinite(slowdown) or slowdown <= 0:
        raise ValueError(f"observed_slowdown {slowdown!r} is not a positive number")
    if weight == 0:
        return "weight 0"
    tel = rec.get("telemetry")
    if not tel:
        return "no telemetry at decision time"
    if int(tel.get("schema_version", schema.SCHEMA_VERSION)) != schema.SCHEMA_VERSION:
        return "other metric schema version"
    mask_text = tel["mask"]
    if len(mask_text) != schema.NUM_METRICS or set(mask_text) - {"0", "1"}:
        raise ValueError(f"telemetry.mask {mask_text!r} is not {schema.NUM_METRICS} characters of 0/1")
    unknown = set(tel["values"]) - set(schema.METRIC_NAMES)
    if unknown:
        raise ValueError(f"telemetry.values: unknown metrics {sorted(unknown)}")
    mask = np.array([c == "1" for c in mask_text])
    values = np.array(
        [np.nan if tel["values"].get(m.name) is None else float(tel["values"][m.name]) for m in schema.METRICS]
    )
    for m in schema.METRICS:
        if mask[m.index] and not (math.isfinite(values[m.index]) and m.lo <= values[m.index] <= m.hi):
            raise ValueError(f"telemetry.values.{m.name}: {values[m.index]!r} outside [{m.lo:g}, {m.hi:g}]")
    row = np.concatenate([schema.normalise_matrix(values[None, :], mask[None, :])[0], features])
    return row.astype(np.float32), math.log(max(slowdown, 1.0)), weight


def load_outcomes(path: Path) -> OutcomeRows:
    """Read the outcome collector's JSONL; see the module docstring for what is used."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise TrainError(f"outcomes: cannot read {path}: {e}") from None
    rows, ys, ws, skipped, lines = [], [], [], {}, 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        lines += 1
        try:
            got = _outcome_row(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            detail = f"field {e.args[0]!r} absent" if isinstance(e, KeyError) else str(e)
            raise TrainError(f"outcomes: {path} line {n}: not an outcome record: {detail}") from None
        if isinstance(got, str):
            skipped[got] = skipped.get(got, 0) + 1
            continue
        rows.append(got[0])
        ys.append(got[1])
        ws.append(got[2])
    X = np.array(rows, dtype=np.float32).reshape(-1, schema.NUM_FEATURES)
    y = np.array(ys, dtype=np.float64)
    w = np.array(ws, dtype=np.float64)
    return OutcomeRows(
        X=X,
        y=y,
        weight=w,
        lines=lines,
        skipped=skipped,
        data_hash=dataset.data_hash(np.concatenate([X, w[:, None].astype(np.float32)], axis=1), y),
    )
