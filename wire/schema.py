"""The feature schema: the 15 node metrics and the 11 pod features, defined once.

Every other part imports from here: the agent (what to collect, in which order, which
Prometheus name), the aggregator (validation ranges), the trainer and the ONNX wrapper
(normalisation, column order). Nobody re-declares the list.

Normalisation maps each metric to [0, 1]:

* ``ratio`` metrics are already 0-1 and are clipped;
* ``log`` metrics (latencies, rates) use ``log1p(x / ref) / log1p(cap / ref)``, clipped to
  [0, 1], so 10x changes near the reference matter as much as 10x changes near the cap.

A missing metric is never 0. In the model input it becomes ``MISSING`` (-1, outside the
normalised range) and the model is trained with random masking so it learns what "not
measured" means rather than mistaking it for "idle".
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1

#: Value a missing metric takes in the normalised model input.
MISSING = -1.0


class Scale(enum.Enum):
    RATIO = "ratio"
    LOG = "log"


@dataclass(frozen=True)
class Metric:
    index: int
    name: str
    unit: str
    """Unit of the value as it travels (agent -> aggregator -> Redis)."""
    label: str
    """Short human label used in reason strings."""
    lo: float
    hi: float
    """Valid range, inclusive. A pushed value outside it is rejected."""
    scale: Scale
    ref: float = 1.0
    cap: float = 1.0
    prom_name: str = ""
    """Prometheus gauge name, in base units."""
    prom_factor: float = 1.0
    """value * prom_factor = value in the Prometheus base unit."""
    source: str = ""

    def normalise(self, x: float | None) -> float:
        if x is None or not math.isfinite(x):
            return MISSING
        if self.scale is Scale.RATIO:
            return min(max(x, 0.0), 1.0)
        return min(max(math.log1p(max(x, 0.0) / self.ref) / math.log1p(self.cap / self.ref), 0.0), 1.0)

    def format(self, x: float | None) -> str:
        """Human rendering with a unit, as used in reasons and tables."""
        if x is None or not math.isfinite(x):
            return "missing"
        if self.unit == "ratio":
            return f"{x * 100:.0f}%"
        if self.unit == "us":
            return f"{x / 1000:.1f} ms" if x >= 1000 else f"{x:.0f} µs"
        if self.unit == "ms":
            return f"{x:.1f} ms"
        if self.unit == "1/s":
            return f"{x:.0f}/s"
        if self.unit == "GB/s":
            return f"{x:.1f} GB/s"
        return f"{x:.2f}"


def _ratio(index: int, name: str, label: str, prom: str, source: str) -> Metric:
    return Metric(
        index, name, "ratio", label, 0.0, 1.0, Scale.RATIO, prom_name=f"kubeattention_node_{prom}_ratio", source=source
    )


METRICS: tuple[Metric, ...] = (
    _ratio(0, "cpu_utilization", "CPU busy", "cpu_utilization", "/proc/stat"),
    _ratio(1, "cpu_iowait_ratio", "IO wait", "cpu_iowait", "/proc/stat iowait"),
    _ratio(2, "cpu_psi_some", "CPU pressure", "cpu_pressure_some", "/proc/pressure/cpu avg10"),
    _ratio(3, "memory_psi_some", "memory pressure", "memory_pressure_some", "/proc/pressure/memory avg10"),
    _ratio(4, "io_psi_some", "IO pressure", "io_pressure_some", "/proc/pressure/io avg10"),
    Metric(
        5,
        "runqueue_latency_p99_us",
        "us",
        "run-queue p99",
        0.0,
        1e8,
        Scale.LOG,
        ref=50.0,
        cap=100_000.0,
        prom_name="kubeattention_node_runqueue_latency_p99_seconds",
        prom_factor=1e-6,
        source="eBPF sched_wakeup/sched_switch",
    ),
    Metric(
        6,
        "cross_cgroup_preemptions_per_s",
        "1/s",
        "cross-cgroup preemptions",
        0.0,
        1e7,
        Scale.LOG,
        ref=100.0,
        cap=100_000.0,
        prom_name="kubeattention_node_cross_cgroup_preemptions_per_second",
        source="eBPF sched_switch",
    ),
    _ratio(7, "cpu_throttled_ratio", "CPU throttling", "cpu_throttled", "cgroup cpu.stat"),
    _ratio(8, "memory_utilization", "memory used", "memory_utilization", "/proc/meminfo"),
    _ratio(9, "llc_miss_ratio", "LLC miss ratio", "llc_miss", "perf cache-misses/cache-references"),
    Metric(
        10,
        "llc_mpki",
        "mpki",
        "LLC MPKI",
        0.0,
        1000.0,
        Scale.LOG,
        ref=1.0,
        cap=100.0,
        prom_name="kubeattention_node_llc_misses_per_kilo_instructions",
        source="perf cache-misses/instructions",
    ),
    Metric(
        11,
        "cycles_per_instruction",
        "cpi",
        "CPI",
        0.0,
        1000.0,
        Scale.LOG,
        ref=1.0,
        cap=20.0,
        prom_name="kubeattention_node_cycles_per_instruction",
        source="perf cycles/instructions",
    ),
    Metric(
        12,
        "memory_bandwidth_gbps",
        "GB/s",
        "memory bandwidth",
        0.0,
        10_000.0,
        Scale.LOG,
        ref=1.0,
        cap=200.0,
        prom_name="kubeattention_node_memory_bandwidth_bytes_per_second",
        prom_factor=1e9,
        source="resctrl mbm_total_bytes / LLC misses x 64 B",
    ),
    Metric(
        13,
        "disk_io_latency_p99_ms",
        "ms",
        "disk IO p99",
        0.0,
        1e6,
        Scale.LOG,
        ref=1.0,
        cap=1000.0,
        prom_name="kubeattention_node_disk_io_latency_p99_seconds",
        prom_factor=1e-3,
        source="eBPF block_rq_issue/complete",
    ),
    Metric(
        14,
        "process_churn_per_s",
        "1/s",
        "process churn",
        0.0,
        1e7,
        Scale.LOG,
        ref=10.0,
        cap=10_000.0,
        prom_name="kubeattention_node_process_churn_per_second",
        source="Tetragon exec+exit -> /proc/stat processes",
    ),
)

NUM_METRICS = len(METRICS)
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
METRIC_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}

# Vectorised normalisation constants (float64, shape (15,)).
_IS_LOG = np.array([m.scale is Scale.LOG for m in METRICS])
_REF = np.array([m.ref for m in METRICS])
_LOG_DENOM = np.array([math.log1p(m.cap / m.ref) for m in METRICS])
RANGE_LO = np.array([m.lo for m in METRICS])
RANGE_HI = np.array([m.hi for m in METRICS])


def normalise_matrix(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalise an (n, 15) matrix of raw values; masked-out entries become MISSING.

    ``values`` may hold NaN where ``mask`` is False; a non-finite value is treated as missing
    whatever its mask bit says. Returns float32 (n, 15). On BatchScore's hot path: keep lean.
    """
    values = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool) & np.isfinite(values)
    safe = np.where(mask, values, 0.0)
    np.maximum(safe, 0.0, out=safe)
    out = np.where(_IS_LOG, np.log1p(safe / _REF) / _LOG_DENOM, safe)
    np.clip(out, 0.0, 1.0, out=out)
    out[~mask] = MISSING
    return out.astype(np.float32)


# --------------------------------------------------------------------------- pod side


class Profile(enum.IntEnum):
    """Workload profile; values match proto WorkloadProfile."""

    LATENCY_CRITICAL = 1
    CACHE_SENSITIVE = 2
    MEMORY_BANDWIDTH_BOUND = 3
    IO_BOUND = 4
    BATCH = 5

    @property
    def annotation(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> Profile:
        key = text.strip().lower().replace("_", "-")
        for p in cls:
            if p.annotation == key:
                return p
        raise ValueError(
            f"profile: unknown workload profile {text!r}; expected one of {', '.join(p.annotation for p in cls)}"
        )


class QoS(enum.IntEnum):
    """Kubernetes QoS class; values match proto QoSClass."""

    GUARANTEED = 1
    BURSTABLE = 2
    BEST_EFFORT = 3


PROFILE_ANNOTATION = "kubeattention.io/profile"

#: The outcome records the collector exports (``kubeattention outcome-collector --export``)
#: and ``kubeattention train --outcomes`` reads: their ``kind`` and format ``version``.
OUTCOME_RECORD_KIND = "kubeattention.io/outcome"
OUTCOME_RECORD_VERSION = 1

#: Node, namespace and pod names are RFC 1123 DNS subdomains (at most 253 characters).
MAX_K8S_NAME = 253
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def k8s_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Kubernetes node/namespace/pod name, or None."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_K8S_NAME:
        return f"{len(name)} characters, longer than the {MAX_K8S_NAME} Kubernetes allows"
    if not _K8S_NAME.match(name):
        return f"{name[:80]!r} is not a valid Kubernetes name (lower-case letters, digits, '-' and '.')"
    return None


POD_FEATURE_NAMES: tuple[str, ...] = (
    "cpu_request_cores",
    "memory_request_gib",
    "qos_guaranteed",
    "qos_burstable",
    "qos_best_effort",
    "profile_latency_critical",
    "profile_cache_sensitive",
    "profile_memory_bandwidth_bound",
    "profile_io_bound",
    "profile_batch",
    "priority",
)
NUM_POD_FEATURES = len(POD_FEATURE_NAMES)
FEATURE_NAMES: tuple[str, ...] = METRIC_NAMES + POD_FEATURE_NAMES
NUM_FEATURES = len(FEATURE_NAMES)

#: Normalisation caps for the pod's numeric features.
CPU_CAP_CORES = 64.0
MEMORY_CAP_GIB = 256.0
PRIORITY_CAP = 2_000_001_000  # system-node-critical, the highest Kubernetes priority
GIB = 1024**3


@dataclass(frozen=True)
class PodContext:
    cpu_request_cores: float = 0.0
    memory_request_bytes: int = 0
    qos: QoS | None = None
    profile: Profile | None = None
    priority: int = 0
    namespace: str = ""
    name: str = ""

    def resolved_qos(self) -> QoS:
        """The given QoS class, or the one the requests imply (no limits are known here)."""
        if self.qos is not None:
            return self.qos
        if self.cpu_request_cores <= 0 and self.memory_request_bytes <= 0:
            return QoS.BEST_EFFORT
        return QoS.BURSTABLE

    def resolved_profile(self) -> Profile:
        """The annotated profile, else inferred: no requests -> batch, otherwise latency-critical.

        An unannotated pod that asks for resources is treated as latency-critical: wrongly
        protecting a batch pod costs little, wrongly exposing a latency-critical one costs
        its p99.
        """
        if self.profile is not None:
            return self.profile
        if self.cpu_request_cores <= 0 and self.memory_request_bytes <= 0:
            return Profile.BATCH
        return Profile.LATENCY_CRITICAL


def pod_features(pod: PodContext) -> np.ndarray:
    """The 11 normalised pod features, float32."""
    if not math.isfinite(pod.cpu_request_cores) or pod.cpu_request_cores < 0:
        raise ValueError(f"pod.cpu_request_cores: must be a finite number >= 0, got {pod.cpu_request_cores!r}")
    if pod.memory_request_bytes < 0:
        raise ValueError(f"pod.memory_request_bytes: must be >= 0, got {pod.memory_request_bytes!r}")
    out = np.zeros(NUM_POD_FEATURES, dtype=np.float32)
    out[0] = min(math.log1p(pod.cpu_request_cores) / math.log1p(CPU_CAP_CORES), 1.0)
    out[1] = min(math.log1p(pod.memory_request_bytes / GIB) / math.log1p(MEMORY_CAP_GIB), 1.0)
    out[2 + (pod.resolved_qos() - 1)] = 1.0
    out[5 + (pod.resolved_profile() - 1)] = 1.0
    out[10] = min(math.log10(1 + max(pod.priority, 0)) / math.log10(1 + PRIORITY_CAP), 1.0)
    return out


def model_input(values: np.ndarray, mask: np.ndarray, pod: PodContext) -> np.ndarray:
    """The (n, 26) float32 model input: normalised node metrics then the pod features."""
    node = normalise_matrix(values, mask)
    podf = np.broadcast_to(pod_features(pod), (node.shape[0], NUM_POD_FEATURES))
    return np.concatenate([node, podf], axis=1)


# ---------------------------------------------------------------- profile sensitivity
#
# How strongly each profile's tail latency reacts to each metric (0 = not at all,
# 1 = first-order). Used by the contention model (scorer/contention.py) to generate
# labels, by reasons to pick which metrics to name, and by confidence (the share of a
# profile's sensitivity that measured metrics cover). Rows: Profile 1..5, columns: METRICS.
#                 cpu  iow  cpsi mpsi iopsi rq   xcg  thr  mem  llcr mpki cpi  mbw  disk churn
SENSITIVITY = np.array(
    [
        [0.6, 0.2, 1.0, 0.5, 0.3, 1.0, 0.8, 0.7, 0.2, 0.5, 0.5, 0.4, 0.4, 0.2, 0.5],  # latency-critical
        [0.4, 0.1, 0.6, 0.4, 0.1, 0.5, 0.6, 0.4, 0.2, 1.0, 1.0, 0.8, 0.6, 0.1, 0.3],  # cache-sensitive
        [0.3, 0.1, 0.4, 0.6, 0.1, 0.3, 0.3, 0.3, 0.3, 0.6, 0.8, 0.6, 1.0, 0.1, 0.2],  # memory-bandwidth-bound
        [0.2, 1.0, 0.3, 0.3, 1.0, 0.3, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.2, 1.0, 0.2],  # io-bound
        [0.5, 0.1, 0.5, 0.3, 0.1, 0.2, 0.1, 0.6, 0.2, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1],  # batch
    ],
    dtype=np.float64,
)
