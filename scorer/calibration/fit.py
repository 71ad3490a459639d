"""Fit the contention model's slowdown curves to measured calibration slowdowns.

What is fitted
--------------
The synthetic generator (``scorer.contention``) computes a pod's log-slowdown as a sum of
Hill curves over seven contention sources::

    log S = Σ_s  W[p, s] · x_s^h_s / (K_s^h_s + x_s^h_s)        (× QoS, request, priority factors)

For the five sources calibration can drive on this machine — ``cpu``, ``cache``,
``membw``, ``io``, ``fork`` — this module fits

* ``K_s`` (half-saturation pressure) and ``h_s`` (steepness) per source, shared by all
  profiles (bounds: K in [0.05, 3], h in [1, 6]);
* ``W[p, s]`` (the plateau log-slowdown of profile ``p`` under source ``s``; bounds [0, 6])
  per profile and source, replacing the prior's ``A_s · mean(SENSITIVITY)`` product,

25 + 10 = 35 parameters, by robust non-linear least squares (``scipy.optimize.least_squares``,
trust-region reflective, ``soft_l1`` loss with scale 0.1 so a few wild p99s do not drag the
curves) on ``log(max(p99 / p99_alone, 1))`` of every measured row, starting from the prior.
The pressures ``x_s`` are computed by the generator's own ``Latent.pressures`` from each
row's antagonist intensities (``contention_lab.antagonists``) with no background load,
memory fill from the measured ``memory_utilization``, no CPU quota and no hidden
interference; the pod factors use the calibration victim's context
(``scorer.calibration.data.VICTIM_POD``). ``mem`` (reclaim) and ``throttle`` (CPU quota)
cannot be produced here without cgroups limits and keep their prior curves and weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from scorer import contention
from scorer.calibration.data import CalibrationSet
from scorer.contention import SOURCES, Curve, CurveParams, Latent, PodRows
from wire import schema

FITTED_SOURCES: tuple[str, ...] = ("cpu", "cache", "membw", "io", "fork")
K_BOUNDS = (0.05, 3.0)
H_BOUNDS = (1.0, 6.0)
W_BOUNDS = (0.0, 6.0)
LOSS = "soft_l1"
LOSS_SCALE = 0.1


@dataclass(frozen=True)
class FitResult:
    params: CurveParams
    rmse: float
    """Root-mean-square error of the fitted log-slowdown on the rows it was fitted to."""
    prior_rmse: float
    rows: int
    summary: dict


def latent_of(cal: CalibrationSet) -> Latent:
    n = len(cal)
    zeros = np.zeros(n)
    mem = cal.values[:, schema.METRIC_NAMES.index("memory_utilization")]
    return Latent(
        load=zeros,
        cpu=cal.intensity["cpu"],
        cache=cal.intensity["cache"],
        membw=cal.intensity["membw"],
        io=cal.intensity["io"],
        fork=cal.intensity["fork"],
        mem_fill=np.nan_to_num(mem, nan=0.0),
        quota=zeros,
        hidden=zeros,
        cores=np.full(n, 2.0),
        peak_bw_gbps=np.full(n, 10.0),
        disk_base_ms=np.full(n, 1.0),
        base_cpi=np.full(n, 1.0),
        base_miss=np.full(n, 0.1),
    )


def pods_of(cal: CalibrationSet) -> PodRows:
    return PodRows(profile=cal.profile, qos=cal.qos, features=cal.X[:, schema.NUM_METRICS :])


def _unpack(theta: np.ndarray, prior: CurveParams) -> CurveParams:
    k = len(FITTED_SOURCES)
    K, H = theta[:k], theta[k : 2 * k]
    W = theta[2 * k :].reshape(len(schema.Profile), k)
    curves = dict(prior.curves)
    weights = prior.weights.copy()
    for j, s in enumerate(FITTED_SOURCES):
        curves[s] = Curve(1.0, float(K[j]), float(H[j]))
        weights[:, SOURCES.index(s)] = W[:, j]
    return CurveParams(curves, weights, prior.name)


def _pack(prior: CurveParams) -> np.ndarray:
    K = [prior.curves[s].half for s in FITTED_SOURCES]
    H = [prior.curves[s].hill for s in FITTED_SOURCES]
    W = np.stack([prior.weights[:, SOURCES.index(s)] * prior.curves[s].amplitude for s in FITTED_SOURCES], axis=1)
    return np.concatenate([K, H, W.ravel()])


def fit(cal: CalibrationSet, prior: CurveParams = contention.PRIOR) -> FitResult:
    from scipy.optimize import least_squares

    z, pods = latent_of(cal), pods_of(cal)
    y = cal.y

    def residual(theta):
        return contention.log_slowdown(z, pods, None, _unpack(theta, prior)) - y

    k = len(FITTED_SOURCES)
    lo = np.concatenate([[K_BOUNDS[0]] * k, [H_BOUNDS[0]] * k, [W_BOUNDS[0]] * (k * len(schema.Profile))])
    hi = np.concatenate([[K_BOUNDS[1]] * k, [H_BOUNDS[1]] * k, [W_BOUNDS[1]] * (k * len(schema.Profile))])
    theta0 = np.clip(_pack(prior), lo, hi)
    sol = least_squares(residual, theta0, bounds=(lo, hi), loss=LOSS, f_scale=LOSS_SCALE, method="trf")
    params = _unpack(sol.x, prior)
    rmse = float(np.sqrt(np.mean(residual(sol.x) ** 2)))
    prior_rmse = float(np.sqrt(np.mean((contention.log_slowdown(z, pods, None, prior) - y) ** 2)))
    summary = describe(params, rmse, prior_rmse, len(y), cal.data_hash)
    name = f"{contention.GENERATOR}, curves fitted to calibration {cal.data_hash[:12]}"
    params = CurveParams(params.curves, params.weights, name)
    return FitResult(params=params, rmse=rmse, prior_rmse=prior_rmse, rows=len(y), summary=summary)


def describe(params: CurveParams, rmse: float, prior_rmse: float, rows: int, data_hash: str) -> dict:
    """JSON-ready record of the fitted curves (goes into the model metadata)."""
    out = {
        "curve": "log S = sum_s W[profile, s] * x^h / (K^h + x^h)",
        "fitted_by": f"scipy.optimize.least_squares trf, loss {LOSS} f_scale {LOSS_SCALE}",
        "rows": rows,
        "calibration_hash": data_hash,
        "rmse_log": round(rmse, 4),
        "prior_rmse_log": round(prior_rmse, 4),
        "sources": {},
    }
    for s in FITTED_SOURCES:
        j = SOURCES.index(s)
        out["sources"][s] = {
            "K": round(params.curves[s].half, 4),
            "h": round(params.curves[s].hill, 4),
            "W": {
                p.annotation: round(float(params.weights[p - 1, j] * params.curves[s].amplitude), 4)
                for p in schema.Profile
            },
        }
    out["prior_sources"] = [s for s in SOURCES if s not in FITTED_SOURCES]
    out["hash"] = hashlib.sha256(json.dumps(out["sources"], sort_keys=True).encode()).hexdigest()[:12]
    return out
