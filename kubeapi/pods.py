"""A pod as KubeAttention reads it: what it asks for, the pod context the model takes, and who
owns it. Pure functions over the pod's JSON dict (``kubeapi.fields``), tested on recorded
objects, never needing a cluster.

* ``pod_context(pod)`` -> ``wire.schema.PodContext``:

  - requests as kube-scheduler counts them (k8s.io/component-helpers ``PodRequests``):
    the sum over containers; restartable init containers (sidecars, ``restartPolicy:
    Always``) add to that sum; every other init container needs its own request plus the
    sidecars started before it; the pod needs the larger of the two, per resource; pod-level
    ``spec.resources.requests`` replace the container sums where set; ``spec.overhead`` is
    added. A container limit without a request counts as the request (the API server's
    defaulting does exactly that, so stored pods already carry it);
  - QoS class as Kubernetes derives it (``status.qosClass`` when the API server set it,
    otherwise computed from requests and limits over containers and init containers: no
    cpu/memory requests or limits -> BestEffort; every container with cpu and memory limits
    equal to its requests -> Guaranteed; otherwise Burstable);
  - ``spec.priority`` (0 when unset);
  - the profile from the ``kubeattention.io/profile`` annotation, or ``None`` so that
    ``PodContext.resolved_profile`` infers it. An unknown annotation value is logged and
    treated as absent: a typo must not stop the pod from being scheduled.

* owners: the controller reference, the workload a pod belongs to (a ReplicaSet with the
  ``pod-template-hash`` suffix is folded into its Deployment, so two ReplicaSets of one
  rollout count as one workload), DaemonSet, mirror and static pods.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeapi.fields import mapping, meta, sequence, spec, status
from kubeapi.resources import (
    COMPUTE_RESOURCES,
    Resources,
    add_resources,
    max_resources,
    quantities,
    zero_resources,
)
from wire.schema import PROFILE_ANNOTATION, PodContext, Profile, QoS

log = logging.getLogger(__name__)

#: Namespaces whose pods the rebalancer never touches.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "kubeattention-system"})
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
QOS_BY_NAME = {"Guaranteed": QoS.GUARANTEED, "Burstable": QoS.BURSTABLE, "BestEffort": QoS.BEST_EFFORT}


def pod_key(pod: Mapping) -> str:
    m = meta(pod)
    return f"{m.get('namespace') or 'default'}/{m.get('name') or '?'}"


# ------------------------------------------------------------------------- requests, QoS


def _container_resources(c: Mapping, field: str) -> tuple[Resources, Resources]:
    """(requests, limits) of one container, with the API's defaulting of requests from limits."""
    res = mapping(c.get("resources"), f"{field}.resources")
    limits = quantities(res.get("limits"), f"{field}.resources.limits")
    requests = quantities(res.get("requests"), f"{field}.resources.requests")
    for r, q in limits.items():
        requests.setdefault(r, q)
    return requests, limits


def _containers(pod: Mapping, kind: str) -> list[tuple[Mapping, str]]:
    out = []
    for i, c in enumerate(sequence(spec(pod).get(kind), f"spec.{kind}")):
        c = mapping(c, f"spec.{kind}[{i}]")
        name = c.get("name")
        out.append((c, f"spec.{kind}[{name if isinstance(name, str) and name else i}]"))
    return out


def pod_requests(pod: Mapping) -> Resources:
    """cpu (cores) and memory (bytes) the scheduler reserves for this pod (see the module doc).

    Raises ValueError naming the field when a quantity cannot be parsed.
    """
    reqs = zero_resources()
    for c, field in _containers(pod, "containers"):
        add_resources(reqs, _container_resources(c, field)[0])
    sidecars = zero_resources()
    init_max = zero_resources()
    for c, field in _containers(pod, "initContainers"):
        own = _container_resources(c, field)[0]
        if c.get("restartPolicy") == "Always":  # a sidecar: runs beside the app containers
            add_resources(reqs, own)
            add_resources(sidecars, own)
            needed = dict(sidecars)
        else:
            needed = dict(own)
            add_resources(needed, sidecars)
        max_resources(init_max, needed)
    max_resources(reqs, init_max)
    pod_level = mapping(spec(pod).get("resources"), "spec.resources")
    pod_req, pod_lim = (
        quantities(pod_level.get("requests"), "spec.resources.requests"),
        quantities(pod_level.get("limits"), "spec.resources.limits"),
    )
    for r in COMPUTE_RESOURCES:
        if r in pod_req or r in pod_lim:
            reqs[r] = pod_req[r] if r in pod_req else pod_lim[r]
    add_resources(reqs, quantities(spec(pod).get("overhead"), "spec.overhead"))
    return reqs


def compute_qos(pod: Mapping) -> QoS:
    """Kubernetes' ComputePodQOS over cpu and memory (pod-level resources when the pod sets them)."""
    pod_level = mapping(spec(pod).get("resources"), "spec.resources")
    units: list[tuple[Mapping, str]]
    if pod_level.get("requests") or pod_level.get("limits"):
        units = [({"resources": pod_level}, "spec.resources")]
    else:
        units = _containers(pod, "containers") + _containers(pod, "initContainers")
    requests, limits = zero_resources(), zero_resources()
    guaranteed = True
    for c, field in units:
        req, lim = _container_resources(c, field)
        add_resources(requests, {r: q for r, q in req.items() if q > 0})
        positive = {r: q for r, q in lim.items() if q > 0}
        add_resources(limits, positive)
        if set(positive) != set(COMPUTE_RESOURCES):
            guaranteed = False
    requested = {r for r, q in requests.items() if q > 0}
    limited = {r for r, q in limits.items() if q > 0}
    if not requested and not limited:
        return QoS.BEST_EFFORT
    if guaranteed and requested == limited and all(requests[r] == limits[r] for r in requested):
        return QoS.GUARANTEED
    return QoS.BURSTABLE


def pod_qos(pod: Mapping) -> QoS:
    """``status.qosClass`` when the API server set it (it always does on create), else computed."""
    given = status(pod).get("qosClass")
    return (QOS_BY_NAME.get(given) if isinstance(given, str) else None) or compute_qos(pod)


def pod_profile(pod: Mapping) -> Profile | None:
    text = mapping(meta(pod).get("annotations"), "metadata.annotations").get(PROFILE_ANNOTATION)
    if text is None:
        return None
    try:
        if not isinstance(text, str):
            raise ValueError(f"expected a string, got {type(text).__name__}")
        return Profile.parse(text)
    except ValueError as e:
        log.warning("pod %s: annotation %s ignored, profile inferred instead: %s", pod_key(pod), PROFILE_ANNOTATION, e)
        return None


def pod_priority(pod: Mapping) -> int:
    value = spec(pod).get("priority")
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        raise ValueError(f"spec.priority: {value!r} is not an integer") from None


def pod_context(pod: Mapping) -> PodContext:
    """The pod as the model sees it. Pure; raises ValueError naming a malformed field."""
    if not isinstance(pod, Mapping):
        raise ValueError(f"pod: expected a JSON object, got {type(pod).__name__}")
    reqs = pod_requests(pod)
    m = meta(pod)
    return PodContext(
        cpu_request_cores=float(reqs["cpu"]),
        memory_request_bytes=int(reqs["memory"].to_integral_value(rounding="ROUND_CEILING")),
        qos=pod_qos(pod),
        profile=pod_profile(pod),
        priority=pod_priority(pod),
        namespace=str(m.get("namespace") or ""),
        name=str(m.get("name") or ""),
    )


_serializer = None


def to_dict(obj: Any) -> dict:
    """A kubernetes client model (V1Pod, V1Node, ...) as the API's camelCase JSON dict."""
    global _serializer
    if isinstance(obj, Mapping):
        return dict(obj)
    if _serializer is None:
        from kubernetes.client import ApiClient

        _serializer = ApiClient()
    return _serializer.sanitize_for_serialization(obj)


def pod_context_from_v1(pod: Any) -> PodContext:
    """``pod_context`` for a kubernetes client ``V1Pod`` object."""
    return pod_context(to_dict(pod))


# ------------------------------------------------------------------------- owners


@dataclass(frozen=True)
class Workload:
    """The controller a pod belongs to: a Deployment for ReplicaSet pods of a Deployment."""

    namespace: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def controller_ref(pod: Mapping) -> Mapping | None:
    for ref in meta(pod).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def workload_of(pod: Mapping) -> Workload | None:
    ref = controller_ref(pod)
    if ref is None:
        return None
    m = meta(pod)
    ns = m.get("namespace") or "default"
    kind, name = ref.get("kind") or "?", ref.get("name") or "?"
    tpl_hash = (m.get("labels") or {}).get(POD_TEMPLATE_HASH_LABEL)
    if kind == "ReplicaSet" and tpl_hash and name.endswith(f"-{tpl_hash}"):
        return Workload(ns, "Deployment", name[: -len(tpl_hash) - 1])
    return Workload(ns, kind, name)


def is_daemonset_pod(pod: Mapping) -> bool:
    ref = controller_ref(pod)
    return ref is not None and ref.get("kind") == "DaemonSet"


def is_mirror_or_static_pod(pod: Mapping) -> bool:
    """A static pod's API mirror (annotation, or owned by its Node), or a pod from a file/http source."""
    ann = meta(pod).get("annotations") or {}
    ref = controller_ref(pod)
    return (
        MIRROR_ANNOTATION in ann
        or ann.get(CONFIG_SOURCE_ANNOTATION) in ("file", "http")
        or (ref is not None and ref.get("kind") == "Node")
    )
