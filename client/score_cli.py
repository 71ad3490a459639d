"""``kubeattention score``: ask an aggregator to score nodes for a pod, print a ranked table."""

from __future__ import annotations

import argparse
import json
import math
import sys

import grpc

from client import batchscore as client
from kubeapi.quantity import cpu_cores, memory_bytes
from wire.client_security import ClientSecurity, TokenFileError, metadata
from wire.client_security import add_arguments as add_transport_arguments
from wire.schema import PodContext, Profile, QoS
from wire.v1 import scoring_pb2, scoring_pb2_grpc

DEFAULT_TIMEOUT_S = 2.0
STATUS_NAMES = {v: k.removeprefix("SCORE_STATUS_") for k, v in scoring_pb2.ScoreStatus.items()}


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aggregator", default="127.0.0.1:50051", help="aggregator gRPC address (default 127.0.0.1:50051)")
    p.add_argument(
        "--profile",
        default=None,
        choices=[x.annotation for x in Profile],
        help="workload profile (default: inferred from the requests, as for an unannotated pod)",
    )
    p.add_argument("--cpu", default="0", help="CPU request, Kubernetes quantity (e.g. 500m)")
    p.add_argument("--memory", default="0", help="memory request, Kubernetes quantity (e.g. 512Mi)")
    p.add_argument(
        "--qos",
        default=None,
        choices=["guaranteed", "burstable", "best-effort"],
        help="QoS class (default: derived from the requests)",
    )
    p.add_argument("--priority", type=int, default=0, help="pod priority (default 0)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="call deadline in seconds (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="candidate node names")
    add_transport_arguments(p, "a scoring client (identity spiffe://kubeattention/scheduler/NAME)")


def build_request(args: argparse.Namespace) -> scoring_pb2.BatchScoreRequest:
    pod = PodContext(
        name="kubeattention-cli",
        cpu_request_cores=cpu_cores(args.cpu, "--cpu"),
        memory_request_bytes=memory_bytes(args.memory, "--memory"),
        priority=args.priority,
        profile=Profile.parse(args.profile) if args.profile else None,
        qos=QoS[args.qos.upper().replace("-", "_")] if args.qos else None,
    )
    return client.build_request(pod, args.nodes)


def call(
    address: str, request: scoring_pb2.BatchScoreRequest, timeout: float, security: ClientSecurity
) -> scoring_pb2.BatchScoreResponse:
    with security.channel(address) as channel:
        return scoring_pb2_grpc.ScoringServiceStub(channel).BatchScore(
            request, timeout=timeout, metadata=metadata(security.token_source())
        )


def as_json(resp: scoring_pb2.BatchScoreResponse) -> dict:
    return {
        "model_version": resp.model_version,
        "elapsed_us": resp.elapsed_us,
        "profile": Profile(resp.profile).annotation if resp.profile else None,
        "scores": [
            {
                "node": s.node_name,
                "score": round(s.score, 2),
                "status": STATUS_NAMES[s.status],
                "confidence": round(s.confidence, 3),
                "predicted_slowdown": None if math.isnan(s.predicted_slowdown) else round(s.predicted_slowdown, 4),
                "reason": s.reason,
            }
            for s in ranked(resp)
        ],
    }


def ranked(resp: scoring_pb2.BatchScoreResponse) -> list:
    return sorted(resp.scores, key=lambda s: (-s.score, s.node_name))


def format_table(resp: scoring_pb2.BatchScoreResponse) -> str:
    rows = ranked(resp)
    width = max([len("NODE")] + [len(s.node_name) for s in rows])
    profile = Profile(resp.profile).annotation if resp.profile else "?"
    lines = [
        f"model {resp.model_version} · profile {profile} · {resp.elapsed_us / 1000:.2f} ms server-side",
        f"{'RANK':<4}  {'NODE':<{width}}  {'SCORE':>5}  {'SLOWDOWN':>8}  {'STATUS':<12}  {'CONF':>4}  REASON",
    ]
    for i, s in enumerate(rows, 1):
        slow = "-" if math.isnan(s.predicted_slowdown) else f"{s.predicted_slowdown:.2f}x"
        lines.append(
            f"{i:<4}  {s.node_name:<{width}}  {s.score:5.1f}  {slow:>8}  {STATUS_NAMES[s.status]:<12}  "
            f"{s.confidence:4.2f}  {s.reason}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    security = ClientSecurity.from_args(args)
    try:
        request = build_request(args)
        security.check()
    except ValueError as e:
        print(f"kubeattention score: {e}", file=sys.stderr)
        return 2
    try:
        resp = call(args.aggregator, request, args.timeout, security)
    except TokenFileError as e:
        print(f"kubeattention score: {e}", file=sys.stderr)
        return 2
    except grpc.RpcError as e:
        print(
            f"kubeattention score: aggregator {args.aggregator} answered {e.code().name}: {e.details()}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(as_json(resp), indent=2) if args.json else format_table(resp))
    return 0
