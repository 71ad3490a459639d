import math

import numpy as np
import pytest

from inference import scoring
from wire.schema import NUM_METRICS, Profile


@pytest.mark.parametrize("slowdown,score", [(1.0, 100.0), (2.0, 50.0), (4.0, 25.0), (0.9, 100.0), (1e6, 1e-4)])
def test_score_is_100_over_slowdown(slowdown, score):
    assert scoring.scores_from_slowdown(np.array([slowdown]))[0] == pytest.approx(score)


def test_score_strictly_monotone_in_slowdown():
    s = np.linspace(1.0, 10.0, 200)
    sc = scoring.scores_from_slowdown(s)
    assert np.all(np.diff(sc) < 0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -1.0])
def test_score_rejects_nonsense_slowdown(bad):
    with pytest.raises(ValueError, match="slowdown"):
        scoring.scores_from_slowdown(np.array([1.2, bad]))


def test_confidence_is_share_of_profile_sensitivity_measured():
    full = np.ones((1, NUM_METRICS), bool)
    assert scoring.confidence(full, Profile.LATENCY_CRITICAL)[0] == pytest.approx(1.0)
    no_pmu = full.copy()
    no_pmu[0, [9, 10, 11, 12]] = False
    cache = scoring.confidence(no_pmu, Profile.CACHE_SENSITIVE)[0]
    io = scoring.confidence(no_pmu, Profile.IO_BOUND)[0]
    assert 0 < cache < io < 1  # losing the PMU hurts a cache-sensitive pod's certainty more


def _node(**metrics):
    from wire.schema import METRIC_BY_NAME

    v = np.full(NUM_METRICS, np.nan)
    for k, x in metrics.items():
        v[METRIC_BY_NAME[k].index] = x
    return v


class LinearModel:
    """A transparent stand-in for the ONNX model in these pure-math tests: slowdown = 1 + w · features.

    (The reasons of the real model through a real aggregator are tested in test_snapshot_batch.py
    and test_model_invariants.py; here the expected effects can be worked out by hand.) Counts
    its calls so the one-batch property can be asserted."""

    def __init__(self, **weights):
        from wire.schema import FEATURE_NAMES

        self.w = np.zeros(len(FEATURE_NAMES))
        for k, x in weights.items():
            self.w[FEATURE_NAMES.index(k)] = x
        self.calls = []

    def __call__(self, X):
        self.calls.append(X.shape)
        return 1.0 + np.abs(X) @ self.w  # a missing metric (schema.MISSING = -1) reads as fully busy


def test_reason_names_the_metric_that_moves_the_predicted_slowdown_most():
    values = np.array(
        [
            _node(cpu_utilization=0.97, cpu_psi_some=0.45, memory_utilization=0.3),
            _node(cpu_utilization=0.05, cpu_psi_some=0.01, memory_utilization=0.3),
        ]
    )
    mask = np.isfinite(values)
    median = np.where(mask[1], values[1], np.nan)  # a fleet of mostly quiet nodes
    model = LinearModel(cpu_psi_some=2.0, cpu_utilization=0.5, memory_utilization=3.0)
    r = scoring.reasons(model, values, mask, Profile.LATENCY_CRITICAL, median)
    # cpu_psi_some: 2.0 x (0.45 - 0.01) = +0.88x; cpu_utilization: 0.5 x 0.92 = +0.46x; memory: at the median, 0.
    assert r[0].startswith(
        "CPU pressure 45%, 45.0x the fleet median (+0.88x predicted slowdown); "
        "CPU busy 97%, 19.4x the fleet median (+0.46x predicted slowdown); latency-critical pod"
    ), r[0]
    assert r[0].endswith("; 12 of 15 metrics not measured")
    assert r[1].startswith("no metric moves the predicted slowdown by 0.05x or more against the fleet median")
    assert model.calls == [(2 * (NUM_METRICS + 1), 26)]  # every node and variant in one call


def test_reason_order_follows_the_model_not_a_sensitivity_table():
    values = np.array([_node(cpu_utilization=0.9, cpu_iowait_ratio=0.4, io_psi_some=0.6, cpu_psi_some=0.2)])
    quiet = _node(cpu_utilization=0.0, cpu_iowait_ratio=0.0, io_psi_some=0.0, cpu_psi_some=0.0)
    # A model that (unlike the hand-set sensitivities) says CPU busy matters most for this io-bound pod.
    model = LinearModel(cpu_utilization=1.0, cpu_iowait_ratio=0.5, io_psi_some=0.1)
    r = scoring.reasons(model, values, np.isfinite(values), Profile.IO_BOUND, quiet)[0]
    assert r.index("CPU busy") < r.index("IO wait")
    assert "IO pressure" not in r  # only the top two are named


def test_a_missing_metric_is_named_when_not_measuring_it_costs_slowdown():
    # This model reads a missing metric as fully busy (as scorer.regressors' imputation leans
    # towards busy): against a fleet median of 0.3, not measuring memory pressure costs +0.70x.
    values = np.array([_node(cpu_utilization=0.5)])
    median = _node(cpu_utilization=0.5, memory_psi_some=0.3)
    model = LinearModel(memory_psi_some=1.0)
    r = scoring.reasons(model, values, np.isfinite(values), Profile.BATCH, median)[0]
    assert r.startswith("memory pressure not measured (+0.70x predicted slowdown); batch pod"), r


def test_reason_quotes_a_near_zero_fleet_median_instead_of_dividing_by_it():
    values = np.array([_node(io_psi_some=0.42, cpu_iowait_ratio=0.3)])
    median = _node(io_psi_some=0.0001, cpu_iowait_ratio=0.02)
    model = LinearModel(io_psi_some=1.0, cpu_iowait_ratio=1.0)
    r = scoring.reasons(model, values, np.isfinite(values), Profile.IO_BOUND, median)[0]
    assert "IO pressure 42% (fleet median 0%) (+0.42x predicted slowdown)" in r
    assert "IO wait 30%, 15.0x the fleet median (+0.28x predicted slowdown)" in r


def test_reason_names_the_offending_pod_with_its_share_for_additive_metrics():
    from aggregator.node_record import Offender

    values = np.array([_node(cpu_psi_some=0.5, cpu_utilization=0.9, process_churn_per_s=400.0)])
    median = _node(cpu_psi_some=0.0, cpu_utilization=0.1, process_churn_per_s=400.0)
    offenders = [
        (
            Offender("batch", "ffmpeg-7c9d", "cpu_utilization", 0.64),
            Offender("web", "api-1", "cpu_utilization", 0.1),
            Offender("batch", "ffmpeg-7c9d", "cpu_psi_some", 0.5),
        )
    ]
    model = LinearModel(cpu_psi_some=1.0, cpu_utilization=1.0)
    r = scoring.reasons(model, values, np.isfinite(values), Profile.LATENCY_CRITICAL, median, offenders)[0]
    assert "CPU busy 90%, 9.0x the fleet median, 71% from batch/ffmpeg-7c9d (+0.80x predicted slowdown)" in r
    assert "CPU pressure 50%" in r and "top pod batch/ffmpeg-7c9d" in r  # PSI is not additive: no share quoted
