"""What became of one bound pod, as the outcome collector sees it: the outcome names and their
training weights, the sticky observations an outcome is read from (``Observed``), and the
collector's state for the pod until its outcome is recorded (``Tracked``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kubeapi.fields import parse_time, status
from scheduling.decisions import Decision

OUTCOME_WEIGHTS: dict[str, float] = {
    "running": 1.0,
    "succeeded": 1.0,
    "restarted": 2.0,
    "failed": 2.0,
    "oom_killed": 3.0,
    "evicted": 3.0,
    "deleted": 0.5,
    "pending": 0.0,
}
#: Outcomes recorded as soon as they are seen: nothing later can change them.
FINAL_OUTCOMES = frozenset({"evicted", "oom_killed", "failed", "succeeded"})


@dataclass
class Observed:
    """What the collector has seen of one pod so far; the flags are sticky."""

    phase: str = ""
    restarts: int = 0
    oom_killed: bool = False
    evicted: bool = False
    failed: bool = False
    succeeded: bool = False
    deleted: bool = False
    termination_reasons: set[str] = field(default_factory=set)
    disruption: str = ""

    def update(self, pod: Mapping) -> None:
        st = status(pod)
        self.phase = st.get("phase") or self.phase
        if st.get("reason") == "Evicted":
            self.evicted = True
        if self.phase == "Failed":
            self.failed = True
        if self.phase == "Succeeded":
            self.succeeded = True
        statuses = (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or [])
        self.restarts = max(self.restarts, sum(int(cs.get("restartCount") or 0) for cs in statuses))
        for cs in statuses:
            for key in ("state", "lastState"):
                term = (cs.get(key) or {}).get("terminated") or {}
                reason = term.get("reason")
                if reason:
                    self.termination_reasons.add(reason)
                if reason == "OOMKilled":
                    self.oom_killed = True
        for cond in st.get("conditions") or []:
            if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
                self.disruption = cond.get("reason") or "DisruptionTarget"

    def outcome(self) -> str:
        if self.evicted:
            return "evicted"
        if self.oom_killed:
            return "oom_killed"
        if self.failed:
            return "failed"
        if self.restarts > 0:
            return "restarted"
        if self.deleted:
            return "deleted"
        if self.succeeded:
            return "succeeded"
        if self.phase == "Running":
            return "running"
        return "pending"


def bind_time(pod: Mapping) -> float | None:
    """When the pod was bound: the PodScheduled=True condition's transition time."""
    for cond in status(pod).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "True":
            return parse_time(cond.get("lastTransitionTime"))
    return None


@dataclass
class Tracked:
    uid: str
    namespace: str
    name: str
    node: str
    bound_at: float
    workload: str | None
    obs: Observed = field(default_factory=Observed)
    decision: Decision | None = None
    telemetry: dict | None = None
    telemetry_problem: str = ""
