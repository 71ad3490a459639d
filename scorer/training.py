"""Training pipelines: rows in, a fitted and exported model with its metadata and hold-out figures out.

* :func:`train`: ``rows`` synthetic rows from the prior contention model
  (``scorer.dataset``, seeded), a seeded hold-out (:func:`holdout_split`) never seen by
  the fit, optionally observed outcome rows (``scorer.outcome_rows``) added to the
  training split; the hold-out stays synthetic, so its figures stay comparable between runs.
* :func:`train_calibrated`: measured calibration rows (``scorer.calibration.data``);
  whole antagonist configurations are held out (:func:`config_split`), the contention
  curves are fitted to the training rows (``scorer.calibration.fit``) and synthetic rows
  from the fitted generator widen them (:func:`fit_calibrated`, also what
  ``kubeattention evaluate`` fits per fold).

Either way the regressor (``scorer.regressors``) is exported to ONNX and *the exported
graph* is evaluated on the hold-out with ONNX Runtime (``scorer.evaluate``). Nothing is
written to disk here; ``kubeattention train`` (``scorer.train``) writes and checks the file.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import onnx

from inference.model import OUTPUT_LOG_SLOWDOWN
from scorer import contention, dataset, evaluate, regressors
from scorer.calibration.provenance import SYNTHETIC_ONLY, validated_on
from wire import schema

if TYPE_CHECKING:
    from scorer.outcome_rows import OutcomeRows

log = logging.getLogger(__name__)

DEFAULT_ROWS = 200_000
DEFAULT_SEED = 0
DEFAULT_HOLDOUT = 0.2
#: Synthetic rows generated from the fitted contention model when training on calibration data.
DEFAULT_CALIBRATED_ROWS = 30_000
#: Share of the total sample weight that the measured calibration rows carry (the rest:
#: synthetic rows that widen the data to node states this machine cannot produce).
DEFAULT_REAL_SHARE = 0.5
#: model_version = prefix + the first 12 hex digits of the training data hash.
VERSION_PREFIX = {"mlp": "mlp", "xgboost": "xgb", "xgboost-fast": "xgbf"}


class TrainError(Exception):
    """Unusable training input or parameters; the message names the flag or field and the value."""


@dataclass(frozen=True)
class TrainResult:
    estimator: object
    onnx_model: onnx.ModelProto
    metadata: dict
    validation: dict
    data: dataset.Dataset | None
    """The synthetic rows (of the fitted generator with calibration data; None if there were none)."""
    holdout_index: np.ndarray
    train_index: np.ndarray
    calibration: object = None
    """scorer.calibration.data.CalibrationSet when trained on calibration rows (holdout_index indexes it)."""


@dataclass(frozen=True)
class CalibratedFit:
    estimator: object
    onnx_model: onnx.ModelProto
    fit: object
    """scorer.calibration.fit.FitResult of the contention curves."""
    synthetic: dataset.Dataset | None
    data_hash: str
    fit_seconds: float


def model_identity(kind: str, data_hash: str) -> dict:
    """The metadata every exported model carries: version, kind, schema and I/O contract, data hash."""
    return {
        "model_version": f"{VERSION_PREFIX[kind]}-{data_hash[:12]}",
        "model_kind": kind,
        "schema_version": schema.SCHEMA_VERSION,
        "feature_names": list(schema.FEATURE_NAMES),
        "input": f"features float32 [None, {schema.NUM_FEATURES}]",
        "output": OUTPUT_LOG_SLOWDOWN,
        "output_shape": "[None, 1]",
        "training_data_hash": data_hash,
    }


def _metadata(
    kind: str,
    data_hash: str,
    source: dict,
    rows: int,
    seed: int,
    validation: dict,
    generator: str,
    fit_seconds: float,
) -> dict:
    """A trained model's metadata: its identity, where its rows came from (``source``), how it was fitted."""
    return {
        **model_identity(kind, data_hash),
        **source,
        "rows": rows,
        "seed": seed,
        "validation": validation,
        "hyperparameters": regressors.hyperparameters(kind),
        "generator": generator,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fit_seconds": round(fit_seconds, 1),
        **regressors.library_versions(kind),
    }


def _check_kind(kind: str) -> None:
    if kind not in regressors.MODEL_KINDS:
        raise TrainError(regressors.unknown_kind(kind))


def _fit(
    kind: str,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    sample_weight: np.ndarray | None,
    fill_rows: np.ndarray | None = None,
):
    """(estimator, fit seconds)."""
    t0 = time.monotonic()
    estimator = regressors.fit(kind, X, y, seed, sample_weight=sample_weight, fill_rows=fill_rows)
    return estimator, time.monotonic() - t0


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_index, holdout_index), a seeded permutation independent of the data stream."""
    if not 0.0 < fraction < 1.0:
        raise TrainError(f"holdout: must be between 0 and 1, got {fraction!r}")
    order = np.random.default_rng([seed, 0x484F4C44]).permutation(n)  # "HOLD"
    k = max(1, int(round(n * fraction)))
    if k >= n:
        raise TrainError(f"rows: {n} rows leave nothing to train on with holdout {fraction}")
    return np.sort(order[k:]), np.sort(order[:k])


def config_split(configs: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_index, holdout_index) holding out whole groups (seeded): antagonist configurations,
    the alone state by repetition (scorer.calibration.data.CalibrationSet.groups)."""
    if not 0.0 < fraction < 1.0:
        raise TrainError(f"holdout: must be between 0 and 1, got {fraction!r}")
    names = np.array(sorted(set(configs.tolist())))
    k = max(1, int(round(len(names) * fraction)))
    if k >= len(names):
        raise TrainError(
            f"data: {len(names)} antagonist configurations leave nothing to train on with holdout {fraction}"
        )
    held = set(np.random.default_rng([seed, 0x434F4E46]).permutation(names)[:k].tolist())  # "CONF"
    is_held = np.array([c in held for c in configs])
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def train(
    kind: str = "mlp",
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    holdout: float = DEFAULT_HOLDOUT,
    outcomes: OutcomeRows | None = None,
) -> TrainResult:
    """Generate, split, fit, export and evaluate. Nothing is written to disk."""
    _check_kind(kind)
    if rows < 100:
        raise TrainError(f"rows: need at least 100 rows to train and hold out, got {rows}")
    t0 = time.monotonic()
    data = dataset.generate(rows, seed)
    tr, ho = holdout_split(rows, holdout, seed)
    log.info(
        "generated %d rows (hash %s) in %.1f s; training on %d, holding out %d",
        rows,
        data.data_hash[:12],
        time.monotonic() - t0,
        len(tr),
        len(ho),
    )

    X_fit, y_fit, w_fit, data_hash = data.X[tr], data.y[tr], None, data.data_hash
    if outcomes is not None and len(outcomes.y):
        X_fit = np.concatenate([X_fit, outcomes.X])
        y_fit = np.concatenate([y_fit, outcomes.y])
        w_fit = np.concatenate([np.ones(len(tr)), outcomes.weight])
        data_hash = hashlib.sha256(f"{data.data_hash}+{outcomes.data_hash}".encode()).hexdigest()
        log.info("training on %d observed outcome rows as well", len(outcomes.y))

    estimator, fit_seconds = _fit(kind, X_fit, y_fit, seed, w_fit)
    log.info("fitted %s in %.1f s", kind, fit_seconds)

    model = regressors.to_onnx(kind, estimator)
    pred = regressors.onnx_predict_slowdown(model, data.X[ho])
    figures = evaluate.evaluate(pred, data.slowdown[ho], data.profile[ho], data.pattern[ho])
    metadata = _metadata(
        kind,
        data_hash,
        {"outcomes": outcomes.summary()} if outcomes is not None else {},
        rows,
        seed,
        {"holdout_fraction": holdout, **figures},
        contention.GENERATOR,
        fit_seconds,
    )
    metadata["validated_on"] = SYNTHETIC_ONLY
    return TrainResult(
        estimator=estimator,
        onnx_model=model,
        metadata=metadata,
        validation=figures,
        data=data,
        holdout_index=ho,
        train_index=tr,
    )


def fit_calibrated(
    kind: str,
    cal,
    rows: int = DEFAULT_CALIBRATED_ROWS,
    seed: int = DEFAULT_SEED,
    real_share: float = DEFAULT_REAL_SHARE,
) -> CalibratedFit:
    """Fit the contention curves to ``cal`` (a CalibrationSet), widen it with ``rows`` synthetic rows
    from the fitted generator, fit the regressor on both, export to ONNX."""
    from scorer.calibration import fit as curve_fit

    _check_kind(kind)
    if not 0.0 < real_share <= 1.0:
        raise TrainError(f"real-share: must be in (0, 1], got {real_share!r}")
    if len(cal) < 10:
        raise TrainError(f"data: {len(cal)} measured calibration rows are too few to train on (need >= 10)")
    curves = curve_fit.fit(cal)
    log.info(
        "contention curves fitted to %d rows: log-RMSE %.3f (prior %.3f)", curves.rows, curves.rmse, curves.prior_rmse
    )
    X, y, w = cal.X, cal.y, np.ones(len(cal))
    synthetic = dataset.generate(rows, seed, curves.params) if rows > 0 and real_share < 1.0 else None
    if synthetic is not None:
        w = np.full(len(cal), real_share * rows / ((1.0 - real_share) * len(cal)))
        X = np.concatenate([synthetic.X, X])
        y = np.concatenate([synthetic.y, y])
        w = np.concatenate([np.ones(rows), w])
    data_hash = hashlib.sha256(
        f"{cal.data_hash}+{synthetic.data_hash if synthetic else '-'}+{real_share}".encode()
    ).hexdigest()
    estimator, fit_seconds = _fit(kind, X, y, seed, w, fill_rows=cal.X)
    return CalibratedFit(estimator, regressors.to_onnx(kind, estimator), curves, synthetic, data_hash, fit_seconds)


def train_calibrated(
    kind: str,
    cal,
    rows: int = DEFAULT_CALIBRATED_ROWS,
    seed: int = DEFAULT_SEED,
    holdout: float = DEFAULT_HOLDOUT,
    real_share: float = DEFAULT_REAL_SHARE,
) -> TrainResult:
    """Hold out whole antagonist configurations of ``cal``, train on the rest (+ fitted synthetic rows),
    validate the exported model on the held-out calibration rows."""
    tr, ho = config_split(cal.groups, holdout, seed)
    got = fit_calibrated(kind, cal.subset(tr), rows, seed, real_share)
    pred = regressors.onnx_predict_slowdown(got.onnx_model, cal.X[ho])
    figures = evaluate.evaluate(pred, np.maximum(cal.slowdown[ho], 1.0), cal.profile[ho], None)
    source = {
        "calibration": {
            "path": cal.path,
            "rows": len(cal),
            "data_hash": cal.data_hash,
            "label": cal.label,
            "train_rows": int(len(tr)),
            "real_share": real_share,
            "train_configs": sorted(set(cal.groups[tr].tolist())),
            "holdout_configs": sorted(set(cal.groups[ho].tolist())),
        },
        "contention_fit": got.fit.summary,
    }
    validation = {
        "holdout": "antagonist configurations",
        "holdout_fraction": holdout,
        "label": "measured p99 slowdown of held-out calibration rows",
        **figures,
    }
    metadata = _metadata(kind, got.data_hash, source, rows, seed, validation, got.fit.params.name, got.fit_seconds)
    if cal.path:
        metadata["validated_on"] = validated_on(cal.path)
    return TrainResult(
        estimator=got.estimator,
        onnx_model=got.onnx_model,
        metadata=metadata,
        validation=figures,
        data=got.synthetic,
        holdout_index=ho,
        train_index=tr,
        calibration=cal,
    )
