"""Training data from the contention model: ``generate(n_rows, seed) -> Dataset``.

Deterministic for a seed (NumPy ``SeedSequence`` sub-streams for latent state, metric
noise, masks, pods and label noise), and identified by a SHA-256 of the model input ``X``
and the label ``y`` that the trainer records in the model's metadata.

``X`` is built exactly as at inference: raw metric values and their mask go through
``schema.normalise_matrix`` (missing -> ``schema.MISSING``), followed by the row's pod
features from ``schema.pod_features``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from scorer import contention
from wire import schema

#: Distinct pod contexts per dataset; rows draw their pod from this pool.
POD_POOL = 4096
_HASH_DOMAIN = b"kubeattention-dataset-v1\0"


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray
    """(n, 26) float32 model input, schema.FEATURE_NAMES order."""
    y: np.ndarray
    """(n,) float64 log tail-latency slowdown (>= 0)."""
    profile: np.ndarray
    """(n,) int, schema.Profile values."""
    qos: np.ndarray
    """(n,) int, schema.QoS values."""
    mask: np.ndarray
    """(n, 15) bool, True where the metric was measured."""
    values: np.ndarray
    """(n, 15) float64 raw metric values in schema units, NaN where not measured."""
    pattern: np.ndarray
    """(n,) int index into contention.PATTERNS."""
    latent: contention.Latent
    seed: int
    data_hash: str
    """SHA-256 (hex) of X and y, see data_hash()."""

    @property
    def slowdown(self) -> np.ndarray:
        return np.exp(self.y)

    def __len__(self) -> int:
        return int(self.X.shape[0])


def data_hash(X: np.ndarray, y: np.ndarray) -> str:
    """Stable SHA-256 of (X, y): little-endian float32 X and float64 y with their shapes.

    Independent of memory layout and platform byte order.
    """
    h = hashlib.sha256(_HASH_DOMAIN)
    X = np.ascontiguousarray(X, dtype="<f4")
    y = np.ascontiguousarray(y, dtype="<f8")
    h.update(np.array(X.shape + y.shape, dtype="<i8").tobytes())
    h.update(X.tobytes())
    h.update(y.tobytes())
    return h.hexdigest()


def generate(n_rows: int, seed: int = 0, params: contention.CurveParams = contention.PRIOR) -> Dataset:
    """``n_rows`` rows; ``params``: the slowdown curves (default the hand-set prior, or fitted ones)."""
    if n_rows < 1:
        raise ValueError(f"n_rows: must be >= 1, got {n_rows!r}")
    latent_rng, obs_rng, mask_rng, pod_rng, label_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    z = contention.draw_latent(latent_rng, n_rows)
    raw = contention.observe(obs_rng, z)
    mask, pattern = contention.draw_masks(mask_rng, n_rows)

    pool, pool_features = contention.draw_pods(pod_rng, POD_POOL)
    pick = pod_rng.integers(0, POD_POOL, n_rows)
    pool_profile = np.array([int(p.resolved_profile()) for p in pool])
    pool_qos = np.array([int(p.resolved_qos()) for p in pool])
    pods = contention.PodRows(profile=pool_profile[pick], qos=pool_qos[pick], features=pool_features[pick])

    y = contention.log_slowdown(z, pods, label_rng, params)
    X = np.concatenate([schema.normalise_matrix(raw, mask), pods.features], axis=1).astype(np.float32)
    values = np.where(mask, raw, np.nan)
    return Dataset(
        X=X,
        y=y,
        profile=pods.profile,
        qos=pods.qos,
        mask=mask,
        values=values,
        pattern=pattern,
        latent=z,
        seed=seed,
        data_hash=data_hash(X, y),
    )
