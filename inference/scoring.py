"""Pure scoring math: slowdown -> score, confidence and the human reason.

No I/O, no clock, no model: the aggregator feeds it arrays and gets arrays and strings
back, so every rule here is table-tested (tests/test_scoring_math.py).

* score = 100 / predicted slowdown, in [0, 100]: 1.0x (as if alone) scores 100, 2.0x
  scores 50 (the same as the neutral fallback), 4.0x scores 25. Strictly monotone.
* confidence = the share of the pod profile's sensitivity (schema.SENSITIVITY) that the
  node's measured metrics cover: a node that cannot see LLC misses is less certain for a
  cache-sensitive pod than for an io-bound one.
* reason = the (up to) two metrics that drive the slowdown for this profile, with values
  and how they compare to the fleet median, then the profile and what is not measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from wire.schema import METRICS, NUM_METRICS, SENSITIVITY, Profile, normalise_matrix

FALLBACK_SCORE = 50.0
#: A metric is named in a reason only when its drive exceeds this (sensitivity x level).
MIN_DRIVE = 0.05
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


def drives(values: np.ndarray, mask: np.ndarray, profile: Profile, fleet_median: np.ndarray) -> np.ndarray:
    """(n, 15) how strongly each measured metric pushes this profile's slowdown up.

    The level of the metric (normalised 0-1) plus its excess over the fleet median, weighted
    by the profile's sensitivity. Missing metrics drive nothing (they lower confidence instead).
    """
    norm = normalise_matrix(values, mask).astype(np.float64)
    med = normalise_matrix(fleet_median[None, :], np.isfinite(fleet_median)[None, :])[0].astype(np.float64)
    med = np.where(med < 0, 0.0, med)
    level = np.where(mask, norm, 0.0)
    excess = np.maximum(level - med, 0.0)
    return SENSITIVITY[profile - 1] * (level + excess) * mask


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


def reasons(
    values: np.ndarray,
    mask: np.ndarray,
    profile: Profile,
    fleet_median: np.ndarray,
    offenders: Sequence[Iterable[Offender]] | None = None,
) -> list[str]:
    """One reason per node: the (up to) two metrics that drive this profile's slowdown, with
    values, how they compare to the fleet median and which pod the agent holds responsible,
    then the profile and what is not measured — e.g. ``cross-cgroup preemptions 5200/s,
    8.1x the fleet median, 71% from batch/ffmpeg-7c9d; CPU busy 98%; latency-critical pod;
    4 of 15 metrics not measured``, or ``nothing a latency-critical pod is sensitive to
    stands out; ...``. ``offenders``: per node, a sequence of records with ``pod``,
    ``metric`` and ``value`` (aggregator.node_record.Offender).

    The predicted slowdown travels in its own field next to the reason, so a reason depends
    only on the node's vector, the profile and the fleet median: the aggregator computes it
    once per node push and profile, not once per request.
    """
    d = drives(values, mask, profile, fleet_median)
    order = np.argsort(-d, axis=1)[:, :REASON_METRICS]
    n_missing = (NUM_METRICS - np.asarray(mask).sum(axis=1)).tolist()
    out = []
    for i in range(d.shape[0]):
        top = top_offenders(offenders[i]) if offenders is not None else {}
        drivers = "; ".join(
            _describe(j, float(values[i, j]), float(fleet_median[j]), top.get(METRICS[j].name))
            for j in order[i]
            if d[i, j] >= MIN_DRIVE
        )
        text = (
            f"{drivers}; {profile.annotation} pod"
            if drivers
            else f"nothing {'an' if profile.annotation[0] in 'aeiou' else 'a'} {profile.annotation} pod "
            "is sensitive to stands out"
        )
        if n_missing[i]:
            text += f"; {n_missing[i]} of {NUM_METRICS} metrics not measured"
        out.append(text)
    return out
