"""Per-pod attribution: which pods stand out on which metric this interval.

Sources, each already in schema units:

* pod cgroups (agent.pods.cpu.PodCpuSampler): each pod's share of node CPU and its CFS
  throttled ratio, keyed by pod UID;
* the eBPF run-queue program: cross-cgroup preemptions each cgroup *caused* per second,
  keyed by cgroup v2 id and mapped to a pod through agent.pods.cgroup_ids.CgroupIdIndex,
  or (cgroup v1 hosts) keyed by cgroup path and parsed by agent.pods.cgroup_path;
* Tetragon: exec+exit events per second per pod, already named namespace/name.

UIDs are named through a PodResolver (--pods-from: the API server or the kubelet's /pods). A pod that cannot be named
is left out: an offender is only useful to an operator when it says which pod. The top
``n`` per metric travel in the push as ``top_offenders``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping

from agent.collectors.base import Reading
from agent.pods.cgroup_ids import CgroupIdIndex
from agent.pods.cgroup_path import parse_cgroup_path
from agent.pods.cpu import PodCpuSampler
from agent.pods.offenders import top_offenders
from agent.pods.resolver import PodResolver
from agent.vector import PodOffender
from wire.schema import k8s_name_problem

log = logging.getLogger(__name__)

DEFAULT_TOP_N = 3


def _valid(o: PodOffender) -> bool:
    return k8s_name_problem(o.namespace) is None and k8s_name_problem(o.name) is None


class Attribution:
    """Turns one tick's readings (plus pod cgroup figures) into the top offending pods."""

    def __init__(
        self,
        *,
        cpu: PodCpuSampler | None = None,
        cgroups: CgroupIdIndex | None = None,
        resolver: PodResolver | None = None,
        n: int = DEFAULT_TOP_N,
    ):
        self.cpu = cpu
        self.cgroups = cgroups
        self.resolver = resolver
        self.n = n

    def __call__(self, readings: Iterable[Reading]) -> tuple[PodOffender, ...]:
        by_uid: dict[str, dict[str, float]] = defaultdict(dict)
        named: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
        if self.cpu is not None:
            for metric, per_pod in self.cpu.read().items():
                by_uid[metric].update(per_pod)
        for reading in readings:
            for metric, per_cgroup in (getattr(reading, "cgroup_figures", None) or {}).items():
                self._add_cgroups(by_uid[metric], per_cgroup)
            for metric, per_path in (getattr(reading, "cgroup_path_figures", None) or {}).items():
                for path, value in per_path.items():
                    pod = parse_cgroup_path(path)
                    if pod is not None:
                        by_uid[metric][pod.pod_uid] = by_uid[metric].get(pod.pod_uid, 0.0) + value
            for metric, per_pod in (getattr(reading, "pod_figures", None) or {}).items():
                named[metric].update(per_pod)
        rows = top_offenders({m: v for m, v in by_uid.items() if v}, self.resolver, self.n)
        for metric, per_pod in named.items():
            best = sorted(per_pod.items(), key=lambda kv: (-kv[1], kv[0]))[: self.n]
            rows.extend(PodOffender(ns, name, metric, value) for (ns, name), value in best if value > 0)
        kept = tuple(o for o in rows if _valid(o))
        if len(kept) < len(rows):
            why = getattr(self.resolver, "unresolved_reason", None) if self.resolver else "no pod source (--pods-from)"
            log.debug(
                "%d offender rows without a resolvable pod name left out%s",
                len(rows) - len(kept),
                f": {why}" if why else "",
            )
        return kept

    def _add_cgroups(self, into: dict[str, float], per_cgroup: Mapping[int, float]) -> None:
        if self.cgroups is None:
            return
        for cgroup_id, value in per_cgroup.items():
            pod = self.cgroups.pod(cgroup_id)
            if pod is not None:
                into[pod.pod_uid] = into.get(pod.pod_uid, 0.0) + value
