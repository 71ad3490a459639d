"""Antagonists: named ``stress-ng`` configurations and the node state each one stands for.

The matrix is an **intensity ladder** and a set of unlimited neighbours: each kind of neighbour (``cpu``, ``cache``,
``membw``, ``io``, ``fork``, ``mixed``) runs at :data:`QUOTAS_PCT` = 10, 25, 50, 100 and 200 %
of one core, set by a CFS CPU quota on the antagonist's own cgroup
(``contention_lab.cgroups``: what the kubelet does for a container with a CPU limit),
plus ``none``. Name: ``<kind>-q<percent>``, e.g. ``membw-q25`` = two stress-ng stream
workers limited to 0.25 CPU together. Real clusters also run neighbours with no CPU limit
at all, which take every CPU nothing else wants: ``<kind>-besteffort`` (a BestEffort pod:
no quota, ``cpu.shares`` 2) and ``<kind>-burstable`` (a request of one core, no limit:
``cpu.shares`` 1024) for the cpu, cache, membw and mixed kinds. The workers per kind (:data:`KIND_WORKERS`) are
enough to use the largest quota, so the quota, not the worker count, sets the intensity.

Each configuration records its exact stress-ng arguments, its quota and its *latent
intensities* in the units of the contention model (``scorer.contention.Latent``: 0 =
absent, 1 = saturating the resource on this node), so calibration rows can be fitted with
the same pressure function the synthetic generator uses. The mapping, on a node of
``cores`` CPUs, with the quota ``q`` in cores:

* each worker has a CPU *demand* (1 core; ``--hdd`` workers mostly wait for the disk:
  0.2); the group gets ``used = min(q, Σ demand)`` cores, split among the workers in
  proportion to their demand (CFS shares the quota between the runnable threads);
* ``cpu = used / cores`` (every busy worker is CPU demand on the node);
* ``cache`` / ``membw`` / ``fork`` = the cores the ``--cache`` / ``--stream`` / ``--fork``
  workers get, ``/ cores`` (each worker thrashes the caches, streams memory, or forks on
  the core it runs on, for as long as it runs);
* ``io`` = (the hdd workers' share of their own demand) × min(1, hdd workers / 2): two
  unthrottled writers saturate this VM's virtio disk.

These are the experimenter's statement of *what was run*, not measurements: the metric
vector is what the agent measured, and the slowdown is what the victim measured. Without a
quota (``quota_pct`` None) the formulas hold with ``q`` = infinity.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

STRESS_NG = "stress-ng"
#: Extra seconds stress-ng's own --timeout is given past the planned end, as a backstop.
TIMEOUT_MARGIN_S = 30
#: STREAM arrays: stress-ng sizes them from the L3 it detects (480 MiB on this VM); pin it.
STREAM_L3 = "16M"
HDD_BYTES = "256M"


#: Worker CPU demand in cores (hdd workers spend most of their time waiting for the disk).
DEMAND = {"cpu": 1.0, "cache": 1.0, "stream": 1.0, "fork": 1.0, "hdd": 0.2}
#: Quota ladder, percent of one core.
QUOTAS_PCT: tuple[int, ...] = (10, 25, 50, 100, 200)
#: stress-ng workers per kind: enough to use the largest quota (two cores) on their own.
KIND_WORKERS: dict[str, dict[str, int]] = {
    "cpu": {"cpu": 2},
    "cache": {"cache": 2},
    "membw": {"stream": 2},
    "io": {"hdd": 4},
    "fork": {"fork": 2},
    "mixed": {"cpu": 1, "cache": 1, "stream": 1, "hdd": 1, "fork": 1},
}
#: An unthrottled pair of hdd writers saturates this VM's disk.
HDD_SATURATING_WORKERS = 2


@dataclass(frozen=True)
class Antagonist:
    name: str
    kind: str
    workers: dict[str, int] = field(default_factory=dict)
    """stress-ng stressor -> worker count, e.g. {"cpu": 2}."""
    quota_pct: int | None = None
    """CFS quota of the antagonist's cgroup in percent of one core; None: no limit."""
    cpu_load: int = 100
    """--cpu-load percent for cpu workers."""
    shares: int | None = None
    """cpu.shares of the antagonist's cgroup when it has no quota (None with a quota: the quota's shares)."""

    @property
    def quota_cores(self) -> float | None:
        return None if self.quota_pct is None else self.quota_pct / 100.0

    def args(self, temp_dir: Path) -> list[str]:
        out: list[str] = []
        for stressor, n in self.workers.items():
            out += [f"--{stressor}", str(n)]
            if stressor == "cpu" and self.cpu_load != 100:
                out += ["--cpu-load", str(self.cpu_load)]
            if stressor == "stream":
                out += ["--stream-l3-size", STREAM_L3]
            if stressor == "hdd":
                out += ["--hdd-bytes", HDD_BYTES]
        if "hdd" in self.workers:
            out += ["--temp-path", str(temp_dir)]
        return out

    def used_cores(self) -> dict[str, float]:
        """Cores each stressor's workers get (the module docstring's ``used`` split by demand)."""
        demand = {s: n * DEMAND[s] * (self.cpu_load / 100.0 if s == "cpu" else 1.0) for s, n in self.workers.items()}
        total = sum(demand.values())
        if total == 0:
            return {}
        used = total if self.quota_cores is None else min(self.quota_cores, total)
        return {s: used * d / total for s, d in demand.items()}

    def intensity(self, cores: int) -> dict[str, float]:
        """Latent intensities (scorer.contention.ANTAGONISTS keys) on a node of ``cores`` CPUs."""
        used = self.used_cores()
        n_hdd = self.workers.get("hdd", 0)
        io = 0.0
        if n_hdd:
            io = used["hdd"] / (n_hdd * DEMAND["hdd"]) * min(1.0, n_hdd / HDD_SATURATING_WORKERS)
        return {
            "cpu": round(min(1.0, sum(used.values()) / cores), 4),
            "cache": round(min(1.0, used.get("cache", 0.0) / cores), 4),
            "membw": round(min(1.0, used.get("stream", 0.0) / cores), 4),
            "io": round(io, 4),
            "fork": round(min(1.0, used.get("fork", 0.0) / cores), 4),
        }

    def describe(self, temp_dir: Path | str = "<tmpdir>") -> str:
        if not self.workers:
            return "none"
        cmd = " ".join([STRESS_NG, *self.args(Path(temp_dir))])
        if self.quota_pct is not None:
            return f"{cmd} (cgroup CPU quota {self.quota_pct} % of one core)"
        if self.shares is not None:
            return f"{cmd} (cgroup without a CPU quota, cpu.shares {self.shares})"
        return cmd

    @property
    def needs_cgroup(self) -> bool:
        return self.quota_pct is not None or self.shares is not None


ALONE = Antagonist("none", "none")


def ladder(kind: str, quota_pct: int) -> Antagonist:
    return Antagonist(f"{kind}-q{quota_pct}", kind, dict(KIND_WORKERS[kind]), quota_pct=quota_pct)


#: Neighbours with no CPU limit at all, which use every CPU nothing else wants: as the kubelet
#: sets them up, a BestEffort pod (no request: cpu.shares 2) and a Burstable pod with a
#: request of one core and no limit (cpu.shares 1024).
UNLIMITED_KINDS: tuple[str, ...] = ("cpu", "cache", "membw", "mixed")
UNLIMITED_SHARES = {"besteffort": 2, "burstable": 1024}


def unlimited(kind: str, qos: str) -> Antagonist:
    return Antagonist(f"{kind}-{qos}", kind, dict(KIND_WORKERS[kind]), shares=UNLIMITED_SHARES[qos])


#: Every configuration calibration knows: none, each kind's ladder light to heavy, then the unlimited ones.
CONFIGS: tuple[Antagonist, ...] = (
    ALONE,
    *(ladder(k, q) for k in KIND_WORKERS for q in QUOTAS_PCT),
    *(unlimited(k, qos) for qos in UNLIMITED_SHARES for k in UNLIMITED_KINDS),
)
BY_NAME = {a.name: a for a in CONFIGS}


class RunningAntagonist:
    """A stress-ng process group in its own quota cgroup, started with a hard --timeout, stopped on exit.

    ``hierarchy`` (``contention_lab.cgroups.detect()``) is required for a configuration
    with a quota; the cgroup is removed (and anything left in it killed) by :meth:`stop`.
    """

    def __init__(self, antagonist: Antagonist, temp_dir: Path, max_seconds: float, hierarchy=None):
        from contention_lab import cgroups

        self.antagonist = antagonist
        self.proc: subprocess.Popen | None = None
        self.group = None
        self.limit: str | None = None
        if not antagonist.workers:
            return
        if antagonist.needs_cgroup:
            if hierarchy is None:
                raise cgroups.CgroupError(f"{antagonist.name}: its own CPU cgroup needs a cgroup hierarchy")
            self.group = cgroups.QuotaGroup(hierarchy, antagonist.name, antagonist.quota_cores, antagonist.shares)
            self.limit = self.group.limit
        cmd = [STRESS_NG, *antagonist.args(temp_dir), "--timeout", f"{int(max_seconds + TIMEOUT_MARGIN_S)}s"]
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=self.group.preexec if self.group else None,
            )
        except BaseException:
            self.stop()
            raise

    def failed(self) -> str | None:
        """stress-ng's complaint if it exited already (a bad option, no space), else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
        return f"stress-ng exited with {self.proc.returncode}: {err[-300:] or 'no message'}"

    def throttling(self) -> dict | None:
        return self.group.throttling() if self.group else None

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
                except ProcessLookupError:
                    pass
        finally:
            if self.group is not None:
                group, self.group = self.group, None
                group.remove()

    def __enter__(self) -> RunningAntagonist:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
