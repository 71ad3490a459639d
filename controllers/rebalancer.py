"""``kubeattention rebalance``: find running pods whose node has turned noisy; optionally move them.

One round:

1. list nodes and pods (raw JSON, paginated);
2. for every running pod, skip what must not move: pods in system namespaces
   (kube-system, kube-public, kube-node-lease, kubeattention-system), DaemonSet pods, mirror
   and static pods, pods without a controller (nothing would recreate them), pods being
   deleted;
3. candidate nodes: every other node the scheduler could place the pod on — not cordoned,
   Ready, no untolerated NoSchedule/NoExecute taint, node selector and required node
   affinity satisfied, and the pod's cpu/memory requests (as kube-scheduler counts them)
   fit in the node's allocatable beside the pods already there. Pod (anti-)affinity and
   topology spread are not evaluated: the target is a recommendation, and after an
   eviction the scheduler (with the KubeAttention extender) makes the actual choice;
4. one ``BatchScore`` per pod (current node + candidates) through the client library, with a
   deadline and neither breaker nor fallback (``client.batchscore.score_once``);
5. a move qualifies when the current node was SCORED with a score below ``--floor`` and the
   best SCORED candidate beats it by at least ``--gap``; a node that is STALE, UNKNOWN or
   FALLBACK is never a reason to move, nor a target;
6. qualifying moves are taken largest gain first, at most ``--max-moves`` per round and at
   most one pod per workload (a Deployment's ReplicaSets count as one workload); the rest
   are reported as deferred.

Dry run by default: a table (or ``--json``) and nothing written to the cluster. ``--events``
posts a core/v1 Event on each selected pod saying what was recommended or done. ``--evict``
asks the Eviction API (policy/v1 ``pods/eviction``, with the pod's uid as a precondition so
a replacement with the same name is never hit), which honours PodDisruptionBudgets: a 429
means a budget blocks it — reported, not retried this round, and not replaced by another
move. RBAC: list pods and nodes; create pods/eviction (``--evict``) and events (``--events``).

Here: the round and the command. The rules are ``controllers.rebalance_rules``, the writes
``controllers.rebalance_actions``, the output ``controllers.rebalance_report``, the settings
``controllers.rebalance_config``.
"""

from __future__ import annotations

import argparse
import json
import sys

import grpc

from client.batchscore import BAD_RESPONSE, score_once
from client.errors import BadResponse, InvalidRequest
from client.request import build_request
from client.result import ScoreResult
from client.transport import GrpcTransport
from controllers.command_line import add_kubeconfig_argument, core_v1, refuse
from controllers.rebalance_actions import execute
from controllers.rebalance_config import (
    DEFAULT_AGGREGATOR,
    DEFAULT_FLOOR,
    DEFAULT_GAP,
    DEFAULT_MAX_MOVES,
    DEFAULT_TIMEOUT_S,
    RebalanceConfig,
)
from controllers.rebalance_report import as_json, format_table
from controllers.rebalance_rules import Move, Plan, feasible_targets, judge, node_usage, select, skip_reason
from kubeapi.api_client import api_error_summary, list_all
from kubeapi.fields import meta, spec
from kubeapi.nodes import node_name
from kubeapi.pods import pod_context, workload_of
from wire.client_security import ClientSecurity, TokenFileError
from wire.client_security import add_arguments as add_transport_arguments
from wire.schema import PodContext

#: gRPC codes after which no other pod of the round can be scored either.
FATAL_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)


class RebalanceError(Exception):
    """The round cannot run (API or aggregator unreachable); the message says which."""


class AggregatorScorer:
    """BatchScore through the client library, with a deadline (no retries, no breaker: one round is short)."""

    def __init__(self, address: str, timeout_s: float = DEFAULT_TIMEOUT_S, security: ClientSecurity | None = None):
        """Raises TokenFileError for an unusable token file."""
        self.address = address
        self.timeout_s = timeout_s
        self.transport = GrpcTransport(address, security or ClientSecurity(insecure=True))

    def score(self, ctx: PodContext, nodes: list[str]) -> ScoreResult:
        """One answer per node, in order. Raises InvalidRequest, BadResponse or grpc.RpcError."""
        return score_once(self.transport, ctx, build_request(ctx, nodes), self.timeout_s)

    def close(self) -> None:
        self.transport.close()


# ---------------------------------------------------------------------- the round


def plan_round(core, scorer: AggregatorScorer, cfg: RebalanceConfig) -> Plan:
    from kubernetes.client.exceptions import ApiException

    try:
        nodes, _ = list_all(core.list_node)
        pods, _ = list_all(core.list_pod_for_all_namespaces)
    except ApiException as e:
        raise RebalanceError(f"Kubernetes API: {api_error_summary(e)}") from e
    except Exception as e:  # connection refused, timeouts
        raise RebalanceError(f"Kubernetes API unreachable: {type(e).__name__}: {e}") from e
    known = {node_name(n) for n in nodes}
    usage = node_usage(pods)
    plan = Plan()
    qualifying: list[Move] = []
    for pod in pods:
        why = skip_reason(pod)
        if why == "not running":
            continue
        plan.examined += 1
        if why:
            plan.skipped[why] += 1
            continue
        current = spec(pod)["nodeName"]
        if current not in known:
            plan.skipped["node not in the node list"] += 1
            continue
        try:
            ctx = pod_context(pod)
            targets = feasible_targets(pod, nodes, usage)
        except ValueError:
            plan.skipped["malformed pod"] += 1
            continue
        if not targets:
            plan.skipped["no other feasible node"] += 1
            continue
        try:
            result = scorer.score(ctx, [current] + targets)
        except InvalidRequest:  # a field protobuf cannot carry
            plan.skipped["malformed pod"] += 1
            continue
        except BadResponse:
            plan.skipped[f"aggregator {BAD_RESPONSE}"] += 1
            continue
        except grpc.RpcError as e:
            if e.code() in FATAL_CODES:
                raise RebalanceError(f"aggregator {scorer.address} answered {e.code().name}: {e.details()}") from e
            plan.skipped[f"aggregator {e.code().name}"] += 1
            continue
        plan.model_version = result.model_version
        by_node = result.by_name()  # one answer per node asked for (or BadResponse above)
        best, why_not = judge(by_node[current], [by_node[t] for t in targets], cfg.gap, cfg.floor)
        if best is None:
            plan.skipped[why_not] += 1
            continue
        m = meta(pod)
        qualifying.append(
            Move(
                namespace=m.get("namespace") or "default",
                pod=m.get("name") or "",
                uid=m.get("uid") or "",
                workload=str(workload_of(pod)),
                node=current,
                node_score=by_node[current].score,
                node_reason=by_node[current].reason,
                target=best.name,
                target_score=best.score,
                candidates=len(targets),
            )
        )
    plan.moves, plan.deferred = select(qualifying, cfg.max_moves)
    return plan


# ---------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--aggregator", default=DEFAULT_AGGREGATOR, help=f"aggregator gRPC address (default {DEFAULT_AGGREGATOR})"
    )
    add_kubeconfig_argument(p)
    p.add_argument(
        "--gap",
        type=float,
        default=DEFAULT_GAP,
        help=f"move only when the best node scores at least this much more (default {DEFAULT_GAP:g})",
    )
    p.add_argument(
        "--floor",
        type=float,
        default=DEFAULT_FLOOR,
        help=f"move only pods whose current node scores below this (default {DEFAULT_FLOOR:g})",
    )
    p.add_argument(
        "--max-moves", type=int, default=DEFAULT_MAX_MOVES, help=f"most moves per round (default {DEFAULT_MAX_MOVES})"
    )
    p.add_argument(
        "--evict",
        action="store_true",
        help="evict the selected pods through the Eviction API (PodDisruptionBudgets apply); default: dry run",
    )
    p.add_argument("--events", action="store_true", help="post a Kubernetes Event on each selected pod")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"BatchScore deadline in seconds (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_transport_arguments(p, "the rebalancer (a scheduler identity)")


def run(args: argparse.Namespace) -> int:
    problems = []
    security = ClientSecurity.from_args(args)
    problems.extend(security.problems())
    try:
        cfg = RebalanceConfig(
            aggregator=args.aggregator,
            gap=args.gap,
            floor=args.floor,
            max_moves=args.max_moves,
            evict=args.evict,
            events=args.events,
            timeout_s=args.timeout,
        )
    except ValueError as e:
        problems.append(str(e).removeprefix("invalid rebalance configuration:\n  "))
    core = core_v1(args.kubeconfig, problems)
    if problems:
        return refuse("rebalance", problems)
    try:
        scorer = AggregatorScorer(cfg.aggregator, cfg.timeout_s, security)
    except TokenFileError as e:
        print(f"kubeattention rebalance: {e}", file=sys.stderr)
        return 2
    try:
        plan = plan_round(core, scorer, cfg)
    except RebalanceError as e:
        print(f"kubeattention rebalance: {e}", file=sys.stderr)
        return 1
    finally:
        scorer.close()
    execute(core, plan, cfg)
    print(json.dumps(as_json(plan, cfg), indent=2) if args.json else format_table(plan, cfg))
    failed = any(m.action == "failed" or m.event.startswith("failed") for m in plan.moves)
    return 1 if failed else 0
