"""Pod UID -> namespace/name from the Kubernetes API server: the pods bound to this node.

:class:`ApiServerPodResolver` lists, then watches, pods with the field selector
``spec.nodeName=<node>`` in all namespaces (what the kubelet itself is told), in a
background thread, so a lookup is a dict read and never waits on the network. A watch
that ends is resumed from the last resourceVersion seen; ``410 Gone`` relists; any other
error (no configuration, connection refused, 403) backs off (``wire.backoff``) and is kept
as :attr:`~ApiServerPodResolver.unresolved_reason`, the reason pods stay unnamed - the last
good map is kept, nothing is guessed. It needs ``get,list,watch`` on ``pods`` (the
DaemonSet's ClusterRole, deploy/base/agent/).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from agent.pods.resolver import PodInfo, PodListError, pods_from_podlist
from kubeapi.api_client import DEFAULT_PAGE_SIZE, api_client, api_error_summary, list_all
from wire.backoff import Backoff, Retry

log = logging.getLogger(__name__)

#: Server-side watch length; the watch is then resumed from its last resourceVersion.
DEFAULT_WATCH_TIMEOUT_S = 300
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_BACKOFF_INITIAL_S = 0.5
DEFAULT_BACKOFF_MAX_S = 30.0
#: How long stop() waits for the thread (the agent's shutdown must fit the pod's grace period).
STOP_WAIT_S = 1.0
NOT_LISTED_YET = "pods on this node not listed from the API server yet"


def node_field_selector(node_name: str) -> str:
    return f"spec.nodeName={node_name}"


class ApiServerPodResolver:
    """The pods on ``node_name``, kept current by list + watch; :meth:`resolve` like the kubelet resolver's.

    ``client_factory`` builds the kubernetes ``ApiClient`` (default: ``kubeapi.api_client``
    from ``kubeconfig``, else in-cluster config); it is called in the background thread, so a
    missing configuration is a reason, not a start-up failure.
    """

    def __init__(
        self,
        node_name: str,
        *,
        kubeconfig: str | None = None,
        client_factory: Callable[[], Any] | None = None,
        watch_timeout_s: int = DEFAULT_WATCH_TIMEOUT_S,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        page_size: int = DEFAULT_PAGE_SIZE,
        retry: Retry | None = None,
    ):
        if not node_name:
            raise ValueError("node_name: expected a node name, got ''")
        self.node_name = node_name
        self.field_selector = node_field_selector(node_name)
        self.kubeconfig = kubeconfig
        self._client_factory = client_factory or (lambda: api_client(kubeconfig))
        self.watch_timeout_s = int(watch_timeout_s)
        self.request_timeout_s = request_timeout_s
        self.page_size = page_size
        self.retry = retry or Retry(Backoff(DEFAULT_BACKOFF_INITIAL_S, DEFAULT_BACKOFF_MAX_S))
        self.pods: dict[str, PodInfo] = {}
        """UID (and a static pod's config hash) -> PodInfo; replaced whole, so readers see old or new."""
        self.synced = False
        """True once a list succeeded (and stays so: later errors keep the last good map)."""
        self.last_error: str | None = None
        self.lists = 0
        self.events = 0
        self._by_pod: dict[str, dict[str, PodInfo]] = {}
        self._core: Any = None
        self._watch: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ lookups

    def resolve(self, uid: str) -> PodInfo | None:
        return self.pods.get(uid.lower())

    @property
    def unresolved_reason(self) -> str | None:
        """Why a pod UID may not resolve now: the API error, or not listed yet; None when current."""
        if self.last_error is not None:
            return f"Kubernetes API server unreachable for pods on node {self.node_name}: {self.last_error}"
        if not self.synced:
            return NOT_LISTED_YET
        return None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="apiserver-pods", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; waits at most ``STOP_WAIT_S``: an idle watch only notices at its
        next event or timeout, and the (daemon) thread holds nothing that needs cleaning up."""
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)
            self._thread = None

    def list_once(self) -> str:
        """List now (in the caller's thread) and return the resourceVersion; raises on any error."""
        items, resource_version = list_all(
            self._api().list_pod_for_all_namespaces,
            page_size=self.page_size,
            request_timeout_s=self.request_timeout_s,
            field_selector=self.field_selector,
        )
        self._by_pod = {}
        for item in items:
            self._apply("ADDED", item)
        self._publish()
        self.lists += 1
        self.synced = True
        return resource_version

    # ------------------------------------------------------------------ the watch loop

    def _api(self):
        if self._core is None:
            from kubernetes import client

            self._core = client.CoreV1Api(self._client_factory())
        return self._core

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self.list_once()
                    self._recovered()
                self._watch = w = watch.Watch()
                for ev in w.stream(
                    self._api().list_pod_for_all_namespaces,
                    field_selector=self.field_selector,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self.watch_timeout_s,
                    _request_timeout=(self.request_timeout_s, self.watch_timeout_s + 30),
                ):
                    # raw_object: the API's JSON (the client's ERROR/410 handling needs deserialize on)
                    kind, obj = ev.get("type"), ev.get("raw_object")
                    if kind in ("ADDED", "MODIFIED", "DELETED") and isinstance(obj, Mapping):
                        self.events += 1
                        self._apply(kind, obj)
                        self._publish()
                    if w.resource_version:  # events and bookmarks
                        resource_version = w.resource_version
                    if self._stop.is_set():
                        break
                self._recovered()
            except ApiException as e:
                if e.status == 410:
                    log.info("pod watch for node %s expired (%s); relisting", self.node_name, api_error_summary(e))
                    resource_version = None
                    continue
                self._pause(api_error_summary(e))
            except Exception as e:  # no configuration, connection refused/reset, timeouts, bad bodies
                if self._stop.is_set():
                    break
                self._pause(f"{type(e).__name__}: {e}")
            finally:
                self._watch = None

    def _apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        uid = str((obj.get("metadata") or {}).get("uid") or "").lower()
        if kind == "DELETED":
            self._by_pod.pop(uid, None)
            return
        try:
            self._by_pod[uid] = pods_from_podlist({"items": [obj]})
        except PodListError as err:
            log.debug("pod event without a usable identity skipped: %s", err)

    def _publish(self) -> None:
        merged: dict[str, PodInfo] = {}
        aliases: dict[str, PodInfo] = {}
        for uid, entries in self._by_pod.items():
            for key, info in entries.items():
                (merged if key == uid else aliases)[key] = info
        for key, info in aliases.items():  # a static pod's config hash never hides a real UID
            merged.setdefault(key, info)
        self.pods = merged

    def _recovered(self) -> None:
        self.retry.reset()
        if self.last_error is not None:
            log.info("pods for node %s from the API server work again", self.node_name)
            self.last_error = None

    def _pause(self, why: str) -> None:
        if why != self.last_error:
            log.warning(
                "cannot list/watch pods of node %s from the API server (%s); pods stay unnamed until it answers",
                self.node_name,
                why,
            )
        self.last_error = why
        self._stop.wait(self.retry.next())
