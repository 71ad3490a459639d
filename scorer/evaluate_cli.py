"""``kubeattention evaluate``: does the model place pods better than today's schedulers?

    kubeattention evaluate [--data scorer/data/calibration] [--model mlp,xgboost]
                           [--repeats N] [--folds 5] [--report DIR] [--compare FILE.onnx ...]

1. Split the calibration rows into ``--folds`` groups **by antagonist configuration**
   (every row of a configuration, all its repetitions and victim profiles, lands in the
   same group), so each prediction is for a neighbour the model has never seen.
2. For each group: fit the contention curves and the regressor on the other groups
   exactly as ``kubeattention train --data`` does (``scorer.train.fit_calibrated``), export
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
``score_vs_slowdown.png`` and ``regret_cdf.png`` to ``--report``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from inference import scoring
from scorer import placement
from scorer.calibration.data import DEFAULT_LABEL, LABELS
from scorer.evaluate import spearman

log = logging.getLogger("scorer.evaluate")

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "calibration"
DEFAULT_REPORT = Path("evaluation")
DEFAULT_FOLDS = 5
DEFAULT_MODELS = ("mlp", "xgboost")
#: Targets of issue 4, checked on the held-out (out-of-fold) rows.
TARGET_SPEARMAN = 0.8
TARGET_REGRET = 0.10
TARGET_SLO_FACTOR = 3.0


class EvaluateError(Exception):
    pass


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


def config_folds(groups: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Row indices of each fold; whole hold-out groups (CalibrationSet.groups) per fold, seeded.

    Groups of the alone state (``none#r1``, ``none#r2``, ...) are dealt to different folds
    first, so every fold trains on some quiet rows when there are several repetitions.
    """
    names = sorted(set(groups.tolist()))
    if folds < 2 or folds > len(names):
        raise EvaluateError(f"--folds: must be between 2 and the {len(names)} hold-out groups, got {folds}")
    rng = np.random.default_rng([seed, 0x464F4C44])  # "FOLD"
    alone = [n for n in names if n.startswith("none#")]
    rest = [n for n in names if n not in alone]
    ordered = [alone[i] for i in rng.permutation(len(alone))] + [rest[i] for i in rng.permutation(len(rest))]
    group = {name: i % folds for i, name in enumerate(ordered)}
    g = np.array([group[c] for c in groups])
    return [np.flatnonzero(g == f) for f in range(folds)]


def out_of_fold(
    cal, kind: str, folds: int, seed: int, rows: int, real_share: float, groups: np.ndarray | None = None
) -> tuple[np.ndarray, list]:
    from scorer import train

    pred = np.full(len(cal), np.nan)
    fits = []
    for f, held in enumerate(config_folds(cal.groups if groups is None else groups, folds, seed)):
        keep = np.setdiff1d(np.arange(len(cal)), held)
        t0 = time.monotonic()
        got = train.fit_calibrated(kind, cal.subset(keep), rows, seed, real_share)
        pred[held] = np.maximum(np.exp(train.onnx_predict_log(got.onnx_model, cal.X[held]).astype(np.float64)), 1.0)
        fits.append(
            {
                "fold": f,
                "held_out": sorted(set((cal.groups if groups is None else groups)[held].tolist())),
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


def parse_models(text: str) -> list[str]:
    from scorer.train import MODEL_KINDS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in MODEL_KINDS]
    if not kinds or bad:
        raise EvaluateError(f"--model: expected a comma-separated list of {', '.join(MODEL_KINDS)}, got {text!r}")
    return list(dict.fromkeys(kinds))


def retest_spearman(cal) -> tuple[float, int]:
    """(Spearman, runs): each run's slowdown against the median of the other repetitions of its
    configuration and profile, over every configuration measured at least twice (alone runs
    left out: their label is 1 by definition). Slowdowns below 1 count as 1, as everywhere."""
    cells: dict[tuple[str, int], list[float]] = {}
    for c, p, sd in zip(cal.config, cal.profile, np.maximum(cal.run_slowdown, 1.0)):
        if c != "none":
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
    from wire.schema import Profile

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

    from scorer.train import XGBOOST_PARAMS

    F = neighbour_features(cal)
    pred = np.full(len(cal), np.nan)
    for held in config_folds(cal.groups, folds, seed):
        keep = np.setdiff1d(np.arange(len(cal)), held)
        model = XGBRegressor(random_state=seed, **XGBOOST_PARAMS).fit(F[keep], cal.y[keep])
        pred[held] = np.maximum(np.exp(model.predict(F[held]).astype(np.float64)), 1.0)
    return pred


def compare_model(path: Path, cal) -> tuple[str, np.ndarray]:
    """(label, predicted slowdowns) of an existing ONNX model, as it is."""
    from inference.model import InterferenceModel

    model = InterferenceModel.load(path)
    meta_hash = (
        (model.metadata.get("calibration") or {}).get("data_hash")
        if isinstance(model.metadata.get("calibration"), dict)
        else None
    )
    if meta_hash == cal.data_hash:
        log.warning("%s was trained on these very rows: its figures are not held-out", path)
    return f"{path.name} as is ({model.version})", model.predict_slowdown(cal.X)


def _fmt(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def targets(figures: dict, model_name: str) -> list[tuple[str, bool, str]]:
    m = figures[model_name]
    req = figures[placement.REQUESTS_ONLY]
    others = {k: v for k, v in figures.items() if k in placement.BASELINE_NAMES and k != placement.ORACLE}
    slo_ok = (
        m["slo_breach_share"] * TARGET_SLO_FACTOR <= req["slo_breach_share"]
        if req["slo_breach_share"] > 0
        else m["slo_breach_share"] == 0
    )
    beats_all = all(m["slo_breach_share"] < v["slo_breach_share"] for v in others.values())
    return [
        (f"Spearman(score, -slowdown) >= {TARGET_SPEARMAN}", m["spearman"] >= TARGET_SPEARMAN, _fmt(m["spearman"])),
        (f"mean top-1 regret <= {TARGET_REGRET:.0%}", m["mean_regret"] <= TARGET_REGRET, _fmt(m["mean_regret"], True)),
        (
            f"SLO-breaking choices >= {TARGET_SLO_FACTOR:g}x fewer than requests-only",
            slo_ok,
            f"{_fmt(m['slo_breach_share'], True)} vs {_fmt(req['slo_breach_share'], True)}",
        ),
        (
            "SLO-breaking choices fewer than every other baseline",
            beats_all,
            ", ".join(f"{k}: {_fmt(v['slo_breach_share'], True)}" for k, v in others.items()),
        ),
    ]


def _table(figures: dict) -> list[str]:
    lines = [
        "| scorer | Spearman(score, −slowdown) | mean top-1 regret | p90 regret | SLO-breaking choices | "
        "mean chosen slowdown |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {_fmt(f['spearman'])} | {_fmt(f['mean_regret'], True)} | "
            f"{_fmt(f['p90_regret'], True)} | {_fmt(f['slo_breach_share'], True)} | "
            f"{f['mean_chosen_slowdown']:.2f}x |"
        )
    return lines


LABEL_TEXT = {
    "config-median": "the median p99 slowdown of the row's antagonist configuration and victim profile "
    "over the repetitions",
    "run": "each row's own run's p99 slowdown",
}


def _model_name(kind: str, held: str = "held-out") -> str:
    return f"KubeAttention {kind} ({held})"


def render(figures: dict, kinds: list[str], info: dict) -> str:
    models = " and ".join(kinds)
    subset = "" if info["repeats"] is None else f"; `--repeats {info['repeats']}`: the first {info['repeats']} only"
    lines = [
        "# KubeAttention held-out evaluation",
        "",
        f"Data: `{info['data']}` — {info['rows']} measured rows ({info['configs']} antagonist configurations × "
        f"{info['repetitions']} repetitions × {info['profiles']} victim profiles{subset}), "
        f"data hash `{info['data_hash'][:12]}`.",
        f"Models: {models}, each trained per fold on the other configurations' rows plus {info['synthetic_rows']} "
        f"synthetic rows from the contention model fitted to them (real share {info['real_share']}); "
        f"{info['folds']} folds held out **by antagonist configuration**, every row predicted once, by a model "
        "that never saw its neighbour.",
        f"Placement: {info['trials']} random candidate sets of 5–20 node states of one victim profile; "
        f"SLO = p99 slowdown ≤ {info['slo']}x. Slowdown (label and score) = {LABEL_TEXT[info['label']]} "
        f"(`--label {info['label']}`). Command: `{info['command']}`.",
        "",
        *_table(figures),
    ]
    other = info.get("other_label")
    if other:
        lines += [
            "",
            f"The same held-out predictions scored against {LABEL_TEXT[other['label']]} "
            f"(`--label {other['label']}` scoring; the models were trained as above):",
            "",
            *_table(other["figures"]),
        ]
    lines += [
        "",
        "Per victim profile: Spearman of predicted vs measured slowdown",
        "",
        "| profile | rows | mean measured slowdown | " + " | ".join(kinds) + " |",
        "|---|---:|---:|" + "---:|" * len(kinds),
    ]
    first = info["models"][kinds[0]]["per_profile"]
    for p, s in first.items():
        lines.append(
            f"| {p} | {s['rows']} | {s['mean']:.2f}x | "
            + " | ".join(_fmt(info["models"][k]["per_profile"][p]["spearman"]) for k in kinds)
            + " |"
        )
    by_kind = {k: info["models"][k]["kind_holdout"] for k in kinds if info["models"][k].get("kind_holdout")}
    if by_kind:
        some = next(iter(by_kind.values()))
        lines += [
            "",
            f"Unseen *kind* of neighbour ({some['folds']} folds, each holding out every intensity of "
            "one antagonist kind; same candidate sets; a harder test than the headline, which holds out one "
            "configuration at a time):",
            "",
            "| scorer | Spearman(score, −slowdown) | mean top-1 regret | p90 regret | SLO-breaking choices | "
            "mean chosen slowdown |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for k, v in by_kind.items():
            f = v["figures"]
            lines.append(
                f"| {_model_name(k, 'kind held out')} | {_fmt(f['spearman'])} | "
                f"{_fmt(f['mean_regret'], True)} | {_fmt(f['p90_regret'], True)} | "
                f"{_fmt(f['slo_breach_share'], True)} | {f['mean_chosen_slowdown']:.2f}x |"
            )
    ref = info.get("references")
    if ref:
        f = ref["neighbour_aware"]
        lines += [
            "",
            "How much of the slowdown is predictable at all on this data (references, not schedulers: "
            "both know what no node reports):",
            "",
            f"- **test-retest**: one run's slowdown against the median of the other repetitions of the same "
            f"configuration and profile: Spearman {_fmt(ref['retest_spearman'])} over {ref['retest_runs']} "
            "runs.",
            "- **neighbour-aware reference**: XGBoost told the held-out neighbour's kind and intensity "
            "(from the calibration plan) instead of the node's metrics, same folds and candidate sets: "
            f"Spearman {_fmt(f['spearman'])}, mean regret {_fmt(f['mean_regret'], True)}, "
            f"SLO-breaking {_fmt(f['slo_breach_share'], True)}.",
        ]
    lines += ["", f"Targets (issue 4), on the first table (`--label {info['label']}`):"]
    for k in kinds:
        lines += ["", f"{_model_name(k)}:", ""]
        for text, ok, value in targets(figures, _model_name(k)):
            lines.append(f"- {'**met**' if ok else '**not met**'} — {text}: {value}")
    lines += [
        "",
        "Plots: `score_vs_slowdown.png` (each model's predicted vs measured slowdown per row), "
        "`regret_cdf.png` (distribution of top-1 regret per scorer).",
    ]
    return "\n".join(lines) + "\n"


def plot(report: Path, cal, preds: dict[str, np.ndarray], figures: dict, slo: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wire.schema import Profile

    paths = []
    fig, axes = plt.subplots(1, len(preds), figsize=(6.0 * len(preds), 5), squeeze=False)
    measured = np.maximum(cal.slowdown, 1.0)
    top = max(2.0, float(np.nanmax(measured)) * 1.1, max(float(np.nanmax(p)) for p in preds.values()) * 1.1)
    for ax, (kind, pred) in zip(axes[0], preds.items()):
        for p in Profile:
            sel = cal.profile == p
            if sel.any():
                ax.scatter(measured[sel], pred[sel], s=14, alpha=0.7, label=p.annotation)
        ax.plot([1, top], [1, top], color="grey", lw=0.8, ls="--", label="perfect")
        ax.axvline(slo, color="red", lw=0.8, ls=":", label=f"SLO {slo}x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured p99 slowdown (held-out rows)")
        ax.set_ylabel("predicted slowdown (score = 100 / predicted)")
        ax.set_title(f"{kind}: predicted vs measured, out-of-fold by antagonist configuration", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(report / "score_vs_slowdown.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, f in figures.items():
        r = np.sort(f["regret"])
        ax.step(100 * r, np.arange(1, len(r) + 1) / len(r), where="post", label=name)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("top-1 regret, % (slowdown of chosen node / best in set − 1)")
    ax.set_ylabel("share of candidate sets")
    ax.set_title("Regret CDF over random candidate sets of 5–20 nodes", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(report / "regret_cdf.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def run(args: argparse.Namespace) -> int:
    from inference.model import ModelError
    from scorer import train
    from scorer.calibration.data import load
    from scorer.calibration.rows import CalibrationError
    from wire.schema import Profile

    rows = train.DEFAULT_CALIBRATED_ROWS if args.rows is None else args.rows
    real_share = train.DEFAULT_REAL_SHARE if args.real_share is None else args.real_share
    preds: dict[str, np.ndarray] = {}
    per_model: dict[str, dict] = {}
    try:
        kinds = parse_models(args.model)
        if args.trials < 1:
            raise EvaluateError(f"--trials: must be >= 1, got {args.trials}")
        if not (math.isfinite(args.slo) and args.slo >= 1.0):
            raise EvaluateError(f"--slo: must be a slowdown >= 1.0, got {args.slo}")
        cal = load(args.data, args.label, args.repeats)
        config_folds(cal.groups, args.folds, args.seed)  # validates --folds early
        neighbour_kinds = sorted({g for g in cal.kind_groups.tolist() if not g.startswith("none#")})
        for kind in kinds:
            preds[kind], fits = out_of_fold(cal, kind, args.folds, args.seed, rows, real_share)
            per_model[kind] = {"fold_fits": fits}
            if not args.no_kind_holdout and len(neighbour_kinds) >= 2:
                per_model[kind]["kind_pred"], per_model[kind]["kind_fits"] = out_of_fold(
                    cal, kind, len(neighbour_kinds), args.seed, rows, real_share, groups=cal.kind_groups
                )
        reference = neighbour_reference(cal, args.folds, args.seed)
        compared = dict(compare_model(p, cal) for p in args.compare)
    except (CalibrationError, EvaluateError, train.TrainError, ModelError) as err:
        print(f"kubeattention evaluate: {err}", file=sys.stderr)
        return 2
    scores = {_model_name(k): scoring.scores_from_slowdown(preds[k]) for k in kinds}
    scores.update({k: scoring.scores_from_slowdown(v) for k, v in compared.items()})
    scores.update(placement.baseline_scores(cal.values, cal.mask, cal.samples_cpu_std, cal.slowdown))
    trials = placement.draw_trials(cal.profile, args.trials, seed=args.seed)
    figures = {name: placement.placement_figures(s, cal.slowdown, trials, args.slo) for name, s in scores.items()}
    other_label = next(lb for lb in LABELS if lb != args.label)
    other_sd = cal.run_slowdown if other_label == "run" else load(args.data, other_label, args.repeats).slowdown
    other_scores = {
        **scores,
        placement.ORACLE: placement.baseline_scores(cal.values, cal.mask, cal.samples_cpu_std, other_sd)[
            placement.ORACLE
        ],
    }
    other_figures = {
        name: placement.placement_figures(s, other_sd, trials, args.slo) for name, s in other_scores.items()
    }

    def without_regret(f: dict) -> dict:
        return {k: v for k, v in f.items() if k != "regret"}

    models_info = {}
    for kind in kinds:
        pred, m = preds[kind], per_model[kind]
        models_info[kind] = {
            "fold_fits": m["fold_fits"],
            "per_profile": {
                p.annotation: {
                    "rows": int((cal.profile == p).sum()),
                    "spearman": spearman(pred[cal.profile == p], cal.slowdown[cal.profile == p]),
                    "mean": float(np.maximum(cal.slowdown[cal.profile == p], 1).mean()),
                }
                for p in Profile
                if (cal.profile == p).any()
            },
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
    retest, retest_runs = retest_spearman(cal)
    references = {
        "retest_spearman": retest,
        "retest_runs": retest_runs,
        "neighbour_aware": without_regret(
            placement.placement_figures(scoring.scores_from_slowdown(reference), cal.slowdown, trials, args.slo)
        ),
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
        "seed": args.seed,
        "label": args.label,
        "references": references,
        "other_label": {"label": other_label, "figures": {k: without_regret(v) for k, v in other_figures.items()}},
        "command": "kubeattention evaluate " + " ".join(sys.argv[sys.argv.index("evaluate") + 1 :])
        if "evaluate" in sys.argv
        else "kubeattention evaluate",
    }
    args.report.mkdir(parents=True, exist_ok=True)
    text = render(figures, kinds, info)
    (args.report / "report.md").write_text(text)
    summary = {
        "info": info,
        "figures": {k: without_regret(v) for k, v in figures.items()},
        "targets": {
            _model_name(k): [{"target": t, "met": ok, "value": v} for t, ok, v in targets(figures, _model_name(k))]
            for k in kinds
        },
    }
    (args.report / "report.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    pngs = plot(args.report, cal, preds, figures, args.slo)
    print(text)
    print(f"wrote {args.report / 'report.md'}, report.json, {', '.join(p.name for p in pngs)}")
    return 0
