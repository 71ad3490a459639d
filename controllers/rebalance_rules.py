"""The rebalancer's rules, pure functions over the API's JSON dicts and the scores: which
running pods may move, where the scheduler could put each, whether a move pays, and which
of the qualifying moves one round takes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from client.result import NodeScore
from kubeapi.fields import meta, spec, status
from kubeapi.nodes import node_allocatable, node_name, placement_problem
from kubeapi.pods import SYSTEM_NAMESPACES, controller_ref, is_daemonset_pod, is_mirror_or_static_pod, pod_requests
from kubeapi.resources import COMPUTE_RESOURCES, Resources, add_resources, zero_resources
from wire.status import Status


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


def skip_reason(pod: Mapping) -> str | None:
    """Why a listed pod is not considered for a move, or None."""
    m, sp = meta(pod), spec(pod)
    if status(pod).get("phase") != "Running" or not sp.get("nodeName"):
        return "not running"
    if m.get("deletionTimestamp"):
        return "being deleted"
    if (m.get("namespace") or "default") in SYSTEM_NAMESPACES:
        return "system namespace"
    if is_mirror_or_static_pod(pod):
        return "mirror/static pod"
    if is_daemonset_pod(pod):
        return "DaemonSet pod"
    if controller_ref(pod) is None:
        return "no controller"
    return None


@dataclass
class NodeUsage:
    requested: Resources = field(default_factory=zero_resources)
    pods: int = 0


def node_usage(pods: Sequence[Mapping]) -> dict[str, NodeUsage]:
    """Requests of the pods that occupy each node (every bound pod not Succeeded/Failed)."""
    usage: dict[str, NodeUsage] = {}
    for p in pods:
        node = spec(p).get("nodeName")
        if not node or status(p).get("phase") in ("Succeeded", "Failed"):
            continue
        u = usage.setdefault(node, NodeUsage())
        u.pods += 1
        try:
            add_resources(u.requested, pod_requests(p))
        except ValueError:
            continue  # a pod with an unparseable quantity could not have been admitted; ignore it
    return usage


def fits(requests: Resources, node: Mapping, usage: NodeUsage | None) -> bool:
    try:
        alloc = node_allocatable(node)
        max_pods = int((status(node).get("allocatable") or {}).get("pods") or 0)
    except ValueError:
        return False
    used = usage or NodeUsage()
    if max_pods and used.pods + 1 > max_pods:
        return False
    return all(used.requested.get(r, 0) + requests.get(r, 0) <= alloc[r] for r in COMPUTE_RESOURCES)


def feasible_targets(pod: Mapping, nodes: Sequence[Mapping], usage: dict[str, NodeUsage]) -> list[str]:
    current = spec(pod).get("nodeName")
    requests = pod_requests(pod)
    return [
        node_name(n)
        for n in nodes
        if node_name(n) != current and placement_problem(pod, n) is None and fits(requests, n, usage.get(node_name(n)))
    ]


def judge(current: NodeScore, others: list[NodeScore], gap: float, floor: float) -> tuple[NodeScore | None, str]:
    """(best target, "") when a move qualifies, else (None, why not)."""
    if current.status is not Status.SCORED:
        return None, f"current node {current.status.label}"
    if current.score >= floor:
        return None, "current node at or above floor"
    scored = [s for s in others if s.status is Status.SCORED]
    if not scored:
        return None, "no scored candidate node"
    best = min(scored, key=lambda s: (-s.score, s.name))
    if best.score - current.score < gap:
        return None, "no candidate better by the gap"
    return best, ""


def select(moves: list[Move], max_moves: int) -> tuple[list[Move], list[Move]]:
    """Largest gain first; one pod per workload; at most max_moves. Returns (chosen, deferred)."""
    chosen: list[Move] = []
    deferred: list[Move] = []
    workloads: set[str] = set()
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
