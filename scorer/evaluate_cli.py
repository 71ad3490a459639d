"""``kubeattention evaluate``: does the model place pods better than today's schedulers?

    kubeattention evaluate [--data scorer/data/calibration] [--model mlp,xgboost]
                           [--repeats N] [--folds 5] [--report DIR] [--compare FILE.onnx ...]

1. Split the calibration rows into ``--folds`` groups **by antagonist configuration**
   (every row of a configuration, all its repetitions and victim profiles, lands in the
   same group), so each prediction is for a neighbour the model has never seen.
2. For each group: fit the contention curves and the regressor on the other groups
   exactly as ``kubeattention train --data`` does (``scorer.training.fit_calibrated``), export
   to ONNX and predict the held-out rows with ONNX Runtime. Every row gets one
   out-of-fold prediction.
3. Score every row with the model (``100 / predicted slowdown``, the aggregator's score),
   the baselines and the oracle (``scorer.placement``), draw ``--trials`` random
   candidate sets of 5-20 node states of one profile, and report Spearman, mean top-1
   regret and the share of SLO-breaking choices for each.
4. Unless ``--no-kind-holdout``, the same again holding out whole antagonist *kinds* (every
   intensity of ``cpu``, of ``io``, ...; one kind per fold): a neighbour of a kind the model
   never saw. Reported as a second, harder figure; the headline stays step 1's.
5. ``--compare FILE`` also scores the rows with an existing ONNX model as it is (no
   retraining) — e.g. the synthetic-only model — to show what calibration changed.
6. Two references that say how much of the measured slowdown is predictable at all on
   this data (neither is a scheduler: both know things no node reports):

   * **test-retest**: Spearman between one run's slowdown and the median of the other
     repetitions of the same configuration and profile — how well the slowdown beside a
     neighbour predicts itself;
   * **neighbour-aware reference**: a regressor told the held-out neighbour's kind and
     intensity (the calibration plan, not node metrics), fitted and scored on the same
     folds and candidate sets as the models.

Every model of ``--model`` (default: both, the MLP first) is evaluated on the same folds
and candidate sets, each with its own rows in the tables and its own target check.

Writes ``report.md`` (the table and whether the targets hold), ``report.json``,
``score_vs_slowdown.png`` and ``regret_cdf.png`` to ``--report``. The predictions and
references are ``scorer.held_out``, the placement figures ``scorer.placement``, the report
``scorer.evaluation_report``; this module is the command that runs them in order.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from inference import scoring
from inference.model import ModelError
from scorer import placement
from scorer.calibration.data import ALONE, DEFAULT_DATA, DEFAULT_LABEL, LABELS, load
from scorer.calibration.rows import CalibrationError
from scorer.evaluate import spearman
from scorer.evaluation_report import model_name, plot, render, targets
from scorer.flags import FlagError, parse_names, parse_seeds
from scorer.held_out import (
    EvaluateError,
    compare_model,
    config_folds,
    neighbour_reference,
    out_of_fold,
    retest_spearman,
)
from scorer.regressors import MODEL_KINDS
from scorer.training import DEFAULT_CALIBRATED_ROWS, DEFAULT_REAL_SHARE, TrainError
from wire.schema import Profile

DEFAULT_REPORT = Path("evaluation")
DEFAULT_FOLDS = 5
DEFAULT_MODELS = MODEL_KINDS  # every regressor, the MLP first


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        metavar="FILE|DIR",
        help=f"calibration rows (default: the committed {DEFAULT_DATA.relative_to(DEFAULT_DATA.parents[2])})",
    )
    parser.add_argument(
        "--model",
        default=",".join(DEFAULT_MODELS),
        metavar="LIST",
        help="comma-separated regressors to evaluate, each on the same folds (mlp, xgboost; default: %(default)s)",
    )
    parser.add_argument(
        "--label",
        choices=LABELS,
        default=DEFAULT_LABEL,
        help="slowdown to train on and score against: the median over repetitions of the row's "
        "configuration and profile, or the row's own run (default: %(default)s; the report "
        "always adds the other scoring as a second table)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N repetitions of the recording (default: all) — how the figures "
        "grow with the number of runs per configuration",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=DEFAULT_FOLDS,
        help=f"groups of antagonist configurations held out in turn (default: {DEFAULT_FOLDS})",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="synthetic rows from the fitted generator per fold (default: as `train --data`)",
    )
    parser.add_argument(
        "--real-share",
        type=float,
        default=None,
        help="share of sample weight on measured rows (default: as `train --data`)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=placement.DEFAULT_TRIALS,
        help=f"random candidate sets (default: {placement.DEFAULT_TRIALS})",
    )
    parser.add_argument(
        "--slo",
        type=float,
        default=placement.DEFAULT_SLO,
        help=f"slowdown SLO for the breach share (default: {placement.DEFAULT_SLO})",
    )
    parser.add_argument("--seed", type=int, default=0, help="fold, trial and fit seed (default: 0)")
    parser.add_argument(
        "--seeds",
        default=None,
        metavar="LIST",
        help="evaluate once per fold seed (e.g. 0-4): the headline table gives every figure as the median "
        "and range over the seeds, and report.json keeps each seed's figures; the detailed tables are the "
        "first seed's (default: --seed only)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also score with this ONNX model as it is (repeatable)",
    )
    parser.add_argument(
        "--no-kind-holdout",
        action="store_true",
        help="skip the second evaluation that holds out whole antagonist kinds (halves the time)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=DEFAULT_REPORT,
        metavar="DIR",
        help=f"where to write report.md, report.json and the plots (default: ./{DEFAULT_REPORT})",
    )


def without_regret(figures: dict) -> dict:
    """Placement figures without the per-trial regret array (for report.json)."""
    return {k: v for k, v in figures.items() if k != "regret"}


def _per_profile(cal, pred: np.ndarray) -> dict:
    """Per victim profile: rows, Spearman of predicted vs measured slowdown, mean measured slowdown."""
    return {
        p.annotation: {
            "rows": int((cal.profile == p).sum()),
            "spearman": spearman(pred[cal.profile == p], cal.slowdown[cal.profile == p]),
            "mean": float(np.maximum(cal.slowdown[cal.profile == p], 1).mean()),
        }
        for p in Profile
        if (cal.profile == p).any()
    }


def _once(args, cal, kinds, seed: int, rows: int, real_share: float, full: bool, compared: dict) -> dict:
    """One evaluation with fold, trial and fit seed ``seed``: held-out predictions, placement figures
    and (``full``) the kind hold-out; ``compared``: the ``--compare`` models' scores, which no seed
    changes. Raises what the fits raise."""
    neighbour_kinds = sorted({g for g in cal.kind_groups.tolist() if not g.startswith(f"{ALONE}#")})
    preds: dict[str, np.ndarray] = {}
    per_model: dict[str, dict] = {}
    for kind in kinds:
        preds[kind], fits = out_of_fold(cal, kind, args.folds, seed, rows, real_share)
        per_model[kind] = {"fold_fits": fits}
        if full and not args.no_kind_holdout and len(neighbour_kinds) >= 2:
            per_model[kind]["kind_pred"], per_model[kind]["kind_fits"] = out_of_fold(
                cal, kind, len(neighbour_kinds), seed, rows, real_share, groups=cal.kind_groups
            )
    reference = neighbour_reference(cal, args.folds, seed)
    scores = {model_name(k): scoring.scores_from_slowdown(preds[k]) for k in kinds}
    scores.update(compared)
    scores.update(placement.baseline_scores(cal.values, cal.mask, cal.samples_cpu_std, cal.slowdown))
    trials = placement.draw_trials(cal.profile, args.trials, seed=seed)
    figures = {name: placement.placement_figures(sc, cal.slowdown, trials, args.slo) for name, sc in scores.items()}
    neighbour_aware = placement.placement_figures(
        scoring.scores_from_slowdown(reference), cal.slowdown, trials, args.slo
    )
    return {
        "seed": seed,
        "preds": preds,
        "per_model": per_model,
        "scores": scores,
        "trials": trials,
        "figures": figures,
        "neighbour_aware": neighbour_aware,
        "per_profile": {k: _per_profile(cal, preds[k]) for k in kinds},
    }


#: The figures summarised over seeds (placement.placement_figures keys).
SEED_FIGURES = ("spearman", "mean_regret", "p90_regret", "slo_breach_share", "mean_chosen_slowdown")


def across_seeds(runs: list[dict]) -> dict:
    """Per scorer and figure: median, min, max and each seed's value (NaN-free figures only)."""
    out: dict[str, dict] = {}
    for name in runs[0]["figures"]:
        out[name] = {}
        for fig in SEED_FIGURES:
            vals = [float(r["figures"][name][fig]) for r in runs]
            finite = [v for v in vals if math.isfinite(v)]
            out[name][fig] = {
                "median": float(np.median(finite)) if finite else float("nan"),
                "min": min(finite) if finite else float("nan"),
                "max": max(finite) if finite else float("nan"),
                "per_seed": vals,
            }
    na = [float(r["neighbour_aware"]["spearman"]) for r in runs]
    out["neighbour-aware reference"] = {"spearman": {"median": float(np.median(na)), "min": min(na), "max": max(na)}}
    return out


def per_profile_across_seeds(runs: list[dict], kinds: list[str]) -> dict:
    """Per model and profile: median, min and max held-out Spearman over the seeds."""
    out: dict[str, dict] = {}
    for k in kinds:
        out[k] = {}
        for profile in runs[0]["per_profile"][k]:
            vals = [float(r["per_profile"][k][profile]["spearman"]) for r in runs]
            out[k][profile] = {"median": float(np.median(vals)), "min": min(vals), "max": max(vals), "per_seed": vals}
    return out


def placement_by_profile(cal, scores: dict, trials, slo: float, models: list[str]) -> dict:
    """Per victim profile, the placement figures (regret, SLO-breaking) of the models and the
    baselines over the candidate sets of that profile: where a model chooses worse than a baseline."""
    names = [*models, placement.TRIMARAN, placement.NAIVE, placement.ORACLE]
    out: dict[str, dict] = {}
    for p in Profile:
        keep = [i for i, rows in enumerate(trials.index) if (cal.profile[rows] == p).all()]
        if not keep:
            continue
        sub = placement.Trials([trials.index[i] for i in keep], [trials.tie_break[i] for i in keep])
        out[p.annotation] = {"sets": len(keep)}
        for name in names:
            f = placement.placement_figures(scores[name], cal.slowdown, sub, slo)
            out[p.annotation][name] = {"mean_regret": f["mean_regret"], "slo_breach_share": f["slo_breach_share"]}
    return out


def run(args: argparse.Namespace) -> int:
    rows = DEFAULT_CALIBRATED_ROWS if args.rows is None else args.rows
    real_share = DEFAULT_REAL_SHARE if args.real_share is None else args.real_share
    try:
        kinds = parse_names(args.model, MODEL_KINDS, "--model")
        seeds = parse_seeds(args.seeds) if args.seeds is not None else [args.seed]
        if args.trials < 1:
            raise EvaluateError(f"--trials: must be >= 1, got {args.trials}")
        if not (math.isfinite(args.slo) and args.slo >= 1.0):
            raise EvaluateError(f"--slo: must be a slowdown >= 1.0, got {args.slo}")
        cal = load(args.data, args.label, args.repeats)
        config_folds(cal.groups, args.folds, seeds[0])  # validates --folds early
        compared = {k: scoring.scores_from_slowdown(v) for k, v in (compare_model(p, cal) for p in args.compare)}
        runs = []
        for i, seed in enumerate(seeds):
            if len(seeds) > 1:
                print(f"evaluate: fold seed {seed} ({i + 1} of {len(seeds)})", file=sys.stderr, flush=True)
            runs.append(_once(args, cal, kinds, seed, rows, real_share, full=i == 0, compared=compared))
    except (CalibrationError, EvaluateError, FlagError, TrainError, ModelError) as err:
        print(f"kubeattention evaluate: {err}", file=sys.stderr)
        return 2
    first = runs[0]
    preds, per_model, scores, trials, figures = (
        first["preds"],
        first["per_model"],
        first["scores"],
        first["trials"],
        first["figures"],
    )
    other_label = next(lb for lb in LABELS if lb != args.label)
    other_sd = cal.run_slowdown if other_label == "run" else load(args.data, other_label, args.repeats).slowdown
    other_scores = {
        **scores,
        placement.ORACLE: placement.baseline_scores(cal.values, cal.mask, cal.samples_cpu_std, other_sd)[
            placement.ORACLE
        ],
    }
    other_figures = {
        name: placement.placement_figures(sc, other_sd, trials, args.slo) for name, sc in other_scores.items()
    }

    models_info = {}
    for kind in kinds:
        m = per_model[kind]
        models_info[kind] = {
            "fold_fits": m["fold_fits"],
            "per_profile": first["per_profile"][kind],
            "kind_holdout": None
            if "kind_pred" not in m
            else {
                "folds": len(m["kind_fits"]),
                "fold_fits": m["kind_fits"],
                "figures": without_regret(
                    placement.placement_figures(
                        scoring.scores_from_slowdown(m["kind_pred"]), cal.slowdown, trials, args.slo
                    )
                ),
            },
        }
    by_profile = placement_by_profile(cal, scores, trials, args.slo, [model_name(k) for k in kinds])
    retest, retest_runs = retest_spearman(cal)
    references = {
        "retest_spearman": retest,
        "retest_runs": retest_runs,
        "neighbour_aware": without_regret(first["neighbour_aware"]),
    }
    info = {
        "data": os.path.relpath(cal.path) if Path(cal.path).is_absolute() else str(cal.path),
        "rows": len(cal),
        "configs": len(set(cal.config.tolist())),
        "profiles": len(set(cal.profile.tolist())),
        "data_hash": cal.data_hash,
        "models": models_info,
        "synthetic_rows": rows,
        "real_share": real_share,
        "repetitions": int(cal.rep.max()),
        "repeats": args.repeats,
        "folds": args.folds,
        "trials": args.trials,
        "slo": args.slo,
        "seed": seeds[0],
        "seeds": seeds,
        "label": args.label,
        "references": references,
        "placement_by_profile": by_profile,
        "other_label": {"label": other_label, "figures": {k: without_regret(v) for k, v in other_figures.items()}},
        "command": "kubeattention evaluate " + " ".join(sys.argv[sys.argv.index("evaluate") + 1 :])
        if "evaluate" in sys.argv
        else "kubeattention evaluate",
    }
    seeds_summary = across_seeds(runs) if len(seeds) > 1 else None
    if seeds_summary is not None:
        info["across_seeds"] = seeds_summary
        info["per_profile_across_seeds"] = per_profile_across_seeds(runs, kinds)
    args.report.mkdir(parents=True, exist_ok=True)
    text = render(figures, kinds, info)
    (args.report / "report.md").write_text(text)
    summary = {
        "info": info,
        "figures": {k: without_regret(v) for k, v in figures.items()},
        "per_seed_figures": {str(r["seed"]): {k: without_regret(v) for k, v in r["figures"].items()} for r in runs},
        "targets": {
            model_name(k): [{"target": t, "met": ok, "value": v} for t, ok, v in targets(figures, model_name(k))]
            for k in kinds
        },
    }
    (args.report / "report.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    pngs = plot(args.report, cal, preds, figures, args.slo)
    print(text)
    print(f"wrote {args.report / 'report.md'}, report.json, {', '.join(p.name for p in pngs)}")
    return 0
