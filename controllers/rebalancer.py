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
4. one ``BatchScore`` per pod (current node + candidates, plain gRPC stub with a deadline);
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
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import grpc

from kubeapi import objects as k8s
from wire.client_security import ClientSecurity, TokenFileError, metadata
from wire.client_security import add_arguments as add_transport_arguments
from wire.schema import PodContext
from wire.v1 import scoring_pb2, scoring_pb2_grpc

DEFAULT_AGGREGATOR = "127.0.0.1:50051"
DEFAULT_GAP = 20.0
DEFAULT_FLOOR = 40.0
DEFAULT_MAX_MOVES = 5
DEFAULT_TIMEOUT_S = 2.0
EVENT_REASON = "KubeAttentionRebalance"
EVENT_COMPONENT = "kubeattention-rebalancer"
REPORTING_CONTROLLER = "kubeattention.io/rebalancer"
EVENT_MESSAGE_MAX = 1024
STATUS_NAMES = {v: k.removeprefix("SCORE_STATUS_") for k, v in scoring_pb2.ScoreStatus.items()}
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


@dataclass(frozen=True)
class RebalanceConfig:
    aggregator: str = DEFAULT_AGGREGATOR
    gap: float = DEFAULT_GAP
    floor: float = DEFAULT_FLOOR
    max_moves: int = DEFAULT_MAX_MOVES
    evict: bool = False
    events: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.gap) and 0 < self.gap <= 100):
            problems.append(f"--gap: must be in (0, 100], got {self.gap}")
        if not (math.isfinite(self.floor) and 0 < self.floor <= 100):
            problems.append(f"--floor: must be in (0, 100], got {self.floor}")
        if self.max_moves < 1:
            problems.append(f"--max-moves: must be >= 1, got {self.max_moves}")
        if not self.timeout_s > 0:
            problems.append(f"--timeout: must be > 0, got {self.timeout_s}")
        host, sep, port = self.aggregator.rpartition(":")
        if not sep or not host or not port.isdigit():
            problems.append(f"--aggregator: {self.aggregator!r} is not HOST:PORT")
        if problems:
            raise ValueError("invalid rebalance configuration:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Scored:
    node: str
    score: float
    status: str
    reason: str


@dataclass
class Move:
    namespace: str
    pod: str
    uid: str
    workload: str
    node: str
    node_score: float
    node_reason: str
    target: str
    target_score: float
    candidates: int
    action: str = "recommended"  # recommended | evicted | blocked | gone | failed | deferred
    detail: str = ""
    event: str = ""  # "" (none asked) | posted | failed: ...

    @property
    def gain(self) -> float:
        return self.target_score - self.node_score

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod}"

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "gain": round(self.gain, 2),
            "node_score": round(self.node_score, 2),
            "target_score": round(self.target_score, 2),
        }


@dataclass
class Plan:
    moves: list[Move] = field(default_factory=list)
    deferred: list[Move] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    examined: int = 0
    model_version: str = ""


# ---------------------------------------------------------------------- pure rules


def skip_reason(pod: Mapping) -> str | None:
    """Why a listed pod is not considered for a move, or None."""
    m, sp = k8s.meta(pod), k8s.spec(pod)
    if k8s.status(pod).get("phase") != "Running" or not sp.get("nodeName"):
        return "not running"
    if m.get("deletionTimestamp"):
        return "being deleted"
    if (m.get("namespace") or "default") in k8s.SYSTEM_NAMESPACES:
        return "system namespace"
    if k8s.is_mirror_or_static_pod(pod):
        return "mirror/static pod"
    if k8s.is_daemonset_pod(pod):
        return "DaemonSet pod"
    if k8s.controller_ref(pod) is None:
        return "no controller"
    return None


@dataclass
class NodeUsage:
    requested: k8s.Resources = field(default_factory=k8s.zero_resources)
    pods: int = 0


def node_usage(pods: list[Mapping]) -> dict[str, NodeUsage]:
    """Requests of the pods that occupy each node (every bound pod not Succeeded/Failed)."""
    usage: dict[str, NodeUsage] = {}
    for p in pods:
        node = k8s.spec(p).get("nodeName")
        if not node or k8s.status(p).get("phase") in ("Succeeded", "Failed"):
            continue
        u = usage.setdefault(node, NodeUsage())
        u.pods += 1
        try:
            k8s.add_resources(u.requested, k8s.pod_requests(p))
        except ValueError:
            continue  # a pod with an unparseable quantity could not have been admitted; ignore it
    return usage


def fits(requests: k8s.Resources, node: Mapping, usage: NodeUsage | None) -> bool:
    try:
        alloc = k8s.node_allocatable(node)
        max_pods = int((k8s.status(node).get("allocatable") or {}).get("pods") or 0)
    except ValueError:
        return False
    used = usage or NodeUsage()
    if max_pods and used.pods + 1 > max_pods:
        return False
    return all(used.requested.get(r, 0) + requests.get(r, 0) <= alloc[r] for r in k8s.COMPUTE_RESOURCES)


def feasible_targets(pod: Mapping, nodes: list[Mapping], usage: dict[str, NodeUsage]) -> list[str]:
    current = k8s.spec(pod).get("nodeName")
    requests = k8s.pod_requests(pod)
    return [
        k8s.node_name(n)
        for n in nodes
        if k8s.node_name(n) != current
        and k8s.placement_problem(pod, n) is None
        and fits(requests, n, usage.get(k8s.node_name(n)))
    ]


def judge(current: Scored, others: list[Scored], gap: float, floor: float) -> tuple[Scored | None, str]:
    """(best target, "") when a move qualifies, else (None, why not)."""
    if current.status != "SCORED":
        return None, f"current node {current.status.lower()}"
    if current.score >= floor:
        return None, "current node at or above floor"
    scored = [s for s in others if s.status == "SCORED"]
    if not scored:
        return None, "no scored candidate node"
    best = min(scored, key=lambda s: (-s.score, s.node))
    if best.score - current.score < gap:
        return None, "no candidate better by the gap"
    return best, ""


def select(moves: list[Move], max_moves: int) -> tuple[list[Move], list[Move]]:
    """Largest gain first; one pod per workload; at most max_moves. Returns (chosen, deferred)."""
    chosen, deferred, workloads = [], [], set()
    for mv in sorted(moves, key=lambda m: (-m.gain, m.node_score, m.key)):
        if mv.workload in workloads:
            mv.action, mv.detail = "deferred", f"another pod of {mv.workload} moves this round"
            deferred.append(mv)
        elif len(chosen) >= max_moves:
            mv.action, mv.detail = "deferred", f"--max-moves {max_moves} reached"
            deferred.append(mv)
        else:
            chosen.append(mv)
            workloads.add(mv.workload)
    return chosen, deferred


# ---------------------------------------------------------------------- scoring


def pod_proto(ctx: PodContext) -> scoring_pb2.PodContext:
    return scoring_pb2.PodContext(
        namespace=ctx.namespace,
        name=ctx.name,
        cpu_request_cores=ctx.cpu_request_cores,
        memory_request_bytes=ctx.memory_request_bytes,
        qos_class=int(ctx.resolved_qos()),
        profile=int(ctx.profile) if ctx.profile is not None else 0,
        priority=ctx.priority,
    )


class AggregatorScorer:
    """BatchScore over a plain stub with a deadline (no retries, no breaker: one round is short)."""

    def __init__(self, address: str, timeout_s: float = DEFAULT_TIMEOUT_S, security: ClientSecurity | None = None):
        security = security or ClientSecurity(insecure=True)
        self.address = address
        self.timeout_s = timeout_s
        self.channel = security.channel(address)
        self.tokens = security.token_source()
        self.stub = scoring_pb2_grpc.ScoringServiceStub(self.channel)

    def score(self, ctx: PodContext, nodes: list[str]) -> tuple[list[Scored], str]:
        resp = self.stub.BatchScore(
            scoring_pb2.BatchScoreRequest(pod=pod_proto(ctx), node_names=nodes),
            timeout=self.timeout_s,
            metadata=metadata(self.tokens),
        )
        return [
            Scored(s.node_name, float(s.score), STATUS_NAMES.get(s.status, str(s.status)), s.reason)
            for s in resp.scores
        ], resp.model_version

    def close(self) -> None:
        self.channel.close()


# ---------------------------------------------------------------------- the round


def plan_round(core, scorer: AggregatorScorer, cfg: RebalanceConfig) -> Plan:
    from kubernetes.client.exceptions import ApiException

    try:
        nodes, _ = k8s.list_all(core.list_node)
        pods, _ = k8s.list_all(core.list_pod_for_all_namespaces)
    except ApiException as e:
        raise RebalanceError(f"Kubernetes API: {k8s.api_error_summary(e)}") from e
    except Exception as e:  # connection refused, timeouts
        raise RebalanceError(f"Kubernetes API unreachable: {type(e).__name__}: {e}") from e
    known = {k8s.node_name(n) for n in nodes}
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
        current = k8s.spec(pod)["nodeName"]
        if current not in known:
            plan.skipped["node not in the node list"] += 1
            continue
        try:
            ctx = k8s.pod_context(pod)
            targets = feasible_targets(pod, nodes, usage)
        except ValueError:
            plan.skipped["malformed pod"] += 1
            continue
        if not targets:
            plan.skipped["no other feasible node"] += 1
            continue
        try:
            scores, plan.model_version = scorer.score(ctx, [current] + targets)
        except grpc.RpcError as e:
            if e.code() in FATAL_CODES:
                raise RebalanceError(f"aggregator {scorer.address} answered {e.code().name}: {e.details()}") from e
            plan.skipped[f"aggregator {e.code().name}"] += 1
            continue
        by_node = {s.node: s for s in scores}
        if current not in by_node:
            plan.skipped["aggregator answered without the current node"] += 1
            continue
        best, why_not = judge(by_node[current], [by_node[t] for t in targets if t in by_node], cfg.gap, cfg.floor)
        if best is None:
            plan.skipped[why_not] += 1
            continue
        m = k8s.meta(pod)
        qualifying.append(
            Move(
                namespace=m.get("namespace") or "default",
                pod=m.get("name") or "",
                uid=m.get("uid") or "",
                workload=str(k8s.workload_of(pod)),
                node=current,
                node_score=by_node[current].score,
                node_reason=by_node[current].reason,
                target=best.node,
                target_score=best.score,
                candidates=len(targets),
            )
        )
    plan.moves, plan.deferred = select(qualifying, cfg.max_moves)
    return plan


def evict(core, mv: Move) -> None:
    """Eviction API (PDB-aware); sets mv.action/detail. Never raises for API answers."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    body = client.V1Eviction(
        api_version="policy/v1",
        kind="Eviction",
        metadata=client.V1ObjectMeta(name=mv.pod, namespace=mv.namespace),
        delete_options=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=mv.uid)),
    )
    try:
        core.create_namespaced_pod_eviction(
            name=mv.pod, namespace=mv.namespace, body=body, _request_timeout=k8s.DEFAULT_REQUEST_TIMEOUT_S
        )
        mv.action, mv.detail = "evicted", f"evicted from {mv.node}; the scheduler places its replacement"
    except ApiException as e:
        if e.status == 429:
            mv.action, mv.detail = "blocked", "PodDisruptionBudget: " + _status_text(e)
        elif e.status in (404, 409):
            mv.action, mv.detail = "gone", "pod deleted or replaced since the list: " + _status_text(e)
        else:
            mv.action, mv.detail = "failed", k8s.api_error_summary(e)
    except Exception as e:  # connection errors
        mv.action, mv.detail = "failed", f"{type(e).__name__}: {e}"


def _status_text(e) -> str:
    try:
        doc = json.loads(e.body or "{}")
    except ValueError:
        return str(e.body or e.reason)
    causes = "; ".join(c.get("message", "") for c in (doc.get("details") or {}).get("causes") or [] if c.get("message"))
    return (doc.get("message") or str(e.reason)) + (f" ({causes})" if causes else "")


def event_message(mv: Move, dry_run: bool) -> str:
    what = {
        "recommended": "move recommended (dry run, not evicted)" if dry_run else "move recommended",
        "evicted": "evicted so the scheduler can place it elsewhere",
        "blocked": f"eviction blocked: {mv.detail}",
        "failed": f"eviction failed: {mv.detail}",
    }.get(mv.action, mv.action)
    text = (
        f"KubeAttention: node {mv.node} scores {mv.node_score:.0f} ({mv.node_reason}); "
        f"node {mv.target} scores {mv.target_score:.0f}: {what}"
    )
    return text if len(text) <= EVENT_MESSAGE_MAX else text[: EVENT_MESSAGE_MAX - 1] + "…"


def post_event(core, mv: Move, dry_run: bool, now: datetime | None = None) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    now = now or datetime.now(UTC)
    body = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=f"{mv.pod}.{time.time_ns():x}", namespace=mv.namespace),
        involved_object=client.V1ObjectReference(
            api_version="v1", kind="Pod", name=mv.pod, namespace=mv.namespace, uid=mv.uid
        ),
        reason=EVENT_REASON,
        message=event_message(mv, dry_run),
        type="Warning" if mv.action == "failed" else "Normal",
        action="Evict" if mv.action in ("evicted", "blocked", "failed") else "Recommend",
        source=client.V1EventSource(component=EVENT_COMPONENT),
        reporting_component=REPORTING_CONTROLLER,
        reporting_instance=socket.gethostname()[:128],
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )
    try:
        core.create_namespaced_event(namespace=mv.namespace, body=body, _request_timeout=k8s.DEFAULT_REQUEST_TIMEOUT_S)
        mv.event = "posted"
    except ApiException as e:
        mv.event = f"failed: {k8s.api_error_summary(e)}"
    except Exception as e:
        mv.event = f"failed: {type(e).__name__}: {e}"


def execute(core, plan: Plan, cfg: RebalanceConfig) -> None:
    """Evict and/or post events for the selected moves; in a dry run without --events, nothing."""
    for mv in plan.moves:
        if cfg.evict:
            evict(core, mv)
        if cfg.events and mv.action != "gone":
            post_event(core, mv, dry_run=not cfg.evict)


# ---------------------------------------------------------------------- output


def as_json(plan: Plan, cfg: RebalanceConfig) -> dict:
    return {
        "dry_run": not cfg.evict,
        "gap": cfg.gap,
        "floor": cfg.floor,
        "max_moves": cfg.max_moves,
        "model_version": plan.model_version,
        "examined": plan.examined,
        "moves": [m.to_json() for m in plan.moves],
        "deferred": [m.to_json() for m in plan.deferred],
        "skipped": dict(sorted(plan.skipped.items())),
    }


def format_table(plan: Plan, cfg: RebalanceConfig) -> str:
    mode = "evicting" if cfg.evict else "dry run"
    lines = [
        f"rebalance ({mode}): {plan.examined} running pods examined, "
        f"{len(plan.moves) + len(plan.deferred)} qualify, {len(plan.moves)} selected "
        f"(max {cfg.max_moves}, gap {cfg.gap:g}, floor {cfg.floor:g})"
        + (f" · model {plan.model_version}" if plan.model_version else "")
    ]
    rows = plan.moves + plan.deferred
    if rows:
        wp = max(len("POD"), *(len(m.key) for m in rows))
        ww = max(len("WORKLOAD"), *(len(m.workload) for m in rows))
        wn = max(len("NODE"), *(len(m.node) for m in rows))
        wt = max(len("TARGET"), *(len(m.target) for m in rows))
        lines.append(
            f"{'POD':<{wp}}  {'WORKLOAD':<{ww}}  {'NODE':<{wn}}  {'SCORE':>5}  {'TARGET':<{wt}}  "
            f"{'SCORE':>5}  {'GAIN':>5}  ACTION"
        )
        for m in rows:
            action = m.action + (f": {m.detail}" if m.detail and m.action != "recommended" else "")
            if m.event:
                action += f" [event {m.event}]"
            lines.append(
                f"{m.key:<{wp}}  {m.workload:<{ww}}  {m.node:<{wn}}  {m.node_score:5.1f}  {m.target:<{wt}}  "
                f"{m.target_score:5.1f}  {m.gain:5.1f}  {action}"
            )
        lines.append("why the current nodes score low:")
        for node, reason in dict.fromkeys((m.node, m.node_reason) for m in plan.moves):
            lines.append(f"  {node}: {reason}")
    else:
        lines.append("no pod qualifies for a move")
    if plan.skipped:
        lines.append("not moved: " + ", ".join(f"{n} {why}" for why, n in sorted(plan.skipped.items())))
    return "\n".join(lines)


# ---------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--aggregator", default=DEFAULT_AGGREGATOR, help=f"aggregator gRPC address (default {DEFAULT_AGGREGATOR})"
    )
    p.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: in-cluster config in a pod, else $KUBECONFIG or ~/.kube/config)",
    )
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
    try:
        api = k8s.api_client(args.kubeconfig)
    except k8s.KubeConfigError as e:
        problems.append(str(e))
    if problems:
        print("kubeattention rebalance: invalid configuration:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    from kubernetes import client

    core = client.CoreV1Api(api)
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
