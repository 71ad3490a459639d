"""A cgroup v2 id -> its path, so eBPF per-cgroup figures can be attributed to pods.

The id is the cgroup directory's inode number in the cgroup2 mount, which is what
``bpf_get_current_cgroup_id()`` returns; the index finds it by a bounded walk of the hierarchy.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.cgroupfs.hierarchies import cgroup_v2_root
from agent.clock import SYSTEM_CLOCK, Clock
from agent.pods.cgroup_path import PodCgroup, parse_cgroup_path

#: kubepods(.slice)/<qos>/<pod>/<container> is depth 4 below the root; nested roots (kind) add 1-2.
CGROUP_ID_MAX_DEPTH = 8
CGROUP_ID_MAX_CGROUPS = 20_000
#: An unknown id triggers at most one rescan per this many seconds.
CGROUP_ID_RESCAN_S = 1.0


class CgroupIdIndex:
    """cgroup v2 id (inode number) -> path relative to the v2 root, e.g. ``/kubepods.slice/...``.

    The map is rebuilt by a bounded walk when an unknown id is asked for (at most once per
    ``rescan_s``), so new pods are found and ids of removed cgroups age out.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        sys_root: str | Path = "/sys",
        clock: Clock = SYSTEM_CLOCK,
        max_depth: int = CGROUP_ID_MAX_DEPTH,
        max_cgroups: int = CGROUP_ID_MAX_CGROUPS,
        rescan_s: float = CGROUP_ID_RESCAN_S,
    ):
        found = Path(root) if root is not None else cgroup_v2_root(sys_root)[1]
        self.root = found
        self.clock = clock
        self.max_depth = max_depth
        self.max_cgroups = max_cgroups
        self.rescan_s = rescan_s
        self.truncated = False
        self._paths: dict[int, str] = {}
        self._scanned_at: float | None = None

    def scan(self) -> None:
        paths: dict[int, str] = {}
        self.truncated = False
        if self.root is not None:
            try:
                paths[self.root.stat().st_ino] = "/"
            except OSError:
                pass
            stack = [(self.root, "", 0)]
            while stack:
                path, rel, depth = stack.pop()
                if depth >= self.max_depth:
                    continue
                try:
                    with os.scandir(path) as it:
                        for entry in it:
                            try:
                                if not entry.is_dir(follow_symlinks=False):
                                    continue
                                ino = entry.inode()
                            except OSError:
                                continue  # removed mid-walk
                            if len(paths) >= self.max_cgroups:
                                self.truncated = True
                                break
                            child = f"{rel}/{entry.name}"
                            paths[ino] = child
                            stack.append((Path(entry.path), child, depth + 1))
                except OSError:
                    continue
        self._paths = paths
        self._scanned_at = self.clock.monotonic()

    def path(self, cgroup_id: int) -> str | None:
        """The cgroup's path relative to the v2 root, or None when no such cgroup (any more)."""
        found = self._paths.get(cgroup_id)
        if found is None and (self._scanned_at is None or self.clock.monotonic() - self._scanned_at >= self.rescan_s):
            self.scan()
            found = self._paths.get(cgroup_id)
        return found

    def pod(self, cgroup_id: int) -> PodCgroup | None:
        path = self.path(cgroup_id)
        return parse_cgroup_path(path) if path is not None else None
