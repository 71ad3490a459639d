"""A calibration's plan: its parameters, kept in ``DIR/plan.json``, and the measuring order they give.

The plan is made from the flags of a fresh directory and read back on resume (flags other
than a larger ``--repeats`` are then ignored, so a resumed directory measures what it
started with). :func:`schedule` turns it into the order of runs: per repetition, the
antagonist configurations in a seeded random order, so no configuration always follows
the same neighbour, with the ``none`` configuration (victims alone) first, after every
``alone_every`` configurations and last. :func:`row_key` names each measured row.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np

from contention_lab import antagonists as ant
from contention_lab import drivers
from scorer.calibration.rows import CalibrationError
from scorer.flags import parse_names
from wire.schema import Profile

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
DEFAULT_RUN_S = 5.0
#: PSI avg10 is a 10-s moving average: give it most of that to forget the previous configuration.
DEFAULT_WARMUP_S = 8.0
DEFAULT_STATE_S = 3.0
DEFAULT_REPEATS = 3
DEFAULT_SEED = 0
#: A 'none' configuration (victims alone) after every this many antagonist configurations.
DEFAULT_ALONE_EVERY = 10


def load_or_make(args: argparse.Namespace, out: Path) -> dict:
    """The run's parameters: from ``out/plan.json`` when resuming, else from the flags.

    Raises CalibrationError for an unreadable plan or a bad flag, FlagError for an unknown
    victim or antagonist.
    """
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
            write(out, plan)
        return plan
    repeats = DEFAULT_REPEATS if args.repeats is None else args.repeats
    profiles = parse_names(args.victims, [p.annotation for p in Profile], "--victims")
    configs = [ant.BY_NAME[a] for a in parse_names(args.antagonists, ant.BY_NAME, "--antagonists")]
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
        "victims": profiles,
        "antagonists": [a.name for a in configs],
        "repeats": repeats,
        "run_seconds": args.run_seconds,
        "warmup_seconds": args.warmup_seconds,
        "state_seconds": args.state_seconds,
        "alone_every": args.alone_every,
        "seed": args.seed,
        # Victim conditions, the same for alone and contended runs (contention_lab.keep_awake).
        "pm_qos_request_us": 0,
        # Only victims that sleep between requests meet halted vCPUs; CPU-bound victims never
        # idle, and fio's completions were slower beside spinners (scorer/data/idle-exits/).
        "idle_pollers": [] if getattr(args, "no_idle_pollers", False) else [Profile.LATENCY_CRITICAL.annotation],
        "latency_critical_load": {"rate_per_s": drivers.REDIS_RATE_PER_S, "connections": drivers.REDIS_CONNECTIONS},
        "victim_cgroups": True,
    }


def write(out: Path, plan: dict) -> None:
    (out / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")


def schedule(plan: dict) -> list[tuple[int, int, ant.Antagonist]]:
    """(repetition, alone slot (0 for antagonists), configuration) in measuring order."""
    configs = [ant.BY_NAME[a] for a in plan["antagonists"]]
    order = []
    every = int(plan.get("alone_every") or 10**9)
    for rep in range(1, plan["repeats"] + 1):
        rest = [c for c in configs if c is not ant.ALONE]
        rng = np.random.default_rng([plan["seed"], rep])
        order.append((rep, 0, ant.ALONE))
        slot = 0
        for k, i in enumerate(rng.permutation(len(rest)), 1):
            order.append((rep, 0, rest[i]))
            if k % every == 0 or k == len(rest):
                slot += 1
                order.append((rep, slot, ant.ALONE))
    return order


def row_key(rep: int, config: str, profile: str, slot: int = 0) -> str:
    """``r1/cpu-q25/batch``; the alone runs after the first of a repetition are ``r1/none.2/batch`` etc."""
    return f"r{rep}/{config}.{slot}/{profile}" if slot else f"r{rep}/{config}/{profile}"
