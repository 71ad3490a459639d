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


def test_reason_names_the_driving_metric_with_value_and_fleet_ratio():
    values = np.array(
        [
            _node(cpu_utilization=0.97, cpu_psi_some=0.45, memory_utilization=0.3),
            _node(cpu_utilization=0.05, cpu_psi_some=0.01, memory_utilization=0.3),
        ]
    )
    mask = np.isfinite(values)
    median = np.where(mask[1], values[1], np.nan)  # a fleet of mostly quiet nodes
    r = scoring.reasons(values, mask, Profile.LATENCY_CRITICAL, median)
    assert "CPU pressure 45%, 45.0x the fleet median" in r[0]
    assert "CPU busy 97%, 19.4x the fleet median" in r[0]
    assert r[0].endswith("; latency-critical pod; 12 of 15 metrics not measured")
    assert r[1] == "memory used 30%; latency-critical pod; 12 of 15 metrics not measured"  # small drives unnamed


def test_reason_for_io_bound_pod_names_io_metrics_first():
    values = np.array([_node(cpu_utilization=0.9, cpu_iowait_ratio=0.4, io_psi_some=0.6, cpu_psi_some=0.2)])
    r = scoring.reasons(values, np.isfinite(values), Profile.IO_BOUND, np.full(15, np.nan))[0]
    assert r.index("IO pressure") < r.index("IO wait")
    assert "CPU busy" not in r  # only the top two drivers are named


def test_reason_without_any_measured_driver_says_so_plainly():
    values = np.array([_node(memory_utilization=0.0)])
    r = scoring.reasons(values, np.isfinite(values), Profile.BATCH, np.full(15, np.nan))[0]
    assert r == "nothing a batch pod is sensitive to stands out; 14 of 15 metrics not measured"


def test_reason_quotes_a_near_zero_fleet_median_instead_of_dividing_by_it():
    values = np.array([_node(io_psi_some=0.42, cpu_iowait_ratio=0.3)])
    median = _node(io_psi_some=0.0001, cpu_iowait_ratio=0.02)
    r = scoring.reasons(values, np.isfinite(values), Profile.IO_BOUND, median)[0]
    assert "IO pressure 42% (fleet median 0%)" in r
    assert "IO wait 30%, 15.0x the fleet median" in r


def test_reason_names_the_offending_pod_with_its_share_for_additive_metrics():
    from aggregator.node_record import Offender

    values = np.array([_node(cpu_psi_some=0.5, cpu_utilization=0.9, process_churn_per_s=400.0)])
    offenders = [
        (
            Offender("batch", "ffmpeg-7c9d", "cpu_utilization", 0.64),
            Offender("web", "api-1", "cpu_utilization", 0.1),
            Offender("batch", "ffmpeg-7c9d", "cpu_psi_some", 0.5),
        )
    ]
    r = scoring.reasons(values, np.isfinite(values), Profile.LATENCY_CRITICAL, np.full(15, np.nan), offenders)[0]
    assert "CPU busy 90%, 71% from batch/ffmpeg-7c9d" in r
    assert "CPU pressure 50%, top pod batch/ffmpeg-7c9d" in r  # PSI is not additive: no share quoted
