"""Pod UID -> namespace/name. The UID is all a cgroup tells; the rest needs the kubelet or the API server.

:func:`pods_from_podlist` reads a v1 PodList; :class:`KubeletPodResolver` keeps the
kubelet's ``/pods`` (the pods bound to this node) cached. Tests resolve from a recorded
PodList (tests/doubles.py). The API-server source is agent/pods/apiserver_resolver.py.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.clock import SYSTEM_CLOCK, Clock
from kubeapi.pods import MIRROR_ANNOTATION, QOS_BY_NAME
from wire.schema import QoS

log = logging.getLogger(__name__)


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
        info = PodInfo(uid, meta["namespace"], meta["name"], QOS_BY_NAME.get(status.get("qosClass")), containers)
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

    @property
    def unresolved_reason(self) -> str | None:
        """Why a pod UID may not resolve now (the last fetch error), or None."""
        return None if self.last_error is None else f"kubelet {self.url}: {self.last_error}"

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
