"""The two regressors the scorer can train, from hyperparameters to predictions of the exported graph.

* ``mlp``: scikit-learn ``MLPRegressor``, 64-32 ReLU, Adam, early stopping on an internal
  10 % split of the training rows (:data:`MLP_PARAMS`);
* ``xgboost``: ``XGBRegressor``, 300 trees of depth 6 (fixed rounds, so the exported trees
  are exactly the ones that predict), monotone in the contention metrics, behind a median
  imputer for missing metrics (:func:`xgboost_estimator`).

Both are fitted on log(slowdown), exported with ``scorer.export`` (:func:`to_onnx`) and
judged through the exported graph with the production session options
(:func:`onnx_predict_slowdown`), exactly as the aggregator will run it.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from inference.model import session_options
from scorer import export
from wire import schema

MODEL_KINDS = ("mlp", "xgboost")

MLP_PARAMS = dict(
    hidden_layer_sizes=(64, 32),
    activation="relu",
    solver="adam",
    alpha=1e-5,
    batch_size=512,
    learning_rate_init=1e-3,
    max_iter=200,
    early_stopping=True,
    validation_fraction=0.1,
    n_iter_no_change=8,
    tol=1e-4,
)
XGBOOST_PARAMS = dict(
    n_estimators=300,
    max_depth=6,
    learning_rate=0.1,
    subsample=0.8,
    colsample_bytree=0.8,
    min_child_weight=5,
    tree_method="hist",
    objective="reg:squarederror",
    n_jobs=2,
)
#: Node metrics the XGBoost model may only read as "more of it never makes the pod faster"
#: (XGBoost ``monotone_constraints`` +1). Small, noisy calibration data otherwise teaches
#: trees that a busier node is better wherever one noisy run said so. Left free, and why:
#: ``runqueue_latency_p99_us`` (a CPU-limited neighbour's own throttled waits count as
#: run-queue wait, so the 10 %-quota neighbours of the calibration ladder show the highest
#: p99), ``cpu_throttled_ratio`` (a throttled neighbour is being held back),
#: ``memory_utilization`` (capacity, not contention) and ``disk_io_latency_p99_ms`` (missing
#: whenever the interval had no disk I/O, see :func:`xgboost_estimator`).
MONOTONE_METRICS = (
    "cpu_utilization",
    "cpu_iowait_ratio",
    "cpu_psi_some",
    "memory_psi_some",
    "io_psi_some",
    "cross_cgroup_preemptions_per_s",
    "llc_miss_ratio",
    "llc_mpki",
    "cycles_per_instruction",
    "memory_bandwidth_gbps",
    "process_churn_per_s",
)


def unknown_kind(kind: str) -> str:
    """The message for a model kind that is not one of :data:`MODEL_KINDS`."""
    return f"model: unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}"


def fit(kind: str, X: np.ndarray, y: np.ndarray, seed: int, sample_weight: np.ndarray | None = None):
    """The fitted estimator of ``kind`` on log slowdown ``y``; ValueError for an unknown kind."""
    if kind == "mlp":
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(random_state=seed, **MLP_PARAMS).fit(X, y, sample_weight=sample_weight)
    if kind == "xgboost":
        return xgboost_estimator(seed).fit(X, y, xgb__sample_weight=sample_weight)
    raise ValueError(unknown_kind(kind))


def xgboost_estimator(seed: int):
    """The XGBoost model as a scikit-learn pipeline that exports to ONNX in one piece:

    1. a missing metric (``schema.MISSING``) becomes the median of that metric over the
       training rows, so a node that cannot measure something scores like a typical node,
       never like one that measured zero (and the monotone constraints below cannot turn
       "missing" into "best"); pod features pass through;
    2. ``XGBRegressor`` on log slowdown, monotone non-decreasing in :data:`MONOTONE_METRICS`.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from xgboost import XGBRegressor

    metrics = list(range(schema.NUM_METRICS))
    features = ColumnTransformer(
        [
            (
                "metrics",
                SimpleImputer(missing_values=schema.MISSING, strategy="median", keep_empty_features=True),
                metrics,
            ),
            ("pod", "passthrough", list(range(schema.NUM_METRICS, schema.NUM_FEATURES))),
        ]
    )
    constraints = tuple(1 if name in MONOTONE_METRICS else 0 for name in schema.FEATURE_NAMES)
    return Pipeline(
        [
            ("features", features),
            ("xgb", XGBRegressor(random_state=seed, monotone_constraints=constraints, **XGBOOST_PARAMS)),
        ]
    )


def hyperparameters(kind: str) -> dict:
    """What the metadata records about the regressor (JSON-ready)."""
    if kind == "mlp":
        return {k: list(v) if isinstance(v, tuple) else v for k, v in MLP_PARAMS.items()}
    return {
        **XGBOOST_PARAMS,
        "monotone_increasing": list(MONOTONE_METRICS),
        "missing_metrics": "median of the training rows (SimpleImputer)",
    }


def to_onnx(kind: str, estimator) -> onnx.ModelProto:
    return export.mlp_to_onnx(estimator) if kind == "mlp" else export.xgboost_to_onnx(estimator)


def onnx_predict_log(model: onnx.ModelProto, X: np.ndarray) -> np.ndarray:
    """Raw ONNX output (log slowdown) with the production session options."""
    sess = ort.InferenceSession(
        model.SerializeToString(), sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(X, dtype=np.float32)})[0].reshape(-1)


def onnx_predict_slowdown(model: onnx.ModelProto, X: np.ndarray) -> np.ndarray:
    """Predicted slowdowns (float64, at least 1.0) of the exported graph, as the aggregator reads them."""
    return np.maximum(np.exp(onnx_predict_log(model, X).astype(np.float64)), 1.0)


def library_versions(kind: str) -> dict:
    """Versions of the libraries that fitted, exported and checked a model of ``kind``."""
    import skl2onnx
    import sklearn

    out = {
        "sklearn_version": sklearn.__version__,
        "skl2onnx_version": skl2onnx.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
        "numpy_version": np.__version__,
    }
    if kind == "xgboost":
        import onnxmltools
        import xgboost

        out.update(xgboost_version=xgboost.__version__, onnxmltools_version=onnxmltools.__version__)
    return out
