"""``kubeattention train``: fit the interference model and export it to ONNX.

    kubeattention train [--model mlp|xgboost] [--rows 200000] [--seed 0]
                        [--holdout 0.2] [--out inference/models/default.onnx]
    kubeattention train --data scorer/data/calibration [--rows 30000] [--real-share 0.5] ...

With ``--data`` (measured calibration rows, ``kubeattention calibrate``) see
:func:`train_calibrated`: whole antagonist configurations are held out, the contention
curves are fitted to the training rows (``scorer.calibration.fit``), ``--rows`` synthetic
rows from the fitted generator widen them, and validation is on the held-out measured
rows. Without it:

1. generate ``--rows`` rows from the contention model (``scorer.dataset``, seeded);
2. hold out ``--holdout`` of them (seeded permutation) — never seen by the fit;
3. fit the regressor on log(slowdown):
   * ``mlp`` (default): scikit-learn ``MLPRegressor``, 64-32 ReLU, Adam, early stopping
     on an internal 10 % split of the training rows;
   * ``xgboost``: ``XGBRegressor``, 300 trees of depth 6 (fixed rounds, so the exported
     trees are exactly the ones that predict), monotone in the contention metrics, behind a
     median imputer for missing metrics (:func:`xgboost_estimator`);
4. export to ONNX and evaluate *the exported file* on the hold-out with ONNX Runtime,
   exactly as the aggregator will run it (``scorer.evaluate``);
5. write ``--out`` with the metadata in ``metadata_props`` and a ``.json`` sidecar, reload
   it through ``inference.model.InterferenceModel`` as a final check, print the figures.

``--outcomes FILE`` (the JSONL of ``kubeattention collector --export``) adds observed rows to
the *training* split: the node's vector and mask at decision time plus the pod context, with
the record's ``observed_slowdown`` as the label and its outcome weight (running 1, evicted and
oom_killed 3, ...) as the sample weight; synthetic rows weigh 1. Pod status carries no
latency, so only rows whose ``observed_slowdown`` a latency source filled in are used; the
others (and rows without telemetry, with weight 0, or from another metric schema) are
skipped and counted. A line that is not an outcome record is an error naming the line. The
hold-out stays synthetic, so its figures stay comparable between runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from inference.model import DEFAULT_MODEL_PATH, OUTPUT_LOG_SLOWDOWN, InterferenceModel, session_options
from scorer import contention, dataset, evaluate, export
from wire import schema

log = logging.getLogger(__name__)

DEFAULT_ROWS = 200_000
DEFAULT_SEED = 0
DEFAULT_HOLDOUT = 0.2
MODEL_KINDS = ("mlp", "xgboost")
VERSION_PREFIX = {"mlp": "mlp", "xgboost": "xgb"}

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
    calibration: object = None
    """scorer.calibration.data.CalibrationSet when trained with --data (holdout_index indexes it)."""


@dataclass(frozen=True)
class OutcomeRows:
    """Training rows from an outcomes JSONL: X (n, 26) float32, y log slowdown, sample weights."""

    X: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    lines: int
    skipped: dict
    data_hash: str

    def summary(self) -> dict:
        return {
            "rows_used": int(len(self.y)),
            "lines": self.lines,
            "skipped": dict(self.skipped),
            "data_hash": self.data_hash,
        }


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


def _outcome_row(rec: dict) -> tuple[np.ndarray, float, float] | str:
    """(X row, log slowdown, weight), or why the row is skipped. Raises ValueError/KeyError/TypeError if malformed."""
    if rec.get("kind") != "kubeattention.io/outcome":
        raise ValueError(f"kind is {rec.get('kind')!r}, not 'kubeattention.io/outcome'")
    weight = float(rec["weight"])
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"weight {weight!r} is not a finite number >= 0")
    pod = rec["pod"]
    qos = str(pod.get("qos") or "").upper().replace("-", "_").replace("BESTEFFORT", "BEST_EFFORT")
    if qos and qos not in schema.QoS.__members__:
        raise ValueError(f"pod.qos {pod['qos']!r} is not a QoS class")
    ctx = schema.PodContext(
        cpu_request_cores=float(pod["cpu_request_cores"]),
        memory_request_bytes=int(pod["memory_request_bytes"]),
        qos=schema.QoS[qos] if qos else None,
        profile=schema.Profile.parse(pod["profile"]) if pod.get("profile") else None,
        priority=int(pod.get("priority") or 0),
    )
    features = schema.pod_features(ctx)  # validates the requests
    if rec.get("observed_slowdown") is None:
        return "no observed_slowdown"
    slowdown = float(rec["observed_slowdown"])
    if not math.isfinite(slowdown) or slowdown <= 0:
        raise ValueError(f"observed_slowdown {slowdown!r} is not a positive number")
    if weight == 0:
        return "weight 0"
    tel = rec.get("telemetry")
    if not tel:
        return "no telemetry at decision time"
    if int(tel.get("schema_version", schema.SCHEMA_VERSION)) != schema.SCHEMA_VERSION:
        return "other metric schema version"
    mask_text = tel["mask"]
    if len(mask_text) != schema.NUM_METRICS or set(mask_text) - {"0", "1"}:
        raise ValueError(f"telemetry.mask {mask_text!r} is not {schema.NUM_METRICS} characters of 0/1")
    unknown = set(tel["values"]) - set(schema.METRIC_NAMES)
    if unknown:
        raise ValueError(f"telemetry.values: unknown metrics {sorted(unknown)}")
    mask = np.array([c == "1" for c in mask_text])
    values = np.array(
        [np.nan if tel["values"].get(m.name) is None else float(tel["values"][m.name]) for m in schema.METRICS]
    )
    for m in schema.METRICS:
        if mask[m.index] and not (math.isfinite(values[m.index]) and m.lo <= values[m.index] <= m.hi):
            raise ValueError(f"telemetry.values.{m.name}: {values[m.index]!r} outside [{m.lo:g}, {m.hi:g}]")
    row = np.concatenate([schema.normalise_matrix(values[None, :], mask[None, :])[0], features])
    return row.astype(np.float32), math.log(max(slowdown, 1.0)), weight


def load_outcomes(path: Path) -> OutcomeRows:
    """Read ``kubeattention collector`` JSONL; see the module docstring for what is used."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise TrainError(f"outcomes: cannot read {path}: {e}") from None
    rows, ys, ws, skipped, lines = [], [], [], {}, 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        lines += 1
        try:
            got = _outcome_row(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            detail = f"field {e.args[0]!r} absent" if isinstance(e, KeyError) else str(e)
            raise TrainError(f"outcomes: {path} line {n}: not an outcome record: {detail}") from None
        if isinstance(got, str):
            skipped[got] = skipped.get(got, 0) + 1
            continue
        rows.append(got[0])
        ys.append(got[1])
        ws.append(got[2])
    X = np.array(rows, dtype=np.float32).reshape(-1, schema.NUM_FEATURES)
    y = np.array(ys, dtype=np.float64)
    w = np.array(ws, dtype=np.float64)
    return OutcomeRows(
        X=X,
        y=y,
        weight=w,
        lines=lines,
        skipped=skipped,
        data_hash=dataset.data_hash(np.concatenate([X, w[:, None].astype(np.float32)], axis=1), y),
    )


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_index, holdout_index), a seeded permutation independent of the data stream."""
    if not 0.0 < fraction < 1.0:
        raise TrainError(f"holdout: must be between 0 and 1, got {fraction!r}")
    order = np.random.default_rng([seed, 0x484F4C44]).permutation(n)  # "HOLD"
    k = max(1, int(round(n * fraction)))
    if k >= n:
        raise TrainError(f"rows: {n} rows leave nothing to train on with holdout {fraction}")
    return np.sort(order[k:]), np.sort(order[:k])


def fit(kind: str, X: np.ndarray, y: np.ndarray, seed: int, sample_weight: np.ndarray | None = None):
    if kind == "mlp":
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(random_state=seed, **MLP_PARAMS).fit(X, y, sample_weight=sample_weight)
    if kind == "xgboost":
        return xgboost_estimator(seed).fit(X, y, xgb__sample_weight=sample_weight)
    raise TrainError(f"model: unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")


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


def _versions(kind: str) -> dict:
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


def train(
    kind: str = "mlp",
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    holdout: float = DEFAULT_HOLDOUT,
    outcomes: OutcomeRows | None = None,
) -> TrainResult:
    """Generate, split, fit, export and evaluate. Nothing is written to disk."""
    if kind not in MODEL_KINDS:
        raise TrainError(f"model: unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
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

    t1 = time.monotonic()
    estimator = fit(kind, X_fit, y_fit, seed, sample_weight=w_fit)
    fit_seconds = time.monotonic() - t1
    log.info("fitted %s in %.1f s", kind, fit_seconds)

    model = to_onnx(kind, estimator)
    pred = np.maximum(np.exp(onnx_predict_log(model, data.X[ho]).astype(np.float64)), 1.0)
    figures = evaluate.evaluate(pred, data.slowdown[ho], data.profile[ho], data.pattern[ho])

    metadata = {
        **model_identity(kind, data_hash),
        **({"outcomes": outcomes.summary()} if outcomes is not None else {}),
        "rows": rows,
        "seed": seed,
        "validation": {"holdout_fraction": holdout, **figures},
        "hyperparameters": hyperparameters(kind),
        "generator": contention.GENERATOR,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fit_seconds": round(fit_seconds, 1),
        **_versions(kind),
    }
    return TrainResult(
        estimator=estimator,
        onnx_model=model,
        metadata=metadata,
        validation=figures,
        data=data,
        holdout_index=ho,
        train_index=tr,
    )


# ------------------------------------------------------------- calibrated training

#: Synthetic rows generated from the fitted contention model when training on calibration data.
DEFAULT_CALIBRATED_ROWS = 30_000
#: Share of the total sample weight that the measured calibration rows carry (the rest:
#: synthetic rows that widen the data to node states this machine cannot produce).
DEFAULT_REAL_SHARE = 0.5


@dataclass(frozen=True)
class CalibratedFit:
    estimator: object
    onnx_model: onnx.ModelProto
    fit: object
    """scorer.calibration.fit.FitResult of the contention curves."""
    synthetic: dataset.Dataset
    data_hash: str
    fit_seconds: float


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

    if kind not in MODEL_KINDS:
        raise TrainError(f"model: unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
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
    t1 = time.monotonic()
    estimator = fit(kind, X, y, seed, sample_weight=w)
    fit_seconds = time.monotonic() - t1
    return CalibratedFit(estimator, to_onnx(kind, estimator), curves, synthetic, data_hash, fit_seconds)


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
    pred = np.maximum(np.exp(onnx_predict_log(got.onnx_model, cal.X[ho]).astype(np.float64)), 1.0)
    figures = evaluate.evaluate(pred, np.maximum(cal.slowdown[ho], 1.0), cal.profile[ho], None)
    metadata = {
        **model_identity(kind, got.data_hash),
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
        "rows": rows,
        "seed": seed,
        "validation": {
            "holdout": "antagonist configurations",
            "holdout_fraction": holdout,
            "label": "measured p99 slowdown of held-out calibration rows",
            **figures,
        },
        "hyperparameters": hyperparameters(kind),
        "generator": got.fit.params.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fit_seconds": round(got.fit_seconds, 1),
        **_versions(kind),
    }
    data = got.synthetic if got.synthetic is not None else None
    return TrainResult(
        estimator=got.estimator,
        onnx_model=got.onnx_model,
        metadata=metadata,
        validation=figures,
        data=data,
        holdout_index=ho,
        train_index=tr,
        calibration=cal,
    )


# ---------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODEL_KINDS, default="mlp", help="regressor to fit (default: mlp)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="FILE|DIR",
        help="calibration rows (calibration.jsonl from `kubeattention calibrate`, or its directory): "
        "fit the contention curves to them, widen them with --rows synthetic rows from the "
        "fitted generator, hold out whole antagonist configurations for validation "
        "(default: none, synthetic rows from the prior contention model only)",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help=f"rows to generate from the contention model (default: {DEFAULT_ROWS}; "
        f"{DEFAULT_CALIBRATED_ROWS} with --data)",
    )
    parser.add_argument(
        "--real-share",
        type=float,
        default=DEFAULT_REAL_SHARE,
        help=f"with --data: share of the sample weight the measured rows carry (default: {DEFAULT_REAL_SHARE})",
    )
    parser.add_argument(
        "--label",
        choices=("config-median", "run"),
        default="config-median",
        help="with --data: the slowdown to learn, the median over repetitions of the row's antagonist "
        "configuration and profile, or the row's own run (default: %(default)s; "
        "scorer/calibration/data.py)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data, split and fit seed (default: 0)")
    parser.add_argument(
        "--holdout",
        type=float,
        default=DEFAULT_HOLDOUT,
        help=f"share of rows held out for validation (default: {DEFAULT_HOLDOUT})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_MODEL_PATH,
        help="ONNX file to write; metadata also goes to <stem>.json "
        "(default: the packaged inference/models/default.onnx)",
    )
    parser.add_argument(
        "--outcomes",
        type=Path,
        default=None,
        metavar="FILE",
        help="outcomes JSONL from `kubeattention collector --export`: rows with an observed_slowdown "
        "join the training split, weighted by their outcome weight (default: none)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        outcomes = load_outcomes(args.outcomes) if getattr(args, "outcomes", None) else None
        if outcomes is not None:
            skipped = ", ".join(f"{n} {why}" for why, n in sorted(outcomes.skipped.items())) or "none"
            print(f"outcomes {args.outcomes}: {len(outcomes.y)} of {outcomes.lines} rows used; skipped: {skipped}")
        if getattr(args, "data", None) is not None:
            if outcomes is not None:
                raise TrainError("--outcomes and --data: choose one source of observed rows")
            from scorer.calibration.data import load as load_calibration
            from scorer.calibration.rows import CalibrationError

            try:
                cal = load_calibration(args.data, args.label)
            except CalibrationError as err:
                raise TrainError(str(err)) from None
            rows = DEFAULT_CALIBRATED_ROWS if args.rows is None else args.rows
            if rows < 0:
                raise TrainError(f"rows: must be >= 0, got {rows}")
            result = train_calibrated(
                kind=args.model, cal=cal, rows=rows, seed=args.seed, holdout=args.holdout, real_share=args.real_share
            )
        else:
            rows = DEFAULT_ROWS if args.rows is None else args.rows
            result = train(kind=args.model, rows=rows, seed=args.seed, holdout=args.holdout, outcomes=outcomes)
    except TrainError as exc:
        log.error("%s", exc)
        return 2
    try:
        onnx_path, side = export.write(result.onnx_model, result.metadata, args.out)
    except OSError as err:
        log.error("--out %s: cannot write the model (%s)", args.out, err.strerror or err)
        return 2
    loaded = InterferenceModel.load(onnx_path)  # validates the written file like the aggregator will
    X_check = (result.calibration.X if result.calibration is not None else result.data.X)[result.holdout_index[:1000]]
    check = loaded.predict_slowdown(X_check)
    ref = np.maximum(np.exp(onnx_predict_log(result.onnx_model, X_check).astype(np.float64)), 1.0)
    if not np.allclose(check, ref, rtol=1e-6, atol=1e-6):
        log.error("reloaded model %s predicts differently from the exported graph", onnx_path)
        return 1
    m = result.metadata
    print(
        f"model {m['model_version']} ({m['model_kind']}), {m['rows']} rows, seed {m['seed']}, "
        f"data {m['training_data_hash'][:12]}, fit {m['fit_seconds']} s"
    )
    if result.calibration is not None:
        fitted = m["contention_fit"]
        print(
            f"contention curves fitted to {fitted['rows']} calibration rows: log-RMSE {fitted['rmse_log']} "
            f"(prior {fitted['prior_rmse_log']}); held out configurations: "
            f"{', '.join(m['calibration']['holdout_configs'])}"
        )
    print(
        f"validation on {result.validation['all']['rows']} held-out rows "
        f"(exported ONNX model, slowdown = p99 / p99 alone):"
    )
    print(evaluate.format_table(result.validation))
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB) and {side}")
    return 0
