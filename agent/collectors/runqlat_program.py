"""The Python side of bpf/runqlat.bpf.c: its structures and maps, its cflags and attach
points (:func:`program_spec`), the figures it yields, and the source that reads them from
the loaded program (:class:`BpfRunqueueSource`).

The kernel builds log2 histograms of run-queue waits (wakeup or preemption -> switch-in)
for the node and per cgroup, and counts preemptions of a still-runnable task by a task
of another cgroup, per cgroup and per (preemptor, victim) pair. The node figures are
cumulative; the per-cgroup and per-pair maps are drained on every read.
"""

from __future__ import annotations

import ast
import ctypes
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.cgroupfs.hierarchies import cgroup_v2_root
from agent.ebpf.histogram import HIST_SLOTS, KaLatency, Log2Histogram
from agent.ebpf.loader import LoadedProgram
from agent.ebpf.maps import sum_percpu
from agent.ebpf.probes import BpfUnavailable, find_tracefs, read_tracepoint
from agent.ebpf.program import Attach, ProgramSpec

PROGRAM = "runqlat.bpf.c"

DEFAULT_MAX_TASKS = 16384
DEFAULT_MAX_CGROUPS = 1024
DEFAULT_MAX_PREEMPT_PAIRS = 4096
#: TASK_REPORT_MAX - 1 since Linux 4.14, used when the tracepoint's print fmt cannot be parsed.
DEFAULT_TASK_STATE_MASK = 0xFF

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
    delay: Log2Histogram = Log2Histogram((0,) * HIST_SLOTS)
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

    ``pairs_by_tgid`` (default: on unless the host is pure cgroup v2) builds the program to
    record preemptions per process pair, judged in user space (agent.collectors.ebpf_runqueue).
    """
    if pairs_by_tgid is None:
        pairs_by_tgid = cgroup_v2_root(sys_root)[0] != "v2"
    mask = DEFAULT_TASK_STATE_MASK
    try:
        fmt = read_tracepoint(find_tracefs(sys_root), "sched:sched_switch")
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
        node = sum_percpu(self.program.maps["node_stats"].lookup_percpu(bytes(_U32)), _RqNode)
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
