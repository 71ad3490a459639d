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
from scorer.calibrate.data import load

FIXTURE = Path(__file__).parent / "fixtures" / "calibration-small.jsonl"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    proc = subprocess.run([sys.executable, "-m", "kubeattention.cli", "evaluate", "--data", str(FIXTURE),
                           "--folds", "3", "--rows", "500", "--trials", "300", "--report", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
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
    assert md in stdout


def test_figures_are_consistent_with_an_independent_computation(report):
    out, _ = report
    j = json.loads((out / "report.json").read_text())
    f = j["figures"]
    oracle = f["oracle"]
    assert oracle["mean_regret"] == 0.0 and oracle["spearman"] == pytest.approx(1.0)
    assert all(v["slo_breach_share"] >= oracle["slo_breach_share"] for v in f.values())
    assert j["figures"]["requests-only (LeastAllocated)"]["spearman"] is None or \
        np.isnan(j["figures"]["requests-only (LeastAllocated)"]["spearman"])
    # Recompute the Trimaran baseline's figures from the rows with the same seeded sets.
    cal = load(FIXTURE)
    trials = placement.draw_trials(cal.profile, 300, seed=0)
    cpu = np.where(cal.mask[:, 0], cal.values[:, 0], np.nan)
    again = placement.placement_figures(placement.trimaran_score(cpu, cal.samples_cpu_std), cal.slowdown, trials)
    assert f["load-aware CPU (Trimaran LVRB)"]["mean_regret"] == pytest.approx(again["mean_regret"])
    assert f["load-aware CPU (Trimaran LVRB)"]["slo_breach_share"] == pytest.approx(again["slo_breach_share"])
    assert j["info"]["rows"] == len(cal) and len(j["info"]["fold_fits"]) == 3
    held = [g for fit in j["info"]["fold_fits"] for g in fit["held_out"]]
    assert sorted(held) == sorted(set(cal.groups.tolist()))          # every group held out exactly once
    assert len(j["targets"]) == 4 and all(isinstance(t["met"], bool) for t in j["targets"])


def test_second_evaluation_holds_out_whole_kinds_of_neighbour(report):
    out, _ = report
    j = json.loads((out / "report.json").read_text())
    cal = load(FIXTURE)
    kinds = sorted(set(cal.kind.tolist()) - {"none"})
    by_kind = j["info"]["kind_holdout"]
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
        return subprocess.run([sys.executable, "-m", "kubeattention.cli", "evaluate", *args,
                               "--report", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)

    groups = len(set(load(FIXTURE).groups.tolist()))
    p = run("--data", str(FIXTURE), "--folds", "99")
    assert p.returncode == 2 and f"--folds: must be between 2 and the {groups} hold-out groups, got 99" in p.stderr
    p = run("--data", str(tmp_path / "nothing.jsonl"))
    assert p.returncode == 2 and "does not exist" in p.stderr
    p = run("--data", str(FIXTURE), "--slo", "0.5")
    assert p.returncode == 2 and "--slo" in p.stderr
