"""Held-out evaluation of predicted slowdowns: MAE, Spearman, per profile and per pattern.

Pure functions on arrays; the trainer records the result in the model's metadata and
prints it with :func:`format_table`. Every figure is on rows the model never saw.

* ``mae`` — mean absolute error of the slowdown (not its log), in "x" units;
* ``spearman`` — rank correlation between predicted and true slowdown: what the scheduler
  needs is the order of nodes, so this is the headline figure;
* ``baseline_mae`` — MAE of always predicting the subset's median slowdown, to show what
  the metrics add.
"""

from __future__ import annotations

import numpy as np

from scorer.contention import PATTERNS
from wire.schema import Profile


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    # Boundaries of runs of equal values.
    edges = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(x)]])
    mean_rank = (starts + ends - 1) / 2.0
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation with tie handling; NaN when either side is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def summarise(pred: np.ndarray, true: np.ndarray) -> dict:
    return {
        "rows": int(len(true)),
        "mae": float(np.abs(pred - true).mean()) if len(true) else float("nan"),
        "spearman": spearman(pred, true),
        "baseline_mae": float(np.abs(np.median(true) - true).mean()) if len(true) else float("nan"),
        "mean_slowdown": float(true.mean()) if len(true) else float("nan"),
    }


def evaluate(
    pred_slowdown: np.ndarray, true_slowdown: np.ndarray, profile: np.ndarray, pattern: np.ndarray | None
) -> dict:
    """Validation figures overall, per profile (by annotation) and per availability pattern
    (``pattern`` None: measured rows of one machine, no per-pattern subsets)."""
    pred = np.asarray(pred_slowdown, dtype=np.float64)
    true = np.asarray(true_slowdown, dtype=np.float64)
    return {
        "all": summarise(pred, true),
        "per_profile": {p.annotation: summarise(pred[profile == p], true[profile == p]) for p in Profile},
        "per_pattern": {}
        if pattern is None
        else {pat.name: summarise(pred[pattern == i], true[pattern == i]) for i, pat in enumerate(PATTERNS)},
    }


def format_table(figures: dict) -> str:
    lines = [f"{'subset':<32}{'rows':>8}{'MAE (x)':>10}{'Spearman':>10}{'median-MAE':>12}{'mean (x)':>10}"]

    def row(name, s):
        lines.append(
            f"{name:<32}{s['rows']:>8}{s['mae']:>10.3f}{s['spearman']:>10.3f}"
            f"{s['baseline_mae']:>12.3f}{s['mean_slowdown']:>10.2f}"
        )

    row("all", figures["all"])
    for name, s in figures["per_profile"].items():
        row(f"profile {name}", s)
    for name, s in figures["per_pattern"].items():
        row(f"metrics {name}", s)
    return "\n".join(lines)
