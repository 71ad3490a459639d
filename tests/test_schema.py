import math

import numpy as np
import pytest

from wire import schema
from wire.schema import METRICS, MISSING, PodContext, Profile, QoS


def test_fifteen_metrics_in_design_order():
    assert schema.NUM_METRICS == 15
    assert schema.METRIC_NAMES == (
        "cpu_utilization",
        "cpu_iowait_ratio",
        "cpu_psi_some",
        "memory_psi_some",
        "io_psi_some",
        "runqueue_latency_p99_us",
        "cross_cgroup_preemptions_per_s",
        "cpu_throttled_ratio",
        "memory_utilization",
        "llc_miss_ratio",
        "llc_mpki",
        "cycles_per_instruction",
        "memory_bandwidth_gbps",
        "disk_io_latency_p99_ms",
        "process_churn_per_s",
    )
    assert [m.index for m in METRICS] == list(range(15))


def test_eleven_pod_features_and_26_columns():
    assert schema.NUM_POD_FEATURES == 11
    assert schema.NUM_FEATURES == 26
    assert len(set(schema.FEATURE_NAMES)) == 26


def test_prometheus_names_follow_the_naming_guide():
    names = [m.prom_name for m in METRICS]
    assert len(set(names)) == 15
    for m in METRICS:
        assert m.prom_name.startswith("kubeattention_node_"), m.prom_name
        if m.unit == "ratio":
            assert m.prom_name.endswith("_ratio")
        if m.unit in ("us", "ms"):
            assert m.prom_name.endswith("_seconds")
    assert METRICS[5].prom_name == "kubeattention_node_runqueue_latency_p99_seconds"
    assert METRICS[5].prom_factor == 1e-6 and METRICS[13].prom_factor == 1e-3


@pytest.mark.parametrize("m", METRICS, ids=lambda m: m.name)
def test_normalise_stays_in_unit_interval_and_is_monotone(m):
    xs = np.linspace(m.lo, min(m.hi, m.cap * 3), 50)
    ys = [m.normalise(float(x)) for x in xs]
    assert all(0.0 <= y <= 1.0 for y in ys)
    assert all(b >= a for a, b in zip(ys, ys[1:]))
    assert m.normalise(math.nan) == MISSING


def test_normalise_matrix_matches_scalar_and_marks_missing():
    rng = np.random.default_rng(1)
    values = np.array([[rng.uniform(m.lo, min(m.hi, m.cap)) for m in METRICS] for _ in range(20)])
    mask = rng.random((20, 15)) > 0.3
    values[~mask] = np.nan
    out = schema.normalise_matrix(values, mask)
    assert out.dtype == np.float32 and out.shape == (20, 15)
    for i in range(20):
        for m in METRICS:
            expected = m.normalise(values[i, m.index]) if mask[i, m.index] else MISSING
            assert out[i, m.index] == pytest.approx(expected, abs=1e-6)


def test_missing_is_not_zero():
    values = np.zeros((2, 15))
    mask = np.ones((2, 15), dtype=bool)
    mask[1, 9] = False
    out = schema.normalise_matrix(values, mask)
    assert out[0, 9] == 0.0 and out[1, 9] == MISSING


def test_pod_features_one_hots_and_inference():
    be = PodContext()
    assert be.resolved_qos() is QoS.BEST_EFFORT and be.resolved_profile() is Profile.BATCH
    f = schema.pod_features(be)
    assert f[4] == 1.0 and f[9] == 1.0 and f[2:5].sum() == 1 and f[5:10].sum() == 1
    lc = PodContext(cpu_request_cores=0.5, memory_request_bytes=512 * 2**20)
    assert lc.resolved_qos() is QoS.BURSTABLE and lc.resolved_profile() is Profile.LATENCY_CRITICAL
    g = PodContext(cpu_request_cores=2, qos=QoS.GUARANTEED, profile=Profile.IO_BOUND, priority=2_000_001_000)
    f = schema.pod_features(g)
    assert f[2] == 1.0 and f[8] == 1.0 and f[10] == pytest.approx(1.0)
    assert 0 < f[0] < 1


def test_pod_features_reject_bad_requests():
    with pytest.raises(ValueError, match="cpu_request_cores"):
        schema.pod_features(PodContext(cpu_request_cores=math.nan))
    with pytest.raises(ValueError, match="memory_request_bytes"):
        schema.pod_features(PodContext(memory_request_bytes=-1))


def test_profile_parse_accepts_annotation_values_and_names_the_choices():
    assert Profile.parse("memory-bandwidth-bound") is Profile.MEMORY_BANDWIDTH_BOUND
    assert Profile.parse("IO_BOUND") is Profile.IO_BOUND
    with pytest.raises(ValueError, match="latency-critical"):
        Profile.parse("fast")


def test_model_input_shape():
    x = schema.model_input(np.full((3, 15), 0.1), np.ones((3, 15), bool), PodContext(cpu_request_cores=1))
    assert x.shape == (3, 26) and x.dtype == np.float32


def test_sensitivity_matrix_shape():
    assert schema.SENSITIVITY.shape == (5, 15)
    assert (schema.SENSITIVITY >= 0).all() and (schema.SENSITIVITY <= 1).all()


@pytest.mark.parametrize(
    "name,ok",
    [
        ("node-a", True),
        ("w-3.prod.example.com", True),
        ("", False),
        ("Node_A", False),
        ("-a", False),
        ("a" * 253, True),
        ("a" * 254, False),
    ],
)
def test_k8s_name_rule_shared_by_agent_and_aggregator(name, ok):
    assert (schema.k8s_name_problem(name) is None) is ok
