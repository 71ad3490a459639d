"""``kubeattention train``: fit the interference model and export it to ONNX.

    kubeattention train [--model mlp|xgboost] [--rows 200000] [--seed 0]
                        [--holdout 0.2] [--out scorer/models/default.onnx]

1. generate ``--rows`` rows from the contention model (``scorer.dataset``, seeded);
2. hold out ``--holdout`` of them (seeded permutation) — never seen by the fit;
3. fit the regressor on log(slowdown):
   * ``mlp`` (default): scikit-learn ``MLPRegressor``, 64-32 ReLU, Adam, early stopping
     on an internal 10 % split of the training rows;
   * ``xgboost``: ``XGBRegressor``, 300 trees of depth 6 (fixed rounds, so the exported
     trees are exactly the ones that predict);
4. export to ONNX and evaluate *the exported file* on the hold-out with ONNX Runtime,
   exactly as the aggregator will run it (``scorer.evaluate``);
5. write ``--out`` with the metadata in ``metadata_props`` and a ``.json`` sidecar, reload
   it through ``scorer.model.InterferenceModel`` as a final check, print the figures.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from scorer import contention, dataset, evaluate, export, schema
from scorer.model import DEFAULT_MODEL_PATH, OUTPUT_LOG_SLOWDOWN, InterferenceModel, session_options

log = logging.getLogger(__name__)

DEFAULT_ROWS = 200_000
DEFAULT_SEED = 0
DEFAULT_HOLDOUT = 0.2
MODEL_KINDS = ("mlp", "xgboost")
VERSION_PREFIX = {"mlp": "mlp", "xgboost": "xgb"}

MLP_PARAMS = dict(hidden_layer_sizes=(64, 32), activation="relu", solver="adam", alpha=1e-5,
                  batch_size=512, learning_rate_init=1e-3, max_iter=200, early_stopping=True,
                  validation_fraction=0.1, n_iter_no_change=8, tol=1e-4)
XGBOOST_PARAMS = dict(n_estimators=300, max_depth=6, learning_rate=0.1, subsample=0.8,
                      colsample_bytree=0.8, min_child_weight=5, tree_method="hist",
                      objective="reg:squarederror", n_jobs=2)


class TrainError(Exception):
    pass


@dataclass(frozen=True)
class TrainResult:
    estimator: object
    onnx_model: onnx.ModelProto
    metadata: dict
    validation: dict
    data: dataset.Dataset
    holdout_index: np.ndarray
    train_index: np.ndarray


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_index, holdout_index), a seeded permutation independent of the data stream."""
    if not 0.0 < fraction < 1.0:
        raise TrainError(f"holdout: must be between 0 and 1, got {fraction!r}")
    order = np.random.default_rng([seed, 0x484F4C44]).permutation(n)  # "HOLD"
    k = max(1, int(round(n * fraction)))
    if k >= n:
        raise TrainError(f"rows: {n} rows leave nothing to train on with holdout {fraction}")
    return np.sort(order[k:]), np.sort(order[:k])


def fit(kind: str, X: np.ndarray, y: np.ndarray, seed: int):
    if kind == "mlp":
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(random_state=seed, **MLP_PARAMS).fit(X, y)
    if kind == "xgboost":
        from xgboost import XGBRegressor

        return XGBRegressor(random_state=seed, **XGBOOST_PARAMS).fit(X, y)
    raise TrainError(f"model: unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")


def to_onnx(kind: str, estimator) -> onnx.ModelProto:
    return export.mlp_to_onnx(estimator) if kind == "mlp" else export.xgboost_to_onnx(estimator)


def onnx_predict_log(model: onnx.ModelProto, X: np.ndarray) -> np.ndarray:
    """Raw ONNX output (log slowdown) with the production session options."""
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=session_options(),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(X, dtype=np.float32)})[0].reshape(-1)


def _versions(kind: str) -> dict:
    import sklearn
    import skl2onnx

    out = {"sklearn_version": sklearn.__version__, "skl2onnx_version": skl2onnx.__version__,
           "onnx_version": onnx.__version__, "onnxruntime_version": ort.__version__,
           "numpy_version": np.__version__}
    if kind == "xgboost":
        import onnxmltools
        import xgboost

        out.update(xgboost_version=xgboost.__version__, onnxmltools_version=onnxmltools.__version__)
    return out


def train(kind: str = "mlp", rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED,
          holdout: float = DEFAULT_HOLDOUT) -> TrainResult:
    """Generate, split, fit, export and evaluate. Nothing is written to disk."""
    if kind not in MODEL_KINDS:
        raise TrainError(f"model: unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    if rows < 100:
        raise TrainError(f"rows: need at least 100 rows to train and hold out, got {rows}")
    t0 = time.monotonic()
    data = dataset.generate(rows, seed)
    tr, ho = holdout_split(rows, holdout, seed)
    log.info("generated %d rows (hash %s) in %.1f s; training on %d, holding out %d",
             rows, data.data_hash[:12], time.monotonic() - t0, len(tr), len(ho))

    t1 = time.monotonic()
    estimator = fit(kind, data.X[tr], data.y[tr], seed)
    fit_seconds = time.monotonic() - t1
    log.info("fitted %s in %.1f s", kind, fit_seconds)

    model = to_onnx(kind, estimator)
    pred = np.maximum(np.exp(onnx_predict_log(model, data.X[ho]).astype(np.float64)), 1.0)
    figures = evaluate.evaluate(pred, data.slowdown[ho], data.profile[ho], data.pattern[ho])

    params = MLP_PARAMS if kind == "mlp" else XGBOOST_PARAMS
    metadata = {
        "model_version": f"{VERSION_PREFIX[kind]}-{data.data_hash[:12]}",
        "model_kind": kind,
        "schema_version": schema.SCHEMA_VERSION,
        "feature_names": list(schema.FEATURE_NAMES),
        "input": f"features float32 [None, {schema.NUM_FEATURES}]",
        "output": OUTPUT_LOG_SLOWDOWN,
        "output_shape": "[None, 1]",
        "training_data_hash": data.data_hash,
        "rows": rows,
        "seed": seed,
        "validation": {"holdout_fraction": holdout, **figures},
        "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        "generator": contention.GENERATOR,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fit_seconds": round(fit_seconds, 1),
        **_versions(kind),
    }
    return TrainResult(estimator=estimator, onnx_model=model, metadata=metadata, validation=figures,
                       data=data, holdout_index=ho, train_index=tr)


# ---------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODEL_KINDS, default="mlp",
                        help="regressor to fit (default: mlp)")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help=f"rows to generate from the contention model (default: {DEFAULT_ROWS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data, split and fit seed (default: 0)")
    parser.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                        help=f"share of rows held out for validation (default: {DEFAULT_HOLDOUT})")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH,
                        help="ONNX file to write; metadata also goes to <stem>.json "
                             "(default: the packaged scorer/models/default.onnx)")


def run(args: argparse.Namespace) -> int:
    try:
        result = train(kind=args.model, rows=args.rows, seed=args.seed, holdout=args.holdout)
    except TrainError as exc:
        log.error("%s", exc)
        return 2
    onnx_path, side = export.write(result.onnx_model, result.metadata, args.out)
    loaded = InterferenceModel.load(onnx_path)  # validates the written file like the aggregator will
    ho = result.holdout_index[:1000]
    check = loaded.predict_slowdown(result.data.X[ho])
    ref = np.maximum(np.exp(onnx_predict_log(result.onnx_model, result.data.X[ho]).astype(np.float64)), 1.0)
    if not np.allclose(check, ref, rtol=1e-6, atol=1e-6):
        log.error("reloaded model %s predicts differently from the exported graph", onnx_path)
        return 1
    m = result.metadata
    print(f"model {m['model_version']} ({m['model_kind']}), {m['rows']} rows, seed {m['seed']}, "
          f"data {m['training_data_hash'][:12]}, fit {m['fit_seconds']} s")
    print(f"validation on {result.validation['all']['rows']} held-out rows "
          f"(exported ONNX model, slowdown = p99 / p99 alone):")
    print(evaluate.format_table(result.validation))
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB) and {side}")
    return 0
