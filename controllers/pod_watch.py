"""The pod watch under the outcome collector: list, then watch from the list's
resourceVersion (with bookmarks); a watch that ends is resumed from the last resourceVersion
seen; ``410 Gone`` -> relist; any other API or connection error -> capped exponential
backoff with jitter (``wire.backoff``: 0.5 s doubling to 30 s), then the same step again."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubeapi.api_client import DEFAULT_PAGE_SIZE, DEFAULT_REQUEST_TIMEOUT_S, api_error_summary, list_all
from wire.backoff import Backoff, Retry

log = logging.getLogger(__name__)

DEFAULT_WATCH_TIMEOUT_S = 300
DEFAULT_BACKOFF_INITIAL_S = 0.5
DEFAULT_BACKOFF_MAX_S = 30.0


class PodWatcher:
    """List, then watch pods from the list's resourceVersion; relist on 410 Gone; back off on errors.

    Emits ``("RELIST", [pod, ...])`` after every full list and ``(type, pod)`` for ADDED,
    MODIFIED and DELETED events, pods as the API's JSON dicts.
    """

    def __init__(
        self,
        core,
        *,
        watch_timeout_s: int = DEFAULT_WATCH_TIMEOUT_S,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        page_size: int = DEFAULT_PAGE_SIZE,
        retry: Retry | None = None,
    ):
        self.core = core
        self.watch_timeout_s = int(watch_timeout_s)
        self.request_timeout_s = request_timeout_s
        self.page_size = page_size
        self.retry = retry or Retry(Backoff(DEFAULT_BACKOFF_INITIAL_S, DEFAULT_BACKOFF_MAX_S))
        self.stats: Counter = Counter()
        self._watch: Any = None  # the kubernetes Watch in progress, for stop()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()

    def run(self, emit: Callable[[str, object], None], stop: threading.Event | None = None) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        stop = stop or self._stop
        resource_version: str | None = None
        while not (stop.is_set() or self._stop.is_set()):
            try:
                if resource_version is None:
                    pods, resource_version = list_all(
                        self.core.list_pod_for_all_namespaces,
                        page_size=self.page_size,
                        request_timeout_s=self.request_timeout_s,
                    )
                    self.stats["lists"] += 1
                    emit("RELIST", pods)
                    self.retry.reset()
                self._watch = w = watch.Watch()
                for ev in w.stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self.watch_timeout_s,
                    _request_timeout=(self.request_timeout_s, self.watch_timeout_s + 30),
                ):
                    kind = ev.get("type")
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.stats["events"] += 1
                        emit(kind, ev["raw_object"])
                    if w.resource_version:
                        resource_version = w.resource_version
                    if stop.is_set() or self._stop.is_set():
                        break
                self.stats["watches"] += 1
                self.retry.reset()
            except ApiException as e:
                if e.status == 410:
                    self.stats["expired"] += 1
                    log.info("pod watch expired (%s); relisting", api_error_summary(e))
                    resource_version = None
                    continue
                self._pause(stop, f"Kubernetes API error: {api_error_summary(e)}")
            except Exception as e:  # connection refused/reset, timeouts, undecodable bodies
                if stop.is_set() or self._stop.is_set():
                    break
                self._pause(stop, f"{type(e).__name__}: {e}")
            finally:
                self._watch = None

    def _pause(self, stop: threading.Event, why: str) -> None:
        self.stats["errors"] += 1
        delay = self.retry.next()
        log.warning("pod watch: %s; retrying in %.1f s", why, delay)
        stop.wait(delay)
