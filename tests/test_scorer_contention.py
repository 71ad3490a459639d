"""Properties of the generative contention model (scorer/contention.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer import contention, dataset
from scorer.contention import Latent, PodRows
from scorer.evaluate import spearman
from wire import schema
from wire.schema import Profile, QoS


@pytest.fixture(scope="module")
def data():
    return dataset.generate(20_000, seed=11)


def quiet_latent(n: int = 1, **overrides) -> Latent:
    """A node with no antagonists, light load, half-full memory; fields overridable."""
    base = dict(
        load=0.2,
        cpu=0.0,
        cache=0.0,
        membw=0.0,
        io=0.0,
        fork=0.0,
        mem_fill=0.5,
        quota=0.2,
        hidden=0.0,
        cores=8.0,
        peak_bw_gbps=30.0,
        disk_base_ms=0.2,
        base_cpi=0.7,
        base_miss=0.1,
    )
    base.update(overrides)
    return Latent(**{k: np.full(n, float(v)) for k, v in base.items()})


def pods_of(profile: Profile, qos: QoS = QoS.BURSTABLE, n: int = 1, cpu: float = 1.0, priority: int = 0) -> PodRows:
    pod = schema.PodContext(
        cpu_request_cores=cpu, memory_request_bytes=schema.GIB, qos=qos, profile=profile, priority=priority
    )
    return PodRows(
        profile=np.full(n, int(profile)), qos=np.full(n, int(qos)), features=np.tile(schema.pod_features(pod), (n, 1))
    )


def slowdown(z: Latent, pods: PodRows) -> np.ndarray:
    return np.exp(contention.log_slowdown(z, pods))


# ------------------------------------------------------------------------- the label


def test_slowdown_is_at_least_one(data):
    assert np.all(data.y >= 0.0)
    assert np.all(data.slowdown >= 1.0)
    assert np.all(np.isfinite(data.y))


def test_quiet_node_is_close_to_alone():
    for p in Profile:
        assert 1.0 <= slowdown(quiet_latent(), pods_of(p))[0] < 1.15, p


unit = st.floats(0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(
    load=unit,
    cpu=unit,
    cache=unit,
    membw=unit,
    io=unit,
    fork=unit,
    mem_fill=unit,
    quota=unit,
    which=st.sampled_from(contention.ANTAGONISTS),
    delta=st.floats(0.01, 1.0),
    profile=st.sampled_from(list(Profile)),
    qos=st.sampled_from(list(QoS)),
)
def test_more_antagonist_never_means_less_slowdown(
    load, cpu, cache, membw, io, fork, mem_fill, quota, which, delta, profile, qos
):
    z = quiet_latent(load=load, cpu=cpu, cache=cache, membw=membw, io=io, fork=fork, mem_fill=mem_fill, quota=quota)
    worse = dataclasses.replace(z, **{which: getattr(z, which) + delta})
    pods = pods_of(profile, qos)
    assert slowdown(worse, pods)[0] >= slowdown(z, pods)[0] - 1e-12
    assert slowdown(z, pods)[0] >= 1.0


def test_more_cpu_antagonist_means_higher_slowdown_on_average(data):
    """With all the noise (metrics, hidden interference, label noise) the trend holds."""
    lc = data.profile == Profile.LATENCY_CRITICAL
    heavy = lc & (data.latent.cpu > 0.6)
    light = lc & (data.latent.cpu < 0.1)
    assert heavy.sum() > 200 and light.sum() > 200
    assert data.slowdown[heavy].mean() > 1.3 * data.slowdown[light].mean()


@pytest.mark.parametrize(
    "source, victim, bystander",
    [
        ("io", Profile.IO_BOUND, Profile.CACHE_SENSITIVE),
        ("cache", Profile.CACHE_SENSITIVE, Profile.IO_BOUND),
        ("membw", Profile.MEMORY_BANDWIDTH_BOUND, Profile.IO_BOUND),
        ("cpu", Profile.LATENCY_CRITICAL, Profile.IO_BOUND),
        ("cpu", Profile.LATENCY_CRITICAL, Profile.BATCH),
    ],
)
def test_antagonist_hurts_its_sensitive_profile_most(source, victim, bystander):
    base = quiet_latent()
    hit = quiet_latent(**{source: 0.9})
    gain = {p: slowdown(hit, pods_of(p))[0] / slowdown(base, pods_of(p))[0] for p in (victim, bystander)}
    assert gain[victim] > 1.3
    assert gain[victim] > 1.2 * gain[bystander]


def test_qos_best_effort_suffers_more_and_guaranteed_less():
    z = quiet_latent(cpu=0.9, load=0.5)
    s = {q: slowdown(z, pods_of(Profile.LATENCY_CRITICAL, q))[0] for q in QoS}
    assert s[QoS.BEST_EFFORT] > s[QoS.BURSTABLE] > s[QoS.GUARANTEED] > 1.0


def test_larger_cpu_request_softens_cpu_contention():
    z = quiet_latent(cpu=0.9, load=0.5)
    small = slowdown(z, pods_of(Profile.LATENCY_CRITICAL, cpu=0.1))[0]
    large = slowdown(z, pods_of(Profile.LATENCY_CRITICAL, cpu=16.0))[0]
    assert large < small


def test_priority_has_a_small_effect():
    z = quiet_latent(cpu=0.9, load=0.5)
    low = slowdown(z, pods_of(Profile.LATENCY_CRITICAL, priority=0))[0]
    high = slowdown(z, pods_of(Profile.LATENCY_CRITICAL, priority=2_000_000_000))[0]
    assert high < low
    assert np.log(low) - np.log(high) < 0.1 * np.log(low)


def test_source_weights_come_from_the_schema_sensitivity():
    io = contention.SOURCES.index("io")
    assert contention.SOURCE_WEIGHTS[Profile.IO_BOUND - 1, io] == pytest.approx(
        schema.SENSITIVITY[Profile.IO_BOUND - 1, [1, 4, 13]].mean()
    )
    covered = sorted(i for cols in contention.SOURCE_METRICS.values() for i in cols)
    assert covered == list(range(schema.NUM_METRICS))


def test_label_is_not_a_function_of_the_model_input(data):
    """Rows with (nearly) the same input can have different labels: hidden state and noise."""
    pods = PodRows(profile=data.profile, qos=data.qos, features=data.X[:, schema.NUM_METRICS :])
    expected = contention.log_slowdown(data.latent, pods)
    resid = data.y - expected
    assert 0.03 < resid[data.y > 0.2].std() < 0.2


# ------------------------------------------------------------------------ the metrics


def test_generated_metrics_are_within_schema_ranges(data):
    v, m = data.values, data.mask
    assert np.all(np.isnan(v[~m]))
    measured = np.where(m, v, np.nan)
    assert np.all(np.nan_to_num(measured, nan=0.0) >= schema.RANGE_LO)
    assert np.all(np.nan_to_num(measured, nan=0.0) <= schema.RANGE_HI)
    for metric in schema.METRICS:
        if metric.unit == "ratio":
            col = v[m[:, metric.index], metric.index]
            assert col.min() >= 0.0 and col.max() <= 1.0, metric.name


def test_generated_metrics_use_realistic_units(data):
    def col(name):
        j = schema.METRIC_BY_NAME[name].index
        return data.values[data.mask[:, j], j]

    rq = col("runqueue_latency_p99_us")
    assert rq.min() >= 5.0 and rq.max() <= 50_000.0 and np.median(rq) < 1000.0
    disk = col("disk_io_latency_p99_ms")
    assert disk.min() >= 0.1 and disk.max() <= 500.0
    assert 0.2 < col("cycles_per_instruction").min() and col("cycles_per_instruction").max() < 20.0
    assert col("memory_bandwidth_gbps").max() < 300.0


@pytest.mark.parametrize(
    "latent, metric",
    [
        ("cpu", "runqueue_latency_p99_us"),
        ("cpu", "cpu_psi_some"),
        ("io", "disk_io_latency_p99_ms"),
        ("io", "io_psi_some"),
        ("cache", "llc_miss_ratio"),
        ("membw", "memory_bandwidth_gbps"),
        ("fork", "process_churn_per_s"),
        ("mem_fill", "memory_utilization"),
    ],
)
def test_metrics_follow_the_latent_state(data, latent, metric):
    j = schema.METRIC_BY_NAME[metric].index
    rows = data.mask[:, j]
    assert spearman(getattr(data.latent, latent)[rows], data.values[rows, j]) > 0.4


# --------------------------------------------------------------------- availability


def test_patterns_hide_the_metrics_they_lack(data):
    for i, pattern in enumerate(contention.PATTERNS):
        rows = data.pattern == i
        assert rows.mean() == pytest.approx(pattern.probability, abs=0.02), pattern.name
        if pattern.missing:
            assert not data.mask[np.ix_(rows, pattern.missing)].any(), pattern.name


def test_proc_only_is_what_the_2_core_vm_measures(data):
    proc = contention.PATTERNS[contention.PATTERN_NAMES.index("proc-only")]
    assert set(proc.missing) == {5, 6, 9, 10, 11, 12, 13}
    rows = data.pattern == contention.PATTERN_NAMES.index("proc-only")
    assert 0.3 < (~data.mask[rows, 7]).mean() < 0.7  # no pod cgroups on some nodes


def test_missing_metrics_enter_the_model_as_missing_not_zero(data):
    node = data.X[:, : schema.NUM_METRICS]
    assert np.all(node[~data.mask] == schema.MISSING)
    assert np.all((node[data.mask] >= 0.0) & (node[data.mask] <= 1.0))
    assert (~data.mask).mean() > 0.2
