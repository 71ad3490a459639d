"""CPU-quota cgroups for calibration antagonists (cgroup v1 ``cpu`` controller or v2 ``cpu.max``).

Every antagonist runs in its own cgroup under ``kubeattention-calibration/`` with a CFS
bandwidth limit, exactly what the kubelet does for a container with a CPU limit: a quota
of ``cores`` CPU-seconds per :data:`PERIOD_US` (100 ms, the kubelet's default period), and
a CPU weight of ``cores`` × 1024 shares, as the kubelet sets for a Guaranteed pod whose
request equals its limit (without it, the whole group would weigh as much as one task, and
two CPU hogs beside a victim would hardly slow it).
So one stress-ng configuration becomes a ladder of intensities (10 % of a core ... two
cores) by the quota alone, the way real neighbours differ: most use a little CPU, few
saturate the node.

* **cgroup v1** (hybrid hosts like this one): ``<sys_root>/fs/cgroup/cpu`` (or
  ``cpu,cpuacct``), ``cpu.cfs_period_us`` + ``cpu.cfs_quota_us`` + ``cpu.shares``, processes in ``cgroup.procs``.
* **cgroup v2**: ``<sys_root>/fs/cgroup`` with ``cpu`` in ``cgroup.controllers``; the
  ``cpu`` controller is enabled in ``cgroup.subtree_control`` down to our parent, the
  limit is ``cpu.max`` = ``"<quota> <period>"`` and ``cpu.weight`` the kubelet's conversion of
  the shares (``1 + (shares - 2) × 9999 / 262142``).

A process joins its cgroup *before* it execs (``preexec``), so every worker stress-ng
forks is inside the limit from its first instruction. :meth:`QuotaGroup.remove` kills
whatever is left inside and removes the directory; :func:`remove_stale` clears groups an
earlier, killed calibration left behind.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from agent.cgroupfs.hierarchies import v1_cpu_hierarchy

PARENT = "kubeattention-calibration"
#: CFS bandwidth period: the kubelet's default (cpu.cfs_period_us = 100 ms).
PERIOD_US = 100_000
#: cpu.shares per core of request (the kubelet's MilliCPUToShares: 1024 per core, at least 2).
SHARES_PER_CORE = 1024
MIN_SHARES = 2
#: How long remove() waits for killed processes to leave the cgroup before giving up.
REMOVE_TIMEOUT_S = 10.0


class CgroupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Hierarchy:
    version: int
    """1 or 2."""
    root: Path
    """Mount point of the hierarchy holding the cpu controller."""

    @property
    def parent(self) -> Path:
        return self.root / PARENT


def detect(sys_root: Path | str = "/sys") -> Hierarchy:
    """The hierarchy with the ``cpu`` controller, or CgroupError saying what is missing."""
    base = Path(sys_root) / "fs" / "cgroup"
    controllers = base / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return Hierarchy(2, base)
    v1 = v1_cpu_hierarchy(sys_root)  # the one the agent's run-queue collector reads
    if v1 is not None and (v1 / "cpu.cfs_quota_us").exists():
        return Hierarchy(1, v1)
    raise CgroupError(
        f"no cgroup cpu controller with CFS bandwidth control under {base} (looked for "
        f"cgroup.controllers listing 'cpu' (v2) and cpu/cpu.cfs_quota_us (v1)); antagonist CPU quotas "
        "need one — run as root on a kernel with CONFIG_CFS_BANDWIDTH"
    )


def _enable_cpu_v2(h: Hierarchy) -> None:
    for d in (h.root, h.parent):
        ctl = d / "cgroup.subtree_control"
        if "cpu" not in ctl.read_text().split():
            try:
                ctl.write_text("+cpu")
            except OSError as err:
                raise CgroupError(f"cannot enable the cpu controller in {ctl}: {err.strerror or err}") from None


def _procs(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _kill_and_rmdir(path: Path, timeout_s: float = REMOVE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        pids = _procs(path)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not pids:
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as err:  # EBUSY: a process was still on its way out
                if time.monotonic() > deadline:
                    raise CgroupError(f"cannot remove {path}: {err.strerror or err}") from None
        elif time.monotonic() > deadline:
            raise CgroupError(f"processes {pids} did not leave {path} within {timeout_s:.0f} s")
        time.sleep(0.05)


def remove_stale(h: Hierarchy) -> list[str]:
    """Kill and remove leftover antagonist groups (from a calibration that was SIGKILLed); their names."""
    if not h.parent.is_dir():
        return []
    gone = []
    for child in sorted(p for p in h.parent.iterdir() if p.is_dir()):
        _kill_and_rmdir(child)
        gone.append(child.name)
    return gone


class QuotaGroup:
    """One antagonist's cgroup with a CPU limit of ``cores`` (None: no limit, still its own group,
    weighted ``shares`` when given)."""

    def __init__(self, h: Hierarchy, name: str, cores: float | None, shares: int | None = None):
        if cores is not None and not cores > 0:
            raise CgroupError(f"quota: must be > 0 cores, got {cores!r}")
        self.h, self.cores = h, cores
        self.path = h.parent / f"{name}-{os.getpid()}"
        try:
            h.parent.mkdir(exist_ok=True)
            if h.version == 2:
                _enable_cpu_v2(h)
            self.path.mkdir()
            if cores is not None:
                quota = max(1000, int(round(cores * PERIOD_US)))  # the kernel's minimum quota is 1 ms
                if h.version == 1:
                    (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                    (self.path / "cpu.cfs_quota_us").write_text(str(quota))
                else:
                    (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
                shares = int(round(cores * SHARES_PER_CORE))  # a quota's weight: the kubelet's, from the limit
            if shares is not None:
                shares = max(MIN_SHARES, int(shares))
                if h.version == 1:
                    (self.path / "cpu.shares").write_text(str(shares))
                else:
                    (self.path / "cpu.weight").write_text(str(1 + (shares - 2) * 9999 // 262142))
        except OSError as err:
            raise CgroupError(f"cannot set up the antagonist cgroup {self.path}: {err.strerror or err}") from None

    @property
    def limit(self) -> str:
        """The limit as the kernel holds it, for the row: e.g. 'cpu.cfs_quota_us=25000 cpu.cfs_period_us=100000
        cpu.shares=256'."""
        files = (
            ("cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares")
            if self.h.version == 1
            else ("cpu.max", "cpu.weight")
        )
        return " ".join(f"{f}={(self.path / f).read_text().strip()}" for f in files)

    def preexec(self) -> None:
        """For ``subprocess.Popen(preexec_fn=...)``: move the child into this group before it execs."""
        with open(self.path / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def throttling(self) -> dict | None:
        """``nr_periods`` / ``nr_throttled`` of the group's cpu.stat (v1 and v2 both have them), if readable."""
        try:
            fields = dict(
                line.split()[:2] for line in (self.path / "cpu.stat").read_text().splitlines() if len(line.split()) >= 2
            )
            return {"nr_periods": int(fields["nr_periods"]), "nr_throttled": int(fields["nr_throttled"])}
        except (OSError, KeyError, ValueError):
            return None

    def remove(self) -> None:
        _kill_and_rmdir(self.path)


#: The victims' pod-like cgroups, under the cgroup v2 hierarchy (``/sys/fs/cgroup`` or, on a
#: v1 hybrid, ``/sys/fs/cgroup/unified``): every v2 cgroup has its own PSI files and cpu.stat.
VICTIM_PARENT = "kubeattention-victims"
PRESSURE_FILES = ("cpu.pressure", "memory.pressure", "io.pressure")


def _pressure_totals(text: str) -> dict[str, int]:
    """``some``/``full`` ``total=`` (µs stalled) of one PSI file."""
    out = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for f in fields:
            if f.startswith("total="):
                out[kind] = int(f[len("total=") :])
    return out


class VictimGroup:
    """A victim's own cgroup v2 directory (a pod's, as far as PSI and cpu.stat go).

    It holds no limits; it exists so the victim's own stalls can be read while it runs:
    :meth:`snapshot` before and after a run, :func:`delta` between them. On a v1 hybrid the
    unified hierarchy has no controllers, but each of its cgroups still has
    ``cpu.pressure``, ``memory.pressure``, ``io.pressure`` and ``cpu.stat`` (usage), which
    is exactly what the per-pod interference signals read. ``v2_root`` None: no cgroup v2
    mounted, CgroupError.
    """

    def __init__(self, name: str, v2_root: Path | None):
        if v2_root is None:
            raise CgroupError(
                "no cgroup v2 hierarchy mounted (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified is cgroup2): "
                "victims' own pressure cannot be read"
            )
        self.path = v2_root / VICTIM_PARENT / f"{name}-{os.getpid()}"
        try:
            self.path.parent.mkdir(exist_ok=True)
            self.path.mkdir(exist_ok=True)
        except OSError as err:
            raise CgroupError(f"cannot make the victim cgroup {self.path}: {err.strerror or err}") from None

    def preexec(self) -> None:
        with open(self.path / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def snapshot(self) -> dict[str, int] | None:
        """Cumulative stall µs per PSI file and kind, and cpu.stat's counters; None once the group is gone."""
        try:
            out: dict[str, int] = {}
            for f in PRESSURE_FILES:
                for kind, total in _pressure_totals((self.path / f).read_text()).items():
                    out[f"{f.split('.')[0]}_{kind}_us"] = total
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, value = line.split()[:2]
                out[f"cpu_stat_{key}"] = int(value)
            return out
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        _kill_and_rmdir(self.path)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass


def delta(before: dict[str, int] | None, after: dict[str, int] | None, seconds: float) -> dict | None:
    """Counters' growth over a run, plus each PSI total as a share of the run's wall time."""
    if before is None or after is None or seconds <= 0:
        return None
    out: dict[str, float] = {k: after[k] - before[k] for k in after if k in before}
    for k in [k for k in out if k.endswith("_us") and not k.startswith("cpu_stat")]:
        out[k.removesuffix("_us") + "_ratio"] = round(out[k] / (seconds * 1e6), 6)
    out["seconds"] = round(seconds, 3)
    return out
