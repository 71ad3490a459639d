"""The Kubernetes API client: an ``ApiClient`` from a kubeconfig file, in-cluster config or the
default kubeconfig; every item of a paginated list as raw JSON; API errors in one line.

The ``kubernetes`` package is imported only when a client is built, so the pure readers
(``kubeapi.pods``, ``kubeapi.nodes``) load without it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_PAGE_SIZE = 500
DEFAULT_REQUEST_TIMEOUT_S = 30.0


class KubeConfigError(Exception):
    """No usable Kubernetes client configuration (kubeconfig or in-cluster)."""


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
