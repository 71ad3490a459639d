"""Pure scoring math: slowdown -> score, confidence and the human reason.

No I/O, no clock, no model: the aggregator feeds it arrays and gets arrays and strings
back, so every rule here is table-tested (tests/test_scoring_math.py).

* score = 100 / predicted slowdown, in [0, 100]: 1.0x (as if alone) scores 100, 2.0x
  scores 50 (the same as the neutral fallback), 4.0x scores 25. Strictly monotone.
* confidence = the share of the pod profile's sensitivity (schema.SENSITIVITY) that the
  node's measured metrics cover: a node that cannot see LLC misses is less certain for a
  cache-sensitive pod than for an io-bound one.
* reason = the (up to) two metrics that move the *model's* predicted slowdown most against
  the fleet median (:func:`effects`: one batched call of the model), with values, how they
  compare to the fleet median and their effect, then the profile and what is not measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from wire.schema import (
    GIB,
    METRICS,
    NUM_METRICS,
    SENSITIVITY,
    PodContext,
    Profile,
    QoS,
    model_input,
    normalise_matrix,
)

FALLBACK_SCORE = 50.0
REASON_METRICS = 2
#: A fleet median below this (ratio metrics; log metrics use their reference value) is
#: "about zero": reasons quote it rather than divide by it.
RATIO_FLOOR = 0.01
#: Metrics whose per-pod parts add up to the node's value, so a pod's share can be quoted.
ADDITIVE_METRICS = frozenset(
    {
        "cpu_utilization",
        "cpu_iowait_ratio",
        "cross_cgroup_preemptions_per_s",
        "memory_utilization",
        "memory_bandwidth_gbps",
        "process_churn_per_s",
    }
)


def scores_from_slowdown(slowdown: np.ndarray) -> np.ndarray:
    s = np.asarray(slowdown, dtype=np.float64)
    if not (np.isfinite(s) & (s > 0)).all():
        raise ValueError("slowdown: every predicted slowdown must be a finite number > 0")
    return 100.0 / np.maximum(s, 1.0)


#: (15, 5): each profile's sensitivity weights normalised to sum 1.
_CONF_WEIGHTS = (SENSITIVITY / SENSITIVITY.sum(axis=1, keepdims=True)).T


def confidence_table(mask: np.ndarray) -> np.ndarray:
    """(n, 5) confidence of each node for each profile (columns in Profile order)."""
    return np.asarray(mask, dtype=np.float64) @ _CONF_WEIGHTS


def confidence(mask: np.ndarray, profile: Profile) -> np.ndarray:
    return confidence_table(mask)[:, profile - 1]


def _describe(metric_index: int, value: float, median: float, offender: tuple[str, float] | None = None) -> str:
    """``CPU pressure 45%, 6.2x the fleet median``; against a near-zero median, which makes
    ratios meaningless, ``IO pressure 42% (fleet median 0%)``; with the pod the agent holds
    responsible, ``..., 71% from batch/ffmpeg-7c9d`` (additive metrics) or ``..., top pod
    batch/ffmpeg-7c9d``."""
    m = METRICS[metric_index]
    text = f"{m.label} {m.format(value)}"
    if math.isfinite(median) and value > median * 1.5:
        floor = RATIO_FLOOR if m.unit == "ratio" else m.ref
        text += (
            f", {value / median:.1f}x the fleet median" if median >= floor else f" (fleet median {m.format(median)})"
        )
    if offender is not None:
        pod, share_value = offender
        if m.name in ADDITIVE_METRICS and value > 0 and share_value <= value * 1.0001:
            text += f", {share_value / value:.0%} from {pod}"
        else:
            text += f", top pod {pod}"
    return text


class Offender(Protocol):
    """What a reason needs of a pod the agent holds responsible (aggregator.node_record.Offender)."""

    @property
    def pod(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def value(self) -> float: ...


def top_offenders(offenders: Iterable[Offender]) -> dict[str, tuple[str, float]]:
    """metric -> (namespace/name, value) of the largest offender per metric."""
    top: dict[str, tuple[str, float]] = {}
    for o in offenders:
        if o.metric not in top or o.value > top[o.metric][1]:
            top[o.metric] = (o.pod, o.value)
    return top


#: A typical pod: one core and 1 GiB requested, Burstable. The calibration victims are described
#: as this pod (scorer.calibration.data.VICTIM_POD), and reasons, computed once per node push and
#: profile rather than per request, are computed for it.
TYPICAL_POD = PodContext(cpu_request_cores=1.0, memory_request_bytes=GIB, qos=QoS.BURSTABLE)
#: A metric is named in a reason only when it moves the predicted slowdown by this much or more.
MIN_EFFECT = 0.05


def reason_pod(profile: Profile) -> PodContext:
    """The typical pod with ``profile``."""
    return replace(TYPICAL_POD, profile=profile)


def effects(
    predict: Callable[[np.ndarray], np.ndarray],
    values: np.ndarray,
    mask: np.ndarray,
    profile: Profile,
    fleet_median: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) predicted slowdown and (n, 15) each metric's effect on it, *as the model sees it*.

    The effect of metric j on node i is the predicted slowdown of the node as it is minus
    the prediction with metric j set to the fleet median (a missing metric too: its effect
    is what not measuring it costs against a typical node), everything else equal:
    +0.8 means this metric's value adds 0.8x to the slowdown the model predicts. All the
    variants go to ``predict`` in one batch of n × 16 rows. Where a metric has no fleet
    median (no node measures it, or none is computed yet), the reference is an idle reading.
    """
    X = model_input(values, mask, reason_pod(profile))
    n = X.shape[0]
    med_ok = np.isfinite(fleet_median)
    # Where no node reports a metric yet (or the fleet median is not computed yet), an idle
    # reading (0 on the normalised scale) is the reference instead.
    med = np.where(med_ok, normalise_matrix(np.where(med_ok, fleet_median, 0.0)[None, :], med_ok[None, :])[0], 0.0)
    big = np.repeat(X[:, None, :], NUM_METRICS + 1, axis=1)
    for j in range(NUM_METRICS):
        big[:, j + 1, j] = med[j]
    pred = np.asarray(predict(np.ascontiguousarray(big.reshape(-1, X.shape[1]))), dtype=np.float64)
    pred = pred.reshape(n, NUM_METRICS + 1)
    base = pred[:, 0]
    return base, base[:, None] - pred[:, 1:]


def reasons(
    predict: Callable[[np.ndarray], np.ndarray],
    values: np.ndarray,
    mask: np.ndarray,
    profile: Profile,
    fleet_median: np.ndarray,
    offenders: Sequence[Iterable[Offender]] | None = None,
) -> list[str]:
    """One reason per node: the (up to) two metrics that raise the model's predicted slowdown
    most against the fleet median (:func:`effects`), each with its value, how it compares to
    the fleet median, its effect and which pod the agent holds responsible, then the profile
    and what is not measured — e.g. ``run-queue p99 3.1ms, 12.4x the fleet median, 71% from
    batch/ffmpeg-7c9d (+0.80x predicted slowdown); CPU pressure 45% (+0.12x predicted
    slowdown); latency-critical pod; 4 of 15 metrics not measured``, or ``no metric moves
    the predicted slowdown by 0.05x or more against the fleet median; ...``. ``predict``:
    the serving model's ``predict_slowdown``; ``offenders``: per node, records with
    ``pod``, ``metric`` and ``value`` (aggregator.node_record.Offender).

    A reason depends only on the node's vector, the profile, the fleet median and the
    model: the aggregator computes it once per node push, profile and model.
    """
    _, effect = effects(predict, values, mask, profile, fleet_median)
    order = np.argsort(-effect, axis=1)[:, :REASON_METRICS]
    n_missing = (NUM_METRICS - np.asarray(mask).sum(axis=1)).tolist()
    out = []
    for i in range(effect.shape[0]):
        top = top_offenders(offenders[i]) if offenders is not None else {}
        parts = []
        for j in order[i]:
            e = float(effect[i, j])
            if e < MIN_EFFECT:
                continue
            if mask[i, j] and np.isfinite(values[i, j]):
                text = _describe(j, float(values[i, j]), float(fleet_median[j]), top.get(METRICS[j].name))
            else:
                text = f"{METRICS[j].label} not measured"
            parts.append(f"{text} (+{e:.2f}x predicted slowdown)")
        text = (
            f"{'; '.join(parts)}; {profile.annotation} pod"
            if parts
            else f"no metric moves the predicted slowdown by {MIN_EFFECT:g}x or more against the fleet median; "
            f"{profile.annotation} pod"
        )
        if n_missing[i]:
            text += f"; {n_missing[i]} of {NUM_METRICS} metrics not measured"
        out.append(text)
    return out
