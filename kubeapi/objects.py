"""Kubernetes semantics shared by the extender, the outcome collector and the rebalancer.

Everything here that reads a pod or a node is a pure function over the object's JSON dict
in the API's own camelCase shape (what kube-apiserver returns and what kube-scheduler
sends an extender), so it is tested on recorded objects and never needs a cluster:

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

* owner helpers: the controller reference, the workload a pod belongs to (a ReplicaSet
  with the ``pod-template-hash`` suffix is folded into its Deployment, so two ReplicaSets of
  one rollout count as one workload), DaemonSet, mirror and static pods;
* node helpers: readiness, taints against tolerations (the scheduler's ``ToleratesTaint``),
  node selectors and required node affinity;
* ``api_client``: a kubernetes ``ApiClient`` from a kubeconfig file, in-cluster config, or
  the default kubeconfig; ``list_all``: a paginated raw list; ``Backoff``: capped
  exponential backoff with jitter.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from kubeapi.quantity import parse_quantity
from wire.schema import PROFILE_ANNOTATION, PodContext, Profile, QoS

log = logging.getLogger(__name__)

#: Namespaces whose pods the rebalancer never touches.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "kubeattention-system"})
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
#: Resources that enter the pod context and the QoS class (as in Kubernetes' QoS helper).
COMPUTE_RESOURCES = ("cpu", "memory")
#: Taint effects that keep a pod off a node at scheduling time.
SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")
QOS_BY_NAME = {"Guaranteed": QoS.GUARANTEED, "Burstable": QoS.BURSTABLE, "BestEffort": QoS.BEST_EFFORT}

DEFAULT_PAGE_SIZE = 500
DEFAULT_REQUEST_TIMEOUT_S = 30.0

Resources = dict[str, Decimal]


class KubeConfigError(Exception):
    """No usable Kubernetes client configuration (kubeconfig or in-cluster)."""


# ------------------------------------------------------------------------- small readers


def mapping(value, field: str) -> Mapping:
    """``value`` as an object; absent/null/empty -> {}. Raises ValueError naming the field otherwise
    (a pod body from a scheduler is JSON of any shape)."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: expected an object, got {type(value).__name__}")
    return value


def sequence(value, field: str) -> list:
    if not value:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field}: expected a list, got {type(value).__name__}")
    return value


def meta(obj: Mapping) -> Mapping:
    return mapping(obj.get("metadata"), "metadata")


def spec(obj: Mapping) -> Mapping:
    return mapping(obj.get("spec"), "spec")


def status(obj: Mapping) -> Mapping:
    return mapping(obj.get("status"), "status")


def pod_key(pod: Mapping) -> str:
    m = meta(pod)
    return f"{m.get('namespace') or 'default'}/{m.get('name') or '?'}"


def parse_time(text: str | None) -> float | None:
    """RFC 3339 time as the API writes it ("2026-11-29T10:00:00Z") -> Unix seconds; None if absent/bad."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ------------------------------------------------------------------------- requests, QoS


def zero_resources() -> Resources:
    return {r: Decimal(0) for r in COMPUTE_RESOURCES}


def _quantities(values: Mapping | None, field: str) -> Resources:
    out: Resources = {}
    values = mapping(values, field)
    for r in COMPUTE_RESOURCES:
        if values and values.get(r) is not None:
            out[r] = parse_quantity(values[r], f"{field}.{r}")
    return out


def _container_resources(c: Mapping, field: str) -> tuple[Resources, Resources]:
    """(requests, limits) of one container, with the API's defaulting of requests from limits."""
    res = mapping(c.get("resources"), f"{field}.resources")
    limits = _quantities(res.get("limits"), f"{field}.resources.limits")
    requests = _quantities(res.get("requests"), f"{field}.resources.requests")
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


def add_resources(into: Resources, other: Resources) -> None:
    for r, q in other.items():
        into[r] = into.get(r, Decimal(0)) + q


def max_resources(into: Resources, other: Resources) -> None:
    for r, q in other.items():
        into[r] = max(into.get(r, Decimal(0)), q)


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
        _quantities(pod_level.get("requests"), "spec.resources.requests"),
        _quantities(pod_level.get("limits"), "spec.resources.limits"),
    )
    for r in COMPUTE_RESOURCES:
        if r in pod_req or r in pod_lim:
            reqs[r] = pod_req.get(r, pod_lim.get(r))
    add_resources(reqs, _quantities(spec(pod).get("overhead"), "spec.overhead"))
    return reqs


def compute_qos(pod: Mapping) -> QoS:
    """Kubernetes' ComputePodQOS over cpu and memory (pod-level resources when the pod sets them)."""
    pod_level = mapping(spec(pod).get("resources"), "spec.resources")
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


# ------------------------------------------------------------------------- nodes


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


def _requirement_matches(req: Mapping, values: Mapping[str, str]) -> bool:
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


# ------------------------------------------------------------------------- the API


def api_client(kubeconfig: str | None = None, environ: Mapping[str, str] | None = None):
    """An ApiClient from ``kubeconfig`` when given, else in-cluster config when running in a
    pod (``KUBERNETES_SERVICE_HOST`` set), else ``$KUBECONFIG`` / ``~/.kube/config``."""
    from kubernetes import client, config

    environ = os.environ if environ is None else environ
    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig)
        if environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        return config.new_client_from_config()
    except (config.ConfigException, OSError, TypeError, ValueError) as e:
        where = kubeconfig or (
            "in-cluster config" if environ.get("KUBERNETES_SERVICE_HOST") else "the default kubeconfig"
        )
        raise KubeConfigError(f"no Kubernetes client configuration from {where}: {e}") from e


def list_all(
    list_fn: Callable[..., Any],
    page_size: int = DEFAULT_PAGE_SIZE,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    **kwargs,
) -> tuple[list[dict], str]:
    """Every item of a list call (``CoreV1Api.list_pod_for_all_namespaces``, ``list_node``, ...)
    as raw JSON dicts, following ``continue`` tokens; returns (items, list resourceVersion).

    Items stay in the API's JSON shape (no model round trip: a 10 000-pod list decodes in
    well under a second). API errors propagate as the client's ``ApiException``.
    """
    items: list[dict] = []
    token: str | None = None
    resource_version = ""
    while True:
        resp = list_fn(
            limit=page_size, _continue=token, _preload_content=False, _request_timeout=request_timeout_s, **kwargs
        )
        try:
            doc = json.loads(resp.data)
        finally:
            resp.release_conn()
        items.extend(doc.get("items") or [])
        lm = doc.get("metadata") or {}
        resource_version = lm.get("resourceVersion") or resource_version
        token = lm.get("continue") or None
        if token is None:
            return items, resource_version


class Backoff:
    """Capped exponential backoff with downward jitter: initial, ×factor each failure, ≤ maximum."""

    def __init__(
        self,
        initial_s: float = 0.5,
        maximum_s: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ):
        if not 0 < initial_s <= maximum_s:
            raise ValueError(f"backoff: need 0 < initial ({initial_s}) <= maximum ({maximum_s})")
        self.initial_s, self.maximum_s, self.factor, self.jitter, self.rng = initial_s, maximum_s, factor, jitter, rng
        self.failures = 0

    def next(self) -> float:
        delay = min(self.maximum_s, self.initial_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        return delay * (1.0 - self.jitter * self.rng())

    def reset(self) -> None:
        self.failures = 0


def api_error_summary(exc: BaseException) -> str:
    """A one-line description of a kubernetes ApiException (status, reason, the Status message)."""
    status_code = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    message = ""
    if body:
        try:
            message = json.loads(body).get("message") or ""
        except (ValueError, AttributeError, TypeError):
            message = str(body)[:200]
    reason = getattr(exc, "reason", None) or type(exc).__name__
    if status_code is None:
        return f"{type(exc).__name__}: {exc}"
    return f"HTTP {status_code} {reason}" + (f": {message}" if message else "")
