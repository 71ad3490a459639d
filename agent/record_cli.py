"""``kubeattention record``: measure this machine and write the vectors to a JSONL file.

The file starts with a header (label, note, host, kernel, CPUs, start time, versions) and
holds one ``NodeVector.to_json()`` per line - the format replay agents play. The
collectors are the agent's own, so a recording shows exactly what an agent would push.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import statistics
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collect import NodeCollector
from agent.collectors import default_collectors
from agent.config import (
    DEFAULT_INTERVAL_S,
    DEFAULT_PROC_ROOT,
    DEFAULT_SYS_ROOT,
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    ConfigError,
    default_node_name,
    node_name_problem,
)
from agent.recording_file import make_header, write_line
from agent.vector import NodeVector
from wire.schema import METRICS

log = logging.getLogger("agent.record_cli")

DEFAULT_WARMUP_S = 0.0
MAX_DURATION_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class RecordConfig:
    out: Path
    duration_s: float
    interval_s: float = DEFAULT_INTERVAL_S
    warmup_s: float = DEFAULT_WARMUP_S
    label: str = ""
    note: str = ""
    node_name: str = "recorded-node"
    proc_root: Path = Path(DEFAULT_PROC_ROOT)
    sys_root: Path = Path(DEFAULT_SYS_ROOT)
    cgroup_root: Path | None = None

    def __post_init__(self) -> None:
        errors = []
        if not (math.isfinite(self.duration_s) and 0 < self.duration_s <= MAX_DURATION_S):
            errors.append(f"--duration: must be > 0 and at most {MAX_DURATION_S:g} seconds, got {self.duration_s!r}")
        if not (math.isfinite(self.interval_s) and MIN_INTERVAL_S <= self.interval_s <= MAX_INTERVAL_S):
            errors.append(
                f"--interval: must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds, "
                f"got {self.interval_s!r}"
            )
        if not (math.isfinite(self.warmup_s) and self.warmup_s >= 0):
            errors.append(f"--warmup: must be >= 0 seconds, got {self.warmup_s!r}")
        if (problem := node_name_problem(self.node_name)) is not None:
            errors.append(f"--node-name: {problem}")
        if not self.out.parent.is_dir():
            errors.append(f"--out: directory {str(self.out.parent)!r} does not exist")
        for flag, path in (("--proc-root", self.proc_root), ("--sys-root", self.sys_root)):
            if not path.is_dir():
                errors.append(f"{flag}: no such directory {str(path)!r}")
        if errors:
            raise ConfigError(errors)

    @property
    def count(self) -> int:
        """Number of vectors to write."""
        return max(1, round(self.duration_s / self.interval_s))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="FILE", help="JSONL file to write (overwritten)")
    parser.add_argument(
        "--duration",
        type=float,
        required=True,
        metavar="SECONDS",
        help="how long to record (duration / interval vectors are written)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help=f"collection interval (default: {DEFAULT_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=DEFAULT_WARMUP_S,
        metavar="SECONDS",
        help="collect but do not write for this long first, e.g. while an antagonist ramps up "
        "and PSI's 10 s average catches up (default: 0)",
    )
    parser.add_argument("--label", default="", metavar="NAME", help="state name stored in the header, e.g. quiet")
    parser.add_argument(
        "--note", default="", metavar="TEXT", help="free text stored in the header, e.g. the antagonist"
    )
    parser.add_argument(
        "--node-name",
        default=None,
        metavar="NAME",
        help="node name in the vectors (default: $NODE_NAME, else the hostname)",
    )
    parser.add_argument(
        "--proc-root", default=DEFAULT_PROC_ROOT, metavar="DIR", help=f"procfs mount (default: {DEFAULT_PROC_ROOT})"
    )
    parser.add_argument(
        "--sys-root", default=DEFAULT_SYS_ROOT, metavar="DIR", help=f"sysfs mount (default: {DEFAULT_SYS_ROOT})"
    )
    parser.add_argument(
        "--cgroup-root",
        default=None,
        metavar="DIR",
        help="Kubernetes pod cgroup root (default: auto-detect, as the agent does)",
    )


def record(config: RecordConfig, stop: threading.Event, clock: Clock = SYSTEM_CLOCK) -> list[NodeVector]:
    """Write the header and ``config.count`` vectors; returns the vectors written."""
    collector = NodeCollector(
        config.node_name, default_collectors(config.proc_root, config.sys_root, config.cgroup_root, clock), clock
    )
    collector.collect()  # baseline for rates
    if config.warmup_s and stop.wait(config.warmup_s):
        return []
    header = make_header(
        label=config.label, note=config.note, interval_s=config.interval_s, started_at_ms=clock.wall_ms()
    )
    written: list[NodeVector] = []
    with open(config.out, "w") as out:
        write_line(out, header)
        next_at = clock.monotonic() + config.interval_s
        while len(written) < config.count and not stop.wait(max(next_at - clock.monotonic(), 0.0)):
            vector = collector.collect()
            write_line(out, vector.to_json())
            written.append(vector)
            next_at += config.interval_s
    return written


def summary(vectors: list[NodeVector]) -> str:
    """Median of each measured metric, one per line."""
    lines = []
    for m in METRICS:
        values = [v.values[m.index] for v in vectors if v.available[m.index]]
        if values:
            lines.append(f"  {m.name:32s} median {statistics.median(values):.4g} {m.unit}")
        elif vectors:
            lines.append(f"  {m.name:32s} missing: {vectors[-1].missing_reasons[m.name]}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        config = RecordConfig(
            out=Path(args.out),
            duration_s=args.duration,
            interval_s=args.interval,
            warmup_s=args.warmup,
            label=args.label,
            note=args.note,
            node_name=args.node_name if args.node_name is not None else default_node_name(os.environ),
            proc_root=Path(args.proc_root),
            sys_root=Path(args.sys_root),
            cgroup_root=Path(args.cgroup_root) if args.cgroup_root else None,
        )
    except ConfigError as err:
        print("kubeattention record: invalid configuration:", file=sys.stderr)
        for line in err.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info(
            "recording %d vectors every %g s to %s (warm-up %g s)",
            config.count,
            config.interval_s,
            config.out,
            config.warmup_s,
        )
        vectors = record(config, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    interrupted = " (interrupted)" if stop.is_set() else ""
    print(f"wrote {len(vectors)} vectors to {config.out}{interrupted}\n{summary(vectors)}")
    return 0
