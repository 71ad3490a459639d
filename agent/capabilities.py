"""What this node can measure: for each of the 15 metrics, from which source, and what is missing.

The report is built from cheap probes - files that exist or read, the process's
capabilities, where bcc can be imported (looked for, not imported), one perf_event_open
of each hardware event that is closed again - never by starting the collectors. It is
data (:class:`CapabilityReport`, ``to_json()`` for ``/v1/node``) with a plain-text table
renderer for ``agent --check``.

The eBPF probes are the loader's own (agent.ebpf.probes: privileges, bcc, kernel headers,
tracefs, and per program its tracepoints and sources, looked up as the collectors look
them up), so a metric is reported measurable exactly when its collector gets past them,
and a failed probe's detail is the reason that collector reports.

Each metric lists its sources in order of preference (``SOURCES``); a source is usable
when all its probes pass. The first usable source gives status ``measured``, a later one
``fallback``, none ``missing``; ``missing`` lists what every better source lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.cgroupfs.hierarchies import cgroup_v2_root, v1_cpu_hierarchy
from agent.collectors import ebpf_biolatency, runqlat_program
from agent.collectors.cgroup_throttle import CgroupThrottleCollector
from agent.collectors.ebpf_runqueue import NO_CPU_HIERARCHY
from agent.collectors.memory_bandwidth import resctrl_status
from agent.ebpf.probes import DEFAULT_MODULES_ROOT, Check, bcc_python, check_host, check_program, program_check_name
from agent.perf.counters import PmuStatus, probe_pmu
from wire.schema import METRIC_NAMES, METRICS

MEASURED = "measured"
FALLBACK = "fallback"
MISSING = "missing"

#: Tetragon's JSON export file and gRPC unix socket, as agent/tetragon defaults them.
DEFAULT_TETRAGON_PATHS = ("/var/log/tetragon/tetragon.log", "/var/run/tetragon/tetragon.sock")

EBPF = ("bpf_privileges", "bcc", "kernel_headers", "tracefs")
RUNQLAT = program_check_name(runqlat_program.PROGRAM)
BIOLATENCY = program_check_name(ebpf_biolatency.PROGRAM)

#: metric -> [(source, probes it needs)], first choice first.
SOURCES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "cpu_utilization": (("/proc/stat", ("proc_stat",)),),
    "cpu_iowait_ratio": (("/proc/stat iowait", ("proc_stat",)),),
    "cpu_psi_some": (("/proc/pressure/cpu avg10", ("psi_cpu",)),),
    "memory_psi_some": (("/proc/pressure/memory avg10", ("psi_memory",)),),
    "io_psi_some": (("/proc/pressure/io avg10", ("psi_io",)),),
    "runqueue_latency_p99_us": (("eBPF sched_wakeup/sched_switch (bcc)", EBPF + (RUNQLAT,)),),
    "cross_cgroup_preemptions_per_s": (("eBPF sched_switch (bcc)", EBPF + (RUNQLAT, "cgroups")),),
    "cpu_throttled_ratio": (("pod cgroups cpu.stat", ("pod_cgroups",)),),
    "memory_utilization": (("/proc/meminfo MemAvailable", ("meminfo",)),),
    "llc_miss_ratio": (("perf cache-misses/cache-references", ("pmu",)),),
    "llc_mpki": (("perf cache-misses/instructions", ("pmu",)),),
    "cycles_per_instruction": (("perf cycles/instructions", ("pmu",)),),
    "memory_bandwidth_gbps": (
        ("resctrl mbm_total_bytes", ("resctrl",)),
        ("estimate: LLC misses x 64 B (perf)", ("pmu",)),
    ),
    "disk_io_latency_p99_ms": (("eBPF block_rq_issue/complete (bcc)", EBPF + (BIOLATENCY,)),),
    "process_churn_per_s": (
        ("Tetragon exec+exit events", ("tetragon",)),
        ("/proc/stat processes counter", ("proc_stat",)),
    ),
}
if tuple(SOURCES) != METRIC_NAMES:  # a schema change must be mirrored here
    raise RuntimeError("capabilities.SOURCES does not list the schema's metrics in order")


@dataclass(frozen=True)
class Probe:
    name: str
    ok: bool
    detail: str
    """What was found, or what is missing and how to fix it."""


@dataclass(frozen=True)
class MetricCapability:
    index: int
    metric: str
    status: str
    """measured | fallback | missing"""
    source: str | None
    """The source the agent can use; None when missing."""
    missing: tuple[str, ...]
    """Why the better sources (all of them, when missing) cannot be used, one line per failed probe."""
    blocked_by: tuple[str, ...] = ()
    """Names of the failed probes behind ``missing`` (details in the report's probes)."""

    @property
    def measurable(self) -> bool:
        return self.status != MISSING


@dataclass(frozen=True)
class CapabilityReport:
    metrics: tuple[MetricCapability, ...]
    probes: tuple[Probe, ...]

    def get(self, metric: str) -> MetricCapability:
        return next(m for m in self.metrics if m.metric == metric)

    def probe(self, name: str) -> Probe:
        return next(p for p in self.probes if p.name == name)

    def to_json(self) -> dict:
        return {
            "metrics": [
                {**asdict(m), "missing": list(m.missing), "blocked_by": list(m.blocked_by), "measurable": m.measurable}
                for m in self.metrics
            ],
            "probes": [asdict(p) for p in self.probes],
        }

    def render_table(self) -> str:
        """Two plain-text tables: metrics (status, source, failed probes), then the probes with details."""
        rows = [("#", "metric", "status", "source", "lacking (see probes)")]
        rows += [
            (str(m.index), m.metric, m.status, m.source or "-", ", ".join(m.blocked_by) or "-") for m in self.metrics
        ]
        probes = [("probe", "ok", "detail")] + [(p.name, "yes" if p.ok else "NO", p.detail) for p in self.probes]
        counted = sum(m.measurable for m in self.metrics)
        return (
            f"{counted}/{len(self.metrics)} metrics measurable on this node\n\n"
            f"{_table(rows)}\n\nprobes:\n{_table(probes)}\n"
        )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    return "\n".join(line.rstrip() for line in lines)


# --------------------------------------------------------------------------- probes


def _readable(path: Path, must_contain: str | None = None) -> tuple[bool, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False, f"{path} does not exist"
    except OSError as err:
        return False, f"cannot read {path}: {err.strerror or err}"
    if must_contain is not None and must_contain not in text:
        return False, f"{path} has no {must_contain!r}"
    return True, f"{path} readable"


def _probe(check: Check) -> Probe:
    return Probe(check.name, check.ok, check.detail)


def _psi(proc_root: Path, resource: str) -> Probe:
    ok, detail = _readable(proc_root / "pressure" / resource, "some avg10=")
    if not ok and "does not exist" in detail:
        detail += " (kernel without CONFIG_PSI, or booted without psi=1)"
    elif not ok and "Operation not supported" in detail:
        detail += " (PSI disabled at boot: add psi=1)"
    return Probe(f"psi_{resource}", ok, detail)


def _tetragon(paths: Sequence[str | Path]) -> Probe:
    for p in map(Path, paths):
        if p.exists():
            return Probe("tetragon", True, f"{p} present")
    return Probe("tetragon", False, f"no Tetragon export file or socket at {', '.join(map(str, paths))}")


def _cgroups(sys_root: Path) -> Probe:
    """Can the run-queue program tell the pods' cgroups apart?"""
    mode, root = cgroup_v2_root(sys_root)
    if mode == "v2":
        return Probe("cgroups", True, f"cgroup2 at {root}: cgroup v2 ids, compared in the kernel")
    cpu = v1_cpu_hierarchy(sys_root)
    if cpu is None:
        return Probe("cgroups", False, NO_CPU_HIERARCHY.format(root=sys_root / "fs" / "cgroup"))
    return Probe(
        "cgroups",
        True,
        f"cgroup v1 cpu hierarchy at {cpu}: preempting and preempted processes' "
        "/proc/<pid>/cgroup, compared in user space",
    )


def _pmu(status: PmuStatus) -> Probe:
    if not status.ok:
        return Probe("pmu", False, status.reason)
    detail = f"counts {', '.join(status.events)}"
    if status.unavailable:
        detail += "; cannot count " + "; ".join(f"{e}: {why}" for e, why in status.unavailable.items())
    return Probe("pmu", True, detail)


def run_probes(
    proc_root: str | Path = "/proc",
    sys_root: str | Path = "/sys",
    *,
    modules_root: str | Path = DEFAULT_MODULES_ROOT,
    cgroup_root: str | Path | None = None,
    tetragon_paths: Sequence[str | Path] = DEFAULT_TETRAGON_PATHS,
    find_bcc: Callable[[], str] = bcc_python,
    pmu: Callable[[], PmuStatus] | None = None,
    bpf_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    pod_names: tuple[bool, str] | None = None,
) -> tuple[Probe, ...]:
    """``find_bcc``: the interpreter that can import bcc, or raises BpfUnavailable; ``bpf_dir``:
    where the eBPF sources are (default ``bpf.source_dir()``, as the collectors look);
    ``pod_names``: (works, detail) of the --pods-from source (agent.pods.source.probe_pod_source),
    shown as the ``pod_names`` probe - per-pod attribution, no metric depends on it."""
    proc, sys_ = Path(proc_root), Path(sys_root)
    stat_ok, stat_detail = _readable(proc / "stat", "cpu ")
    mem_ok, mem_detail = _readable(proc / "meminfo", "MemAvailable:")
    host = check_host(sys_, proc, modules_root=modules_root, environ=environ, find_bcc=find_bcc)
    sources = Path(bpf_dir) if bpf_dir is not None else None
    runqlat = check_program(runqlat_program.program_spec(sys_root=sys_), host.tracefs_path, sources)
    biolatency = check_program(ebpf_biolatency.program_spec(), host.tracefs_path, sources)
    pod_root = CgroupThrottleCollector(sys_, cgroup_root).find_root()
    why_no_resctrl = resctrl_status(sys_ / "fs" / "resctrl")
    status = pmu() if pmu is not None else probe_pmu(sys_, proc)
    return (
        Probe("proc_stat", stat_ok, stat_detail),
        Probe("meminfo", mem_ok, mem_detail),
        _psi(proc, "cpu"),
        _psi(proc, "memory"),
        _psi(proc, "io"),
        _probe(host.privileges),
        _probe(host.bcc),
        _probe(host.kernel_headers),
        _probe(host.tracefs),
        _probe(runqlat.check),
        _probe(biolatency.check),
        _pmu(status),
        Probe(
            "resctrl",
            why_no_resctrl is None,
            f"MBM at {sys_ / 'fs' / 'resctrl'}" if why_no_resctrl is None else why_no_resctrl,
        ),
        _tetragon(tetragon_paths),
        Probe(
            "pod_cgroups",
            pod_root is not None,
            f"pod cgroup root {pod_root}"
            if pod_root
            else f"no kubepods cgroup root under {cgroup_root or sys_ / 'fs' / 'cgroup'}: not a Kubernetes node, "
            "or pass --cgroup-root",
        ),
        _cgroups(sys_),
    ) + ((Probe("pod_names", *pod_names),) if pod_names is not None else ())


def assess(probes: Sequence[Probe]) -> tuple[MetricCapability, ...]:
    """The pure half: probe results -> one capability record per metric."""
    by_name: Mapping[str, Probe] = {p.name: p for p in probes}
    out = []
    for m in METRICS:
        lacking: list[str] = []
        blocked: list[str] = []
        status, used = MISSING, None
        for rank, (source, needs) in enumerate(SOURCES[m.name]):
            failed = [by_name[n] for n in needs if not by_name[n].ok]
            if not failed:
                status, used = (MEASURED if rank == 0 else FALLBACK), source
                break
            lacking.extend(f"{source}: {p.name}: {p.detail}" for p in failed)
            blocked.extend(p.name for p in failed if p.name not in blocked)
        out.append(MetricCapability(m.index, m.name, status, used, tuple(lacking), tuple(blocked)))
    return tuple(out)


def check_capabilities(
    proc_root: str | Path = "/proc", sys_root: str | Path = "/sys", **probe_options
) -> CapabilityReport:
    """Probe this node (see :func:`run_probes` for the options) and assess every metric."""
    probes = run_probes(proc_root, sys_root, **probe_options)
    return CapabilityReport(assess(probes), probes)
