"""How much of a latency-critical victim's p99 alone is idle vCPUs waking up: a recorded experiment.

``python -m contention_lab.idle_exits --out scorer/data/idle-exits`` measures two
latency-critical victims — the calibration's (redis-server under ``ka-loadgen``'s open-loop
5 000 GETs/s) and the closed-loop one it replaced (``redis-benchmark -c 1``, one request in
flight) — alone and beside two unlimited stress-ng CPU hogs, under four conditions:

* ``plain``: nothing held;
* ``pm-qos``: a PM QoS request of 0 µs on ``/dev/cpu_dma_latency`` (tuned's latency-performance);
* ``pollers``: one SCHED_IDLE spinner per CPU (the user-space ``idle=poll``);
* ``pm-qos+pollers``: both, as calibration runs its victims.

Each (victim, neighbour, condition) is run ``--runs`` times for ``--seconds``; the
conditions are interleaved run by run so a drift of the machine touches them alike. It writes
``idle-exits.json`` (every run) and ``README.md`` (the medians, and the share of the alone
p99 that the pollers removed). The neighbour-free rows are what matter: the part of the
alone p99 that keeping the vCPUs awake removes is the part that was idle exits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from contention_lab import drivers, keep_awake

CONDITIONS = ("plain", "pm-qos", "pollers", "pm-qos+pollers")
NEIGHBOURS = {"alone": None, "cpu-hogs": ["stress-ng", "--cpu", "0"]}


def _closed_loop(port: int, seconds: float) -> dict:
    n = int(20_000 * seconds)  # ~20 000 GET/s here with one client
    out = subprocess.run(
        [
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            "get",
            "-n",
            str(n),
            "-c",
            "1",
            "-d",
            "64",
            "--csv",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    f = [x.strip('"') for x in [ln for ln in out.splitlines() if ln.startswith('"GET"')][-1].split(",")]
    return {"p50_ms": float(f[4]), "p99_ms": float(f[6]), "rps": float(f[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    drivers.require(["redis-server", "redis-benchmark", "stress-ng", drivers.LOADGEN])
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ka-idle-exits-"))
    open_loop = drivers.RedisVictim()
    open_loop.start(work, args.seconds)
    runs = []
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        for neighbour, cmd in NEIGHBOURS.items():
            hog = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if cmd else None
            try:
                time.sleep(2.0 if hog else 0.5)
                for run in range(1, args.runs + 1):
                    for condition in CONDITIONS:
                        with ExitStack() as stack:
                            pm = None
                            if "pm-qos" in condition:
                                pm = stack.enter_context(keep_awake.PmQosRequest(0))
                            if "pollers" in condition:
                                stack.enter_context(keep_awake.IdlePollers())
                            time.sleep(0.3)
                            for victim in ("open-loop", "closed-loop"):
                                r = (
                                    open_loop.run(args.seconds, 60)
                                    if victim == "open-loop"
                                    else _closed_loop(open_loop.port, args.seconds)
                                )
                                runs.append(
                                    {
                                        "victim": victim,
                                        "neighbour": neighbour,
                                        "condition": condition,
                                        "run": run,
                                        "p50_ms": r["p50_ms"],
                                        "p99_ms": r["p99_ms"],
                                        "pm_qos": pm.describe() if pm else None,
                                    }
                                )
                                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
            finally:
                if hog:
                    hog.kill()
                    hog.wait()
    finally:
        open_loop.stop()
    med = {}
    for r in runs:
        med.setdefault((r["victim"], r["neighbour"], r["condition"]), []).append(r)
    summary = {
        f"{v}/{n}/{c}": {
            "p50_ms": statistics.median(x["p50_ms"] for x in rs),
            "p99_ms": statistics.median(x["p99_ms"] for x in rs),
            "p99_ms_range": [min(x["p99_ms"] for x in rs), max(x["p99_ms"] for x in rs)],
        }
        for (v, n, c), rs in med.items()
    }
    doc = {
        "kind": "kubeattention.idle-exits",
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "hostname": socket.gethostname(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "cpuidle_driver": keep_awake.cpuidle_driver(),
        },
        "runs_per_cell": args.runs,
        "seconds_per_run": args.seconds,
        "open_loop": open_loop.describe(),
        "closed_loop": "redis-benchmark -t get -c 1 -d 64",
        "summary": summary,
        "runs": runs,
    }
    (args.out / "idle-exits.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [
        "# Idle exits in the latency-critical victim's p99 (recorded experiment)",
        "",
        f"`python -m contention_lab.idle_exits --out {args.out} --runs {args.runs} --seconds {args.seconds:g}`, "
        f"{started} – {doc['finished']} UTC on {doc['machine']['hostname']} ({os.cpu_count()} vCPUs, kernel "
        f"{platform.release()}, cpuidle driver `{doc['machine']['cpuidle_driver']}`). Medians over {args.runs} runs "
        "of each cell (range of the p99 in brackets), conditions interleaved run by run.",
        "",
        "| victim | neighbour | condition | p50 ms | p99 ms (range) |",
        "|---|---|---|---:|---:|",
    ]
    for key, s in summary.items():
        v, n, c = key.split("/")
        lines.append(
            f"| {v} | {n} | {c} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} "
            f"({s['p99_ms_range'][0]:.3f}–{s['p99_ms_range'][1]:.3f}) |"
        )
    lines += ["", "Share of the alone p99 that keeping the vCPUs awake removed (idle exits):", ""]
    for v in ("open-loop", "closed-loop"):
        plain = summary[f"{v}/alone/plain"]["p99_ms"]
        for c in CONDITIONS[1:]:
            kept = summary[f"{v}/alone/{c}"]["p99_ms"]
            lines.append(f"* {v}, {c}: {plain:.3f} → {kept:.3f} ms, {100 * (1 - kept / plain):.0f} % of the alone p99")
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print((args.out / "README.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
