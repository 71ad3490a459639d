"""What the rebalancer writes to the cluster for a selected move: an eviction through the
Eviction API (policy/v1, PodDisruptionBudgets apply; the pod's uid as a precondition) and a
core/v1 Event on the pod saying what was recommended or done. Neither raises for an API
answer: the outcome is written on the move."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime

from controllers.rebalance_config import RebalanceConfig
from controllers.rebalance_rules import Move, Plan
from kubeapi.api_client import DEFAULT_REQUEST_TIMEOUT_S, api_error_summary

EVENT_REASON = "KubeAttentionRebalance"
EVENT_COMPONENT = "kubeattention-rebalancer"
REPORTING_CONTROLLER = "kubeattention.io/rebalancer"
EVENT_MESSAGE_MAX = 1024


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
            name=mv.pod, namespace=mv.namespace, body=body, _request_timeout=DEFAULT_REQUEST_TIMEOUT_S
        )
        mv.action, mv.detail = "evicted", f"evicted from {mv.node}; the scheduler places its replacement"
    except ApiException as e:
        if e.status == 429:
            mv.action, mv.detail = "blocked", "PodDisruptionBudget: " + _status_text(e)
        elif e.status in (404, 409):
            mv.action, mv.detail = "gone", "pod deleted or replaced since the list: " + _status_text(e)
        else:
            mv.action, mv.detail = "failed", api_error_summary(e)
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
        core.create_namespaced_event(namespace=mv.namespace, body=body, _request_timeout=DEFAULT_REQUEST_TIMEOUT_S)
        mv.event = "posted"
    except ApiException as e:
        mv.event = f"failed: {api_error_summary(e)}"
    except Exception as e:
        mv.event = f"failed: {type(e).__name__}: {e}"


def execute(core, plan: Plan, cfg: RebalanceConfig) -> None:
    """Evict and/or post events for the selected moves; in a dry run without --events, nothing."""
    for mv in plan.moves:
        if cfg.evict:
            evict(core, mv)
        if cfg.events and mv.action != "gone":
            post_event(core, mv, dry_run=not cfg.evict)
