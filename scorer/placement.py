"""Placement quality of node scorers on measured slowdowns: pure functions on arrays.

A *scorer* gives every (node state, pod profile) row a score, higher = better. For many
random candidate sets (a pod of one profile choosing among 5-20 node states of the
evaluation rows), the scorer places the pod on its best-scored node (ties broken at
random) and we look at the slowdown the pod measured there:

* **top-1 regret** = slowdown(chosen) / min slowdown in the set - 1 (0 = best choice);
* **SLO breach** = the chosen node's slowdown exceeds the SLO (default 1.5x);
* **Spearman(score, -slowdown)** over all rows (NaN for a constant score).

Every scorer sees the same candidate sets (paired comparison). Slowdowns below 1 are
run-to-run noise on a quiet node and count as 1.0 here.

Baselines (what schedulers people run today would do with the same node states):

* ``requests-only``: kube-scheduler's default NodeResourcesLeastAllocated sees only
  requests, which are the same for every candidate here: all nodes alike, random pick;
* ``load-aware CPU``: Trimaran's LoadVariationRiskBalancing on measured CPU utilisation,
  ``score = 1 - (mu + sigma) / 2`` over the node's recent CPU samples (margin 1,
  sensitivity 1);
* ``naive formula``: ``0.4 (1 - cpu) + 0.4 (1 - mem) + 0.2 (1 - llc_miss_ratio)``; a
  missing term is left out and the remaining weights renormalised (so without a PMU it is
  ``0.5 (1 - cpu) + 0.5 (1 - mem)``), never read as 0;
* ``oracle``: minus the measured slowdown (the best any scorer could do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scorer.evaluate import spearman
from wire import schema

DEFAULT_SLO = 1.5
DEFAULT_TRIALS = 4000
SET_SIZES = (5, 20)
REQUESTS_ONLY = "requests-only (LeastAllocated)"
TRIMARAN = "load-aware CPU (Trimaran LVRB)"
NAIVE = "naive 0.4/0.4/0.2 formula"
ORACLE = "oracle"
BASELINE_NAMES = (REQUESTS_ONLY, TRIMARAN, NAIVE, ORACLE)
NAIVE_WEIGHTS = {"cpu_utilization": 0.4, "memory_utilization": 0.4, "llc_miss_ratio": 0.2}


@dataclass(frozen=True)
class Trials:
    """Candidate sets: ``index[t]`` row indices of trial t (one profile each)."""

    index: list[np.ndarray]
    tie_break: list[np.ndarray]


def draw_trials(
    profile: np.ndarray, trials: int = DEFAULT_TRIALS, sizes: tuple[int, int] = SET_SIZES, seed: int = 0
) -> Trials:
    rng = np.random.default_rng(seed)
    by_profile = [np.flatnonzero(profile == p) for p in np.unique(profile)]
    by_profile = [rows for rows in by_profile if len(rows) >= 2]
    if not by_profile:
        raise ValueError("profile: need at least two rows of one profile to form candidate sets")
    index, ties = [], []
    for _ in range(trials):
        rows = by_profile[rng.integers(len(by_profile))]
        k = min(int(rng.integers(sizes[0], sizes[1] + 1)), len(rows))
        pick = rng.choice(rows, size=k, replace=False)
        index.append(pick)
        ties.append(rng.random(k))
    return Trials(index, ties)


def choose(score: np.ndarray, trials: Trials) -> np.ndarray:
    """Row chosen in each trial: the highest score, ties broken by the trial's random draw."""
    out = np.empty(len(trials.index), dtype=np.int64)
    for t, (rows, tie) in enumerate(zip(trials.index, trials.tie_break)):
        s = score[rows]
        best = np.flatnonzero(s == s.max())
        out[t] = rows[best[np.argmax(tie[best])]]
    return out


def placement_figures(score: np.ndarray, slowdown: np.ndarray, trials: Trials, slo: float = DEFAULT_SLO) -> dict:
    sd = np.maximum(np.asarray(slowdown, dtype=np.float64), 1.0)
    score = np.asarray(score, dtype=np.float64)
    chosen = choose(score, trials)
    best = np.array([sd[rows].min() for rows in trials.index])
    regret = sd[chosen] / best - 1.0
    return {
        "spearman": spearman(score, -sd) if np.ptp(score) > 0 else float("nan"),
        "mean_regret": float(regret.mean()),
        "p90_regret": float(np.percentile(regret, 90)),
        "slo_breach_share": float((sd[chosen] > slo).mean()),
        "mean_chosen_slowdown": float(sd[chosen].mean()),
        "regret": regret,
    }


def trimaran_score(cpu_mean: np.ndarray, cpu_std: np.ndarray) -> np.ndarray:
    """LoadVariationRiskBalancing: 1 - (mu + sigma) / 2; a node without CPU figures scores the neutral 0.5."""
    risk = (np.asarray(cpu_mean) + np.nan_to_num(np.asarray(cpu_std), nan=0.0)) / 2.0
    return np.where(np.isfinite(cpu_mean), 1.0 - np.clip(risk, 0.0, 1.0), 0.5)


def naive_score(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """0.4 (1-cpu) + 0.4 (1-mem) + 0.2 (1-llc) over the measured terms, weights renormalised."""
    num = np.zeros(values.shape[0])
    den = np.zeros(values.shape[0])
    for name, w in NAIVE_WEIGHTS.items():
        i = schema.METRIC_NAMES.index(name)
        ok = mask[:, i]
        num += np.where(ok, w * (1.0 - np.nan_to_num(values[:, i])), 0.0)
        den += np.where(ok, w, 0.0)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.5)


def baseline_scores(values: np.ndarray, mask: np.ndarray, cpu_std: np.ndarray, slowdown: np.ndarray) -> dict:
    cpu = np.where(mask[:, 0], values[:, 0], np.nan)
    return {
        REQUESTS_ONLY: np.zeros(values.shape[0]),
        TRIMARAN: trimaran_score(cpu, cpu_std),
        NAIVE: naive_score(values, mask),
        ORACLE: -np.maximum(np.asarray(slowdown, dtype=np.float64), 1.0),
    }
