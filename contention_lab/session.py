"""One calibration session over an output directory: what is left to measure, and measuring it.

:class:`Calibration` reads the rows already in ``DIR/calibration.jsonl`` (repairing a
half-written last line), and for each pending (repetition, configuration) of the plan's
schedule (``contention_lab.plan``):

1. waits for a quiet machine before a ``none`` configuration (at most ``QUIET_TIMEOUT_S``);
2. starts the antagonist (``contention_lab.antagonists``; in its own quota cgroup,
   ``contention_lab.cgroups``, removed when it stops);
3. warms up while the agent's collectors run (discarded), then measures the node state:
   ``state_seconds`` vectors at 1 s (:func:`node_state`), before any victim runs;
4. runs each pending profile's victim (``contention_lab.drivers``) beside it, bounded by a
   hard timeout, with the idle vCPUs kept awake (``contention_lab.keep_awake``: SCHED_IDLE
   spinners during the victim runs only, and a PM QoS request held all along) and in its
   own cgroup v2 (whose PSI and cpu.stat deltas over the run go into the row), and appends
   one row per (node state, victim profile) as soon as it is measured
   (``scorer.calibration.rows`` is the format), fsynced;
5. stops the antagonist.

It rewrites ``DIR/summary.json`` and ``DIR/summary.md`` at the end, also when stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from agent.cgroupfs.hierarchies import cgroup_v2_root
from contention_lab import antagonists as ant
from contention_lab import cgroups, drivers, keep_awake
from contention_lab.plan import row_key, schedule
from contention_lab.plan import write as write_plan
from contention_lab.progress import progress_bar
from scorer.calibration.provenance import machine_facts
from scorer.calibration.rows import ROW_KIND, ROWS_FILE, load_rows, summarise, write_summary
from wire import schema
from wire.schema import METRICS, NUM_METRICS, Profile

log = logging.getLogger(__name__)

#: A victim gets this many times --run-seconds (at least MIN_VICTIM_TIMEOUT_S) before it is killed.
VICTIM_TIMEOUT_FACTOR = 8
MIN_VICTIM_TIMEOUT_S = 20.0
#: Quiet = CPU busy and every PSI avg10 below these, for QUIET_SECONDS in a row (at most QUIET_TIMEOUT_S).
QUIET_CPU = 0.15
QUIET_PSI = 0.05
QUIET_SECONDS = 2
QUIET_TIMEOUT_S = 15.0
#: Exit status when --max-minutes stopped the run with runs left (a chunked recording loops on it).
EXIT_INCOMPLETE = 3


class Interrupted(Exception):
    """Raised by the command's signal handler (SIGTERM, SIGINT): stop, keep the rows measured so far."""


def node_state(vectors) -> dict:
    """Median of each metric over the state vectors; measured only where every vector measured it."""
    values, mask, reasons = [], [], {}
    for m in METRICS:
        got = [v.values[m.index] for v in vectors if v.available[m.index]]
        ok = len(got) == len(vectors) and bool(got)
        values.append(float(statistics.median(got)) if ok else None)
        mask.append(ok)
        if not ok:
            reasons[m.name] = next((v.missing_reasons[m.name] for v in vectors if not v.available[m.index]), "missing")
    samples = [[v.values[i] if v.available[i] else None for i in range(NUM_METRICS)] for v in vectors]
    return {"values": values, "mask": mask, "missing_reasons": reasons, "samples": samples}


class Calibration:
    """The session over ``out``: :meth:`run` measures what the plan still lacks, then :meth:`finish`."""

    def __init__(self, out: Path, plan: dict, progress: bool, quiet_wait: bool, max_minutes: float | None):
        self.out, self.plan = out, plan
        self.rows_path = out / ROWS_FILE
        self.progress, self.quiet_wait, self.max_minutes = progress, quiet_wait, max_minutes
        self.cores = os.cpu_count() or 1
        self.profiles = [Profile.parse(p) for p in plan["victims"]]
        self.rows = load_rows(self.rows_path, repair=True)
        self.done = {r["key"] for r in self.rows if r["status"] == "ok"}
        self.alone = {}  # profile -> (key, victim result) of its latest alone run
        for r in sorted(self.rows, key=lambda r: r.get("measured_at") or ""):
            if r["config"] == ant.ALONE.name and r["status"] == "ok":
                self.alone[r["profile"]] = (r["key"], r["victim"])
        self.hierarchy = None
        self.groups: dict[Profile, cgroups.VictimGroup] = {}
        #: Profiles whose victims run with the idle vCPUs kept awake (the plan's ``idle_pollers``).
        self.polled = frozenset(plan.get("idle_pollers") or ())
        self.pm_qos: keep_awake.PmQosRequest | None = None

    def pending(self, rep: int, slot: int, config: ant.Antagonist) -> list[Profile]:
        return [p for p in self.profiles if row_key(rep, config.name, p.annotation, slot) not in self.done]

    def run(self) -> int:
        todo = [(rep, slot, c, self.pending(rep, slot, c)) for rep, slot, c in schedule(self.plan)]
        todo = [t for t in todo if t[3]]
        total = sum(len(t[3]) for t in todo)
        if not todo:
            print(f"{self.rows_path}: all {len(self.done)} runs already measured; nothing to do")
            return 0
        binaries = sorted(
            {b for v in drivers.make_victims(self.profiles).values() for b in v.binaries}
            | ({ant.STRESS_NG} if any(t[2].workers for t in todo) else set())
        )
        drivers.require(binaries)
        if any(t[2].needs_cgroup for t in todo):
            self.hierarchy = cgroups.detect()
            stale = cgroups.remove_stale(self.hierarchy)
            if stale:
                log.warning(
                    "removed %d antagonist cgroups a killed calibration left behind: %s", len(stale), ", ".join(stale)
                )

        from agent.collect import NodeCollector  # the agent's own collectors
        from agent.collectors import default_collectors

        collector = NodeCollector("calibration", default_collectors())
        collector.collect()
        bar = progress_bar(total, self.progress)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="ka-calibrate-", dir="/var/tmp"))
        victims = drivers.make_victims(self.profiles, self.plan.get("latency_critical_load"))
        try:
            if "machine" not in self.plan:
                self.plan["machine"] = machine_facts()
            if self.plan.get("pm_qos_request_us") is not None:
                self.pm_qos = keep_awake.PmQosRequest(int(self.plan["pm_qos_request_us"]))
                self.plan["pm_qos"] = self.pm_qos.describe()
            if self.plan.get("victim_cgroups"):
                _, v2_root = cgroup_v2_root()
                try:
                    for profile, v in victims.items():
                        self.groups[profile] = v.group = cgroups.VictimGroup(profile.annotation, v2_root)
                except cgroups.CgroupError as err:
                    log.warning("%s; rows will carry no victim_cgroup figures", err)
            self._quiet(collector)
            for v in victims.values():
                v.start(work, self.plan["run_seconds"])
            write_plan(self.out, self.plan)
            for rep, slot, config, profiles in todo:
                if self.max_minutes is not None and time.monotonic() - started > self.max_minutes * 60:
                    print(
                        f"stopped after --max-minutes {self.max_minutes:g}; {bar.total - bar.n} runs left — "
                        "rerun the same command to resume",
                        file=sys.stderr,
                    )
                    return EXIT_INCOMPLETE
                quiet = self._quiet(collector) if config is ant.ALONE else None
                self._config(collector, victims, work, rep, slot, config, profiles, bar, quiet)
        except Interrupted:
            print("interrupted; rows measured so far are kept — rerun the same command to resume", file=sys.stderr)
            return 130
        finally:
            bar.close()
            for v in victims.values():
                v.stop()
            for g in self.groups.values():
                try:
                    g.remove()
                except cgroups.CgroupError as err:
                    log.warning("%s", err)
            if self.pm_qos is not None:
                self.pm_qos.close()
            shutil.rmtree(work, ignore_errors=True)
            if self.hierarchy is not None:
                try:
                    self.hierarchy.parent.rmdir()  # empty once every antagonist stopped
                except OSError:
                    pass
            self.finish()
        return 0

    def finish(self) -> None:
        rows = load_rows(self.rows_path, repair=False)
        write_summary(self.out, summarise(rows, self.plan))

    def _quiet(self, collector) -> bool | None:
        """Wait for a quiet machine (at most QUIET_TIMEOUT_S); whether it was quiet (None: not checked)."""
        if not self.quiet_wait:
            return None
        deadline, calm = time.monotonic() + QUIET_TIMEOUT_S, 0
        while time.monotonic() < deadline and calm < QUIET_SECONDS:
            time.sleep(1.0)
            v = collector.collect()
            psi = [v.values[i] for i in (2, 3, 4) if v.available[i]]
            cpu = v.values[0] if v.available[0] else 0.0
            calm = calm + 1 if cpu < QUIET_CPU and max(psi, default=0.0) < QUIET_PSI else 0
        if calm < QUIET_SECONDS:
            log.warning(
                "machine not quiet after %.0f s (CPU or PSI above %.0f%%/%.0f%%); measuring anyway",
                QUIET_TIMEOUT_S,
                QUIET_CPU * 100,
                QUIET_PSI * 100,
            )
        return calm >= QUIET_SECONDS

    def _config(self, collector, victims, work, rep, slot, config, profiles, bar, quiet) -> None:
        p = self.plan
        victim_timeout = max(MIN_VICTIM_TIMEOUT_S, VICTIM_TIMEOUT_FACTOR * p["run_seconds"])
        budget = p["warmup_seconds"] + p["state_seconds"] + len(profiles) * (victim_timeout + 5)
        bar.set_description(f"r{rep} {config.name}")
        with ant.RunningAntagonist(config, work, budget, self.hierarchy) as running:
            end = time.monotonic() + p["warmup_seconds"]
            while time.monotonic() < end:
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
                collector.collect()  # keep rate and histogram baselines fresh; discarded
            collector.collect()
            vectors = []
            for _ in range(int(p["state_seconds"])):
                time.sleep(1.0)
                vectors.append(collector.collect())
            problem = running.failed()
            state = node_state(vectors)
            antagonist = {
                "kind": config.kind,
                "command": config.describe(),
                "workers": config.workers,
                "cpu_load": config.cpu_load,
                "quota_pct": config.quota_pct,
                "cgroup_limit": running.limit,
                "intensity": config.intensity(self.cores),
            }
            if config is ant.ALONE:
                antagonist["quiet_before"] = quiet
            for profile in profiles:
                throttled = running.throttling()
                with keep_awake.IdlePollers(self.cores if profile.annotation in self.polled else 0):
                    row = self._measure(
                        victims[profile], profile, rep, slot, config, antagonist, state, victim_timeout, problem
                    )
                after = running.throttling()
                if throttled and after and after["nr_periods"] > throttled["nr_periods"]:
                    # CFS periods in which the antagonist ran out of quota while this victim ran.
                    row["antagonist_throttled_ratio"] = round(
                        (after["nr_throttled"] - throttled["nr_throttled"])
                        / (after["nr_periods"] - throttled["nr_periods"]),
                        4,
                    )
                self._append(row)
                bar.update(1)
                problem = problem or running.failed()

    def _measure(self, victim, profile, rep, slot, config, antagonist, state, timeout_s, problem) -> dict:
        key = row_key(rep, config.name, profile.annotation, slot)
        row = {
            "kind": ROW_KIND,
            "schema_version": schema.SCHEMA_VERSION,
            "key": key,
            "rep": rep,
            "config": config.name,
            **({"alone_slot": slot} if config is ant.ALONE else {}),
            "antagonist": antagonist,
            "profile": profile.annotation,
            "cores": self.cores,
            "hostname": socket.gethostname(),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **state,
        }
        if problem:
            return {
                **row,
                "status": "antagonist-failed",
                "error": problem,
                "victim": None,
                "slowdown_p99": None,
                "slowdown_p50": None,
            }
        group = self.groups.get(profile)
        before, t0 = (group.snapshot() if group else None), time.monotonic()
        try:
            result = victim.run(self.plan["run_seconds"], timeout_s)
        except drivers.VictimError as err:
            log.warning("%s: %s", key, err)
            return {
                **row,
                "status": "victim-failed",
                "error": str(err),
                "victim": None,
                "slowdown_p99": None,
                "slowdown_p50": None,
            }
        if group is not None:
            # The victim's own stalls over its run: what per-pod interference signals are checked against.
            row["victim_cgroup"] = cgroups.delta(before, group.snapshot(), time.monotonic() - t0)
        row["victim_conditions"] = {
            "idle_pollers": profile.annotation in self.polled,
            "pm_qos_held": bool(self.pm_qos and self.pm_qos.held),
        }
        if config is ant.ALONE:
            self.alone[profile.annotation] = (key, result)
        alone_key, alone = self.alone.get(profile.annotation, (None, None))
        sd99 = result["p99_ms"] / alone["p99_ms"] if alone and alone["p99_ms"] > 0 else None
        sd50 = result["p50_ms"] / alone["p50_ms"] if alone and alone["p50_ms"] > 0 else None
        return {
            **row,
            "status": "ok",
            "victim": result,
            "alone_key": alone_key,
            "alone_p99_ms": alone["p99_ms"] if alone else None,
            "alone_p50_ms": alone["p50_ms"] if alone else None,
            "slowdown_p99": sd99,
            "slowdown_p50": sd50,
        }

    def _append(self, row: dict) -> None:
        with open(self.rows_path, "a") as f:
            f.write(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if row["status"] == "ok":
            self.done.add(row["key"])
