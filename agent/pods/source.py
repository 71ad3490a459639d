"""Which source names the pods behind per-pod figures (``--pods-from``), built and probed in one place.

* ``apiserver`` - :class:`~agent.pods.apiserver_resolver.ApiServerPodResolver`: list + watch
  of this node's pods (the shipped DaemonSet; needs ``get,list,watch`` on ``pods``);
* ``kubelet`` - :class:`~agent.pods.resolver.KubeletPodResolver`: the kubelet's ``/pods``;
* ``none`` - no names: per-pod offenders only where Tetragon names them.

:func:`probe_pod_source` is the ``pod_names`` line of ``agent --check``: one list from the
configured source, now, with its answer or its error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock
from agent.pods.apiserver_resolver import ApiServerPodResolver
from agent.pods.resolver import DEFAULT_KUBELET_PODS_URL, KubeletPodResolver

APISERVER, KUBELET, NONE = "apiserver", "kubelet", "none"
#: How long ``agent --check`` waits for one pod list.
CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PodSourceSettings:
    source: str
    node_name: str
    kubeconfig: Path | None = None
    kubelet_pods_url: str | None = None
    kubelet_token_file: Path | None = None
    kubelet_ca_file: Path | None = None


def build_pod_resolver(
    settings: PodSourceSettings, clock: Clock = SYSTEM_CLOCK
) -> ApiServerPodResolver | KubeletPodResolver | None:
    """The resolver for ``settings.source``, not started (None for ``none``)."""
    if settings.source == APISERVER:
        return ApiServerPodResolver(
            settings.node_name, kubeconfig=str(settings.kubeconfig) if settings.kubeconfig else None
        )
    if settings.source == KUBELET:
        return _kubelet(settings, clock)
    if settings.source == NONE:
        return None
    raise ValueError(f"source: expected apiserver, kubelet or none, got {settings.source!r}")


def _kubelet(settings: PodSourceSettings, clock: Clock) -> KubeletPodResolver:
    return KubeletPodResolver(
        settings.kubelet_pods_url or DEFAULT_KUBELET_PODS_URL,
        token_path=settings.kubelet_token_file,
        ca_file=settings.kubelet_ca_file,
        clock=clock,
    )


def probe_pod_source(settings: PodSourceSettings) -> tuple[bool, str]:
    """(works, detail): list the pods once from the configured source, as ``agent --check`` shows it."""
    if settings.source == NONE:
        return (
            False,
            "--pods-from none: pods behind per-pod figures are not named (offenders only where Tetragon names them)",
        )
    if settings.source == KUBELET:
        kubelet = _kubelet(settings, SYSTEM_CLOCK)
        if not kubelet.refresh():
            return False, f"kubelet {kubelet.url}: {kubelet.last_error}"
        return True, f"kubelet {kubelet.url}: {len(kubelet.pods)} pod names"
    api = ApiServerPodResolver(
        settings.node_name,
        kubeconfig=str(settings.kubeconfig) if settings.kubeconfig else None,
        request_timeout_s=CHECK_TIMEOUT_S,
    )
    where = f"API server, {api.field_selector}"
    try:
        api.list_once()
    except Exception as err:  # the reason is the answer
        from kubeapi.api_client import api_error_summary

        return False, f"{where}: {api_error_summary(err)}"
    return True, f"{where}: {len({p.uid for p in api.pods.values()})} pods"
