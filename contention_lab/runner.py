"""``kubeattention calibrate --out DIR``: measure real slowdowns beside real antagonists.

For each repetition, for each antagonist configuration (``contention_lab.antagonists``:
an intensity ladder of CPU quotas per kind) in a seeded random order, so no configuration
always follows the same neighbour — with the ``none`` configuration (victims alone, after
waiting up to ``QUIET_TIMEOUT_S`` for the machine to be quiet) first, after every
``--alone-every`` configurations and last, so every row has an alone measurement close in
time:

1. start the antagonist (stress-ng with a hard ``--timeout``, in its own cgroup with the
   configuration's CPU quota; the cgroup is removed when it stops, also on Ctrl-C or a
   timeout, and leftovers of a killed run are removed at the next start);
2. **warm up** ``--warmup-seconds`` while the agent's collectors run (discarded);
3. **measure the node state**: ``--state-seconds`` vectors at 1 s from the agent's own
   collectors (``agent.collectors.default_collectors``: eBPF, PSI, /proc — exactly what an
   agent here would push), before any victim runs, as a scheduler would see the node;
4. run each profile's **victim** (``contention_lab.drivers``) for ``--run-seconds``,
   bounded by a hard timeout, beside the antagonist, and write one JSONL row per
   (node state, victim profile) to ``DIR/calibration.jsonl`` as soon as it is measured;
5. stop the antagonist.

The slowdown of a row is ``p99 / p99 alone`` (and the same for p50), where "alone" is the
victim's latest ``none`` run before it (``alone_key`` in the row). Training and evaluation
use the median of all alone runs instead (``scorer.calibration.data``).

Resumable: rows already in ``calibration.jsonl`` are skipped (keyed by repetition,
configuration and profile); a half-written last line is dropped and re-measured. The
run's parameters are kept in ``DIR/plan.json`` and reused on resume; a ``--repeats`` above
the plan's extends it (more repetitions of the same matrix, each in its own seeded order). ``--max-minutes``
stops starting new configurations after that long, so a long calibration can run in
several bounded chunks. ``DIR/summary.json`` and ``DIR/summary.md`` are rewritten at the
end of every invocation.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from contention_lab import antagonists as ant
from contention_lab import cgroups, drivers
from scorer.calibration.rows import ROW_KIND, CalibrationError, load_rows, summarise, write_summary
from wire import schema
from wire.schema import METRICS, NUM_METRICS, Profile

log = logging.getLogger("scorer.calibrate")

ROWS_FILE = "calibration.jsonl"
PLAN_FILE = "plan.json"
DEFAULT_RUN_S = 5.0
#: PSI avg10 is a 10-s moving average: give it most of that to forget the previous configuration.
DEFAULT_WARMUP_S = 8.0
DEFAULT_STATE_S = 3.0
DEFAULT_REPEATS = 3
DEFAULT_SEED = 0
#: A 'none' configuration (victims alone) after every this many antagonist configurations.
DEFAULT_ALONE_EVERY = 10
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
    pass


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help=f"output directory: {ROWS_FILE} (rows), {PLAN_FILE}, summary.json, summary.md; "
        "an existing directory is resumed",
    )
    parser.add_argument(
        "--victims",
        default=",".join(p.annotation for p in Profile),
        metavar="LIST",
        help="comma-separated workload profiles to measure (default: all five)",
    )
    parser.add_argument(
        "--antagonists",
        default=",".join(a.name for a in ant.CONFIGS),
        metavar="LIST",
        help="comma-separated antagonist configurations ('none' is always included; "
        f"default: all {len(ant.CONFIGS)}: {', '.join(a.name for a in ant.CONFIGS)})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"repetitions of the whole matrix (default: {DEFAULT_REPEATS}); on resume, a number "
        "above the plan's adds repetitions to the directory",
    )
    parser.add_argument(
        "--run-seconds", type=float, default=DEFAULT_RUN_S, help=f"each victim run (default: {DEFAULT_RUN_S:g})"
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=DEFAULT_WARMUP_S,
        help=f"antagonist warm-up before the node state is measured (default: {DEFAULT_WARMUP_S:g})",
    )
    parser.add_argument(
        "--state-seconds",
        type=float,
        default=DEFAULT_STATE_S,
        help=f"node-state vectors at 1 s per configuration (default: {DEFAULT_STATE_S:g})",
    )
    parser.add_argument(
        "--alone-every",
        type=int,
        default=DEFAULT_ALONE_EVERY,
        metavar="N",
        help="measure the victims alone again after every N configurations and at the end of each "
        f"repetition (default: {DEFAULT_ALONE_EVERY})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="configuration order seed (default: 0)")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no new configuration after this many minutes and exit with status "
        f"{EXIT_INCOMPLETE} if runs are left; rerun to resume (default: none)",
    )
    parser.add_argument(
        "--no-quiet-wait",
        action="store_true",
        help="do not wait for the machine to be quiet before the 'none' configuration",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_list(text: str, known: dict, what: str) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in known]
    if unknown:
        raise CalibrationError(
            f"--{what}: unknown {', '.join(map(repr, unknown))}; expected some of {', '.join(known)}"
        )
    if not items:
        raise CalibrationError(f"--{what}: empty list")
    return [known[t] for t in dict.fromkeys(items)]


def _plan(args: argparse.Namespace, out: Path) -> dict:
    """The run's parameters: from plan.json when resuming, else from the flags."""
    path = out / PLAN_FILE
    if path.exists():
        try:
            plan = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CalibrationError(f"{path}: not JSON ({err.msg}); delete it to start this directory afresh") from None
        log.info("resuming %s with its plan (%s)", out, path)
        if args.repeats is not None and args.repeats != plan.get("repeats"):
            if args.repeats < plan.get("repeats", 0):
                raise CalibrationError(
                    f"--repeats: {path} plans {plan['repeats']} repetitions; a resumed directory "
                    f"can gain repetitions but not lose them (got {args.repeats})"
                )
            log.info("adding repetitions: %d -> %d", plan["repeats"], args.repeats)
            plan["repeats"] = args.repeats
            path.write_text(json.dumps(plan, indent=2) + "\n")
        return plan
    repeats = DEFAULT_REPEATS if args.repeats is None else args.repeats
    profiles = _parse_list(args.victims, {p.annotation: p for p in Profile}, "victims")
    configs = _parse_list(args.antagonists, ant.BY_NAME, "antagonists")
    if ant.ALONE not in configs:
        configs.insert(0, ant.ALONE)
    for flag, value, lo in (
        ("--run-seconds", args.run_seconds, 0.5),
        ("--warmup-seconds", args.warmup_seconds, 0),
        ("--state-seconds", args.state_seconds, 1),
        ("--repeats", repeats, 1),
        ("--alone-every", args.alone_every, 1),
    ):
        if not (math.isfinite(value) and value >= lo):
            raise CalibrationError(f"{flag}: must be >= {lo:g}, got {value!r}")
    return {
        "victims": [p.annotation for p in profiles],
        "antagonists": [a.name for a in configs],
        "repeats": repeats,
        "run_seconds": args.run_seconds,
        "warmup_seconds": args.warmup_seconds,
        "state_seconds": args.state_seconds,
        "alone_every": args.alone_every,
        "seed": args.seed,
        "redis_requests": None,
    }


def _row_key(rep: int, config: str, profile: str, slot: int = 0) -> str:
    """``r1/cpu-q25/batch``; the alone runs after the first of a repetition are ``r1/none.2/batch`` etc."""
    return f"r{rep}/{config}.{slot}/{profile}" if slot else f"r{rep}/{config}/{profile}"


def _node_state(vectors) -> dict:
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
    def __init__(self, out: Path, plan: dict, progress: bool, quiet_wait: bool, max_minutes: float | None):
        self.out, self.plan = out, plan
        self.rows_path = out / ROWS_FILE
        self.progress, self.quiet_wait, self.max_minutes = progress, quiet_wait, max_minutes
        self.cores = os.cpu_count() or 1
        self.profiles = [Profile.parse(p) for p in plan["victims"]]
        self.configs = [ant.BY_NAME[a] for a in plan["antagonists"]]
        self.rows = load_rows(self.rows_path, repair=True)
        self.done = {r["key"] for r in self.rows if r["status"] == "ok"}
        self.alone = {}  # profile -> (key, victim result) of its latest alone run
        for r in sorted(self.rows, key=lambda r: r.get("measured_at") or ""):
            if r["config"] == ant.ALONE.name and r["status"] == "ok":
                self.alone[r["profile"]] = (r["key"], r["victim"])
        self.hierarchy = None

    def schedule(self) -> list[tuple[int, int, ant.Antagonist]]:
        """(repetition, alone slot (0 for antagonists), configuration) in measuring order."""
        order = []
        every = int(self.plan.get("alone_every") or 10**9)
        for rep in range(1, self.plan["repeats"] + 1):
            rest = [c for c in self.configs if c is not ant.ALONE]
            rng = np.random.default_rng([self.plan["seed"], rep])
            order.append((rep, 0, ant.ALONE))
            slot = 0
            for k, i in enumerate(rng.permutation(len(rest)), 1):
                order.append((rep, 0, rest[i]))
                if k % every == 0 or k == len(rest):
                    slot += 1
                    order.append((rep, slot, ant.ALONE))
        return order

    def pending(self, rep: int, slot: int, config: ant.Antagonist) -> list[Profile]:
        return [p for p in self.profiles if _row_key(rep, config.name, p.annotation, slot) not in self.done]

    def run(self) -> int:
        todo = [(rep, slot, c, self.pending(rep, slot, c)) for rep, slot, c in self.schedule()]
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
        if any(t[2].quota_pct is not None for t in todo):
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
        bar = _progress(total, self.progress, initial=0)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="ka-calibrate-", dir="/var/tmp"))
        victims = drivers.make_victims(self.profiles, self.plan.get("redis_requests"))
        try:
            self._quiet(collector)
            for v in victims.values():
                v.start(work, self.plan["run_seconds"])
            redis = victims.get(Profile.LATENCY_CRITICAL)
            if redis is not None and self.plan.get("redis_requests") is None:
                self.plan["redis_requests"] = redis.requests
            (self.out / PLAN_FILE).write_text(json.dumps(self.plan, indent=2) + "\n")
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
            state = _node_state(vectors)
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
        key = _row_key(rep, config.name, profile.annotation, slot)
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


class _NoBar:
    total = n = 0

    def __init__(self, total):
        self.total = total

    def update(self, k):
        self.n += k

    def set_description(self, _):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool, initial: int):
    if not enabled:
        return _NoBar(total)
    try:
        from tqdm import tqdm
    except ImportError:  # the train extra brings tqdm; without it, measure without a bar
        log.warning("no progress bar: tqdm is not installed (pip install -e '.[train]')")
        return _NoBar(total)

    return tqdm(total=total, initial=initial, unit="run", dynamic_ncols=True)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        plan = _plan(args, out)
        cal = Calibration(
            out, plan, progress=not args.no_progress, quiet_wait=not args.no_quiet_wait, max_minutes=args.max_minutes
        )
    except (CalibrationError, OSError) as err:
        print(f"kubeattention calibrate: {err}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = cal.run()
    except (drivers.MissingBinary, cgroups.CgroupError) as err:
        print(f"kubeattention calibrate: {err}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"{cal.rows_path}: {len(cal.done)} runs measured; summary in {out / 'summary.md'}")
    print(f"machine: {platform.node()}, {cal.cores} CPUs, kernel {platform.release()}")
    return code
