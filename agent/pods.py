"""Attribution: which pod a cgroup belongs to, who that pod is, and which pods stand out.

Four small pieces, in data-flow order:

1. :func:`parse_cgroup_path` - a cgroup path -> pod UID, QoS class, container id. It
   understands the kubelet's cgroupfs driver (``/kubepods/burstable/pod<uid>/<id>``) and
   systemd driver (``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid
   with _>.slice/cri-containerd-<id>.scope``), on cgroup v1 and v2, for containerd, CRI-O
   and Docker, also nested under another root (kind, Docker Desktop).
2. :class:`CgroupIdIndex` - a cgroup v2 id (the directory's inode number, which is what
   ``bpf_get_current_cgroup_id()`` returns) -> its path, by a bounded walk of the hierarchy,
   so eBPF per-cgroup figures can be attributed.
3. :class:`PodResolver` - pod UID -> namespace/name. The UID is all a cgroup tells; the
   rest needs the kubelet. :class:`KubeletPodResolver` reads the kubelet's ``/pods``
   (production); :class:`RecordedPodResolver` reads a recorded PodList (tests, replay).
4. :class:`PodCpuSampler` and :func:`top_offenders` - per-pod CPU time and CFS throttling
   per interval (cgroup v1 ``cpuacct.usage`` + ``cpu.stat``, v2 ``cpu.stat``), and the
   top-N pods per metric as proto ``PodOffender`` rows.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.clock import SYSTEM_CLOCK, Clock
from agent.vector import PodOffender
from wire.schema import METRIC_BY_NAME, QoS

log = logging.getLogger(__name__)

# =========================================================================== 1. cgroup path -> pod

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


def _pod_component(part: str) -> str | None:
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
        uid = _pod_component(part)
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


# =========================================================================== 2. cgroup id -> path

#: kubepods(.slice)/<qos>/<pod>/<container> is depth 4 below the root; nested roots (kind) add 1-2.
CGROUP_ID_MAX_DEPTH = 8
CGROUP_ID_MAX_CGROUPS = 20_000
#: An unknown id triggers at most one rescan per this many seconds.
CGROUP_ID_RESCAN_S = 1.0


def cgroup2_root(sys_root: str | Path = "/sys") -> Path | None:
    """The cgroup v2 mount: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid)."""
    base = Path(sys_root) / "fs" / "cgroup"
    for candidate in (base, base / "unified"):
        if (candidate / "cgroup.controllers").exists():
            return candidate
    return None


class CgroupIdIndex:
    """cgroup v2 id (inode number) -> path relative to the v2 root, e.g. ``/kubepods.slice/...``.

    The map is rebuilt by a bounded walk when an unknown id is asked for (at most once per
    ``rescan_s``), so new pods are found and ids of removed cgroups age out.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        sys_root: str | Path = "/sys",
        clock: Clock = SYSTEM_CLOCK,
        max_depth: int = CGROUP_ID_MAX_DEPTH,
        max_cgroups: int = CGROUP_ID_MAX_CGROUPS,
        rescan_s: float = CGROUP_ID_RESCAN_S,
    ):
        found = Path(root) if root is not None else cgroup2_root(sys_root)
        self.root = found
        self.clock = clock
        self.max_depth = max_depth
        self.max_cgroups = max_cgroups
        self.rescan_s = rescan_s
        self.truncated = False
        self._paths: dict[int, str] = {}
        self._scanned_at: float | None = None

    def scan(self) -> None:
        paths: dict[int, str] = {}
        self.truncated = False
        if self.root is not None:
            try:
                paths[self.root.stat().st_ino] = "/"
            except OSError:
                pass
            stack = [(self.root, "", 0)]
            while stack:
                path, rel, depth = stack.pop()
                if depth >= self.max_depth:
                    continue
                try:
                    with os.scandir(path) as it:
                        for entry in it:
                            try:
                                if not entry.is_dir(follow_symlinks=False):
                                    continue
                                ino = entry.inode()
                            except OSError:
                                continue  # removed mid-walk
                            if len(paths) >= self.max_cgroups:
                                self.truncated = True
                                break
                            child = f"{rel}/{entry.name}"
                            paths[ino] = child
                            stack.append((Path(entry.path), child, depth + 1))
                except OSError:
                    continue
        self._paths = paths
        self._scanned_at = self.clock.monotonic()

    def path(self, cgroup_id: int) -> str | None:
        """The cgroup's path relative to the v2 root, or None when no such cgroup (any more)."""
        found = self._paths.get(cgroup_id)
        if found is None and (self._scanned_at is None or self.clock.monotonic() - self._scanned_at >= self.rescan_s):
            self.scan()
            found = self._paths.get(cgroup_id)
        return found

    def pod(self, cgroup_id: int) -> PodCgroup | None:
        path = self.path(cgroup_id)
        return parse_cgroup_path(path) if path is not None else None


# =========================================================================== 3. pod UID -> namespace/name


class PodListError(ValueError):
    """A PodList that is not shaped like one; the message names the field."""


@dataclass(frozen=True)
class PodInfo:
    uid: str
    namespace: str
    name: str
    qos: QoS | None = None
    containers: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Runtime container id (without ``containerd://``) -> container name."""


MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_QOS_CLASSES = {"Guaranteed": QoS.GUARANTEED, "Burstable": QoS.BURSTABLE, "BestEffort": QoS.BEST_EFFORT}


def pods_from_podlist(data: Any) -> dict[str, PodInfo]:
    """UID -> PodInfo from a v1 PodList (kubelet ``/pods`` or ``kubectl get pods -o json``)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("items"), list):
        raise PodListError("items: expected a PodList object with an 'items' list")
    pods: dict[str, PodInfo] = {}
    for i, item in enumerate(data["items"]):
        meta = item.get("metadata") if isinstance(item, Mapping) else None
        if not isinstance(meta, Mapping):
            raise PodListError(f"items[{i}].metadata: expected an object")
        for key in ("uid", "namespace", "name"):
            if not isinstance(meta.get(key), str) or not meta[key]:
                raise PodListError(f"items[{i}].metadata.{key}: expected a non-empty string, got {meta.get(key)!r}")
        status = item.get("status") or {}
        containers = {}
        for kind in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for cs in status.get(kind) or ():
                cid = cs.get("containerID") or ""
                if cid and cs.get("name"):
                    containers[cid.partition("://")[2] or cid] = cs["name"]
        uid = meta["uid"].lower()
        info = PodInfo(uid, meta["namespace"], meta["name"], _QOS_CLASSES.get(status.get("qosClass")), containers)
        pods[uid] = info
        # A static pod's cgroup carries the kubelet's UID, the config hash; the API server's
        # mirror pod has its own UID and keeps the hash in this annotation.
        mirror = (meta.get("annotations") or {}).get(MIRROR_ANNOTATION)
        if isinstance(mirror, str) and mirror:
            pods.setdefault(mirror.lower(), info)
    return pods


class PodResolver(Protocol):
    def resolve(self, uid: str) -> PodInfo | None:
        """The pod with this UID, or None when unknown (not on this node, or not yet seen)."""


class RecordedPodResolver:
    """Resolves from a fixed PodList (a recording, or a test's)."""

    def __init__(self, pods: Mapping[str, PodInfo]):
        self.pods = dict(pods)

    @classmethod
    def from_file(cls, path: str | Path) -> RecordedPodResolver:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise PodListError(f"{path}: not JSON: {err}") from err
        return cls(pods_from_podlist(data))

    def resolve(self, uid: str) -> PodInfo | None:
        return self.pods.get(uid.lower())


#: The kubelet's read-only port; many clusters disable it (readOnlyPort: 0) - then use
#: https://<node>:10250/pods with a service-account token allowed to GET nodes/proxy.
DEFAULT_KUBELET_PODS_URL = "http://127.0.0.1:10255/pods"
DEFAULT_KUBELET_TIMEOUT_S = 2.0
#: How old the cached PodList may get before a lookup refreshes it.
DEFAULT_KUBELET_REFRESH_S = 30.0
#: An unknown UID (a pod that just started) refreshes early, but at most this often.
DEFAULT_KUBELET_MISS_REFRESH_S = 2.0


class KubeletPodResolver:
    """Resolves from the kubelet's ``/pods`` (the pods bound to this node), cached.

    A failed fetch keeps the last good list and is logged once per distinct error; lookups
    never raise. ``token_path`` adds ``Authorization: Bearer``; ``ca_file`` or
    ``insecure_skip_verify`` configure TLS for the kubelet's self-signed serving cert.
    """

    def __init__(
        self,
        url: str = DEFAULT_KUBELET_PODS_URL,
        *,
        timeout_s: float = DEFAULT_KUBELET_TIMEOUT_S,
        refresh_s: float = DEFAULT_KUBELET_REFRESH_S,
        miss_refresh_s: float = DEFAULT_KUBELET_MISS_REFRESH_S,
        token_path: str | Path | None = None,
        ca_file: str | Path | None = None,
        insecure_skip_verify: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected an http:// or https:// URL, got {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.refresh_s = refresh_s
        self.miss_refresh_s = miss_refresh_s
        self.token_path = Path(token_path) if token_path else None
        self.clock = clock
        self._ssl = None
        if url.startswith("https://"):
            self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if insecure_skip_verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self.pods: dict[str, PodInfo] = {}
        """The last good list; replaced whole, so readers on other threads see old or new, never half."""
        self.fetched_at: float | None = None
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    def fetch(self) -> dict[str, PodInfo]:
        """GET the PodList now; raises OSError or PodListError."""
        headers = {"Accept": "application/json"}
        if self.token_path is not None:
            headers["Authorization"] = f"Bearer {self.token_path.read_text().strip()}"
        request = urllib.request.Request(self.url, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._ssl) as response:
            body = response.read()
        try:
            return pods_from_podlist(json.loads(body))
        except json.JSONDecodeError as err:
            raise PodListError(f"{self.url}: response is not JSON: {err}") from err

    def refresh(self) -> bool:
        """Fetch and replace the cache; False (and the cache kept) on failure."""
        attempted = self.clock.monotonic()
        try:
            pods = self.fetch()
        except (OSError, PodListError, ValueError) as err:
            self.fetched_at = attempted  # back off: do not hammer a failing kubelet per lookup
            message = f"{type(err).__name__}: {err}"
            if message != self.last_error:
                log.warning(
                    "cannot list pods from the kubelet at %s (%s); pods are named by UID until it answers",
                    self.url,
                    message,
                )
            self.last_error = message
            return False
        if self.last_error is not None:
            log.info("kubelet pod list at %s works again", self.url)
        self.pods, self.fetched_at, self.last_error = pods, attempted, None
        return True

    def start(self) -> None:
        """Refresh in a background thread from now on, so :meth:`resolve` never waits on the network.

        The thread refetches every ``refresh_s``, and early (at most every ``miss_refresh_s``)
        when a lookup missed. Without ``start()``, lookups fetch inline when the list is stale.
        """
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kubelet-pods", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(self.timeout_s + 1.0)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._wake.clear()
            if self._stop.wait(self.miss_refresh_s):  # spacing between fetches, even when woken
                break
            self._wake.wait(max(self.refresh_s - self.miss_refresh_s, 0.0))

    def resolve(self, uid: str) -> PodInfo | None:
        uid = uid.lower()
        if self._thread is not None:
            found = self.pods.get(uid)
            if found is None:
                self._wake.set()
            return found
        age = math.inf if self.fetched_at is None else self.clock.monotonic() - self.fetched_at
        if age >= self.refresh_s or (uid not in self.pods and age >= self.miss_refresh_s):
            self.refresh()
        return self.pods.get(uid)


# =========================================================================== 4. per-pod CPU and offenders

CPU_UTILIZATION = "cpu_utilization"
CPU_THROTTLED = "cpu_throttled_ratio"
_POD_ROOT_NAMES = ("kubepods.slice", "kubepods")
_V1_USAGE_HIERARCHIES = ("cpu,cpuacct", "cpuacct,cpu", "cpuacct")
_V1_THROTTLE_HIERARCHIES = ("cpu,cpuacct", "cpuacct,cpu", "cpu")
#: kubepods/<qos>/pod<uid> is depth 2; systemd the same; 3 leaves margin.
POD_MAX_DEPTH = 3


@dataclass(frozen=True)
class PodCgroupRoots:
    """Where pod cgroups live: the hierarchy with CPU time and the one with CFS bandwidth stats."""

    usage: Path
    throttle: Path
    version: int

    @classmethod
    def find(cls, sys_root: str | Path = "/sys") -> PodCgroupRoots | None:
        base = Path(sys_root) / "fs" / "cgroup"
        if (base / "cgroup.controllers").exists():
            root = next((base / n for n in _POD_ROOT_NAMES if (base / n).is_dir()), None)
            return cls(root, root, 2) if root else None

        def first(hierarchies):
            return next((base / h / n for h in hierarchies for n in _POD_ROOT_NAMES if (base / h / n).is_dir()), None)

        usage, throttle = first(_V1_USAGE_HIERARCHIES), first(_V1_THROTTLE_HIERARCHIES)
        return cls(usage, throttle, 1) if usage and throttle else None

    @classmethod
    def for_root(cls, root: str | Path) -> PodCgroupRoots:
        """One explicit root (the agent's ``--cgroup-root``) for both: v2, or v1 with cpu and cpuacct
        co-mounted. Under a v1 ``cpu``-only root pods have throttling figures but no CPU time."""
        root = Path(root)
        return cls(root, root, 2 if (root / "cgroup.controllers").exists() else 1)


@dataclass(frozen=True)
class PodCpuSample:
    at: float
    usage_ns: Mapping[str, int]
    """pod UID -> cumulative CPU time of the pod cgroup (hierarchical: all its containers)."""
    bandwidth: Mapping[str, Mapping[str, tuple[int, int]]]
    """pod UID -> container cgroup name -> (nr_periods, nr_throttled)."""


def _stat_fields(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def pod_dirs(root: Path, max_depth: int = POD_MAX_DEPTH) -> dict[str, Path]:
    """pod UID -> pod cgroup directory under a kubepods root (bounded walk)."""
    found: dict[str, Path] = {}
    stack = [(root, 0)]
    while stack:
        path, depth = stack.pop()
        try:
            children = _subdirs(path)
        except OSError:
            continue
        for child in children:
            uid = _pod_component(child.name)
            if uid is not None:
                found[uid] = child
            elif depth + 1 < max_depth:
                stack.append((child, depth + 1))
    return found


def _subdirs(path: Path) -> list[Path]:
    out = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                if entry.is_dir(follow_symlinks=False):
                    out.append(Path(entry.path))
            except OSError:
                continue  # removed mid-walk
    return out


def _read_usage_ns(pod: Path, version: int) -> int | None:
    try:
        if version == 1:
            return int((pod / "cpuacct.usage").read_text())
        usec = _stat_fields((pod / "cpu.stat").read_text()).get("usage_usec")
        return None if usec is None else usec * 1000
    except (OSError, ValueError):
        return None


def _read_bandwidth(pod: Path) -> dict[str, tuple[int, int]]:
    """Container name -> (nr_periods, nr_throttled); the pod itself when it has no containers."""
    try:
        leaves = _subdirs(pod) or [pod]
    except OSError:
        return {}
    out = {}
    for leaf in leaves:
        try:
            stat = _stat_fields((leaf / "cpu.stat").read_text())
        except OSError:
            continue
        if "nr_periods" in stat and "nr_throttled" in stat:
            out[leaf.name] = (stat["nr_periods"], stat["nr_throttled"])
    return out


#: How often PodCpuSampler looks again for pod cgroup roots it did not find.
ROOTS_RETRY_S = 30.0


class PodCpuSampler:
    """Per-pod CPU share of the node and CFS throttled ratio, per interval between two reads.

    ``read()`` returns ``{"cpu_utilization": {uid: share}, "cpu_throttled_ratio": {uid: ratio}}``
    in schema units: CPU time / (interval x online CPUs), and throttled / elapsed periods
    summed over the pod's containers. A pod is left out of a metric for an interval when it
    has no baseline yet, its counters went backwards (recreated), or (throttling) it has no
    CPU limit and so no periods elapsed. The first call only sets the baseline.
    """

    def __init__(
        self,
        sys_root: str | Path = "/sys",
        roots: PodCgroupRoots | None = None,
        cpu_count: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.sys_root = Path(sys_root)
        self.explicit = roots
        self.cpu_count = cpu_count or _online_cpu_count(self.sys_root)
        self.clock = clock
        self._prev: PodCpuSample | None = None
        self._roots: PodCgroupRoots | None = None
        self._roots_retry_at = float("-inf")

    def sample(self) -> PodCpuSample | None:
        roots = self.explicit or self._find_roots()
        if roots is None:
            return None
        now = self.clock.monotonic()
        usage = {}
        for uid, path in pod_dirs(roots.usage).items():
            if (ns := _read_usage_ns(path, roots.version)) is not None:
                usage[uid] = ns
        bandwidth = {uid: bw for uid, path in pod_dirs(roots.throttle).items() if (bw := _read_bandwidth(path))}
        return PodCpuSample(now, usage, bandwidth)

    def _find_roots(self) -> PodCgroupRoots | None:
        """Auto-detected roots; where there are none (not a Kubernetes node yet), look again
        only every ROOTS_RETRY_S rather than walking /sys/fs/cgroup every interval."""
        now = self.clock.monotonic()
        if self._roots is None and now < self._roots_retry_at:
            return None
        if self._roots is None:
            self._roots = PodCgroupRoots.find(self.sys_root)
            self._roots_retry_at = now + ROOTS_RETRY_S
        return self._roots

    def read(self) -> dict[str, dict[str, float]]:
        cur = self.sample()
        prev, self._prev = self._prev, cur
        return per_pod_figures(prev, cur, self.cpu_count) if prev is not None and cur is not None else {}


def per_pod_figures(prev: PodCpuSample, cur: PodCpuSample, cpu_count: int) -> dict[str, dict[str, float]]:
    """The pure half of :class:`PodCpuSampler`: two samples -> per-pod figures per metric."""
    seconds = cur.at - prev.at
    share: dict[str, float] = {}
    if seconds > 0 and cpu_count > 0:
        for uid, ns in cur.usage_ns.items():
            before = prev.usage_ns.get(uid)
            if before is not None and ns >= before:
                share[uid] = min((ns - before) / 1e9 / (seconds * cpu_count), 1.0)
    throttled: dict[str, float] = {}
    for uid, containers in cur.bandwidth.items():
        periods = hits = 0
        for name, (p, t) in containers.items():
            before = prev.bandwidth.get(uid, {}).get(name)
            if before is not None and p >= before[0] and t >= before[1]:
                periods += p - before[0]
                hits += t - before[1]
        if periods > 0:
            throttled[uid] = min(hits / periods, 1.0)
    return {CPU_UTILIZATION: share, CPU_THROTTLED: throttled}


def _online_cpu_count(sys_root: Path) -> int:
    try:
        count = 0
        for part in (sys_root / "devices/system/cpu/online").read_text().strip().split(","):
            lo, _, hi = part.partition("-")
            count += int(hi or lo) - int(lo) + 1
        return count
    except (OSError, ValueError):
        return os.cpu_count() or 1


def top_offenders(
    figures: Mapping[str, Mapping[str, float]], resolver: PodResolver | None = None, n: int = 3
) -> list[PodOffender]:
    """The ``n`` highest pods of each metric, highest first, metrics in the order given.

    ``figures`` maps a schema metric name -> pod UID -> value (schema units). Zero, negative
    and non-finite values are not offences and are skipped. A pod the resolver does not know
    keeps its UID as ``name`` with an empty ``namespace``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    out: list[PodOffender] = []
    for metric, per_pod in figures.items():
        if metric not in METRIC_BY_NAME:
            raise ValueError(f"figures: {metric!r} is not a schema metric")
        rows = []
        for uid, value in per_pod.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                continue
            info = resolver.resolve(uid) if resolver is not None else None
            ns, name = (info.namespace, info.name) if info is not None else ("", uid)
            rows.append(PodOffender(ns, name, metric, float(value)))
        rows.sort(key=lambda r: (-r.value, r.namespace, r.name))
        out.extend(rows[:n])
    return out
