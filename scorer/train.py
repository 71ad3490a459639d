"""``kubeattention train``: fit the interference model and export it to ONNX.

    kubeattention train [--model mlp|xgboost|xgboost-fast] [--rows 200000] [--seed 0]
                        [--holdout 0.2] [--out inference/models/synthetic-mlp.onnx]
    kubeattention train --data scorer/data/calibration [--rows 30000] [--real-share 0.5] ...

With ``--data`` (measured calibration rows, ``kubeattention calibrate``) see
``scorer.training.train_calibrated``: whole antagonist configurations are held out, the
contention curves are fitted to the training rows (``scorer.calibration.fit``), ``--rows``
synthetic rows from the fitted generator widen them, and validation is on the held-out
measured rows. Without it (``scorer.training.train``):

1. generate ``--rows`` rows from the contention model (``scorer.dataset``, seeded);
2. hold out ``--holdout`` of them (seeded permutation) — never seen by the fit;
3. fit the regressor on log(slowdown) (``scorer.regressors``):
   * ``mlp`` (default): scikit-learn ``MLPRegressor``, 64-32 ReLU, Adam, early stopping
     on an internal 10 % split of the training rows;
   * ``xgboost``: ``XGBRegressor``, 300 trees of depth 6 (fixed rounds, so the exported
     trees are exactly the ones that predict), monotone in the contention metrics, behind a
     median imputer for missing metrics (``scorer.regressors.xgboost_estimator``);
4. export to ONNX and evaluate *the exported file* on the hold-out with ONNX Runtime,
   exactly as the aggregator will run it (``scorer.evaluate``);
5. write ``--out`` with the metadata in ``metadata_props`` and a ``.json`` sidecar, reload
   it through ``inference.model.InterferenceModel`` as a final check, print the figures.

``--outcomes FILE`` (the JSONL of ``kubeattention outcome-collector --export``) adds the
observed rows that carry an ``observed_slowdown`` to the *training* split, weighted by their
outcome weight (synthetic rows weigh 1); what is used and what is skipped is
``scorer.outcome_rows``. The hold-out stays synthetic, so its figures stay comparable
between runs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from inference.model import DEFAULT_MODEL_PATH, InterferenceModel
from scorer import evaluate, export
from scorer.calibration.data import DEFAULT_LABEL, LABELS
from scorer.calibration.data import load as load_calibration
from scorer.calibration.rows import CalibrationError
from scorer.outcome_rows import load_outcomes
from scorer.regressors import MODEL_KINDS, onnx_predict_slowdown
from scorer.training import (
    DEFAULT_CALIBRATED_ROWS,
    DEFAULT_HOLDOUT,
    DEFAULT_REAL_SHARE,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    TrainError,
    train,
    train_calibrated,
)

log = logging.getLogger(__name__)


MODELS_DIR = DEFAULT_MODEL_PATH.parent


def default_out(kind: str, calibrated: bool) -> Path:
    """Where a trained model goes without --out: never default.onnx, which only the gate writes."""
    return MODELS_DIR / (f"calibrated-{kind}.onnx" if calibrated else f"synthetic-{kind}.onnx")


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
        choices=LABELS,
        default=DEFAULT_LABEL,
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
        default=None,
        help="ONNX file to write; metadata also goes to <stem>.json (default: inference/models/synthetic-mlp.onnx, "
        "with --data inference/models/calibrated-<model>.onnx; the packaged default.onnx is written only by "
        "`kubeattention promote`, the gate)",
    )
    parser.add_argument(
        "--outcomes",
        type=Path,
        default=None,
        metavar="FILE",
        help="outcomes JSONL from `kubeattention outcome-collector --export`: rows with an observed_slowdown "
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
    out = args.out or default_out(args.model, getattr(args, "data", None) is not None)
    try:
        onnx_path, side = export.write(result.onnx_model, result.metadata, out)
    except OSError as err:
        log.error("--out %s: cannot write the model (%s)", out, err.strerror or err)
        return 2
    loaded = InterferenceModel.load(onnx_path)  # validates the written file like the aggregator will
    X_check = (result.calibration.X if result.calibration is not None else result.data.X)[result.holdout_index[:1000]]
    check = loaded.predict_slowdown(X_check)
    ref = onnx_predict_slowdown(result.onnx_model, X_check)
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
