"""The report of ``kubeattention evaluate``: the targets, ``report.md`` and the two plots.

:func:`render` writes the Markdown (placement figures per scorer, per-profile Spearman,
the unseen-kind figures, the references, and whether each model meets the targets of
issue 4, :func:`targets`); :func:`plot` draws ``score_vs_slowdown.png`` and
``regret_cdf.png``. Both read what ``scorer.evaluate_cli`` measured and compute nothing new.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scorer import placement
from wire.schema import Profile

#: Targets of issue 4, checked on the held-out (out-of-fold) rows.
TARGET_SPEARMAN = 0.8
TARGET_REGRET = 0.10
TARGET_SLO_FACTOR = 3.0


def fmt(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def targets(figures: dict, name: str) -> list[tuple[str, bool, str]]:
    """(target, met, value) of the scorer ``name`` against the targets of issue 4."""
    m = figures[name]
    req = figures[placement.REQUESTS_ONLY]
    others = {k: v for k, v in figures.items() if k in placement.BASELINE_NAMES and k != placement.ORACLE}
    slo_ok = (
        m["slo_breach_share"] * TARGET_SLO_FACTOR <= req["slo_breach_share"]
        if req["slo_breach_share"] > 0
        else m["slo_breach_share"] == 0
    )
    beats_all = all(m["slo_breach_share"] < v["slo_breach_share"] for v in others.values())
    return [
        (f"Spearman(score, -slowdown) >= {TARGET_SPEARMAN}", m["spearman"] >= TARGET_SPEARMAN, fmt(m["spearman"])),
        (f"mean top-1 regret <= {TARGET_REGRET:.0%}", m["mean_regret"] <= TARGET_REGRET, fmt(m["mean_regret"], True)),
        (
            f"SLO-breaking choices >= {TARGET_SLO_FACTOR:g}x fewer than requests-only",
            slo_ok,
            f"{fmt(m['slo_breach_share'], True)} vs {fmt(req['slo_breach_share'], True)}",
        ),
        (
            "SLO-breaking choices fewer than every other baseline",
            beats_all,
            ", ".join(f"{k}: {fmt(v['slo_breach_share'], True)}" for k, v in others.items()),
        ),
    ]


#: Targets of issue 14, checked over fold seeds (``kubeattention evaluate --seeds``).
TARGET_SPEARMAN_LC = 0.6
TARGET_REGRET_SEEDS = 0.05


def _seed_span(seeds: list[int]) -> str:
    return f"{seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ", ".join(map(str, seeds))


def _range(f: dict, pct: bool = False) -> str:
    return f"{fmt(f['median'], pct)} ({fmt(f['min'], pct)}–{fmt(f['max'], pct)})"


def _seeds_table(seeds: dict) -> list[str]:
    lines = [
        "| scorer | Spearman(score, −slowdown) | mean top-1 regret | SLO-breaking choices | mean chosen slowdown |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, f in seeds.items():
        if "mean_regret" not in f:
            continue
        c = f["mean_chosen_slowdown"]
        lines.append(
            f"| {name} | {_range(f['spearman'])} | {_range(f['mean_regret'], True)} | "
            f"{_range(f['slo_breach_share'], True)} | {c['median']:.2f}x ({c['min']:.2f}–{c['max']:.2f}) |"
        )
    return lines


def _seeds_profile_table(per_profile: dict, kinds: list[str]) -> list[str]:
    lines = ["| profile | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for profile in per_profile[kinds[0]]:
        lines.append(f"| {profile} | " + " | ".join(_range(per_profile[k][profile]) for k in kinds) + " |")
    return lines


def seed_targets(info: dict, kind: str) -> list[tuple[str, bool, str]]:
    """(target, met, value) of model ``kind`` against issue 14's targets, over the evaluated seeds."""
    seeds = info["across_seeds"]
    m = seeds[model_name(kind)]
    lc = info["per_profile_across_seeds"][kind].get("latency-critical")
    baselines = {k: v for k, v in seeds.items() if k in placement.BASELINE_NAMES and k != placement.ORACLE}
    n = len(info["seeds"])
    fewer = [
        all(m["slo_breach_share"]["per_seed"][i] < v["slo_breach_share"]["per_seed"][i] for v in baselines.values())
        for i in range(n)
    ]
    out = [
        (
            f"Spearman >= {TARGET_SPEARMAN} overall (median over seeds)",
            m["spearman"]["median"] >= TARGET_SPEARMAN,
            _range(m["spearman"]),
        ),
    ]
    if lc is not None:
        out.append(
            (
                f"Spearman >= {TARGET_SPEARMAN_LC} on latency-critical rows (median over seeds)",
                lc["median"] >= TARGET_SPEARMAN_LC,
                _range(lc),
            )
        )
    out += [
        (
            f"mean top-1 regret <= {TARGET_REGRET_SEEDS:.0%} (median over seeds)",
            m["mean_regret"]["median"] <= TARGET_REGRET_SEEDS,
            _range(m["mean_regret"], True),
        ),
        (
            "SLO-breaking choices fewer than every baseline on every seed",
            all(fewer),
            f"on {sum(fewer)} of {n} seeds",
        ),
    ]
    return out


def _table(figures: dict) -> list[str]:
    lines = [
        "| scorer | Spearman(score, −slowdown) | mean top-1 regret | p90 regret | SLO-breaking choices | "
        "mean chosen slowdown |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {fmt(f['spearman'])} | {fmt(f['mean_regret'], True)} | "
            f"{fmt(f['p90_regret'], True)} | {fmt(f['slo_breach_share'], True)} | "
            f"{f['mean_chosen_slowdown']:.2f}x |"
        )
    return lines


LABEL_TEXT = {
    "config-median": "the median p99 slowdown of the row's antagonist configuration and victim profile "
    "over the repetitions",
    "run": "each row's own run's p99 slowdown",
}


def model_name(kind: str, held: str = "held-out") -> str:
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
    ]
    seeds = info.get("across_seeds")
    if seeds:
        lines += [
            f"Over fold seeds {_seed_span(info['seeds'])} ({len(info['seeds'])} evaluations; each seed draws its own "
            "folds, fits and candidate sets): median (min–max).",
            "",
            *_seeds_table(seeds),
            "",
            "Held-out Spearman per victim profile over the same seeds: median (min–max).",
            "",
            *_seeds_profile_table(info["per_profile_across_seeds"], kinds),
            "",
            f"The tables below are seed {info['seeds'][0]}'s.",
            "",
        ]
    lines += [*_table(figures)]
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
            + " | ".join(fmt(info["models"][k]["per_profile"][p]["spearman"]) for k in kinds)
            + " |"
        )
    bp = info.get("placement_by_profile")
    if bp:
        names = [n for n in next(iter(bp.values())) if n != "sets"]
        lines += [
            "",
            "Placement per victim profile (the candidate sets of each profile): mean top-1 regret / "
            "SLO-breaking choices",
            "",
            "| profile | sets | " + " | ".join(names) + " |",
            "|---|---:|" + "---:|" * len(names),
        ]
        for profile, f in bp.items():
            cells = " | ".join(
                f"{fmt(f[n]['mean_regret'], True)} / {fmt(f[n]['slo_breach_share'], True)}" for n in names
            )
            lines.append(f"| {profile} | {f['sets']} | {cells} |")
    by_kind = {k: info["models"][k]["kind_holdout"] for k in kinds if info["models"][k].get("kind_holdout")}
    if by_kind:
        some = next(iter(by_kind.values()))
        lines += [
            "",
            f"Unseen *kind* of neighbour ({some['folds']} folds, each holding out every intensity of "
            "one antagonist kind; same candidate sets; a harder test than the headline, which holds out one "
            "configuration at a time):",
            "",
            *_table({model_name(k, "kind held out"): v["figures"] for k, v in by_kind.items()}),
        ]
    ref = info.get("references")
    if ref:
        f = ref["neighbour_aware"]
        lines += [
            "",
            "How much of the slowdown is predictable at all on this data (references, not schedulers: "
            "both know what no node reports):",
            "",
            f"- **test-retest**: one run's slowdown against the median of the other repetitions of the same "
            f"configuration and profile: Spearman {fmt(ref['retest_spearman'])} over {ref['retest_runs']} "
            "runs.",
            "- **neighbour-aware reference**: XGBoost told the held-out neighbour's kind and intensity "
            "(from the calibration plan) instead of the node's metrics, same folds and candidate sets: "
            f"Spearman {fmt(f['spearman'])}, mean regret {fmt(f['mean_regret'], True)}, "
            f"SLO-breaking {fmt(f['slo_breach_share'], True)}.",
        ]
    if seeds:
        lines += ["", f"Targets (issue 14), over fold seeds {_seed_span(info['seeds'])}:"]
        for k in kinds:
            lines += ["", f"{model_name(k)}:", ""]
            for text, ok, value in seed_targets(info, k):
                lines.append(f"- {'**met**' if ok else '**not met**'} — {text}: {value}")
    lines += ["", f"Targets (issue 4), on the seed-{info['seed']} table (`--label {info['label']}`):"]
    for k in kinds:
        lines += ["", f"{model_name(k)}:", ""]
        for text, ok, value in targets(figures, model_name(k)):
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
