"""Dataset generation: determinism, the data hash, and X built as at inference."""

from __future__ import annotations

import numpy as np
import pytest

from scorer import contention, dataset
from wire import schema

#: generate(500, seed=0).data_hash with the pinned NumPy. If you changed the contention
#: model on purpose, bump contention.GENERATOR and update this value.
GOLDEN_HASH_500_SEED0 = "412c6435468d2b5cc664d1df32b72a5710e263a2eccc2a68da940347a7744091"


def test_generate_is_deterministic_for_a_seed():
    a, b = dataset.generate(3000, seed=7), dataset.generate(3000, seed=7)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.latent.cpu, b.latent.cpu)
    assert a.data_hash == b.data_hash


def test_different_seeds_give_different_data():
    assert dataset.generate(1000, seed=1).data_hash != dataset.generate(1000, seed=2).data_hash


def test_hash_is_pinned():
    assert dataset.generate(500, seed=0).data_hash == GOLDEN_HASH_500_SEED0, (
        "the generated data changed: if intended, bump contention.GENERATOR and the golden hash"
    )


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
