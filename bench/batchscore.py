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

    .venv/bin/python bench/batchscore.py [--iterations 2000] [--secure] [--json]

``--secure`` runs the same over TLS with bearer-token authentication on every call (what
transport security costs); the default is plaintext ``--insecure``, the transport floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import RECORDINGS, Stack, print_latency_table, timed  # noqa: E402

from inference.model import InterferenceModel  # noqa: E402
from wire.schema import PodContext, Profile, model_input  # noqa: E402
from wire.v1 import scoring_pb2, scoring_pb2_grpc  # noqa: E402

SIZES = (10, 100, 1000)
NODES = 1000
TARGET_P99_MS_100 = 2.0
TARGET_RATIO_100 = 2.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=2000, help="timed calls per case (default 2000)")
    p.add_argument("--warmup", type=int, default=200, help="untimed calls first (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--recordings",
        type=Path,
        default=RECORDINGS,
        help="folder of recorded node states to push (default agent/recordings)",
    )
    p.add_argument(
        "--secure", action="store_true", help="TLS and a bearer token on every call (default: plaintext, --insecure)"
    )
    args = p.parse_args()

    stack = Stack(NODES, args.recordings, secure=args.secure)
    md = stack.metadata
    try:
        channel, names, vectors = stack.channel, stack.names, stack.vectors
        score = scoring_pb2_grpc.ScoringServiceStub(channel).BatchScore
        check = health_pb2_grpc.HealthStub(channel).Check
        pod = scoring_pb2.PodContext(
            cpu_request_cores=0.5,
            memory_request_bytes=512 * 2**20,
            profile=scoring_pb2.WORKLOAD_PROFILE_LATENCY_CRITICAL,
        )
        empty_req = health_pb2.HealthCheckRequest(service="")
        results: dict = {"empty": timed(lambda: check(empty_req, timeout=5), args.iterations, args.warmup)}
        for n in SIZES:
            req = scoring_pb2.BatchScoreRequest(pod=pod, node_names=names[:n])
            resp = score(req, timeout=5, metadata=md)
            statuses = {s.status for s in resp.scores}
            if statuses != {scoring_pb2.SCORE_STATUS_SCORED}:
                raise SystemExit(f"BatchScore({n}) did not score every node: statuses {statuses}")
            iters = args.iterations if n <= 100 else max(args.iterations // 4, 100)
            results[f"batchscore_{n}"] = timed(lambda req=req: score(req, timeout=5, metadata=md), iters, args.warmup)

        model = InterferenceModel.load()
        podctx = PodContext(cpu_request_cores=0.5, memory_request_bytes=512 * 2**20, profile=Profile.LATENCY_CRITICAL)
        for n in SIZES:
            vs = [vectors[i % len(vectors)] for i in range(n)]
            x = model_input(
                np.array([v.values for v in vs], dtype=np.float64),
                np.array([v.available for v in vs], dtype=bool),
                podctx,
            )
            results[f"onnx_{n}"] = timed(lambda x=x: model.predict_slowdown(x), args.iterations, args.warmup)
    finally:
        stack.close()

    b100, empty = results["batchscore_100"], results["empty"]
    summary = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "model_version": model.version,
        "transport": "TLS + bearer token" if args.secure else "plaintext (--insecure)",
        "results": results,
        "targets": {
            "batchscore_100_p99_ms": {
                "value": b100["p99_ms"],
                "target": TARGET_P99_MS_100,
                "met": b100["p99_ms"] <= TARGET_P99_MS_100,
            },
            "batchscore_100_p50_over_empty_p50": {
                "value": b100["p50_ms"] / empty["p50_ms"],
                "target": TARGET_RATIO_100,
                "met": b100["p50_ms"] / empty["p50_ms"] <= TARGET_RATIO_100,
            },
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"BatchScore benchmark — {summary['machine']['cpus']} CPUs, Python {summary['machine']['python']}, "
        f"model {model.version}, client in a separate process over loopback gRPC, {summary['transport']}"
    )
    print_latency_table(results, summary["targets"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
