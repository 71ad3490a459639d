"""What a scoring model must never do, checked on real node states: the gate's last word.

Three invariants, each checked for every workload profile on the node states of the
calibration recording (what the agent measured beside real neighbours), through the
exported ONNX graph as the aggregator runs it:

1. **CPU saturation never helps** — for each profile sensitive to CPU (sensitivity of
   ``cpu_psi_some`` >= :data:`SENSITIVE`): a node whose CPUs a neighbour saturates (the
   median state of the rows whose ``cpu_utilization`` >= 0.95 beside a ``cpu`` neighbour)
   never scores above the same node quiet (the median alone state), by more than
   :data:`TOLERANCE` points.
2. **Missing is not zero** — wherever reporting a metric as 0 would raise a node's score
   (by more than 2 × :data:`TOLERANCE` over reporting the recording's median), the node
   with that metric missing must not get the zero's score: a node that cannot see its PSI
   must not look idle (checked on every recorded state for every contention metric, and
   for the other metrics where their median is at least :data:`SAME_STATE` from zero).
3. **More contention never helps** — for each profile and each contention metric it is
   sensitive to (:data:`MONOTONE` ∩ sensitivity >= :data:`SENSITIVE`), raising that metric
   along a grid from the node's own value to the top of its scale, everything else equal,
   never raises the score (by more than :data:`TOLERANCE`).

``runqueue_latency_p99_us`` is not in (3): on the calibration ladder a CPU-limited
neighbour's own throttled waits count as run-queue wait, so the 10 %-quota neighbours have
the highest run-queue p99 and the least effect (``scorer.regressors.MONOTONE_METRICS``).
Invariant (1) covers CPU contention as a whole state, run-queue latency included.

:func:`check` returns the violations (empty: the model keeps every invariant);
``tests/test_model_invariants.py`` runs it on the shipped default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.scoring import reason_pod, scores_from_slowdown
from scorer.regressors import MONOTONE_METRICS
from wire.schema import (
    METRIC_BY_NAME,
    METRICS,
    MISSING,
    NUM_METRICS,
    SENSITIVITY,
    Profile,
    normalise_matrix,
    pod_features,
)

#: Score points a model may wobble by before a rise counts as a violation.
TOLERANCE = 0.5
#: A profile is sensitive to a metric at this sensitivity (wire.schema.SENSITIVITY) or more.
SENSITIVE = 0.3
#: Contention metrics for invariant 3 ("more of it never makes the pod faster"): the ones the
#: XGBoost models are constrained to be monotone in.
MONOTONE = MONOTONE_METRICS
GRID = np.linspace(0.0, 1.0, 11, dtype=np.float32)
#: Invariant 2 for a metric that is not contention (memory use, run-queue latency, throttling, disk
#: latency: imputed at the median) is checked only where the median is this far from zero on the
#: normalised scale; closer, "like zero" and "like a typical node" are the same state.
SAME_STATE = 0.05
#: At most this many recorded states are used per check (evenly spaced), to keep the check quick.
MAX_STATES = 200


@dataclass(frozen=True)
class Violation:
    invariant: str
    profile: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant} ({self.profile}): {self.detail}"


def _scores(model, node: np.ndarray, profile: Profile) -> np.ndarray:
    """The aggregator's scores of normalised node states for the pod the calibration rows describe."""
    pod = pod_features(reason_pod(profile))
    X = np.concatenate([node.astype(np.float32), np.broadcast_to(pod, (node.shape[0], pod.size))], axis=1)
    return scores_from_slowdown(model.predict_slowdown(np.ascontiguousarray(X, dtype=np.float32)))


def _states(node: np.ndarray) -> np.ndarray:
    """At most MAX_STATES of the normalised states, evenly spaced."""
    if node.shape[0] > MAX_STATES:
        node = node[np.linspace(0, node.shape[0] - 1, MAX_STATES).astype(int)]
    return node


def _median_state(node: np.ndarray) -> np.ndarray:
    """Per metric, the median of the measured values (MISSING where no row measured it)."""
    out = np.full(NUM_METRICS, MISSING, dtype=np.float32)
    for j in range(NUM_METRICS):
        got = node[:, j][node[:, j] != MISSING]
        if got.size:
            out[j] = np.median(got)
    return out


def check(model, cal) -> list[Violation]:
    """Every violation of the three invariants by ``model`` (an InterferenceModel) on ``cal``'s states."""
    out: list[Violation] = []
    all_node = normalise_matrix(cal.values, cal.mask)
    states = _states(all_node)
    medians = _median_state(all_node)
    cpu = METRIC_BY_NAME["cpu_utilization"].index
    alone = all_node[cal.config == "none"]
    saturated = all_node[(cal.kind == "cpu") & (cal.values[:, cpu] >= 0.95)]
    for profile in Profile:
        name = profile.annotation
        sens = SENSITIVITY[profile - 1]
        # 1. CPU saturation never helps.
        if sens[METRIC_BY_NAME["cpu_psi_some"].index] >= SENSITIVE and alone.size and saturated.size:
            quiet, busy = _scores(model, np.stack([_median_state(alone), _median_state(saturated)]), profile)
            if busy > quiet + TOLERANCE:
                out.append(
                    Violation(
                        "CPU saturation never helps",
                        name,
                        f"a node whose CPUs a neighbour saturates scores {busy:.1f}, the same node quiet {quiet:.1f} "
                        f"({len(saturated)} saturated and {len(alone)} quiet recorded states)",
                    )
                )
        # 2. Missing is not zero: where reporting 0 would raise the score, not measuring must not.
        for j in range(NUM_METRICS):
            if medians[j] == MISSING:
                continue
            if METRICS[j].name not in MONOTONE and medians[j] < SAME_STATE:
                continue  # zero and the median are the same state: a median imputation is "like zero" by design
            gone, zero, at_median = states.copy(), states.copy(), states.copy()
            gone[:, j], zero[:, j], at_median[:, j] = MISSING, 0.0, medians[j]
            s_gone, s_zero, s_med = (_scores(model, x, profile) for x in (gone, zero, at_median))
            bad = (s_zero > s_med + 2 * TOLERANCE) & (s_gone >= s_zero - TOLERANCE)
            if bad.any():
                worst = int(np.argmax(np.where(bad, s_gone - s_med, -np.inf)))
                out.append(
                    Violation(
                        "missing is not zero",
                        name,
                        f"{METRICS[j].name} missing scores {s_gone[worst]:.1f}, "
                        f"like reporting 0 ({s_zero[worst]:.1f}); "
                        f"at the recording's median it scores {s_med[worst]:.1f} (state {worst}; {int(bad.sum())} of "
                        f"{len(states)} states)",
                    )
                )
        # 3. More contention never helps.
        for metric in MONOTONE:
            j = METRIC_BY_NAME[metric].index
            if sens[j] < SENSITIVE:
                continue
            measured = states[states[:, j] != MISSING]
            if not measured.size:
                continue
            # Every state at every level of the grid (never below its own value), in one model call.
            raised = np.repeat(measured[None], GRID.size, axis=0)
            raised[:, :, j] = np.maximum(raised[:, :, j], GRID[:, None])
            rise = np.diff(_scores(model, raised.reshape(-1, NUM_METRICS), profile).reshape(GRID.size, -1), axis=0)
            rises = int((rise > TOLERANCE).sum())
            if rises:
                out.append(
                    Violation(
                        "more contention never helps",
                        name,
                        f"raising {metric} raised the score by up to {float(rise.max()):.1f} points ({rises} steps "
                        f"over {len(measured)} states)",
                    )
                )
    return out
