"""Where the cgroup hierarchies are mounted, and a cgroup's v2 id.

cgroup v2 is unified at ``/sys/fs/cgroup``; a v1-hybrid host mounts an (often empty)
cgroup2 at ``/sys/fs/cgroup/unified`` beside its v1 controllers; a pure v1 host has none.
On v1 and hybrid hosts the kubelet places pods in the v1 hierarchies, so telling cgroups
apart takes the cpu controller's hierarchy.
"""

from __future__ import annotations

import os
from pathlib import Path


def cgroup_v2_root(sys_root: str | Path = "/sys") -> tuple[str, Path | None]:
    """("v2", /sys/fs/cgroup), ("hybrid", /sys/fs/cgroup/unified) or ("v1", None)."""
    base = Path(sys_root) / "fs" / "cgroup"
    if (base / "cgroup.controllers").exists():
        return "v2", base
    if (base / "unified" / "cgroup.controllers").exists():
        return "hybrid", base / "unified"
    return "v1", None


def v1_cpu_hierarchy(sys_root: str | Path = "/sys") -> Path | None:
    """The cgroup v1 hierarchy that has the cpu controller (``cpu`` or ``cpu,cpuacct``), if mounted."""
    base = Path(sys_root) / "fs" / "cgroup"
    try:
        with os.scandir(base) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                if "cpu" in e.name.split(",") and e.is_dir():
                    return Path(e.path)
    except OSError:
        pass
    return None


def child_cgroups(path: Path) -> list[Path]:
    """The sub-cgroups of one cgroup directory; an entry removed while listing is skipped.
    Raises OSError when ``path`` itself is gone or unreadable (the caller decides what that means)."""
    out = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                if entry.is_dir(follow_symlinks=False):
                    out.append(Path(entry.path))
            except OSError:
                continue  # removed mid-walk
    return out


def cgroup_id(path: str | Path) -> int:
    """The cgroup v2 id of a cgroup directory in the cgroup2 mount, as the kernel reports it
    (``bpf_get_current_cgroup_id()``): the directory's inode number."""
    return os.stat(path).st_ino
