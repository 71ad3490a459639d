"""The held-out predictions ``kubeattention evaluate`` judges, and the references it judges them against.

* :func:`config_folds`: whole hold-out groups of a calibration set per fold (antagonist
  configurations, or kinds), seeded;
* :func:`out_of_fold`: one prediction per row from a model fitted on the other folds
  exactly as ``kubeattention train --data`` fits (``scorer.training.fit_calibrated``),
  through the exported ONNX graph;
* :func:`compare_model`: an existing ONNX model's predictions, as it is;
* references that say how much of the slowdown is predictable at all:
  :func:`retest_spearman` (test-retest of the runs) and :func:`neighbour_reference` (a
  regressor told the neighbour's kind and intensity, :func:`neighbour_features`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from inference.model import InterferenceModel
from scorer.calibration.data import ALONE
from scorer.evaluate import spearman
from scorer.regressors import XGBOOST_PARAMS, onnx_predict_slowdown
from scorer.training import fit_calibrated
from wire.schema import Profile

log = logging.getLogger(__name__)


class EvaluateError(Exception):
    """Unusable evaluation parameters; the message names the flag and the value."""


def config_folds(groups: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Row indices of each fold; whole hold-out groups (CalibrationSet.groups) per fold, seeded.

    Groups of the alone state (``none#r1``, ``none#r2``, ...) are dealt to different folds
    first, so every fold trains on some quiet rows when there are several repetitions.
    """
    names = sorted(set(groups.tolist()))
    if folds < 2 or folds > len(names):
        raise EvaluateError(f"--folds: must be between 2 and the {len(names)} hold-out groups, got {folds}")
    rng = np.random.default_rng([seed, 0x464F4C44])  # "FOLD"
    alone = [n for n in names if n.startswith(f"{ALONE}#")]
    rest = [n for n in names if n not in alone]
    ordered = [alone[i] for i in rng.permutation(len(alone))] + [rest[i] for i in rng.permutation(len(rest))]
    group = {name: i % folds for i, name in enumerate(ordered)}
    g = np.array([group[c] for c in groups])
    return [np.flatnonzero(g == f) for f in range(folds)]


def out_of_fold(
    cal, kind: str, folds: int, seed: int, rows: int, real_share: float, groups: np.ndarray | None = None
) -> tuple[np.ndarray, list]:
    """(predicted slowdown of every row, one record per fold): each fold's rows predicted by a
    model of ``kind`` fitted on the other folds; ``groups`` default to ``cal.groups``."""
    groups = cal.groups if groups is None else groups
    pred = np.full(len(cal), np.nan)
    fits = []
    for f, held in enumerate(config_folds(groups, folds, seed)):
        keep = np.setdiff1d(np.arange(len(cal)), held)
        t0 = time.monotonic()
        got = fit_calibrated(kind, cal.subset(keep), rows, seed, real_share)
        pred[held] = onnx_predict_slowdown(got.onnx_model, cal.X[held])
        fits.append(
            {
                "fold": f,
                "held_out": sorted(set(groups[held].tolist())),
                "rows": int(len(held)),
                "curve_fit_rmse_log": round(got.fit.rmse, 4),
                "seconds": round(time.monotonic() - t0, 1),
            }
        )
        log.info(
            "fold %d/%d: held out %s (%d rows), %.1f s",
            f + 1,
            folds,
            ", ".join(fits[-1]["held_out"]),
            len(held),
            fits[-1]["seconds"],
        )
    return pred, fits


def retest_spearman(cal) -> tuple[float, int]:
    """(Spearman, runs): each run's slowdown against the median of the other repetitions of its
    configuration and profile, over every configuration measured at least twice (alone runs
    left out: their label is 1 by definition). Slowdowns below 1 count as 1, as everywhere."""
    cells: dict[tuple[str, int], list[float]] = {}
    for c, p, sd in zip(cal.config, cal.profile, np.maximum(cal.run_slowdown, 1.0)):
        if c != ALONE:
            cells.setdefault((c, int(p)), []).append(float(sd))
    run, others = [], []
    for v in cells.values():
        if len(v) < 2:
            continue
        for i in range(len(v)):
            run.append(v[i])
            others.append(float(np.median(v[:i] + v[i + 1 :])))
    return (spearman(np.array(run), np.array(others)) if len(run) >= 2 else float("nan")), len(run)


def neighbour_features(cal) -> np.ndarray:
    """What the calibration plan knows and no node reports: the neighbour's latent intensity
    per kind, whether it is the mixed kind, and the victim profile (one-hot)."""
    kinds = sorted(cal.intensity)
    return np.column_stack(
        [cal.intensity[k] for k in kinds]
        + [(cal.kind == "mixed").astype(float)]
        + [(cal.profile == int(p)).astype(float) for p in Profile]
    )


def neighbour_reference(cal, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold predicted slowdowns of an XGBoost regressor on :func:`neighbour_features`,
    on the same configuration folds as the models (scikit-learn predictions, no ONNX: it is
    a yardstick, never served)."""
    from xgboost import XGBRegressor

    F = neighbour_features(cal)
    pred = np.full(len(cal), np.nan)
    for held in config_folds(cal.groups, folds, seed):
        keep = np.setdiff1d(np.arange(len(cal)), held)
        model = XGBRegressor(random_state=seed, **XGBOOST_PARAMS).fit(F[keep], cal.y[keep])
        pred[held] = np.maximum(np.exp(model.predict(F[held]).astype(np.float64)), 1.0)
    return pred


def compare_model(path: Path, cal) -> tuple[str, np.ndarray]:
    """(label, predicted slowdowns) of an existing ONNX model, as it is."""
    model = InterferenceModel.load(path)
    meta_hash = (
        (model.metadata.get("calibration") or {}).get("data_hash")
        if isinstance(model.metadata.get("calibration"), dict)
        else None
    )
    if meta_hash == cal.data_hash:
        log.warning("%s was trained on these very rows: its figures are not held-out", path)
    return f"{path.name} as is ({model.version})", model.predict_slowdown(cal.X)
