"""A cgroup path -> the pod it belongs to: pod UID, QoS class, container id.

It understands the kubelet's cgroupfs driver (``/kubepods/burstable/pod<uid>/<id>``) and
systemd driver (``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid
with _>.slice/cri-containerd-<id>.scope``), on cgroup v1 and v2, for containerd, CRI-O
and Docker, also nested under another root (kind, Docker Desktop).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wire.schema import QoS

_UID = re.compile(r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$")
"""A pod UID: an RFC 4122 UUID, or the 32-hex config hash the kubelet gives static pods."""
_POD_CGROUPFS = re.compile(r"^pod(?P<uid>[0-9a-fA-F-]{32,36})$")
_POD_SYSTEMD = re.compile(r"^(?:[\w-]*-)?pod(?P<uid>[0-9a-fA-F_]{32,36})\.slice$")
_CONTAINER_SCOPE = re.compile(
    r"^(?P<rt>cri-containerd|crio|docker|cri-o)-(?P<conmon>conmon-)?"
    r"(?P<id>[0-9a-f]{12,64})\.scope$"
)
_CONTAINER_CGROUPFS = re.compile(r"^(?:(?P<rt>cri-containerd|crio|docker)-)?(?P<id>[0-9a-f]{64})$")
_RUNTIMES = {"cri-containerd": "containerd", "crio": "cri-o", "cri-o": "cri-o", "docker": "docker"}
_QOS_WORDS = {"burstable": QoS.BURSTABLE, "besteffort": QoS.BEST_EFFORT}


@dataclass(frozen=True)
class PodCgroup:
    """What a cgroup path says about the pod it belongs to."""

    pod_uid: str
    """Canonical (dashed, lower-case) pod UID."""
    qos: QoS
    container_id: str | None
    """The container's runtime id; None for the pod-level cgroup (and CRI-O's conmon)."""
    runtime: str | None
    """containerd, cri-o or docker when the path names it (systemd driver); else None."""
    pod_path: str
    """The pod-level cgroup path, a prefix of the parsed path."""


def pod_component(part: str) -> str | None:
    m = _POD_CGROUPFS.match(part) or _POD_SYSTEMD.match(part)
    if m is None:
        return None
    uid = m.group("uid").replace("_", "-").lower()
    return uid if _UID.match(uid) else None


def _qos_of(parent: str, pod_part: str) -> QoS:
    """From the QoS-level parent (``burstable``, ``kubepods-burstable.slice``) or the systemd pod
    slice name (``kubepods-burstable-pod<uid>.slice``); a pod directly under kubepods is Guaranteed."""
    word = parent.removesuffix(".slice").rsplit("-", 1)[-1]
    if word in _QOS_WORDS:
        return _QOS_WORDS[word]
    for key, qos in _QOS_WORDS.items():
        if f"-{key}-pod" in pod_part:
            return qos
    return QoS.GUARANTEED


def parse_cgroup_path(path: str) -> PodCgroup | None:
    """The pod behind a cgroup path (absolute, relative to a hierarchy, or a /proc/PID/cgroup line).

    Returns None for cgroups that are not inside a pod (system slices, QoS-level cgroups).
    """
    parts = [p for p in path.strip().split("/") if p]
    for i, part in enumerate(parts):
        uid = pod_component(part)
        if uid is None:
            continue
        if not any("kubepods" in p for p in parts[:i]):
            return None  # something named pod<hex> outside the kubelet's tree
        parent = parts[i - 1] if i else ""
        container_id = runtime = None
        if i + 1 < len(parts):
            child = parts[i + 1]
            if m := _CONTAINER_SCOPE.match(child):
                runtime = _RUNTIMES[m.group("rt")]
                container_id = None if m.group("conmon") else m.group("id")
            elif m := _CONTAINER_CGROUPFS.match(child):
                runtime = _RUNTIMES.get(m.group("rt") or "")
                container_id = m.group("id")
        prefix = "/" if path.lstrip().startswith("/") or ":" in path else ""
        pod_path = prefix + "/".join(p for p in parts[: i + 1] if ":" not in p)
        return PodCgroup(uid, _qos_of(parent, part), container_id, runtime, pod_path)
    return None
