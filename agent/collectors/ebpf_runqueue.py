"""eBPF run-queue latency (metric 5) and cross-cgroup preemptions (metric 6): bpf/runqlat.bpf.c.

The kernel builds log2 histograms of run-queue waits (wakeup or preemption -> switch-in)
for the node and per cgroup, and counts preemptions of a still-runnable task by a task
of another cgroup, per cgroup and per (preemptor, victim) pair. Each :meth:`read` takes
the node figures as deltas of cumulative counters (nothing is lost between reads) and
drains the per-cgroup maps (so they only ever hold the cgroups active in one interval).

Missing, never 0:

* p99 with no run-queue wait in the interval -> missing ("no task waited ..."): a
  quantile of nothing is undefined; a node that truly waits 0 µs still shows waits in
  slot 0. On a live node this does not happen (kernel threads wake every tick).
* preemptions with no sched_switch at all in the interval -> missing (the program cannot
  have been running). Switches but no cross-cgroup preemption -> a real 0/s.
* Which cgroup: on a cgroup v2 host, the cgroup v2 id (bpf_get_current_cgroup_id), compared
  in the kernel. On cgroup v1 and v1-hybrid hosts every task has the same v2 id and the
  kubelet places pods in the v1 hierarchies, so the program is built with KA_PAIRS_BY_TGID:
  it records each preemption as a (preemptor process, victim process) pair, and
  :class:`TaskCgroups` compares the two processes' cpu-controller paths from
  ``/proc/<tgid>/cgroup`` in user space. A pair whose process exited before it could be
  looked up is left out (counted in :attr:`RunqueueReading.unresolved_preemptions`). With
  no cpu controller mounted at all, metric 6 is missing with that reason.

Per-cgroup figures for attribution are in :attr:`RunqueueReading.cgroups` and
:attr:`RunqueueReading.preemptions`, keyed by cgroup v2 id = the inode number of the
cgroup's directory in the cgroup2 mount (:func:`cgroup_id`); on v1 hosts the cross-cgroup
pairs are in :attr:`RunqueueReading.path_preemptions`, keyed by cgroup path.

``python -m agent.collectors.ebpf_runqueue`` prints readings every second;
``--ebpf`` prints the C program with its cflags instead.
"""

from __future__ import annotations

import ast
import ctypes
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Measurement, Reading, all_missing
from agent.ebpf import loader as bpfload
from agent.ebpf.loader import Attach, BpfUnavailable, KaLatency, LoadedProgram, Log2Histogram, ProgramSpec

log = logging.getLogger(__name__)

RUNQUEUE_P99 = "runqueue_latency_p99_us"
CROSS_CGROUP = "cross_cgroup_preemptions_per_s"
PROGRAM = "runqlat.bpf.c"

DEFAULT_MAX_TASKS = 16384
DEFAULT_MAX_CGROUPS = 1024
DEFAULT_MAX_PREEMPT_PAIRS = 4096
#: TASK_REPORT_MAX - 1 since Linux 4.14, used when the tracepoint's print fmt cannot be parsed.
DEFAULT_TASK_STATE_MASK = 0xFF
#: How long a process's cgroup path, once read from /proc/<tgid>/cgroup, is trusted.
TASK_CGROUP_TTL_S = 10.0
#: Processes whose cgroup path is remembered at most (the cache is emptied when full).
TASK_CGROUP_MAX = 16384

#: Node counters, in the order of enum ka_rq_counter in bpf/runqlat.bpf.c.
RQ_COUNTERS = (
    "switches",
    "preemptions",
    "cross_cgroup",
    "unknown_cgroup",
    "unattributed",
    "cgroup_drops",
    "pair_drops",
)

NO_WAITS = "no task waited in a run queue in the interval (no wakeup or preemption followed by a switch-in)"
NO_SWITCHES = "no sched_switch event in the interval: the eBPF program is not running"
NO_CPU_HIERARCHY = (
    "cgroup v1 host without a cpu controller hierarchy under {root}: tasks cannot be told apart "
    "per cgroup, so cross-cgroup preemptions cannot be counted"
)
V1_SOURCE = (
    "cgroup v1 cpu hierarchy: each preempting and preempted process's /proc/<pid>/cgroup, compared in user space"
)


# ------------------------------------------------------------------ kernel structures


class _RqNode(ctypes.Structure):  # struct ka_rq_node
    _fields_ = [("counters", ctypes.c_uint64 * len(RQ_COUNTERS)), ("delay", KaLatency)]


class _RqCgroup(ctypes.Structure):  # struct ka_rq_cgroup
    _fields_ = [("delay", KaLatency), ("preempted_others", ctypes.c_uint64), ("preempted_by_others", ctypes.c_uint64)]


class _PreemptPair(ctypes.Structure):  # struct ka_preempt_pair
    _fields_ = [("preemptor", ctypes.c_uint64), ("victim", ctypes.c_uint64)]


_U32, _U64 = 4, 8
MAPS = {
    "node_stats": (_U32, ctypes.sizeof(_RqNode)),
    "cgroups": (_U64, ctypes.sizeof(_RqCgroup)),
    "preempt_pairs": (ctypes.sizeof(_PreemptPair), _U64),
}


# ------------------------------------------------------------------ typed figures


@dataclass(frozen=True)
class RunqueueTotals:
    """Node-wide figures: cumulative since load from the source, per interval in a reading."""

    switches: int = 0
    preemptions: int = 0
    """Switches where the outgoing task was still runnable (preempted or yielded)."""
    cross_cgroup: int = 0
    """... and the incoming task belongs to another cgroup."""
    unknown_cgroup: int = 0
    """... but the incoming task's cgroup was not known yet (not counted as cross-cgroup)."""
    unattributed: int = 0
    """Waits counted for the node only: the task's cgroup was not known yet (it has not left a
    CPU since the program was loaded)."""
    cgroup_drops: int = 0
    """Per-cgroup updates lost because MAX_CGROUPS cgroups were already active in the interval."""
    pair_drops: int = 0
    delay: Log2Histogram = Log2Histogram((0,) * bpfload.HIST_SLOTS)
    """Run-queue waits, log2 slots in µs."""
    delay_sum_ns: int = 0

    def __sub__(self, earlier: RunqueueTotals) -> RunqueueTotals:
        counts = {name: getattr(self, name) - getattr(earlier, name) for name in _RQ_COUNTS}
        return RunqueueTotals(delay=self.delay - earlier.delay, **counts)

    @property
    def went_backwards(self) -> bool:
        return any(getattr(self, n) < 0 for n in _RQ_COUNTS) or min(self.delay.slots) < 0


_RQ_COUNTS = (*RQ_COUNTERS, "delay_sum_ns")


@dataclass(frozen=True)
class CgroupRunqueue:
    """One cgroup's run-queue figures over one interval (for per-pod attribution)."""

    cgroup_id: int
    """cgroup v2 id: the inode number of the cgroup's directory in the cgroup2 mount."""
    delay_count: int
    """Run-queue waits of the cgroup's tasks (switch-ins after a wait)."""
    delay_sum_ns: int
    delay: Log2Histogram
    preemptions_caused: int
    """Times a task of this cgroup took the CPU from a runnable task of another cgroup."""
    preemptions_suffered: int
    """Times a runnable task of this cgroup lost the CPU to a task of another cgroup."""

    @property
    def delay_mean_us(self) -> float | None:
        return self.delay_sum_ns / self.delay_count / 1000 if self.delay_count else None

    @property
    def delay_p99_us(self) -> float | None:
        return self.delay.quantile(0.99)


@dataclass(frozen=True)
class RunqueueReading(Reading):
    """The metrics plus what per-pod attribution needs (all over the same interval)."""

    interval_s: float | None = None
    node: RunqueueTotals | None = None
    """Node-wide deltas over the interval; None when nothing could be read."""
    cgroups: Mapping[int, CgroupRunqueue] = field(default_factory=lambda: MappingProxyType({}))
    """cgroup v2 id -> that cgroup's figures, for the cgroups active in the interval."""
    preemptions: Mapping[tuple[int, int], int] = field(default_factory=lambda: MappingProxyType({}))
    """(preemptor cgroup id, victim cgroup id) -> cross-cgroup preemptions in the interval (cgroup v2)."""
    path_preemptions: Mapping[tuple[str, str], int] = field(default_factory=lambda: MappingProxyType({}))
    """(preemptor cgroup path, victim cgroup path) -> cross-cgroup preemptions in the interval
    (cgroup v1: paths in the cpu controller's hierarchy)."""
    unresolved_preemptions: int = 0
    """cgroup v1: preemptions between processes of which one exited before its cgroup was read."""

    @property
    def cgroup_figures(self) -> dict[str, dict[int, float]]:
        """For agent.attribution: metric -> cgroup v2 id -> cross-cgroup preemptions caused per second."""
        if not self.interval_s or not self.cgroups:
            return {}
        caused = {cg: c.preemptions_caused / self.interval_s for cg, c in self.cgroups.items() if c.preemptions_caused}
        return {CROSS_CGROUP: caused} if caused else {}

    @property
    def cgroup_path_figures(self) -> dict[str, dict[str, float]]:
        """For agent.attribution (cgroup v1): metric -> cgroup path -> cross-cgroup preemptions caused per second."""
        if not self.interval_s or not self.path_preemptions:
            return {}
        caused: dict[str, float] = {}
        for (preemptor, _victim), n in self.path_preemptions.items():
            caused[preemptor] = caused.get(preemptor, 0.0) + n / self.interval_s
        return {CROSS_CGROUP: caused}


# ------------------------------------------------------------------ the source


class RunqueueSource(Protocol):
    """Where the figures come from: the loaded program, or a test double."""

    def totals(self) -> RunqueueTotals: ...

    def drain(
        self, cgroups: bool = True, pairs: bool = True
    ) -> tuple[dict[int, CgroupRunqueue], dict[tuple[int, int], int]]:
        """Per-cgroup figures and preemption pairs since the last drain (a map not asked for is left)."""

    def close(self) -> None: ...


def task_state_mask(print_fmt: str) -> int | None:
    """TASK_REPORT_MAX - 1 from sched_switch's print fmt (the bits that mean "not runnable").

    The fmt reads ``(REC->prev_state & ((((0x0 | 0x1 | ... | 0x40) + 1) << 1) - 1)) ? ...``;
    the first masked expression is evaluated with integer | + - << only. None if absent.
    """
    start = print_fmt.find("REC->prev_state & (")
    if start < 0:
        return None
    i = start + len("REC->prev_state & ")
    depth = 0
    for j in range(i, len(print_fmt)):
        depth += {"(": 1, ")": -1}.get(print_fmt[j], 0)
        if depth == 0:
            expr = print_fmt[i : j + 1]
            break
    else:
        return None
    try:
        value = _int_expr(ast.parse(expr, mode="eval").body)
    except (SyntaxError, ValueError):
        return None
    return value if 0 < value < 1 << 16 else None


def _int_expr(node: ast.AST) -> int:
    ops = {
        ast.BitOr: lambda a, b: a | b,
        ast.Add: lambda a, b: a + b,
        ast.Sub: lambda a, b: a - b,
        ast.LShift: lambda a, b: a << b,
    }
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in ops:
        return ops[type(node.op)](_int_expr(node.left), _int_expr(node.right))
    raise ValueError(f"not an integer expression: {ast.dump(node)}")


def program_spec(
    max_cgroups: int = DEFAULT_MAX_CGROUPS,
    max_tasks: int = DEFAULT_MAX_TASKS,
    max_pairs: int = DEFAULT_MAX_PREEMPT_PAIRS,
    sys_root: str | Path = "/sys",
    pairs_by_tgid: bool | None = None,
) -> ProgramSpec:
    """The program's cflags and attach points; probes sched_switch's prev_state encoding.

    ``pairs_by_tgid`` (default: on unless the host is pure cgroup v2) builds the program
    to record preemptions per process pair for :class:`TaskCgroups` (see the module doc).
    """
    if pairs_by_tgid is None:
        pairs_by_tgid = cgroup_v2_root(sys_root)[0] != "v2"
    mask = DEFAULT_TASK_STATE_MASK
    try:
        fmt = bpfload.read_tracepoint(bpfload.find_tracefs(sys_root), "sched:sched_switch")
        mask = task_state_mask(fmt.print_fmt) or DEFAULT_TASK_STATE_MASK
    except BpfUnavailable:
        pass  # load() probes again and reports it
    for name, value in (("max_cgroups", max_cgroups), ("max_tasks", max_tasks), ("max_pairs", max_pairs)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    return ProgramSpec(
        PROGRAM,
        cflags={
            "MAX_CGROUPS": max_cgroups,
            "MAX_TASKS": max_tasks,
            "MAX_PREEMPT_PAIRS": max_pairs,
            "KA_TASK_STATE_MASK": hex(mask),
            "KA_PAIRS_BY_TGID": int(pairs_by_tgid),
        },
        attach=(
            Attach("sched:sched_switch", "ka_rq_switch", ("prev_pid", "prev_state", "next_pid")),
            Attach("sched:sched_wakeup", "ka_rq_wakeup", ("pid",)),
            Attach("sched:sched_wakeup_new", "ka_rq_wake_new", ("pid",), required=False),
        ),
        maps=MAPS,
    )


class BpfRunqueueSource:
    """The loaded bpf/runqlat.bpf.c."""

    def __init__(self, program: LoadedProgram):
        self.program = program

    def totals(self) -> RunqueueTotals:
        node = bpfload.sum_percpu(self.program.maps["node_stats"].lookup_percpu(bytes(_U32)), _RqNode)
        counts = dict(zip(RQ_COUNTERS, node.counters, strict=True))
        return RunqueueTotals(delay=node.delay.histogram(), delay_sum_ns=node.delay.sum_ns, **counts)

    def drain(
        self, cgroups: bool = True, pairs: bool = True
    ) -> tuple[dict[int, CgroupRunqueue], dict[tuple[int, int], int]]:
        out_cgroups, out_pairs = {}, {}
        for key, raw in self.program.maps["cgroups"].drain() if cgroups else ():
            cg_id = int.from_bytes(key, sys.byteorder)
            v = _RqCgroup.from_buffer_copy(raw[: ctypes.sizeof(_RqCgroup)])
            out_cgroups[cg_id] = CgroupRunqueue(
                cg_id, v.delay.count, v.delay.sum_ns, v.delay.histogram(), v.preempted_others, v.preempted_by_others
            )
        for key, raw in self.program.maps["preempt_pairs"].drain() if pairs else ():
            p = _PreemptPair.from_buffer_copy(key)
            out_pairs[(p.preemptor, p.victim)] = int.from_bytes(raw[:_U64], sys.byteorder)
        return out_cgroups, out_pairs

    def close(self) -> None:
        self.program.close()


# ------------------------------------------------------------------ cgroup layout


def cgroup_v2_root(sys_root: str | Path = "/sys") -> tuple[str, Path | None]:
    """("v2", /sys/fs/cgroup), ("hybrid", /sys/fs/cgroup/unified) or ("v1", None)."""
    base = Path(sys_root) / "fs" / "cgroup"
    if (base / "cgroup.controllers").exists():
        return "v2", base
    if (base / "unified" / "cgroup.controllers").exists():
        return "hybrid", base / "unified"
    return "v1", None


def v1_cpu_hierarchy(sys_root: str | Path = "/sys") -> Path | None:
    """The cgroup v1 hierarchy that has the cpu controller (``cpu`` or ``cpu,cpuacct``), if mounted."""
    base = Path(sys_root) / "fs" / "cgroup"
    try:
        with os.scandir(base) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                if "cpu" in e.name.split(",") and e.is_dir():
                    return Path(e.path)
    except OSError:
        pass
    return None


class TaskCgroups:
    """A process's cgroup v1 cpu-controller path, from ``/proc/<tgid>/cgroup``, cached for a while.

    Pods are not moved between cgroups, so a path read once is trusted for ``ttl_s``; the
    cache is bounded and emptied when full. None: the process is gone (or has no cpu line).
    """

    def __init__(
        self,
        proc_root: str | Path = "/proc",
        clock: Clock = SYSTEM_CLOCK,
        ttl_s: float = TASK_CGROUP_TTL_S,
        max_entries: int = TASK_CGROUP_MAX,
    ):
        self.proc_root = str(proc_root)
        self.clock = clock
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._paths: dict[int, tuple[float, str | None]] = {}

    def path(self, tgid: int) -> str | None:
        """Also remembered: "gone" (a dead process turns up in many pairs of one interval)."""
        now = self.clock.monotonic()
        hit = self._paths.get(tgid)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        if len(self._paths) >= self.max_entries:
            self._paths.clear()
        found = self._paths[tgid] = (now, self._read(tgid))
        return found[1]

    def _read(self, tgid: int) -> str | None:
        try:
            with open(f"{self.proc_root}/{tgid}/cgroup") as f:
                text = f.read()
        except OSError:
            return None
        for line in text.splitlines():
            _hid, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if "cpu" in controllers.split(","):
                return path
        return None


def cgroup_id(path: str | Path) -> int:
    """The cgroup v2 id of a cgroup directory in the cgroup2 mount, as the kernel reports it."""
    return os.stat(path).st_ino


# ------------------------------------------------------------------ the collector


class RunqueueCollector:
    name = "ebpf_runqueue"
    metrics = (RUNQUEUE_P99, CROSS_CGROUP)

    def __init__(
        self,
        sys_root: str | Path = "/sys",
        clock: Clock = SYSTEM_CLOCK,
        *,
        source: RunqueueSource | None = None,
        max_cgroups: int = DEFAULT_MAX_CGROUPS,
        max_tasks: int = DEFAULT_MAX_TASKS,
        max_pairs: int = DEFAULT_MAX_PREEMPT_PAIRS,
        load_timeout_s: float = bpfload.DEFAULT_LOAD_TIMEOUT_S,
        proc_root: str | Path = "/proc",
    ):
        self.sys_root = Path(sys_root)
        self.clock = clock
        self.unavailable: str | None = None
        self.program: LoadedProgram | None = None
        self.cgroup_mode, self.cgroup_v2 = cgroup_v2_root(sys_root)  # mounts do not change under us
        # cgroup v1 / hybrid: pairs of processes, compared by their cpu-controller paths
        self.by_tgid = self.cgroup_mode != "v2"
        self.v1_cpu = v1_cpu_hierarchy(sys_root) if self.by_tgid else None
        self.task_cgroups = TaskCgroups(proc_root, clock) if self.by_tgid else None
        if source is None:
            spec = program_spec(max_cgroups, max_tasks, max_pairs, sys_root, pairs_by_tgid=self.by_tgid)
            try:
                self.program = bpfload.load(spec, sys_root, timeout_s=load_timeout_s)
            except BpfUnavailable as err:
                self.unavailable = err.reason
                log.warning("eBPF run-queue collector unavailable: %s", err.reason)
            except Exception as err:  # noqa: BLE001 - a loader bug must cost these metrics, not the agent
                self.unavailable = f"loading bpf/{PROGRAM} failed unexpectedly: {type(err).__name__}: {err}"
                log.exception("eBPF run-queue collector unavailable")
            else:
                source = BpfRunqueueSource(self.program)
                peak = self.program.helper_peak_rss_kb
                log.info(
                    "eBPF run-queue collector: bpf/%s attached in %.2f s (%s; compile helper peak RSS %s)%s",
                    PROGRAM,
                    self.program.load_seconds,
                    " ".join(f"{k}={v}" for k, v in spec.cflags.items()),
                    f"{peak / 1024:.0f} MB" if peak else "unknown",
                    "".join(f"; skipped {tp}: {why}" for tp, why in self.program.skipped.items()),
                )
        self.source = source
        self._prev: tuple[float, RunqueueTotals] | None = None
        if source is not None:
            self._baseline()

    def _baseline(self) -> None:
        self._prev = (self.clock.monotonic(), self.source.totals())
        self.source.drain()

    def read(self) -> RunqueueReading:
        now = self.clock.monotonic()
        if self.source is None:
            return RunqueueReading(**vars(all_missing(self.name, now, self.metrics, self.unavailable)))
        prev_at, prev = self._prev
        try:
            totals = self.source.totals()
            delta, seconds = totals - prev, now - prev_at
            # the kernel writes a cgroup entry only with a wait or a cross-cgroup preemption,
            # a pair only with the latter: skip reading maps that must be empty
            # (by tgid, every preemption between two processes is a pair for user space to judge)
            busy = delta.went_backwards or delta.cgroup_drops or delta.pair_drops
            paired = delta.preemptions if self.by_tgid else delta.cross_cgroup
            cgroups, pairs = self.source.drain(
                cgroups=bool(busy or delta.delay.total or delta.cross_cgroup), pairs=bool(busy or paired)
            )
        except OSError as err:
            reason = f"reading the eBPF maps of bpf/{PROGRAM} failed: {err.strerror or err}"
            return RunqueueReading(**vars(all_missing(self.name, now, self.metrics, reason)))
        self._prev = (now, totals)
        if delta.went_backwards:
            reason = "eBPF counters went backwards (program reloaded?); new baseline taken"
            return RunqueueReading(**vars(all_missing(self.name, now, self.metrics, reason)))
        if self.by_tgid:
            by_path, unresolved = self._by_path(pairs)
            cross = self._cross(delta, seconds, sum(by_path.values()))
            return RunqueueReading(
                self.name,
                now,
                (self._p99(delta), cross),
                interval_s=seconds,
                node=delta,
                cgroups=MappingProxyType(cgroups),
                path_preemptions=MappingProxyType(by_path),
                unresolved_preemptions=unresolved,
            )
        return RunqueueReading(
            self.name,
            now,
            (self._p99(delta), self._cross(delta, seconds, delta.cross_cgroup)),
            interval_s=seconds,
            node=delta,
            cgroups=MappingProxyType(cgroups),
            preemptions=MappingProxyType(pairs),
        )

    def _by_path(self, pairs: Mapping[tuple[int, int], int]) -> tuple[dict[tuple[str, str], int], int]:
        """(preemptor tgid, victim tgid) pairs -> cross-cgroup pairs of cpu-controller paths, and
        the preemptions that could not be judged (a process already gone)."""
        by_path: dict[tuple[str, str], int] = {}
        unresolved = 0
        if self.v1_cpu is None:
            return by_path, unresolved
        for (preemptor, victim), n in pairs.items():
            a, b = self.task_cgroups.path(preemptor), self.task_cgroups.path(victim)
            if a is None or b is None:
                unresolved += n
            elif a != b:
                by_path[(a, b)] = by_path.get((a, b), 0) + n
        return by_path, unresolved

    @staticmethod
    def _p99(delta: RunqueueTotals) -> Measurement:
        p99 = delta.delay.quantile(0.99)
        return Measurement.missing(RUNQUEUE_P99, NO_WAITS) if p99 is None else Measurement.measured(RUNQUEUE_P99, p99)

    def _cross(self, delta: RunqueueTotals, seconds: float, cross: int) -> Measurement:
        if delta.switches == 0:
            return Measurement.missing(CROSS_CGROUP, NO_SWITCHES)
        if seconds <= 0:
            return Measurement.missing(CROSS_CGROUP, "no time elapsed between readings")
        if not self.by_tgid:
            return Measurement.measured(CROSS_CGROUP, cross / seconds)
        if self.v1_cpu is None:
            return Measurement.missing(CROSS_CGROUP, NO_CPU_HIERARCHY.format(root=self.sys_root / "fs" / "cgroup"))
        return Measurement.measured(CROSS_CGROUP, cross / seconds, V1_SOURCE)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
            self.unavailable = "collector closed"


def describe(r: RunqueueReading) -> str:
    line = "  ".join(f"{m.metric}={m.value:.1f}" if m.available else f"{m.metric}: {m.reason}" for m in r.measurements)
    if r.path_preemptions or r.unresolved_preemptions:
        top_pairs = sorted(r.path_preemptions.items(), key=lambda kv: -kv[1])[:3]
        return (
            f"{line} | top preemptions (by -> of): "
            + (", ".join(f"{a} -> {b}: {n}" for (a, b), n in top_pairs) or "-")
            + (f" (+{r.unresolved_preemptions} of exited processes)" if r.unresolved_preemptions else "")
        )
    top = sorted(r.cgroups.values(), key=lambda c: -c.delay_sum_ns)[:3]
    return f"{line} | top cgroups by wait: " + (
        ", ".join(f"{c.cgroup_id}: {c.delay_sum_ns / 1e6:.1f} ms/{c.delay_count}" for c in top) or "-"
    )


def main(argv: list[str] | None = None) -> int:
    return bpfload.debug_main(
        argv, "Print run-queue readings every interval.", program_spec(), RunqueueCollector, describe
    )


if __name__ == "__main__":
    sys.exit(main())
