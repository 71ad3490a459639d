"""eBPF run-queue latency (metric 5) and cross-cgroup preemptions (metric 6): bpf/runqlat.bpf.c.

The program's Python side (structures, cflags, the source reading its maps) is
agent.collectors.runqlat_program; this module is the collector. Each :meth:`read` takes
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
  it records each preemption as a (preemptor process, victim process) pair, and the
  collector compares the two processes' cpu-controller paths from ``/proc/<tgid>/cgroup``
  (agent.cgroupfs.task_cgroups) in user space. A pair whose process exited before it could
  be looked up is left out (counted in :attr:`RunqueueReading.unresolved_preemptions`).
  With no cpu controller mounted at all, metric 6 is missing with that reason.

Per-cgroup figures for attribution are in :attr:`RunqueueReading.cgroups` and
:attr:`RunqueueReading.preemptions`, keyed by cgroup v2 id = the inode number of the
cgroup's directory in the cgroup2 mount (agent.cgroupfs.hierarchies.cgroup_id); on v1
hosts the cross-cgroup pairs are in :attr:`RunqueueReading.path_preemptions`, keyed by
cgroup path.

``python -m agent.collectors.ebpf_runqueue`` prints readings every second;
``--ebpf`` prints the C program with its cflags instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from agent.cgroupfs.hierarchies import cgroup_v2_root, v1_cpu_hierarchy
from agent.cgroupfs.task_cgroups import TaskCgroups
from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Measurement, Reading, all_missing
from agent.collectors.runqlat_program import (
    DEFAULT_MAX_CGROUPS,
    DEFAULT_MAX_PREEMPT_PAIRS,
    DEFAULT_MAX_TASKS,
    PROGRAM,
    BpfRunqueueSource,
    CgroupRunqueue,
    RunqueueSource,
    RunqueueTotals,
    program_spec,
)
from agent.ebpf import loader
from agent.ebpf.debug_cli import debug_main
from agent.ebpf.loader import DEFAULT_LOAD_TIMEOUT_S, LoadedProgram
from agent.ebpf.probes import BpfUnavailable

log = logging.getLogger(__name__)

RUNQUEUE_P99 = "runqueue_latency_p99_us"
CROSS_CGROUP = "cross_cgroup_preemptions_per_s"

NO_WAITS = "no task waited in a run queue in the interval (no wakeup or preemption followed by a switch-in)"
NO_SWITCHES = "no sched_switch event in the interval: the eBPF program is not running"
NO_CPU_HIERARCHY = (
    "cgroup v1 host without a cpu controller hierarchy under {root}: tasks cannot be told apart "
    "per cgroup, so cross-cgroup preemptions cannot be counted"
)
V1_SOURCE = (
    "cgroup v1 cpu hierarchy: each preempting and preempted process's /proc/<pid>/cgroup, compared in user space"
)


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
        load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
        proc_root: str | Path = "/proc",
        bpf_dir: Path | None = None,
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
                self.program = loader.load(spec, sys_root, bpf_dir, load_timeout_s, proc_root)
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
    return debug_main(argv, "Print run-queue readings every interval.", program_spec(), RunqueueCollector, describe)


if __name__ == "__main__":
    sys.exit(main())
