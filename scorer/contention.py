"""A generative contention model: synthetic training data until calibration data exists.

This is a *stand-in* for measurements. It replaces nothing that can be measured and it is
versioned (``GENERATOR``) so every model records which world it was trained in.
Calibration (``kubeattention calibrate``) measures (vector, p99 slowdown) pairs beside real
antagonists; ``kubeattention train --data`` fits this module's Hill curves to them
(``scorer.calibration.fit`` returns a :class:`CurveParams`) and generates from the fitted
curves to widen the measured rows.

Structure: the label is never a formula of the model's inputs
---------------------------------------------------------------

::

    latent node state ──┬─▶ observed metrics (15, with measurement noise) ─▶ mask ─▶ X
                        └─▶ per-profile tail-latency slowdown  ◀── pod context ─┘──▶ y

1. A **latent node state** is drawn per row (:class:`Latent`): background ``load`` from
   well-behaved pods, the intensity (0 = absent, 1 = saturating its resource) of five
   kinds of antagonist — ``cpu`` hogs, ``cache`` thrashers, memory-``membw`` streamers,
   ``io`` floods and ``fork`` churners — plus ``mem_fill`` (memory in use), ``quota``
   (how tight the pods' CPU limits are), the node's hardware (cores, peak memory
   bandwidth, disk kind, base CPI and LLC miss ratio) and ``hidden`` interference that no
   metric sees (SMT siblings, interrupts, thermal throttling). Antagonists co-occur the
   way they do on real nodes: cache thrashers usually stream memory too.
2. The **15 metrics** are generated *from the latent state* in their real units (run-queue
   p99 5 µs - 50 ms, disk p99 0.1 - 500 ms, GB/s, churn/s, PSI and ratios in [0, 1]) with
   measurement noise: additive Gaussian on ratios (PSI is a 10 s average, so noisier),
   multiplicative log-normal on latencies and rates.
3. The **slowdown** (p99 latency relative to running alone, >= 1.0) is generated
   *separately from the same latent state*, not from the noisy metrics, so the model must
   learn an inverse problem: infer the latent contention from what the node can measure.
   ``hidden`` interference and label noise are invisible in the metrics, so no model can
   be perfect, as in reality.
4. **Availability**: each row gets a mask drawn from the patterns nodes really have
   (:data:`PATTERNS`), plus random single-metric drops. Masked metrics enter the model as
   ``schema.MISSING`` through ``schema.normalise_matrix`` — the very function the
   aggregator uses at inference — so "not measured" is learnt as different from "zero".

The slowdown curve
------------------

Contention is grouped into seven *sources* ``s``, each with a latent pressure
``x_s >= 0``::

    cpu       x = 0.8 load + 0.9 cpu + 0.2 fork     (CPU demand / capacity, may exceed 1)
    cache     x = cache + 0.25 membw + 0.1 load
    membw     x = membw + 0.2 cache + 0.1 load
    io        x = io
    fork      x = fork
    mem       x = (mem_fill - 0.75) / 0.25, clipped to [0, 1]   (reclaim pressure)
    throttle  x = min(1, 2 cpu quota)

and the log-slowdown of a pod of profile ``p`` is a sum of **Hill (sigmoidal saturating)
curves**::

    log S = prio · Σ_s  q_s(qos) · c_s(cpu) · w[p, s] · A_s · x_s^h_s / (K_s^h_s + x_s^h_s)
            + hidden + ε,      ε ~ N(0, 0.06²),   S = max(exp(log S), 1)

``hidden ~ Gamma(1, 0.03)`` (mean +3 %) plus, on 5 % of nodes, a ``Gamma(2, 0.1)`` spike
(mean +20 %): interference from sources no metric observes. ``ε`` is run-to-run variation
of a measured p99; a measured ratio below 1 is reported as 1.0 ("as if alone").

* ``A_s`` — the largest log-slowdown the source can cause a fully sensitive pod
  (``exp(A_s)`` is the plateau: cpu 6.0x, cache 2.7x, membw 3.3x, io 7.4x, fork 1.8x,
  mem 3.3x, throttle 1.6x);
* ``K_s`` — the pressure at which half of that is reached (cpu 0.8: the knee where CPU
  demand approaches capacity; io 0.5; cache 0.5; membw 0.6; ...);
* ``h_s`` — the steepness (2-3): flat at low pressure, sharp knee, then a plateau;
* ``w[p, s]`` — the mean of ``schema.SENSITIVITY[p]`` over the metrics that observe the
  source (:data:`SOURCE_METRICS`), so the profile sensitivity matrix is defined once and
  both reasons and labels agree on it.

Why this curve: interference studies of latency-critical services (Bubble-Up, MICRO 2011;
Paragon, ASPLOS 2013; Heracles, ISCA 2015) measure tail latency against antagonist
pressure and find the same shape for every shared resource — negligible effect while the
resource has headroom, a steep rise once it saturates (queueing), and a plateau once the
victim is down to its guaranteed share (CFS weights, memory-controller fairness, the
block-layer scheduler). A Hill curve is the smallest monotone family with a knee and a
plateau; summing in log space makes independent stalls multiply, which is how a pod that
waits for the CPU *and* misses in the cache behaves. The parameters are plausible
magnitudes from those papers, not measurements of this cluster — calibration replaces them.

Pod context:

* QoS ``q_s``: BestEffort pods have the smallest CFS weight (cpu.shares 2) and suffer most
  from CPU-type sources (cpu, fork, throttle: x1.5; others x1.15); Guaranteed pods, which
  may hold exclusive cores, suffer least (x0.7; others x0.9); Burstable x1.0.
* CPU request ``c_s``: a larger request is a larger CFS weight, so CPU-type sources are
  scaled by ``1 - 0.3 · cpu_request_feature`` (the normalised feature, 0-1).
* Priority: ``prio = 1 - 0.05 · priority_feature`` — a small effect (priority decides
  preemption and eviction, not who runs first).
* Memory request: no effect on latency in this model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wire import schema
from wire.schema import NUM_METRICS, Profile, QoS

#: Recorded in model metadata; bump when anything below changes the generated data.
GENERATOR = "scorer.contention v1"

# ----------------------------------------------------------------- contention sources

SOURCES: tuple[str, ...] = ("cpu", "cache", "membw", "io", "fork", "mem", "throttle")

#: Which metrics observe each source (indices into schema.METRICS). The profile's weight
#: for a source is the mean of its SENSITIVITY over these metrics.
SOURCE_METRICS: dict[str, tuple[int, ...]] = {
    "cpu": (0, 2, 5, 6),  # cpu busy, cpu psi, run-queue p99, cross-cgroup preemptions
    "cache": (9, 10, 11),  # LLC miss ratio, MPKI, CPI
    "membw": (12,),  # memory bandwidth
    "io": (1, 4, 13),  # iowait, io psi, disk p99
    "fork": (14,),  # process churn
    "mem": (3, 8),  # memory psi, memory used
    "throttle": (7,),  # cpu throttling
}


@dataclass(frozen=True)
class Curve:
    """Hill curve ``A · x^h / (K^h + x^h)`` for one source's log-slowdown."""

    amplitude: float
    half: float
    hill: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xh = np.power(np.maximum(x, 0.0), self.hill)
        return self.amplitude * xh / (self.half**self.hill + xh)


CURVES: dict[str, Curve] = {
    "cpu": Curve(1.8, 0.8, 3.0),
    "cache": Curve(1.0, 0.5, 2.0),
    "membw": Curve(1.2, 0.6, 3.0),
    "io": Curve(2.0, 0.5, 2.0),
    "fork": Curve(0.6, 0.5, 2.0),
    "mem": Curve(1.2, 0.5, 2.0),
    "throttle": Curve(0.5, 0.4, 2.0),
}

#: (n_profiles, n_sources) weight of each source for each profile, from schema.SENSITIVITY.
SOURCE_WEIGHTS = np.array(
    [[schema.SENSITIVITY[p, list(SOURCE_METRICS[s])].mean() for s in SOURCES] for p in range(len(Profile))]
)

CPU_TYPE_SOURCES = frozenset({"cpu", "fork", "throttle"})
#: QoS multipliers: (cpu-type sources, other sources).
QOS_FACTOR: dict[QoS, tuple[float, float]] = {
    QoS.GUARANTEED: (0.7, 0.9),
    QoS.BURSTABLE: (1.0, 1.0),
    QoS.BEST_EFFORT: (1.5, 1.15),
}
CPU_REQUEST_RELIEF = 0.3
PRIORITY_RELIEF = 0.05
LABEL_NOISE_SIGMA = 0.06

# ---------------------------------------------------------------- availability masks


@dataclass(frozen=True)
class Pattern:
    name: str
    missing: tuple[int, ...]
    probability: float
    description: str


#: Availability patterns seen on real nodes, with the share of rows that get each.
PATTERNS: tuple[Pattern, ...] = (
    Pattern("full-hardware", (), 0.25, "bare metal with PMU, eBPF and resctrl: all 15"),
    Pattern("vm-no-pmu", (9, 10, 11, 12), 0.25, "VM without a virtual PMU: no LLC, CPI, bandwidth"),
    Pattern("no-ebpf", (5, 6, 13), 0.15, "PMU but no eBPF yet: no run-queue, preemption, disk p99"),
    Pattern("proc-only", (5, 6, 9, 10, 11, 12, 13), 0.35, "/proc, PSI and cgroups only (our 2-core VM)"),
)
PATTERN_NAMES: tuple[str, ...] = tuple(p.name for p in PATTERNS)
#: Probability that cpu_throttled_ratio (7) is missing: no pod cgroups on the node yet.
NO_POD_CGROUPS = {"full-hardware": 0.05, "vm-no-pmu": 0.05, "no-ebpf": 0.05, "proc-only": 0.5}
#: Probability that any other single measured metric is dropped (collector error, timeout).
RANDOM_DROP = 0.02

# ------------------------------------------------------------------------ latent state


@dataclass(frozen=True)
class Latent:
    """The hidden state of each row's node; arrays of shape (n,)."""

    load: np.ndarray
    cpu: np.ndarray
    cache: np.ndarray
    membw: np.ndarray
    io: np.ndarray
    fork: np.ndarray
    mem_fill: np.ndarray
    quota: np.ndarray
    hidden: np.ndarray
    cores: np.ndarray
    peak_bw_gbps: np.ndarray
    disk_base_ms: np.ndarray
    base_cpi: np.ndarray
    base_miss: np.ndarray

    def pressures(self) -> np.ndarray:
        """(n, len(SOURCES)) latent pressure of each contention source."""
        return np.stack(
            [
                0.8 * self.load + 0.9 * self.cpu + 0.2 * self.fork,
                self.cache + 0.25 * self.membw + 0.1 * self.load,
                self.membw + 0.2 * self.cache + 0.1 * self.load,
                self.io,
                self.fork,
                np.clip((self.mem_fill - 0.75) / 0.25, 0.0, 1.0),
                np.minimum(1.0, 2.0 * self.cpu * self.quota),
            ],
            axis=1,
        )


ANTAGONISTS: tuple[str, ...] = ("cpu", "cache", "membw", "io", "fork")
#: Probability that a node hosts an antagonist of each kind.
ANTAGONIST_PROBABILITY = {"cpu": 0.35, "cache": 0.3, "membw": 0.25, "io": 0.3, "fork": 0.2}
CORE_CHOICES = np.array([2, 4, 8, 16, 32, 64, 96])
DISK_KINDS_MS = np.array([0.1, 1.0, 5.0])  # NVMe, network SSD, HDD: quiet p99 baselines
DISK_KIND_P = np.array([0.5, 0.4, 0.1])


def _antagonist(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """Mostly a trace (Beta(1, 20)); with probability p a real antagonist (Beta(2, 2))."""
    active = rng.random(n) < p
    return np.where(active, rng.beta(2.0, 2.0, n), rng.beta(1.0, 20.0, n))


def draw_latent(rng: np.random.Generator, n: int) -> Latent:
    a = {k: _antagonist(rng, n, ANTAGONIST_PROBABILITY[k]) for k in ANTAGONISTS}
    # Cache thrashers usually stream memory as well.
    a["membw"] = np.maximum(a["membw"], a["cache"] * rng.beta(2.0, 2.0, n) * (rng.random(n) < 0.6))
    # A share of nodes are nearly full, where reclaim stalls begin.
    mem_fill = np.where(rng.random(n) < 0.15, rng.uniform(0.8, 0.99, n), rng.beta(4.0, 4.0, n) * 0.9 + 0.05)
    hidden = rng.gamma(1.0, 0.03, n) + np.where(rng.random(n) < 0.05, rng.gamma(2.0, 0.1, n), 0.0)
    cores = rng.choice(CORE_CHOICES, n)
    return Latent(
        load=rng.beta(2.0, 3.0, n),
        mem_fill=mem_fill,
        quota=rng.beta(1.0, 4.0, n),
        hidden=hidden,
        cores=cores.astype(np.float64),
        peak_bw_gbps=10.0 * (cores / 2.0) ** 0.6 * rng.uniform(0.8, 1.25, n),
        disk_base_ms=rng.choice(DISK_KINDS_MS, n, p=DISK_KIND_P) * rng.uniform(0.8, 2.0, n),
        base_cpi=rng.uniform(0.5, 1.0, n),
        base_miss=rng.uniform(0.05, 0.25, n),
        **a,
    )


# --------------------------------------------------------------- observed metrics


def _ratio(rng, true, sigma):
    return np.clip(true + rng.normal(0.0, sigma, true.shape), 0.0, 1.0)


def _lognoise(rng, n, sigma):
    return np.exp(rng.normal(0.0, sigma, n))


def observe(rng: np.random.Generator, z: Latent) -> np.ndarray:
    """(n, 15) raw metric values in schema units, generated from the latent state."""
    n = z.load.shape[0]
    demand = 0.8 * z.load + 0.9 * z.cpu + 0.2 * z.fork
    c = np.clip(demand / 1.3, 0.0, 1.0)
    cache_p = z.cache + 0.25 * z.membw + 0.1 * z.load
    membw_p = z.membw + 0.2 * z.cache
    reclaim = np.clip((z.mem_fill - 0.75) / 0.25, 0.0, 1.0)
    out = np.empty((n, NUM_METRICS))
    out[:, 0] = _ratio(rng, np.minimum(demand, 1.0) * 0.95 + 0.03, 0.02)
    out[:, 1] = _ratio(rng, (1.0 - out[:, 0]) * 0.6 * z.io**1.5, 0.01)
    out[:, 2] = _ratio(rng, np.clip((demand - 0.55) / 0.9, 0.0, 1.0) ** 1.5 + 0.1 * z.fork, 0.03)
    out[:, 3] = _ratio(rng, 0.7 * reclaim**2 + 0.05 * z.membw, 0.015)
    out[:, 4] = _ratio(rng, 0.85 * z.io**1.3, 0.03)
    out[:, 5] = np.clip(10.0 ** (0.8 + 3.6 * c**1.5 + 0.5 * z.fork) * _lognoise(rng, n, 0.2), 5.0, 50_000.0)
    out[:, 6] = np.clip(z.cores * 10.0 ** (0.5 + 2.0 * c + 0.8 * z.fork) * _lognoise(rng, n, 0.3), 0.0, 1e6)
    out[:, 7] = _ratio(rng, np.minimum(1.0, 2.0 * z.cpu * z.quota) * 0.8, 0.02)
    out[:, 8] = _ratio(rng, z.mem_fill, 0.01)
    out[:, 9] = _ratio(rng, z.base_miss + (0.85 - z.base_miss) * (1.0 - np.exp(-2.2 * cache_p)), 0.02)
    out[:, 10] = np.clip(
        10.0 ** (-0.5 + 2.0 * (1.0 - np.exp(-1.5 * (cache_p + 0.5 * membw_p)))) * _lognoise(rng, n, 0.2), 0.05, 200.0
    )
    out[:, 11] = np.clip(
        z.base_cpi * (1.0 + 1.5 * cache_p + 1.5 * membw_p + 0.3 * z.load) * _lognoise(rng, n, 0.1), 0.3, 20.0
    )
    out[:, 12] = (
        z.peak_bw_gbps
        * np.clip(0.03 + 0.2 * z.load + 0.8 * z.membw + 0.15 * z.cache, 0.0, 0.98)
        * _lognoise(rng, n, 0.1)
    )
    out[:, 13] = np.clip(z.disk_base_ms * (1.0 + 150.0 * z.io**2) * _lognoise(rng, n, 0.25), 0.1, 500.0)
    out[:, 14] = np.clip(10.0 ** (0.3 + 3.2 * z.fork) + 5.0 * z.load * z.cores**0.5, 0.0, None) * _lognoise(
        rng, n, 0.25
    )
    return out


def draw_masks(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Availability masks: (mask (n, 15) bool, pattern index (n,) into PATTERNS)."""
    probs = np.array([p.probability for p in PATTERNS])
    pattern = rng.choice(len(PATTERNS), n, p=probs / probs.sum())
    mask = np.ones((n, NUM_METRICS), dtype=bool)
    for i, p in enumerate(PATTERNS):
        rows = pattern == i
        if p.missing:
            mask[np.ix_(rows, p.missing)] = False
        mask[rows, 7] &= rng.random(int(rows.sum())) >= NO_POD_CGROUPS[p.name]
    mask &= rng.random((n, NUM_METRICS)) >= RANDOM_DROP
    return mask, pattern


# ---------------------------------------------------------------------- slowdown


@dataclass(frozen=True)
class PodRows:
    """The pod context of each row: profile, QoS and the 11 schema pod features."""

    profile: np.ndarray  # (n,) int, Profile values 1..5
    qos: np.ndarray  # (n,) int, QoS values 1..3
    features: np.ndarray  # (n, 11) float32, schema.pod_features of each row's pod


@dataclass(frozen=True)
class CurveParams:
    """The slowdown curve's parameters: one Hill curve per source and the (profile, source) weights.

    :data:`PRIOR` is the hand-set model above; ``scorer.calibration.fit`` returns one fitted
    to measured slowdowns (``name`` then says which data it was fitted to).
    """

    curves: dict[str, Curve]
    weights: np.ndarray
    """(n_profiles, len(SOURCES)) multiplier of each source's curve for each profile."""
    name: str = GENERATOR


PRIOR = CurveParams(CURVES, SOURCE_WEIGHTS)


def log_slowdown(
    z: Latent, pods: PodRows, rng: np.random.Generator | None = None, params: CurveParams = PRIOR
) -> np.ndarray:
    """Per-row log tail-latency slowdown (>= 0) of the row's pod on the row's node.

    With ``rng`` the label noise ε is added; without it the result is the noise-free
    expectation given the latent state (used by tests of the model's properties).
    ``params``: the curves and weights (default: the hand-set :data:`PRIOR`).
    """
    x = z.pressures()
    contrib = np.stack([params.curves[s](x[:, j]) for j, s in enumerate(SOURCES)], axis=1)
    contrib *= params.weights[pods.profile - 1]
    qos_cpu = np.array([0.0] + [QOS_FACTOR[q][0] for q in QoS])[pods.qos]
    qos_other = np.array([0.0] + [QOS_FACTOR[q][1] for q in QoS])[pods.qos]
    cpu_feature = pods.features[:, schema.POD_FEATURE_NAMES.index("cpu_request_cores")].astype(np.float64)
    prio_feature = pods.features[:, schema.POD_FEATURE_NAMES.index("priority")].astype(np.float64)
    cpu_type = np.array([s in CPU_TYPE_SOURCES for s in SOURCES])
    factor = np.where(
        cpu_type[None, :], (qos_cpu * (1.0 - CPU_REQUEST_RELIEF * cpu_feature))[:, None], qos_other[:, None]
    )
    total = (contrib * factor).sum(axis=1) * (1.0 - PRIORITY_RELIEF * prio_feature) + z.hidden
    if rng is not None:
        total = total + rng.normal(0.0, LABEL_NOISE_SIGMA, total.shape)
    return np.maximum(total, 0.0)


# ----------------------------------------------------------------------- pod contexts


def draw_pods(rng: np.random.Generator, n_pods: int) -> tuple[list[schema.PodContext], np.ndarray]:
    """A pool of distinct pod contexts and their (n_pods, 11) features via schema.pod_features."""
    pods = []
    for _ in range(n_pods):
        profile = Profile(int(rng.integers(1, len(Profile) + 1)))
        qos = QoS(int(rng.choice([1, 2, 3], p=[0.3, 0.5, 0.2])))
        if qos is QoS.BEST_EFFORT:
            cpu, mem = 0.0, 0
        else:
            cpu = float(np.clip(rng.lognormal(np.log(0.5), 1.2), 0.05, 32.0))
            mem = int(np.clip(rng.lognormal(np.log(1.0), 1.2), 0.05, 128.0) * schema.GIB)
        r = rng.random()
        priority = (
            0
            if r < 0.7
            else int(rng.integers(1000, 100_000))
            if r < 0.9
            else int(rng.choice([1_000_000_000, 2_000_000_000]))
        )
        pods.append(
            schema.PodContext(
                cpu_request_cores=cpu, memory_request_bytes=mem, qos=qos, profile=profile, priority=priority
            )
        )
    features = (
        np.stack([schema.pod_features(p) for p in pods]) if pods else np.zeros((0, schema.NUM_POD_FEATURES), np.float32)
    )
    return pods, features
