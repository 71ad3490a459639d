#!/usr/bin/env python3
"""What the aggregator and Redis need, for the requests and limits in deploy/ ("Sizing").

Starts redis-server and the aggregator (bench/stack.py) and measures, in one run:

* aggregator RSS idle, then after ``--rounds`` rounds of pushes for ``--nodes`` nodes;
* aggregator CPU (% of one core) while answering BatchScore for 1 000 nodes back to back
  (``--scores`` calls), and its RSS after;
* Redis ``used_memory`` per node with a full history: ``--history-nodes`` nodes pushed
  ``--history-maxlen`` times each (the aggregator's default history length).

Prints a table; ``--json`` prints the same figures as one JSON object.

    .venv/bin/python bench/sizing.py [--nodes 5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import psutil
import redis
from stack import RECORDINGS, Stack  # noqa: E402  (bench/ is on sys.path when run as a script)
from telemetry_factory import batch, telemetry  # noqa: E402

from wire.v1 import scoring_pb2_grpc, telemetry_pb2_grpc  # noqa: E402

DEFAULT_HISTORY_MAXLEN = 1000


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20


def measure(nodes: int, rounds: int, scores: int, history_nodes: int, history_maxlen: int) -> dict:
    stack = Stack(0, RECORDINGS, "--history-maxlen", str(history_maxlen))
    try:
        proc = psutil.Process(stack.aggregator.proc.pid)
        rss = lambda: mib(proc.memory_info().rss)  # noqa: E731
        out = {"nodes": nodes, "rounds": rounds, "history_maxlen": history_maxlen}
        time.sleep(1.0)
        out["aggregator_rss_idle_mib"] = rss()
        push = telemetry_pb2_grpc.TelemetryServiceStub(stack.channel).Push
        names = [f"node-{i:05d}" for i in range(nodes)]
        for _ in range(rounds):
            for name in names:
                push(telemetry(name, collected_ms=int(time.time() * 1000)), timeout=5)
        out["aggregator_rss_with_nodes_mib"] = rss()

        score = scoring_pb2_grpc.ScoringServiceStub(stack.channel).BatchScore
        request = batch(*names[:1000])
        c0, t0 = proc.cpu_times(), time.monotonic()
        for _ in range(scores):
            score(request, timeout=5)
        c1, t1 = proc.cpu_times(), time.monotonic()
        out["batchscore_1000_calls"] = scores
        out["aggregator_cpu_pct_scoring"] = 100 * (c1.user + c1.system - c0.user - c0.system) / (t1 - t0)
        out["aggregator_rss_after_scoring_mib"] = rss()

        rc = redis.Redis.from_url(stack.redis.url)
        base = rc.info("memory")["used_memory"]
        for i in range(history_nodes):
            name = f"history-{i:03d}"
            for _ in range(history_maxlen):
                push(telemetry(name, collected_ms=int(time.time() * 1000)), timeout=5)
        used = rc.info("memory")["used_memory"] - base
        out["history_nodes"] = history_nodes
        out["redis_mib_per_node_full_history"] = mib(used / history_nodes)
        return out
    finally:
        stack.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5000, help="nodes pushed for the RSS figure (default: 5000)")
    p.add_argument("--rounds", type=int, default=3, help="push rounds over all nodes (default: 3)")
    p.add_argument("--scores", type=int, default=200, help="BatchScore(1000) calls for the CPU figure (default: 200)")
    p.add_argument(
        "--history-nodes",
        type=int,
        default=20,
        help="nodes pushed --history-maxlen times for Redis memory per node (default: 20)",
    )
    p.add_argument(
        "--history-maxlen",
        type=int,
        default=DEFAULT_HISTORY_MAXLEN,
        help=f"the aggregator's --history-maxlen (default: {DEFAULT_HISTORY_MAXLEN})",
    )
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    if args.nodes < 1000:
        p.error("--nodes: at least 1000 (BatchScore is measured for 1 000 of them)")
    r = measure(args.nodes, args.rounds, args.scores, args.history_nodes, args.history_maxlen)
    if args.json:
        print(json.dumps(r))
        return 0
    rows = [
        ("aggregator RSS, idle", f"{r['aggregator_rss_idle_mib']:.0f} MiB"),
        (f"aggregator RSS, {r['nodes']} nodes pushed x {r['rounds']}", f"{r['aggregator_rss_with_nodes_mib']:.0f} MiB"),
        (
            f"aggregator CPU, BatchScore(1000) back to back x {r['batchscore_1000_calls']}",
            f"{r['aggregator_cpu_pct_scoring']:.0f} % of a core",
        ),
        ("aggregator RSS, after scoring", f"{r['aggregator_rss_after_scoring_mib']:.0f} MiB"),
        (
            f"Redis per node, history of {r['history_maxlen']} vectors ({r['history_nodes']} nodes)",
            f"{r['redis_mib_per_node_full_history']:.2f} MiB",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'figure':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
