"""Dataset generation: determinism, the data hash, and X built as at inference."""

from __future__ import annotations

import numpy as np
import pytest

from scorer import contention, dataset
from wire import schema

#: generate(500, seed=0): per-column means and standard deviations of X, mean and std of y.
#: Pinned as figures with a tolerance, not as the SHA-256 of the bytes: NumPy's exp/log run
#: different SIMD code on different CPUs (AVX-512 or not), which moves the last bit of a few
#: float32 values and with it any hash, while a change to the contention model moves these
#: figures by far more than the tolerance. If you changed the model on purpose, bump
#: contention.GENERATOR and update these values.
GOLDEN_X_MEAN_500_SEED0 = [
    0.502378, 0.00850542, 0.065025, 0.0521948, 0.103728, -0.452871, -0.38871, -0.18331, 0.555528, -0.516933,
    -0.57415, -0.565607, -0.498462, -0.433281, 0.137532, 0.0974041, 0.115026, 0.314, 0.474, 0.212, 0.2, 0.196,
    0.24, 0.196, 0.168, 0.188932,
]  # fmt: skip
GOLDEN_X_STD_500_SEED0 = [
    0.31323, 0.17839, 0.24195, 0.1548, 0.216523, 0.595175, 0.65379, 0.472354, 0.28164, 0.681242, 0.601099,
    0.606681, 0.693231, 0.616225, 0.2142, 0.106046, 0.111344, 0.464116, 0.499324, 0.408725, 0.4, 0.396969,
    0.427083, 0.396969, 0.373866, 0.322273,
]  # fmt: skip
GOLDEN_Y_MEAN_STD_500_SEED0 = (0.636374, 0.490232)


def test_generate_is_deterministic_for_a_seed():
    a, b = dataset.generate(3000, seed=7), dataset.generate(3000, seed=7)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.latent.cpu, b.latent.cpu)
    assert a.data_hash == b.data_hash


def test_different_seeds_give_different_data():
    assert dataset.generate(1000, seed=1).data_hash != dataset.generate(1000, seed=2).data_hash


def test_generated_data_is_pinned():
    d = dataset.generate(500, seed=0)
    X = d.X.astype(np.float64)
    msg = "the generated data changed: if intended, bump contention.GENERATOR and the golden figures"
    np.testing.assert_allclose(X.mean(axis=0), GOLDEN_X_MEAN_500_SEED0, rtol=1e-4, atol=1e-6, err_msg=msg)
    np.testing.assert_allclose(X.std(axis=0), GOLDEN_X_STD_500_SEED0, rtol=1e-4, atol=1e-6, err_msg=msg)
    np.testing.assert_allclose((d.y.mean(), d.y.std()), GOLDEN_Y_MEAN_STD_500_SEED0, rtol=1e-4, err_msg=msg)


def test_the_pin_sees_a_small_change_of_the_model():
    """The tolerance is far tighter than any real edit: a 1 % change of one coefficient breaks it."""
    d = dataset.generate(500, seed=0)
    moved = d.X.astype(np.float64).copy()
    moved[:, 0] *= 1.01
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(moved.mean(axis=0), GOLDEN_X_MEAN_500_SEED0, rtol=1e-4, atol=1e-6)


def test_hash_ignores_memory_layout_and_sees_every_value():
    d = dataset.generate(400, seed=3)
    assert dataset.data_hash(np.asfortranarray(d.X), d.y.copy()) == d.data_hash
    assert dataset.data_hash(d.X.astype(np.float64), d.y) == d.data_hash  # hashed as float32
    y = d.y.copy()
    y[123] += 1e-9
    assert dataset.data_hash(d.X, y) != d.data_hash
    X = d.X.copy()
    X[5, 20] = 1.0 - X[5, 20]
    assert dataset.data_hash(X, d.y) != d.data_hash
    assert len(d.data_hash) == 64 and int(d.data_hash, 16) >= 0


def test_shapes_and_types():
    d = dataset.generate(1000, seed=0)
    assert d.X.shape == (1000, schema.NUM_FEATURES) and d.X.dtype == np.float32
    assert d.y.shape == (1000,) and d.y.dtype == np.float64
    assert d.mask.shape == (1000, schema.NUM_METRICS) and d.mask.dtype == bool
    assert len(d) == 1000
    assert set(np.unique(d.profile)) <= {int(p) for p in schema.Profile}
    assert set(np.unique(d.pattern)) <= set(range(len(contention.PATTERNS)))


def test_x_is_built_exactly_as_the_aggregator_builds_it():
    d = dataset.generate(1000, seed=5)
    np.testing.assert_array_equal(d.X[:, : schema.NUM_METRICS], schema.normalise_matrix(d.values, d.mask))
    pod = d.X[:, schema.NUM_METRICS :]
    qos = pod[:, 2:5]
    prof = pod[:, 5:10]
    assert np.all(qos.sum(axis=1) == 1.0) and np.all(prof.sum(axis=1) == 1.0)
    np.testing.assert_array_equal(prof.argmax(axis=1) + 1, d.profile)
    np.testing.assert_array_equal(qos.argmax(axis=1) + 1, d.qos)
    # BestEffort pods request nothing.
    assert np.all(pod[d.qos == schema.QoS.BEST_EFFORT, 0] == 0.0)


def test_rejects_empty_request():
    with pytest.raises(ValueError, match="n_rows"):
        dataset.generate(0, seed=0)
