"""The kernel's run-time statistics of BPF programs (``kernel.bpf_stats_enabled``).

:class:`ProgStats` per program, by fd, by id or for every program a process holds;
:func:`bpf_stats_enabled` keeps the accounting on for a block. The overhead benchmark
(bench/agent_overhead.py) and the kernel tests read them; the agent itself does not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.ebpf.bpf_syscall import BPF_ENABLE_STATS, BPF_PROG_GET_FD_BY_ID, BPF_STATS_RUN_TIME, obj_info, sys_bpf

#: Name prefix of this project's BPF programs (the kernel keeps 15 characters of a name).
PROG_PREFIX = "ka_"


class _GetIdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _StatsAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32)]


class _ProgInfo(ctypes.Structure):  # struct bpf_prog_info up to recursion_misses (Linux 5.12+)
    _u32, _u64 = ctypes.c_uint32, ctypes.c_uint64
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", ctypes.c_char * 16),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
    ]


@dataclass(frozen=True)
class ProgStats:
    """One BPF program's kernel run-time statistics (they count only while stats are enabled)."""

    name: str
    prog_id: int
    run_time_ns: int
    run_cnt: int

    @property
    def ns_per_event(self) -> float | None:
        return self.run_time_ns / self.run_cnt if self.run_cnt else None

    def __sub__(self, earlier: ProgStats) -> ProgStats:
        return ProgStats(
            self.name, self.prog_id, self.run_time_ns - earlier.run_time_ns, self.run_cnt - earlier.run_cnt
        )


def prog_stats_of_fd(fd: int) -> ProgStats:
    info = _ProgInfo()
    obj_info(fd, info)
    return ProgStats(info.name.decode(errors="replace"), info.id, info.run_time_ns, info.run_cnt)


def prog_stats_of_id(prog_id: int) -> ProgStats:
    fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, _GetIdAttr(prog_id, 0, 0))
    try:
        return prog_stats_of_fd(fd)
    finally:
        os.close(fd)


def prog_ids_of_pid(pid: int, proc_root: str | Path = "/proc") -> list[int]:
    """Ids of the BPF programs a process holds open (from /proc/PID/fdinfo)."""
    ids = []
    fdinfo = Path(proc_root) / str(pid) / "fdinfo"
    for entry in fdinfo.iterdir():
        with contextlib.suppress(OSError):
            match = re.search(r"^prog_id:\s*(\d+)", entry.read_text(), re.M)
            if match:
                ids.append(int(match.group(1)))
    return sorted(set(ids))


def prog_stats_of_pid(pid: int, prefix: str = PROG_PREFIX, proc_root: str | Path = "/proc") -> dict[str, ProgStats]:
    """This project's programs held by ``pid``, by name."""
    out = {}
    for prog_id in prog_ids_of_pid(pid, proc_root):
        with contextlib.suppress(OSError):
            stats = prog_stats_of_id(prog_id)
            if stats.name.startswith(prefix):
                out[stats.name] = stats
    return out


@contextlib.contextmanager
def bpf_stats_enabled() -> Iterator[str]:
    """Keep the kernel's BPF run-time accounting on for the block; yields how.

    First choice BPF_ENABLE_STATS (Linux 5.8+: on while the returned fd is open, off again
    even if this process dies), else the sysctl kernel.bpf_stats_enabled, restored after.
    """
    try:
        fd = sys_bpf(BPF_ENABLE_STATS, _StatsAttr(BPF_STATS_RUN_TIME))
    except OSError:
        fd = None
    if fd is not None:
        try:
            yield "BPF_ENABLE_STATS"
        finally:
            os.close(fd)
        return
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = sysctl.read_text().strip()
    sysctl.write_text("1")
    try:
        yield "sysctl kernel.bpf_stats_enabled"
    finally:
        sysctl.write_text(before)
