"""Placement metrics and baselines (scorer.placement) on hand-built node states with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scorer import placement
from scorer.held_out import EvaluateError, config_folds
from wire import schema

SLOWDOWN = np.array([1.0, 2.0, 4.0, 1.2])


def one_set(n_trials: int = 50) -> placement.Trials:
    rows = np.arange(len(SLOWDOWN))
    rng = np.random.default_rng(3)
    return placement.Trials([rows] * n_trials, [rng.random(len(rows)) for _ in range(n_trials)])


def test_perfect_scorer_has_no_regret_and_no_breach():
    f = placement.placement_figures(-SLOWDOWN, SLOWDOWN, one_set())
    assert f["mean_regret"] == 0.0 and f["slo_breach_share"] == 0.0
    assert f["spearman"] == pytest.approx(1.0)


def test_inverted_scorer_picks_the_worst_node():
    f = placement.placement_figures(SLOWDOWN, SLOWDOWN, one_set())
    assert f["mean_regret"] == pytest.approx(3.0)  # 4.0 / 1.0 - 1
    assert f["slo_breach_share"] == 1.0
    assert f["spearman"] == pytest.approx(-1.0)


def test_constant_scorer_is_a_random_pick_and_has_no_rank_correlation():
    trials = one_set(4000)
    f = placement.placement_figures(np.zeros(4), SLOWDOWN, trials)
    assert math.isnan(f["spearman"])
    # Uniform over the four nodes: mean regret (0 + 1 + 3 + 0.2) / 4 = 1.05, breach share 2/4.
    assert f["mean_regret"] == pytest.approx(1.05, abs=0.08)
    assert f["slo_breach_share"] == pytest.approx(0.5, abs=0.04)


def test_slowdowns_below_one_count_as_alone():
    f = placement.placement_figures(
        np.array([1.0, 0.0]), np.array([0.8, 1.0]), placement.Trials([np.array([0, 1])], [np.array([0.1, 0.2])])
    )
    assert f["mean_regret"] == 0.0


def test_trials_stay_within_one_profile_and_size_bounds():
    profile = np.repeat([1, 2, 3], 30)
    t = placement.draw_trials(profile, trials=300, seed=1)
    for rows in t.index:
        assert 5 <= len(rows) <= 20
        assert len(set(profile[rows])) == 1
        assert len(set(rows.tolist())) == len(rows)
    with pytest.raises(ValueError, match="two rows"):
        placement.draw_trials(np.array([1, 2, 3]))


def test_naive_formula_renormalises_over_measured_terms():
    values = np.full((2, schema.NUM_METRICS), np.nan)
    mask = np.zeros((2, schema.NUM_METRICS), bool)
    cpu, mem, llc = (schema.METRIC_NAMES.index(n) for n in ("cpu_utilization", "memory_utilization", "llc_miss_ratio"))
    values[:, cpu], values[:, mem] = 0.2, 0.4
    mask[:, [cpu, mem]] = True
    values[1, llc], mask[1, llc] = 0.1, True
    got = placement.naive_score(values, mask)
    assert got[0] == pytest.approx(0.5 * 0.8 + 0.5 * 0.6)  # llc missing: not read as 0
    assert got[1] == pytest.approx(0.4 * 0.8 + 0.4 * 0.6 + 0.2 * 0.9)


def test_trimaran_prefers_low_and_steady_cpu():
    s = placement.trimaran_score(np.array([0.2, 0.2, 0.8, np.nan]), np.array([0.0, 0.3, 0.0, 0.0]))
    assert s[0] > s[1] > s[2]
    assert s[0] == pytest.approx(0.9) and s[3] == 0.5


def test_config_folds_hold_out_whole_configurations():
    configs = np.array(["none", "cpu-2", "io-1", "none", "cpu-2", "io-1", "fork-1", "fork-1"])
    folds = config_folds(configs, 2, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(configs)))
    seen = [set(configs[f].tolist()) for f in folds]
    assert not seen[0] & seen[1]
    with pytest.raises(EvaluateError, match="--folds"):
        config_folds(configs, 5, seed=0)


def test_alone_rows_are_held_out_by_repetition_so_every_fold_trains_on_quiet_rows():
    import json
    from pathlib import Path

    from scorer.calibration.data import from_rows

    rows = [
        json.loads(line)
        for line in (Path(__file__).parent / "fixtures" / "calibration-small.jsonl").read_text().splitlines()
    ]
    alone = [r for r in rows if r["config"] == "none"]
    more = [{**r, "rep": rep, "key": r["key"].replace("r1/", f"r{rep}/")} for rep in (2, 3) for r in alone]
    cal = from_rows(rows + more)
    assert {g for g in cal.groups if g.startswith("none")} == {"none#r1", "none#r2", "none#r3"}
    folds = config_folds(cal.groups, 3, seed=0)
    for held in folds:
        trained = np.setdiff1d(np.arange(len(cal)), held)
        assert (cal.config[trained] == "none").any()
        assert len({g for g in cal.groups[held] if g.startswith("none")}) == 1
