#!/usr/bin/env python3
"""BatchScore latency, measured end to end from a separate client process.

Starts a real redis-server and ``kubeattention aggregator`` on free loopback ports, pushes
1 000 nodes whose vectors are the recorded node states of ``agent/recordings/`` (cycled,
each a real measurement), then, from this process as the client, measures in one run:

* ``empty``      — grpc.health.v1 Check on the same server: the transport floor;
* ``batchscore`` — BatchScore for 10, 100 and 1 000 candidates;
* ``onnx``       — raw ONNX Runtime inference for the same batch sizes, in-process.

Targets (issue 2, this 2-core machine): BatchScore(100) p99 <= 2 ms and
BatchScore(100) p50 <= 2 x the empty call's p50. Prints a table; ``--json`` prints the same
figures as one JSON object.

    .venv/bin/python bench/batchscore.py [--iterations 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from agent.recording import read_recording  # noqa: E402
from kubeattention.v1 import scoring_pb2, scoring_pb2_grpc, telemetry_pb2_grpc  # noqa: E402
from procs import Kubeattention, RedisServer, free_port, wait_for_port  # noqa: E402
from scorer.model import InterferenceModel  # noqa: E402
from scorer.schema import PodContext, Profile, model_input  # noqa: E402

SIZES = (10, 100, 1000)
NODES = 1000
TARGET_P99_MS_100 = 2.0
TARGET_RATIO_100 = 2.0


def percentiles(samples_ns: list[int]) -> dict:
    a = np.array(samples_ns) / 1e6
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": len(a)}


def timed(fn, iterations: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iterations):
        t = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t)
    return percentiles(out)


def recorded_vectors(folder: Path) -> list:
    vectors = []
    for path in sorted(folder.glob("*.jsonl")):
        vectors.extend(read_recording(path).vectors)
    if not vectors:
        raise SystemExit(f"no recordings in {folder}: nothing real to push")
    return vectors


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=2000, help="timed calls per case (default 2000)")
    p.add_argument("--warmup", type=int, default=200, help="untimed calls first (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--recordings", type=Path, default=REPO / "agent" / "recordings",
                   help="folder of recorded node states to push (default agent/recordings)")
    args = p.parse_args()

    redis = RedisServer().start()
    grpc_port, http_port = free_port(), free_port()
    agg = Kubeattention("--log-level", "WARNING", "aggregator", "--redis-url", redis.url, "--grpc-listen", f"127.0.0.1:{grpc_port}",
                        "--http-listen", f"127.0.0.1:{http_port}", "--max-staleness-ms", "600000").start()
    try:
        wait_for_port(grpc_port, proc=agg.proc, timeout=30)
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        push = telemetry_pb2_grpc.TelemetryServiceStub(channel).Push
        vectors = recorded_vectors(args.recordings)
        now = time.time_ns() // 1_000_000
        names = [f"node-{i:04d}" for i in range(NODES)]
        for i, name in enumerate(names):
            msg = vectors[i % len(vectors)].to_proto()
            msg.node_name = name
            msg.collected_at_unix_ms = now
            push(msg, timeout=5)

        score = scoring_pb2_grpc.ScoringServiceStub(channel).BatchScore
        check = health_pb2_grpc.HealthStub(channel).Check
        pod = scoring_pb2.PodContext(cpu_request_cores=0.5, memory_request_bytes=512 * 2**20,
                                     profile=scoring_pb2.WORKLOAD_PROFILE_LATENCY_CRITICAL)
        empty_req = health_pb2.HealthCheckRequest(service="")
        results: dict = {"empty": timed(lambda: check(empty_req, timeout=5), args.iterations, args.warmup)}
        for n in SIZES:
            req = scoring_pb2.BatchScoreRequest(pod=pod, node_names=names[:n])
            resp = score(req, timeout=5)
            statuses = {s.status for s in resp.scores}
            if statuses != {scoring_pb2.SCORE_STATUS_SCORED}:
                raise SystemExit(f"BatchScore({n}) did not score every node: statuses {statuses}")
            iters = args.iterations if n <= 100 else max(args.iterations // 4, 100)
            results[f"batchscore_{n}"] = timed(lambda: score(req, timeout=5), iters, args.warmup)

        model = InterferenceModel.load()
        podctx = PodContext(cpu_request_cores=0.5, memory_request_bytes=512 * 2**20, profile=Profile.LATENCY_CRITICAL)
        for n in SIZES:
            vs = [vectors[i % len(vectors)] for i in range(n)]
            x = model_input(np.array([v.values for v in vs], dtype=np.float64),
                            np.array([v.available for v in vs], dtype=bool), podctx)
            results[f"onnx_{n}"] = timed(lambda: model.predict_slowdown(x), args.iterations, args.warmup)
        channel.close()
    finally:
        agg.stop()
        redis.cleanup()

    b100, empty = results["batchscore_100"], results["empty"]
    summary = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "model_version": model.version,
        "results": results,
        "targets": {
            "batchscore_100_p99_ms": {"value": b100["p99_ms"], "target": TARGET_P99_MS_100,
                                      "met": b100["p99_ms"] <= TARGET_P99_MS_100},
            "batchscore_100_p50_over_empty_p50": {"value": b100["p50_ms"] / empty["p50_ms"],
                                                  "target": TARGET_RATIO_100,
                                                  "met": b100["p50_ms"] / empty["p50_ms"] <= TARGET_RATIO_100},
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"BatchScore benchmark — {summary['machine']['cpus']} CPUs, Python {summary['machine']['python']}, "
          f"model {model.version}, client in a separate process over loopback gRPC")
    print(f"{'case':<18} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'calls':>6}")
    for key, r in results.items():
        print(f"{key:<18} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['mean_ms']:8.3f} {r['n']:6d}")
    for key, t in summary["targets"].items():
        print(f"target {key}: {t['value']:.3f} (<= {t['target']:g}) {'MET' if t['met'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
