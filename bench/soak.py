#!/usr/bin/env python3
"""Soak and load: 5 000 simulated agents pushing at 1 Hz and a scheduler scoring at 100 req/s.

Starts a real redis-server and ``kubeattention aggregator`` on free loopback ports, then,
for ``--seconds`` (default 600):

* ``--agents`` simulated agents (default 5 000), each pushing its node's vector once per
  ``--interval-s`` (default 1 s) at its own random phase, from ``--procs`` processes of
  asyncio gRPC clients sharing ``--connections`` channels (a real fleet holds one connection
  per node; fewer connections spare this 2-core machine the client side's cost, not the
  server's per-call work). Vectors are the recorded node states of ``agent/recordings/``;
* one scheduler process issuing BatchScore for ``--candidates`` (default 100) random nodes
  at ``--score-rps`` (default 100) on an open-loop schedule (a slow answer does not slow the
  next request down, so queueing shows up in the latency instead of hiding);
* every ``--sample-s`` the aggregator's RSS and CPU, Redis' memory and CPU, and the load
  generator's own CPU (it shares the machine's cores with the aggregator).

Then, in the same run, ``redis-benchmark`` on the same Redis for the push path's own
commands (HSET of a node hash with the same fields, PUBLISH of an update): the floor
under which no push can go; and, once the aggregator has stopped, the gRPC floor
(``bench/grpc_floor.py``): how many Push calls a Python gRPC server that does nothing
answers on this machine, the ceiling no Python aggregator can pass.

Latency percentiles and the RSS growth leave out the warm-up (``--warmup-s``, default 60 s
or a fifth of a short run). Errors are counted over the whole run. Targets on this 2-core
machine: zero errors, push p99 <= 20 ms, BatchScore p99 <= 10 ms, aggregator RSS growth
<= 10 % after the warm-up. Prints a table; ``--json`` one JSON object.

    .venv/bin/python bench/soak.py [--seconds 600] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import psutil
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grpc_floor import print_table as print_grpc_floor  # noqa: E402
from grpc_floor import run as measure_grpc_floor  # noqa: E402
from procs import RedisServer  # noqa: E402
from soak_load import agents_proc, node_name, scheduler_proc  # noqa: E402
from stack import RECORDINGS, start_aggregator  # noqa: E402

DEFAULT_SECONDS = 600
DEFAULT_AGENTS = 5000
DEFAULT_INTERVAL_S = 1.0
DEFAULT_SCORE_RPS = 100.0
DEFAULT_CANDIDATES = 100
DEFAULT_PROCS = 2
DEFAULT_CONNECTIONS = 64
DEFAULT_SAMPLE_S = 10.0

TARGET_PUSH_P99_MS = 20.0
TARGET_SCORE_P99_MS = 10.0
TARGET_RSS_GROWTH = 0.10
TARGET_ERRORS = 0
#: The load must actually be offered: pushes achieved / pushes scheduled, at least.
TARGET_RATE_SHARE = 0.99


# --- the run --------------------------------------------------------------------------------


def percentiles(lat_us: np.ndarray) -> dict:
    if lat_us.size == 0:
        return {"n": 0}
    ms = lat_us / 1000.0
    return {
        "n": int(ms.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "p999_ms": float(np.percentile(ms, 99.9)),
        "max_ms": float(ms.max()),
    }


def redis_benchmark(port: int, fields: dict[str, str]) -> dict:
    """redis-benchmark on the push path's own commands: latency floor (1 client) and throughput (50)."""
    hset = ["HSET", "ka:bench:node:{__rand_int__}"] + [x for kv in fields.items() for x in kv]
    publish = ["PUBLISH", "ka:bench:updates", "soak-node-00042 1700000000000"]
    out = {}
    for label, cmd in (("hset", hset), ("publish", publish)):
        for clients, n in ((1, 20_000), (50, 200_000)):
            r = subprocess.run(
                ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(n), "-r", "5000", "--csv", *cmd],
                capture_output=True,
                text=True,
                timeout=120,
            )
            lines = [ln for ln in r.stdout.strip().splitlines() if ln and not ln.startswith('"test"')]
            if r.returncode != 0 or not lines:
                out[f"{label}_c{clients}"] = {"error": (r.stderr or r.stdout)[-300:]}
                continue
            # "test","rps","avg","min","p50","p95","p99","max" (latencies in ms); the test column
            # echoes the command, commas and all: read the numbers from the end
            cols = [c.strip('"') for c in lines[-1].split(",")]
            try:
                out[f"{label}_c{clients}"] = {
                    "rps": float(cols[-7]),
                    "p50_ms": float(cols[-4]),
                    "p99_ms": float(cols[-2]),
                }
            except (ValueError, IndexError):
                out[f"{label}_c{clients}"] = {"error": f"unexpected redis-benchmark output: {lines[-1][-200:]}"}
    return out


def run(args) -> dict:
    redis_srv = RedisServer().start()
    agg = scorer = None  # scorer (--score-replica): a second aggregator on the same Redis takes the BatchScores
    children: list[mp.Process] = []
    try:
        agg, grpc_port, http_port = start_aggregator(redis_srv.url, "--insecure", *args.aggregator_flag)
        target = score_target = f"127.0.0.1:{grpc_port}"
        metrics_port = http_port  # where the BatchScores go
        if args.score_replica:
            scorer, score_port, metrics_port = start_aggregator(redis_srv.url, "--insecure", *args.aggregator_flag)
            score_target = f"127.0.0.1:{score_port}"
        agg_ps = psutil.Process(agg.proc.pid)
        redis_ps = psutil.Process(redis_srv.proc.pid)
        rc = redis.Redis(port=redis_srv.port)
        params = {
            "agents": args.agents,
            "interval_s": args.interval_s,
            "seconds": args.seconds,
            "connections": args.connections,
            "score_rps": args.score_rps,
            "candidates": args.candidates,
        }
        t0 = time.time() + 3.0  # every process connected before the first push is due
        pipes = []
        ctx = mp.get_context("spawn")
        for slot in range(args.procs):
            a, b = ctx.Pipe(duplex=False)
            children.append(
                ctx.Process(
                    target=agents_proc, args=(slot, args.procs, params, target, t0, b), name=f"soak-agents-{slot}"
                )
            )
            pipes.append(a)
        a, b = ctx.Pipe(duplex=False)
        # the scheduler starts after one push interval, when every node has reported once
        sched_params = {**params, "seconds": args.seconds - args.interval_s - 1}
        children.append(
            ctx.Process(
                target=scheduler_proc,
                args=(sched_params, score_target, t0 + args.interval_s + 1, b),
                name="soak-scheduler",
            )
        )
        pipes.append(a)
        for c in children:
            c.start()
        gen_ps = [psutil.Process(c.pid) for c in children]
        samples = []
        agg_cpu0, redis_cpu0 = sum(agg_ps.cpu_times()[:2]), sum(redis_ps.cpu_times()[:2])
        next_sample = t0
        while time.time() < t0 + args.seconds + 2:
            if time.time() >= next_sample:
                info = rc.info("memory")
                gen_cpu = 0.0
                for p in gen_ps:
                    try:
                        gen_cpu += sum(p.cpu_times()[:2])
                    except psutil.NoSuchProcess:
                        pass
                samples.append(
                    {
                        "t_s": round(time.time() - t0, 1),
                        "aggregator_rss_bytes": agg_ps.memory_info().rss,
                        "aggregator_cpu_s": sum(agg_ps.cpu_times()[:2]) - agg_cpu0,
                        "redis_used_memory_bytes": info["used_memory"],
                        "redis_rss_bytes": info["used_memory_rss"],
                        "redis_cpu_s": sum(redis_ps.cpu_times()[:2]) - redis_cpu0,
                        "generator_cpu_s": gen_cpu,
                    }
                )
                if not args.json:
                    s = samples[-1]
                    print(
                        f"  t={s['t_s']:6.0f} s  aggregator RSS {s['aggregator_rss_bytes'] / 2**20:7.1f} MiB  "
                        f"Redis {s['redis_used_memory_bytes'] / 2**20:7.1f} MiB",
                        file=sys.stderr,
                        flush=True,
                    )
                next_sample += args.sample_s
            if agg.proc.poll() is not None:
                raise SystemExit(
                    f"the aggregator exited with {agg.proc.returncode} during the soak:\n{agg.output()[-2000:]}"
                )
            time.sleep(0.2)
        results = [p.recv() for p in pipes]  # blocks until each child is done
        for c in children:
            c.join(30)
        wall = time.time() - t0
        agg_cpu = sum(agg_ps.cpu_times()[:2]) - agg_cpu0
        scorer_cpu = sum(psutil.Process(scorer.proc.pid).cpu_times()[:2]) if scorer else None
        redis_cpu = sum(redis_ps.cpu_times()[:2]) - redis_cpu0
        final = rc.info("memory")
        node_keys = rc.zcard("ka:nodes")
        sample_fields = rc.hgetall(f"ka:node:{{{node_name(0)}}}")
        floor = redis_benchmark(redis_srv.port, {k.decode(): v.decode() for k, v in sample_fields.items()})
        metrics_text = ""
        try:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                metrics_text = r.read().decode()
        except OSError:
            pass
    finally:
        for c in children:
            if c.is_alive():
                c.kill()
        agg_log = ""
        for proc in (agg, scorer):
            if proc is not None:
                agg_log += proc.output()
                proc.stop()
        redis_srv.cleanup()
    # after the aggregator stopped: a do-nothing gRPC server's ceiling on the same machine
    grpc_floor = {"skipped": "--no-grpc-floor"} if args.no_grpc_floor else measure_grpc_floor()
    d = summarise(
        args, results, samples, wall, agg_cpu, redis_cpu, final, node_keys, floor, metrics_text, agg_log, grpc_floor
    )
    if scorer_cpu is not None:
        d["cpu_percent_of_one_core"]["score_replica"] = 100 * scorer_cpu / wall
    return d


def summarise(
    args, results, samples, wall, agg_cpu, redis_cpu, final, node_keys, floor, metrics_text, agg_log, grpc_floor
) -> dict:
    warm = args.warmup_s
    push_parts = [r for r in results if r["kind"] == "push"]
    score_part = next(r for r in results if r["kind"] == "score")
    p_sched = np.concatenate([np.frombuffer(r["sched"], dtype=np.float32) for r in push_parts])
    p_lat = np.concatenate([np.frombuffer(r["lat"], dtype=np.uint32) for r in push_parts])
    p_late = np.concatenate([np.frombuffer(r["late"], dtype=np.uint32) for r in push_parts])
    s_sched = np.frombuffer(score_part["sched"], dtype=np.float32)
    s_lat = np.frombuffer(score_part["lat"], dtype=np.uint32)
    push_errors = Counter()
    for r in push_parts:
        push_errors.update(r["errors"])
    gen_cpu = sum(r["cpu_s"] for r in results)
    steady = [s for s in samples if s["t_s"] >= warm]
    rss0 = steady[0]["aggregator_rss_bytes"] if steady else None
    rss_max = max((s["aggregator_rss_bytes"] for s in steady), default=None)
    rss_end = steady[-1]["aggregator_rss_bytes"] if steady else None
    growth = (rss_end - rss0) / rss0 if rss0 else None
    push = percentiles(p_lat[p_sched >= warm].astype(np.float64))
    score = percentiles(s_lat[s_sched >= warm].astype(np.float64))
    late = percentiles(p_late[p_sched >= warm].astype(np.float64))
    errors = sum(push_errors.values()) + sum(score_part["errors"].values())
    fallbacks = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("kubeattention_aggregator_fallbacks_total")
    )
    doc = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "config": {
            "seconds": args.seconds,
            "agents": args.agents,
            "interval_s": args.interval_s,
            "score_rps": args.score_rps,
            "candidates": args.candidates,
            "procs": args.procs,
            "connections": args.connections,
            "warmup_s": warm,
            "score_replica": bool(getattr(args, "score_replica", False)),
        },
        "push": {
            **push,
            "achieved_per_s": float(np.sum(p_sched >= warm) / max(args.seconds - warm, 1)),
            "target_per_s": args.agents / args.interval_s,
            "skipped_intervals": sum(r["skipped"] for r in push_parts),
            "generator_lateness": late,
            "errors": dict(push_errors),
        },
        "batchscore": {
            **score,
            "achieved_per_s": float(np.sum(s_sched >= warm) / max(args.seconds - warm, 1)),
            "errors": score_part["errors"],
            "non_scored_nodes": score_part["not_scored"],
            "fallback_calls": fallbacks,
        },
        "errors": errors,
        "cpu_percent_of_one_core": {
            "aggregator": 100 * agg_cpu / wall,
            "redis": 100 * redis_cpu / wall,
            "load_generator": 100 * gen_cpu / wall,
        },
        "aggregator_rss_mib": {
            "after_warmup": rss0 / 2**20 if rss0 else None,
            "end": rss_end / 2**20 if rss_end else None,
            "max": rss_max / 2**20 if rss_max else None,
            "growth_after_warmup": growth,
        },
        "redis": {
            "used_memory_mib": final["used_memory"] / 2**20,
            "rss_mib": final["used_memory_rss"] / 2**20,
            "nodes_in_index": node_keys,
        },
        "redis_benchmark_floor": floor,
        "grpc_floor": grpc_floor,
        "samples": samples,
    }
    rate = doc["push"]["achieved_per_s"] / doc["push"]["target_per_s"]
    doc["targets"] = {
        "errors": {"value": errors, "target": TARGET_ERRORS, "met": errors <= TARGET_ERRORS},
        "push_rate_share_of_schedule": {
            "value": rate,
            "target": TARGET_RATE_SHARE,
            "met": rate >= TARGET_RATE_SHARE,
            "at_least": True,
        },
        "push_p99_ms": {
            "value": push.get("p99_ms"),
            "target": TARGET_PUSH_P99_MS,
            "met": push.get("p99_ms", 1e9) <= TARGET_PUSH_P99_MS,
        },
        "batchscore_p99_ms": {
            "value": score.get("p99_ms"),
            "target": TARGET_SCORE_P99_MS,
            "met": score.get("p99_ms", 1e9) <= TARGET_SCORE_P99_MS,
        },
        "aggregator_rss_growth": {
            "value": growth,
            "target": TARGET_RSS_GROWTH,
            "met": growth is not None and growth <= TARGET_RSS_GROWTH,
        },
    }
    warnings = [ln for ln in agg_log.splitlines() if " WARNING " in ln or " ERROR " in ln]
    doc["aggregator_warnings"] = warnings[-20:]
    return doc


def print_table(d: dict) -> None:
    c = d["config"]
    print(
        f"Soak — {c['agents']} agents at {1 / c['interval_s']:g} Hz, BatchScore of {c['candidates']} at "
        f"{c['score_rps']:g}/s, {c['seconds']} s (warm-up {c['warmup_s']:g} s left out of percentiles); "
        f"{d['machine']['cpus']} CPUs, Python {d['machine']['python']}"
        + ("; BatchScore on a second aggregator (--score-replica)" if c.get("score_replica") else "")
    )
    print(f"{'case':<26} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'calls/s':>8} {'errors':>7}")
    for label, r in (("Push", d["push"]), ("BatchScore (100 nodes)", d["batchscore"])):
        if r.get("n"):
            print(
                f"{label:<26} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['p999_ms']:9.2f} {r['max_ms']:8.1f} "
                f"{r['achieved_per_s']:8.0f} {sum(r['errors'].values()):7d}"
            )
        else:
            print(f"{label:<26} no successful calls; errors {r['errors']}")
    print(
        f"pushes: {d['push']['achieved_per_s']:.0f}/s achieved of {d['push']['target_per_s']:.0f}/s scheduled; "
        f"{d['push']['skipped_intervals']} agent intervals skipped because the previous push was still in flight"
    )
    late = d["push"]["generator_lateness"]
    if late.get("n"):
        print(
            f"generator lateness (push sent after its due time): p50 {late['p50_ms']:.2f} ms, "
            f"p99 {late['p99_ms']:.2f} ms"
        )
    print(
        f"BatchScore non-SCORED node answers: {d['batchscore']['non_scored_nodes'] or 'none'}; "
        f"fallback calls: {d['batchscore']['fallback_calls']:g}"
    )
    cpu = d["cpu_percent_of_one_core"]
    print(
        f"CPU (% of one core): aggregator {cpu['aggregator']:.0f}, redis {cpu['redis']:.0f}, "
        f"load generator {cpu['load_generator']:.0f}"
        + (f", scoring replica {cpu['score_replica']:.0f}" if "score_replica" in cpu else "")
    )
    rss = d["aggregator_rss_mib"]
    if rss["after_warmup"]:
        print(
            f"aggregator RSS: {rss['after_warmup']:.1f} MiB after warm-up, {rss['end']:.1f} MiB at the end, "
            f"max {rss['max']:.1f} MiB (growth {100 * rss['growth_after_warmup']:+.1f} %)"
        )
    r = d["redis"]
    print(
        f"Redis: used_memory {r['used_memory_mib']:.1f} MiB, RSS {r['rss_mib']:.1f} MiB, "
        f"{r['nodes_in_index']} nodes in ka:nodes"
    )
    print(
        "RSS over time (s: aggregator MiB / Redis used MiB): "
        + ", ".join(
            f"{s['t_s']:.0f}: {s['aggregator_rss_bytes'] / 2**20:.0f}/{s['redis_used_memory_bytes'] / 2**20:.0f}"
            for s in d["samples"]
        )
    )
    print("redis-benchmark floor on the same Redis (same HSET fields, PUBLISH):")
    for k, v in d["redis_benchmark_floor"].items():
        if "error" in v:
            print(f"  {k:<12} failed: {v['error']}")
        else:
            print(f"  {k:<12} {v['rps']:>9.0f} req/s  p50 {v['p50_ms']:.3f} ms  p99 {v['p99_ms']:.3f} ms")
    if "skipped" not in d["grpc_floor"]:
        print_grpc_floor(d["grpc_floor"])
    for k, t in d["targets"].items():
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        print(
            f"target {k}: {value} ({'>=' if t.get('at_least') else '<='} {t['target']:g}) "
            f"{'MET' if t['met'] else 'MISSED'}"
        )
    if d["aggregator_warnings"]:
        print("aggregator warnings/errors (last 20):")
        for ln in d["aggregator_warnings"]:
            print("  " + ln)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help=f"duration (default {DEFAULT_SECONDS})")
    p.add_argument("--agents", type=int, default=DEFAULT_AGENTS, help=f"simulated agents (default {DEFAULT_AGENTS})")
    p.add_argument(
        "--interval-s",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help=f"push interval per agent (default {DEFAULT_INTERVAL_S:g})",
    )
    p.add_argument(
        "--score-rps",
        type=float,
        default=DEFAULT_SCORE_RPS,
        help=f"BatchScore requests per second (default {DEFAULT_SCORE_RPS:g})",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=DEFAULT_CANDIDATES,
        help=f"random candidates per BatchScore (default {DEFAULT_CANDIDATES})",
    )
    p.add_argument("--procs", type=int, default=DEFAULT_PROCS, help=f"agent processes (default {DEFAULT_PROCS})")
    p.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        help=f"gRPC channels the agents share (default {DEFAULT_CONNECTIONS})",
    )
    p.add_argument(
        "--sample-s",
        type=float,
        default=DEFAULT_SAMPLE_S,
        help=f"RSS/memory/CPU sampling period (default {DEFAULT_SAMPLE_S:g})",
    )
    p.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="left out of percentiles and RSS growth (default 60 s, or a fifth of a shorter run)",
    )
    p.add_argument(
        "--aggregator-flag",
        action="append",
        default=[],
        help="extra flag for the aggregator (repeatable, e.g. --aggregator-flag=--max-inflight-pushes=128)",
    )
    p.add_argument(
        "--score-replica",
        action="store_true",
        help="send the BatchScores to a second aggregator on the same Redis, as deploy/ does (the "
        "extender Deployment takes no pushes): scoring does not queue behind the pushes",
    )
    p.add_argument(
        "--no-grpc-floor",
        action="store_true",
        help="skip the do-nothing gRPC server's ceiling measured after the soak (bench/grpc_floor.py)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args()
    if args.warmup_s is None:
        args.warmup_s = min(60.0, args.seconds / 5)
    problems = [
        f"--{k.replace('_', '-')}: must be > 0"
        for k in ("seconds", "agents", "interval_s", "score_rps", "candidates", "procs", "connections")
        if not getattr(args, k) > 0
    ]
    if args.candidates > args.agents:
        problems.append(f"--candidates {args.candidates} exceeds --agents {args.agents}")
    if problems:
        p.error("; ".join(problems))
    if not RECORDINGS.is_dir():
        p.error(f"no recordings at {RECORDINGS}")
    doc = run(args)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)
    return 0 if all(t["met"] for t in doc["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
