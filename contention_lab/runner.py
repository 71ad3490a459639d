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

The plan and its measuring order are ``contention_lab.plan``, the measuring itself
``contention_lab.session``; this module is the command.
"""

from __future__ import annotations

import argparse
import platform
import signal
import sys
from pathlib import Path

from contention_lab import antagonists as ant
from contention_lab import cgroups, drivers
from contention_lab.plan import (
    DEFAULT_ALONE_EVERY,
    DEFAULT_REPEATS,
    DEFAULT_RUN_S,
    DEFAULT_SEED,
    DEFAULT_STATE_S,
    DEFAULT_WARMUP_S,
    PLAN_FILE,
)
from contention_lab.plan import load_or_make as load_or_make_plan
from contention_lab.session import EXIT_INCOMPLETE, Calibration, Interrupted
from scorer.calibration.rows import ROWS_FILE, CalibrationError
from scorer.flags import FlagError
from wire.schema import Profile


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
    parser.add_argument(
        "--no-idle-pollers",
        action="store_true",
        help="let idle vCPUs halt while the latency-critical victim runs (by default one SCHED_IDLE spinner "
        "per CPU keeps them awake during its every run, alone and contended; contention_lab.keep_awake)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        plan = load_or_make_plan(args, out)
        cal = Calibration(
            out, plan, progress=not args.no_progress, quiet_wait=not args.no_quiet_wait, max_minutes=args.max_minutes
        )
    except (CalibrationError, FlagError, OSError) as err:
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
