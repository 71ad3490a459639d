"""sysfs CPU lists (``0-3,8-11``): parsed once for the perf counters, per-CPU BPF maps and pod CPU shares."""

from __future__ import annotations

import os
from pathlib import Path


def parse_cpu_list(text: str) -> list[int]:
    """``0-3,5,7-8`` (sysfs cpu lists) -> [0, 1, 2, 3, 5, 7, 8]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def online_cpus(sys_root: str | Path = "/sys") -> list[int]:
    """The online CPUs; all of ``os.cpu_count()`` when sysfs cannot tell."""
    try:
        return parse_cpu_list((Path(sys_root) / "devices/system/cpu/online").read_text())
    except (OSError, ValueError):
        return list(range(os.cpu_count() or 1))


def possible_cpu_count(sys_root: str | Path = "/sys") -> int:
    """Number of possible CPUs ("0-3,8-11" -> 8): the stride count of per-CPU BPF map values.

    Raises OSError or ValueError: a guess would misread every per-CPU value.
    """
    return len(parse_cpu_list((Path(sys_root) / "devices/system/cpu/possible").read_text()))
