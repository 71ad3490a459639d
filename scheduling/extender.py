"""The kube-scheduler extender protocol (k8s.io/kube-scheduler/extender/v1) over BatchScore.

A stock kube-scheduler calls ``POST {urlPrefix}/prioritize`` and ``POST {urlPrefix}/filter``
with an ``ExtenderArgs`` body:

* ``Pod`` — the v1.Pod being scheduled;
* ``NodeNames`` — candidate names, when the extender is ``nodeCacheCapable: true``;
* ``Nodes`` — a full v1.NodeList otherwise.

kube-scheduler's Go structs carry no JSON tags, so current releases send the Go field names
(``Pod``, ``NodeNames``, ``Nodes``); older ones sent lower case (``pod``, ``nodenames``,
``nodes``). Both are accepted; answers use the current form:

* prioritize → ``HostPriorityList``: ``[{"Host": name, "Score": 0..10}]``
  (``MaxExtenderPriority`` = 10: the 0-100 score divided by 10, rounded);
* filter → ``ExtenderFilterResult``: ``NodeNames`` or ``Nodes``, ``FailedNodes``,
  ``FailedAndUnresolvableNodes``, ``Error``.

Filter removes only nodes whose *predicted* slowdown exceeds the pod's own tolerance
(annotation ``kubeattention.io/max-slowdown``, none by default), always with a message; it
never filters on stale or missing data. In shadow mode prioritize answers the same score
for every node (so placement is unchanged) and filter removes nothing; every decision is
recorded in ``ka:decisions`` either way.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aggregator.batch import BatchResult, BatchScorer
from aggregator.errors import InvalidInput
from scheduling.decisions import Decision
from wire.schema import PodContext
from wire.status import NAMES, Status

log = logging.getLogger(__name__)

MAX_EXTENDER_PRIORITY = 10
MAX_SLOWDOWN_ANNOTATION = "kubeattention.io/max-slowdown"
#: The score every node gets in shadow mode: all equal, so the scheduler's choice is its own.
SHADOW_SCORE = 0


@dataclass(frozen=True)
class ExtenderArgs:
    pod: dict
    node_names: list[str]
    nodes: dict | None  # the NodeList when the scheduler sent full nodes

    @property
    def pod_meta(self) -> dict:
        return self.pod.get("metadata") or {}


def _field(body: dict, *names: str) -> Any:
    for n in names:
        if n in body:
            return body[n]
    return None


def parse_args(body: Any, max_candidates: int) -> ExtenderArgs:
    """ExtenderArgs from either casing; raises InvalidInput naming the field."""
    if not isinstance(body, dict):
        raise InvalidInput("body", f"expected a JSON object (ExtenderArgs), got {type(body).__name__}")
    pod = _field(body, "Pod", "pod")
    if not isinstance(pod, dict):
        raise InvalidInput("Pod", "absent or not an object: ExtenderArgs needs the pod being scheduled")
    names = _field(body, "NodeNames", "nodenames", "nodeNames")
    nodes = _field(body, "Nodes", "nodes")
    if names is None and nodes is None:
        raise InvalidInput("NodeNames", "neither NodeNames nor Nodes given")
    if nodes is not None:  # checked even beside NodeNames: filter answers with the list it was sent
        if not isinstance(nodes, dict) or not isinstance(nodes.get("items", []), list):
            raise InvalidInput("Nodes", "must be a v1.NodeList with an items list")
        listed = []
        for i, item in enumerate(nodes.get("items") or []):
            metadata = item.get("metadata") if isinstance(item, dict) else None
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if not isinstance(name, str) or not name:
                raise InvalidInput(f"Nodes.items[{i}].metadata.name", "absent or empty")
            listed.append(name)
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise InvalidInput("NodeNames", "must be a list of non-empty node names")
    else:
        names = listed
    if len(names) > max_candidates:
        raise InvalidInput(
            "NodeNames",
            f"{len(names)} candidates exceed the limit of {max_candidates} (aggregator flag --max-candidates)",
        )
    return ExtenderArgs(pod=pod, node_names=list(names), nodes=nodes if isinstance(nodes, dict) else None)


def max_slowdown(pod: dict) -> float | None:
    """The pod's tolerance from its annotation, or None. Raises InvalidInput when unparsable."""
    metadata = pod.get("metadata") or {}
    annotations = (metadata.get("annotations") if isinstance(metadata, dict) else None) or {}
    if not isinstance(metadata, dict) or not isinstance(annotations, dict):
        raise InvalidInput("Pod.metadata.annotations", "expected metadata and its annotations as JSON objects")
    text = annotations.get(MAX_SLOWDOWN_ANNOTATION)
    if text is None:
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 1.0:
        raise InvalidInput(
            f"metadata.annotations[{MAX_SLOWDOWN_ANNOTATION}]", f'{text!r} is not a slowdown >= 1.0 (e.g. "1.5")'
        )
    return value


class Extender:
    """prioritize / filter over a BatchScorer; records decisions through ``record`` (non-blocking)."""

    def __init__(
        self,
        scorer: BatchScorer,
        pod_context: Callable[[dict], PodContext],
        *,
        shadow: bool,
        max_candidates: int,
        record: Callable[[Decision], None] | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ):
        self.scorer = scorer
        self.pod_context = pod_context
        self.shadow = shadow
        self.max_candidates = max_candidates
        self.record = record
        self.clock_ms = clock_ms

    def _score(self, args: ExtenderArgs) -> tuple[PodContext, BatchResult]:
        try:
            ctx = self.pod_context(args.pod)
        except ValueError as e:
            raise InvalidInput("Pod", str(e)) from None
        if len(set(args.node_names)) != len(args.node_names):
            raise InvalidInput("NodeNames", "a node appears more than once")
        result = self.scorer.score(ctx, args.node_names)
        self._record(args, ctx, result)
        return ctx, result

    def prioritize(self, body: Any) -> list[dict]:
        args = parse_args(body, self.max_candidates)
        if not args.node_names:
            return []
        _ctx, result = self._score(args)
        if self.shadow:
            return [{"Host": n, "Score": SHADOW_SCORE} for n in result.names]
        return [
            {"Host": n, "Score": int(round(s / 100 * MAX_EXTENDER_PRIORITY))}
            for n, s in zip(result.names, result.scores.tolist())
        ]

    def filter(self, body: Any) -> dict:
        args = parse_args(body, self.max_candidates)
        tolerance = max_slowdown(args.pod)
        failed: dict[str, str] = {}
        if args.node_names and tolerance is not None and not self.shadow:
            _ctx, result = self._score(args)
            for name, status, slow, reason in zip(
                result.names, result.status.tolist(), result.slowdown.tolist(), result.reasons
            ):
                if status == Status.SCORED and slow > tolerance:
                    failed[name] = (
                        f"KubeAttention: predicted slowdown {slow:.2f}x exceeds this pod's "
                        f"{MAX_SLOWDOWN_ANNOTATION} {tolerance:g} ({reason})"
                    )
        kept = [n for n in args.node_names if n not in failed]
        out: dict[str, Any] = {"FailedNodes": failed, "FailedAndUnresolvableNodes": {}, "Error": ""}
        if args.nodes is not None:
            keep = set(kept)
            out["Nodes"] = {
                **args.nodes,
                "items": [i for i in args.nodes.get("items") or [] if i["metadata"]["name"] in keep],
            }
            out["NodeNames"] = None
        else:
            out["NodeNames"] = kept
            out["Nodes"] = None
        return out

    def _record(self, args: ExtenderArgs, ctx: PodContext, result: BatchResult) -> None:
        if self.record is None:
            return
        scored = [i for i, st in enumerate(result.status.tolist()) if st == Status.SCORED]
        best = max(scored, key=lambda i: result.scores[i]) if scored else None
        meta = args.pod_meta
        slowdowns = [None if math.isnan(s) else s for s in result.slowdown.tolist()]
        self.record(
            Decision(
                ts_ms=self.clock_ms(),
                pod_uid=str(meta.get("uid") or ""),
                pod_namespace=str(meta.get("namespace") or "default"),
                pod_name=str(meta.get("name") or ""),
                pod={
                    "cpu_request_cores": ctx.cpu_request_cores,
                    "memory_request_bytes": ctx.memory_request_bytes,
                    "qos": ctx.resolved_qos().name,
                    "profile": ctx.resolved_profile().annotation,
                    "priority": ctx.priority,
                },
                candidates=result.names,
                scores=result.scores.tolist(),
                statuses=[NAMES[s] for s in result.status.tolist()],
                slowdowns=slowdowns,
                recommended=result.names[best] if best is not None else "",
                model_version=result.model_version,
                mode="shadow" if self.shadow else "active",
                recommended_reason=result.reasons[best] if best is not None else "",
            )
        )
