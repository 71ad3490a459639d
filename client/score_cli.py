"""``kubeattention score``: ask an aggregator to score nodes for a pod, print a ranked table."""

from __future__ import annotations

import argparse
import json
import sys
from typing import NamedTuple

import grpc

from client.batchscore import score_once
from client.errors import BadResponse
from client.request import build_request as encode
from client.result import NodeScore, ScoreResult
from client.transport import GrpcTransport
from kubeapi.quantity import cpu_cores, memory_bytes
from wire.client_security import ClientSecurity, TokenFileError
from wire.client_security import add_arguments as add_transport_arguments
from wire.schema import PodContext, Profile, QoS
from wire.v1 import scoring_pb2

DEFAULT_TIMEOUT_S = 2.0


class Query(NamedTuple):
    """What ``kubeattention score`` asks: the pod, and the BatchScore request for it and the nodes."""

    pod: PodContext
    request: scoring_pb2.BatchScoreRequest


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


def build_request(args: argparse.Namespace) -> Query:
    """The pod the flags describe and its request; ValueError names the flag or field that is wrong."""
    pod = PodContext(
        name="kubeattention-cli",
        cpu_request_cores=cpu_cores(args.cpu, "--cpu"),
        memory_request_bytes=memory_bytes(args.memory, "--memory"),
        priority=args.priority,
        profile=Profile.parse(args.profile) if args.profile else None,
        qos=QoS[args.qos.upper().replace("-", "_")] if args.qos else None,
    )
    return Query(pod, encode(pod, args.nodes))


def call(address: str, query: Query, timeout: float, security: ClientSecurity) -> ScoreResult:
    """One BatchScore through the client library (no breaker, no fallback); raises grpc.RpcError
    when the aggregator does not answer, TokenFileError for an unusable token file."""
    transport = GrpcTransport(address, security)
    try:
        return score_once(transport, query.pod, query.request, timeout)
    finally:
        transport.close()


def as_json(result: ScoreResult) -> dict:
    return {
        "model_version": result.model_version,
        "elapsed_us": result.server_elapsed_us,
        "profile": result.profile.annotation,
        "scores": [
            {
                "node": s.name,
                "score": round(s.score, 2),
                "status": s.status.name,
                "confidence": round(s.confidence, 3),
                "predicted_slowdown": None if s.predicted_slowdown is None else round(s.predicted_slowdown, 4),
                "reason": s.reason,
            }
            for s in ranked(result)
        ],
    }


def ranked(result: ScoreResult) -> list[NodeScore]:
    """Best first, ties by node name."""
    return sorted(result.scores, key=lambda s: (-s.score, s.name))


def format_table(result: ScoreResult) -> str:
    rows = ranked(result)
    width = max([len("NODE")] + [len(s.name) for s in rows])
    lines = [
        f"model {result.model_version} · profile {result.profile.annotation} · "
        f"{(result.server_elapsed_us or 0) / 1000:.2f} ms server-side",
        f"{'RANK':<4}  {'NODE':<{width}}  {'SCORE':>5}  {'SLOWDOWN':>8}  {'STATUS':<12}  {'CONF':>4}  REASON",
    ]
    for i, s in enumerate(rows, 1):
        slow = "-" if s.predicted_slowdown is None else f"{s.predicted_slowdown:.2f}x"
        lines.append(
            f"{i:<4}  {s.name:<{width}}  {s.score:5.1f}  {slow:>8}  {s.status.name:<12}  "
            f"{s.confidence:4.2f}  {s.reason}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    security = ClientSecurity.from_args(args)
    try:
        query = build_request(args)
        security.check()
    except ValueError as e:
        print(f"kubeattention score: {e}", file=sys.stderr)
        return 2
    try:
        result = call(args.aggregator, query, args.timeout, security)
    except TokenFileError as e:
        print(f"kubeattention score: {e}", file=sys.stderr)
        return 2
    except grpc.RpcError as e:
        print(
            f"kubeattention score: aggregator {args.aggregator} answered {e.code().name}: {e.details()}",
            file=sys.stderr,
        )
        return 1
    except BadResponse as e:
        print(f"kubeattention score: aggregator {args.aggregator} answered what was not asked: {e}", file=sys.stderr)
        return 1
    print(json.dumps(as_json(result), indent=2) if args.json else format_table(result))
    return 0
