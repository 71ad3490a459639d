"""The two regressors the scorer can train, from hyperparameters to predictions of the exported graph.

* ``mlp``: scikit-learn ``MLPRegressor``, 64-32 ReLU, Adam, early stopping on an internal
  10 % split of the training rows (:data:`MLP_PARAMS`);
* ``xgboost``: ``XGBRegressor``, 300 trees of depth 6 (fixed rounds, so the exported trees
  are exactly the ones that predict), monotone in the contention metrics, behind a median
  imputer for missing metrics (:func:`xgboost_estimator`);
* ``xgboost-fast``: the same pipeline with 20 trees of depth 4 and a larger step
  (:data:`XGBOOST_FAST_PARAMS`): the serving-speed variant. ONNX Runtime walks every tree
  for every node, so the cost is trees × depth; 300 × 6 took about 7 ms for 1 000 nodes
  here, where the default model must answer in 0.5 ms (``bench/models.py``).

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

MODEL_KINDS = ("mlp", "xgboost", "xgboost-fast")

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
XGBOOST_FAST_PARAMS = {**XGBOOST_PARAMS, "n_estimators": 20, "max_depth": 4, "learning_rate": 0.3}
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


def fit(
    kind: str,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    sample_weight: np.ndarray | None = None,
    fill_rows: np.ndarray | None = None,
):
    """The fitted estimator of ``kind`` on log slowdown ``y``; ValueError for an unknown kind.

    ``fill_rows``: the rows whose values a missing metric is imputed from (:func:`missing_fill`;
    default ``X``) — the measured calibration rows when synthetic rows widen them, so the
    imputation is what real nodes report."""
    if kind == "mlp":
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(random_state=seed, **MLP_PARAMS).fit(X, y, sample_weight=sample_weight)
    if kind in ("xgboost", "xgboost-fast"):
        params = XGBOOST_PARAMS if kind == "xgboost" else XGBOOST_FAST_PARAMS
        fill = missing_fill(X if fill_rows is None else fill_rows)
        return xgboost_estimator(seed, params, fill).fit(X, y, xgb__sample_weight=sample_weight)
    raise ValueError(unknown_kind(kind))


#: A missing contention metric (MONOTONE_METRICS) is imputed at this quantile of the training
#: rows' measured values; any other metric at the median.
MISSING_QUANTILE = 0.9


def missing_fill(X: np.ndarray) -> np.ndarray:
    """Per metric, the value a missing one is read as (normalised; 0.5 where none was measured):

    * a contention metric (:data:`MONOTONE_METRICS`): the :data:`MISSING_QUANTILE` quantile of
      its measured values in ``X``. Not the median: most of them are near zero on most nodes
      (PSI, preemptions), so the median *is* zero and a node that cannot measure its CPU
      pressure would look idle (``scorer.invariants``: "missing is not zero"). The 90th
      percentile says "as busy as a busy node", so not measuring never earns a better score;
    * any other metric (run-queue latency, throttling, memory use, disk latency, which the
      model may read either way): the median, a typical node.
    """
    out = np.full(schema.NUM_METRICS, 0.5)
    for j, name in enumerate(schema.FEATURE_NAMES[: schema.NUM_METRICS]):
        got = X[:, j][X[:, j] != schema.MISSING]
        if got.size:
            out[j] = float(np.quantile(got, MISSING_QUANTILE if name in MONOTONE_METRICS else 0.5))
    return out


def xgboost_estimator(seed: int, params: dict | None = None, fill: np.ndarray | None = None):
    """The XGBoost model as a scikit-learn pipeline that exports to ONNX in one piece:

    1. a missing metric (``schema.MISSING``) becomes ``fill`` (:func:`missing_fill`: the upper
       quartile of that metric over the training rows), so a node that cannot measure
       something scores like a busy node, never like one that measured zero (and the monotone
       constraints below cannot turn "missing" into "best"); pod features pass through;
    2. ``XGBRegressor`` on log slowdown, monotone non-decreasing in :data:`MONOTONE_METRICS`.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from xgboost import XGBRegressor

    fill = np.full(schema.NUM_METRICS, 0.5) if fill is None else fill
    features = ColumnTransformer(
        [
            *(
                (
                    f"metric{j}",
                    SimpleImputer(
                        missing_values=schema.MISSING,
                        strategy="constant",
                        fill_value=float(fill[j]),
                        keep_empty_features=True,
                    ),
                    [j],
                )
                for j in range(schema.NUM_METRICS)
            ),
            ("pod", "passthrough", list(range(schema.NUM_METRICS, schema.NUM_FEATURES))),
        ]
    )
    constraints = tuple(1 if name in MONOTONE_METRICS else 0 for name in schema.FEATURE_NAMES)
    return Pipeline(
        [
            ("features", features),
            ("xgb", XGBRegressor(random_state=seed, monotone_constraints=constraints, **(params or XGBOOST_PARAMS))),
        ]
    )


def hyperparameters(kind: str) -> dict:
    """What the metadata records about the regressor (JSON-ready)."""
    if kind == "mlp":
        return {k: list(v) if isinstance(v, tuple) else v for k, v in MLP_PARAMS.items()}
    return {
        **(XGBOOST_PARAMS if kind == "xgboost" else XGBOOST_FAST_PARAMS),
        "monotone_increasing": list(MONOTONE_METRICS),
        "missing_metrics": f"contention metrics: the {MISSING_QUANTILE:g} quantile of the training rows' measured "
        "values; others: their median (SimpleImputer)",
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
    if kind != "mlp":
        import onnxmltools
        import xgboost

        out.update(xgboost_version=xgboost.__version__, onnxmltools_version=onnxmltools.__version__)
    return out
