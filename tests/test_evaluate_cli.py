"""``kubeattention evaluate`` end to end on real measured rows (tests/fixtures/calibration-small.jsonl).

Small settings (3 folds, 500 synthetic rows per fold, 300 candidate sets) so it runs in
seconds; the figures it checks are ones that hold whatever the model learns (the oracle
has no regret, every scorer sees the same sets) or that are computed independently here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from procs import REPO

from scorer import placement
from scorer.calibration.data import load
from scorer.evaluate import spearman

FIXTURE = Path(__file__).parent / "fixtures" / "calibration-small.jsonl"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeattention.cli",
            "evaluate",
            "--data",
            str(FIXTURE),
            "--folds",
            "3",
            "--rows",
            "500",
            "--trials",
            "300",
            "--report",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_report_files_are_written(report):
    out, stdout = report
    for name in ("report.md", "report.json"):
        assert (out / name).stat().st_size > 0
    for name in ("score_vs_slowdown.png", "regret_cdf.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "| oracle |" in md and "requests-only (LeastAllocated)" in md and "Targets (issue 4)" in md
    for kind in ("mlp", "xgboost"):  # both models by default, each with its own rows and target check
        assert f"| KubeAttention {kind} (held-out) |" in md and f"KubeAttention {kind} (held-out):" in md
    assert "neighbour-aware reference" in md and "test-retest" in md
    assert md in stdout


def test_figures_are_consistent_with_an_independent_computation(report):
    out, _ = report
    j = json.loads((out / "report.json").read_text())
    f = j["figures"]
    oracle = f["oracle"]
    assert oracle["mean_regret"] == 0.0 and oracle["spearman"] == pytest.approx(1.0)
    assert all(v["slo_breach_share"] >= oracle["slo_breach_share"] for v in f.values())
    assert j["figures"]["requests-only (LeastAllocated)"]["spearman"] is None or np.isnan(
        j["figures"]["requests-only (LeastAllocated)"]["spearman"]
    )
    # Recompute the Trimaran baseline's figures from the rows with the same seeded sets.
    cal = load(FIXTURE)
    trials = placement.draw_trials(cal.profile, 300, seed=0)
    cpu = np.where(cal.mask[:, 0], cal.values[:, 0], np.nan)
    again = placement.placement_figures(placement.trimaran_score(cpu, cal.samples_cpu_std), cal.slowdown, trials)
    assert f["load-aware CPU (Trimaran LVRB)"]["mean_regret"] == pytest.approx(again["mean_regret"])
    assert f["load-aware CPU (Trimaran LVRB)"]["slo_breach_share"] == pytest.approx(again["slo_breach_share"])
    for kind in ("mlp", "xgboost"):
        fits = j["info"]["models"][kind]["fold_fits"]
        assert j["info"]["rows"] == len(cal) and len(fits) == 3
        held = [g for fit in fits for g in fit["held_out"]]
        assert sorted(held) == sorted(set(cal.groups.tolist()))  # every group held out exactly once
        checks = j["targets"][f"KubeAttention {kind} (held-out)"]
        assert len(checks) == 4 and all(isinstance(t["met"], bool) for t in checks)


def test_references_say_how_predictable_the_slowdown_is(report):
    out, _ = report
    ref = json.loads((out / "report.json").read_text())["info"]["references"]
    # Test-retest recomputed by hand: every run of a configuration measured more than once
    # against the median of its other repetitions.
    cal = load(FIXTURE)
    cells = {}
    for c, p, sd in zip(cal.config, cal.profile, np.maximum(cal.run_slowdown, 1.0)):
        if c != "none":
            cells.setdefault((c, p), []).append(sd)
    pairs = [(v[i], np.median(v[:i] + v[i + 1 :])) for v in cells.values() if len(v) >= 2 for i in range(len(v))]
    assert ref["retest_runs"] == len(pairs)
    if pairs:
        a, b = map(np.array, zip(*pairs))
        assert ref["retest_spearman"] == pytest.approx(spearman(a, b))
    else:  # the fixture is one repetition: nothing measured twice, so no figure rather than a made-up one
        assert ref["retest_spearman"] is None or np.isnan(ref["retest_spearman"])
    f = ref["neighbour_aware"]
    assert 0 <= f["slo_breach_share"] <= 1 and f["mean_regret"] >= 0


def test_second_evaluation_holds_out_whole_kinds_of_neighbour(report):
    out, _ = report
    j = json.loads((out / "report.json").read_text())
    cal = load(FIXTURE)
    kinds = sorted(set(cal.kind.tolist()) - {"none"})
    by_kind = j["info"]["models"]["mlp"]["kind_holdout"]
    assert by_kind["folds"] == len(kinds) >= 2
    for fit in by_kind["fold_fits"]:  # one kind per fold, never a configuration of a kind it trained on
        held_kinds = [g for g in fit["held_out"] if not g.startswith("none#")]
        assert len(held_kinds) == 1
    assert sorted(g for fit in by_kind["fold_fits"] for g in fit["held_out"] if not g.startswith("none#")) == kinds
    f = by_kind["figures"]
    assert 0 <= f["slo_breach_share"] <= 1 and f["mean_regret"] >= 0
    assert "Unseen *kind* of neighbour" in (out / "report.md").read_text()


def test_bad_arguments_are_refused(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "kubeattention.cli", "evaluate", *args, "--report", str(tmp_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    groups = len(set(load(FIXTURE).groups.tolist()))
    p = run("--data", str(FIXTURE), "--folds", "99")
    assert p.returncode == 2 and f"--folds: must be between 2 and the {groups} hold-out groups, got 99" in p.stderr
    p = run("--data", str(tmp_path / "nothing.jsonl"))
    assert p.returncode == 2 and "does not exist" in p.stderr
    p = run("--data", str(FIXTURE), "--slo", "0.5")
    assert p.returncode == 2 and "--slo" in p.stderr
    p = run("--data", str(FIXTURE), "--repeats", "0")
    assert p.returncode == 2 and "--repeats: must be >= 1, got 0" in p.stderr
    p = run("--data", str(FIXTURE), "--model", "mlp,forest")
    assert (
        p.returncode == 2 and "--model: unknown 'forest'; expected a comma-separated list of mlp, xgboost" in p.stderr
    )


def test_retest_pairs_each_run_with_the_median_of_its_other_repetitions():
    from types import SimpleNamespace

    from scorer.held_out import retest_spearman

    # Two configurations x one profile, three repetitions each, plus alone runs (left out).
    cal = SimpleNamespace(
        config=np.array(["a", "a", "a", "b", "b", "b", "none", "none"]),
        profile=np.array([1] * 8),
        run_slowdown=np.array([1.2, 1.4, 0.9, 3.0, 2.0, 5.0, 0.8, 1.3]),
    )
    rho, runs = retest_spearman(cal)
    # a: runs 1.2, 1.4, 1.0 (0.9 counts as 1) against medians 1.2, 1.1, 1.3; b: 3, 2, 5 against 3.5, 4, 2.5.
    assert runs == 6
    assert rho == pytest.approx(
        spearman(np.array([1.2, 1.4, 1.0, 3.0, 2.0, 5.0]), np.array([1.2, 1.1, 1.3, 3.5, 4.0, 2.5]))
    )
    one = SimpleNamespace(config=np.array(["a", "b"]), profile=np.array([1, 1]), run_slowdown=np.array([1.0, 2.0]))
    rho, runs = retest_spearman(one)
    assert runs == 0 and np.isnan(rho)  # nothing measured twice: no figure, not a made-up one


def test_repeats_keeps_only_the_first_repetitions(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    second = []
    for line in lines:  # the same runs again as repetition 2, twice as slow beside every neighbour
        r = json.loads(line)
        r["rep"], r["key"] = 2, r["key"].replace("r1/", "r2/", 1)
        if r["config"] != "none":
            r["victim"]["p99_ms"] *= 2
        second.append(json.dumps(r))
    path = tmp_path / "calibration.jsonl"
    path.write_text("\n".join(lines + second) + "\n")
    first, both = load(path, repeats=1), load(path)
    assert len(first) == len(lines) and len(both) == 2 * len(lines)
    assert set(first.rep.tolist()) == {1}
    np.testing.assert_allclose(first.run_slowdown, load(FIXTURE).run_slowdown)  # repetition 2 changed nothing
