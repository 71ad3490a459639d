"""A node as the scheduler sees it for one pod: readiness, taints against the pod's tolerations
(the scheduler's ``ToleratesTaint``), node selectors and required node affinity, and its
allocatable cpu and memory. Pure functions over JSON dicts (``kubeapi.fields``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from kubeapi.fields import meta, spec, status
from kubeapi.quantity import parse_quantity
from kubeapi.resources import COMPUTE_RESOURCES, Resources

#: Taint effects that keep a pod off a node at scheduling time.
SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")


def node_name(node: Mapping) -> str:
    return str(meta(node).get("name") or "")


def node_ready(node: Mapping) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status(node).get("conditions") or [])


def tolerates(toleration: Mapping, taint: Mapping) -> bool:
    """The scheduler's ToleratesTaint: effect and key match when set; Equal compares values."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False  # operators this client does not know never match


def untolerated_taint(pod: Mapping, node: Mapping, effects: tuple[str, ...] = SCHEDULING_EFFECTS) -> Mapping | None:
    tolerations = spec(pod).get("tolerations") or []
    for taint in spec(node).get("taints") or []:
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _requirement_matches(req: Mapping, values: Mapping) -> bool:
    key, op, wanted = req.get("key"), req.get("operator"), req.get("values") or []
    have = values.get(key)
    if op == "In":
        return have is not None and have in wanted
    if op == "NotIn":
        return have is None or have not in wanted
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and have is not None and len(wanted) == 1:
        try:
            a, b = int(have), int(wanted[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_affinity_matches(pod: Mapping, node: Mapping) -> bool:
    """``spec.nodeSelector`` and required node affinity (terms ORed, requirements ANDed)."""
    labels = meta(node).get("labels") or {}
    selector = spec(pod).get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    required = ((spec(pod).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    fields = {"metadata.name": node_name(node)}
    for term in terms:
        exprs, field_exprs = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not field_exprs:
            continue  # an empty term matches no objects
        if all(_requirement_matches(e, labels) for e in exprs) and all(
            _requirement_matches(f, fields) for f in field_exprs
        ):
            return True
    return False


def placement_problem(pod: Mapping, node: Mapping) -> str | None:
    """Why the scheduler would not place this pod on this node (cordon, readiness, taints,
    selectors), or None. Resources are checked by the caller, who knows the node's pods."""
    if spec(node).get("unschedulable"):
        return "cordoned"
    if not node_ready(node):
        return "not Ready"
    taint = untolerated_taint(pod, node)
    if taint is not None:
        value = f"={taint['value']}" if taint.get("value") else ""
        return f"taint {taint.get('key')}{value}:{taint.get('effect')} not tolerated"
    if not node_affinity_matches(pod, node):
        return "node selector or affinity does not match"
    return None


def node_allocatable(node: Mapping) -> Resources:
    alloc = status(node).get("allocatable") or {}
    return {
        r: parse_quantity(alloc[r], f"node {node_name(node)} status.allocatable.{r}") if alloc.get(r) else Decimal(0)
        for r in COMPUTE_RESOURCES
    }
