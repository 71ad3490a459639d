"""A process's cgroup v1 cpu-controller path, from ``/proc/<tgid>/cgroup``, cached for a while.

On cgroup v1 and v1-hybrid hosts every task has the same cgroup v2 id, so the run-queue
collector compares the cpu-controller paths of the preempting and the preempted process
in user space; this is where those paths come from.
"""

from __future__ import annotations

from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock

#: How long a process's cgroup path, once read from /proc/<tgid>/cgroup, is trusted.
TASK_CGROUP_TTL_S = 10.0
#: Processes whose cgroup path is remembered at most (the cache is emptied when full).
TASK_CGROUP_MAX = 16384


class TaskCgroups:
    """A process's cgroup v1 cpu-controller path, from ``/proc/<tgid>/cgroup``, cached for a while.

    Pods are not moved between cgroups, so a path read once is trusted for ``ttl_s``; the
    cache is bounded and emptied when full. None: the process is gone (or has no cpu line).
    """

    def __init__(
        self,
        proc_root: str | Path = "/proc",
        clock: Clock = SYSTEM_CLOCK,
        ttl_s: float = TASK_CGROUP_TTL_S,
        max_entries: int = TASK_CGROUP_MAX,
    ):
        self.proc_root = str(proc_root)
        self.clock = clock
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._paths: dict[int, tuple[float, str | None]] = {}

    def path(self, tgid: int) -> str | None:
        """Also remembered: "gone" (a dead process turns up in many pairs of one interval)."""
        now = self.clock.monotonic()
        hit = self._paths.get(tgid)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        if len(self._paths) >= self.max_entries:
            self._paths.clear()
        found = self._paths[tgid] = (now, self._read(tgid))
        return found[1]

    def _read(self, tgid: int) -> str | None:
        try:
            with open(f"{self.proc_root}/{tgid}/cgroup") as f:
                text = f.read()
        except OSError:
            return None
        for line in text.splitlines():
            _hid, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if "cpu" in controllers.split(","):
                return path
        return None
