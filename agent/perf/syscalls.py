"""The syscall layer: ctypes over ``perf_event_open(2)``, because no maintained Python library exposes it.

:class:`PerfEventAttr` is the kernel's ``struct perf_event_attr``; :class:`Syscalls` is the
interface the device uses, so tests can substitute a scripted kernel where the VM has no PMU.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import struct
import sys
from typing import Protocol

from agent.perf.events import CACHE_MISSES, CACHE_REFERENCES, CYCLES, INSTRUCTIONS
from agent.perf.intervals import CounterValue

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
#: enum perf_hw_id
HW_CONFIG: dict[str, int] = {CYCLES: 0, INSTRUCTIONS: 1, CACHE_REFERENCES: 2, CACHE_MISSES: 3}

PERF_FORMAT_TOTAL_TIME_ENABLED = 1 << 0
PERF_FORMAT_TOTAL_TIME_RUNNING = 1 << 1
PERF_FORMAT_GROUP = 1 << 3
PERF_FLAG_FD_CLOEXEC = 1 << 3
#: _IO('$', n): no direction, no size, type '$' (0x24)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_RESET = 0x2403
PERF_IOC_FLAG_GROUP = 1

#: __NR_perf_event_open by machine (asm/unistd*.h); the generic table (241) serves the newer ports.
SYSCALL_NUMBERS = {
    "x86_64": 298,
    "amd64": 298,
    "aarch64": 241,
    "arm64": 241,
    "riscv64": 241,
    "loongarch64": 241,
    "i386": 336,
    "i686": 336,
    "armv7l": 364,
    "ppc64le": 319,
    "ppc64": 319,
    "s390x": 331,
}


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` of include/uapi/linux/perf_event.h, up to PERF_ATTR_SIZE_VER8.

    Offsets are fixed by the ABI (checked against the installed C header in the tests);
    unions are represented by their first 64- or 32-bit member. ``size`` tells the kernel
    which version we speak; a kernel older than VER8 accepts it because the tail is zero.
    """

    _fields_ = [
        ("type", ctypes.c_uint32),  # 0   PERF_TYPE_*
        ("size", ctypes.c_uint32),  # 4   sizeof(struct perf_event_attr)
        ("config", ctypes.c_uint64),  # 8   PERF_COUNT_HW_* for PERF_TYPE_HARDWARE
        ("sample_period", ctypes.c_uint64),  # 16  union { sample_period; sample_freq }
        ("sample_type", ctypes.c_uint64),  # 24
        ("read_format", ctypes.c_uint64),  # 32  PERF_FORMAT_*
        ("flags", ctypes.c_uint64),  # 40  bitfield: disabled:1, inherit:1, pinned:1, ...
        ("wakeup_events", ctypes.c_uint32),  # 48  union { wakeup_events; wakeup_watermark }
        ("bp_type", ctypes.c_uint32),  # 52
        ("config1", ctypes.c_uint64),  # 56  union { bp_addr; kprobe_func; uprobe_path; config1 }
        ("config2", ctypes.c_uint64),  # 64  union { bp_len; kprobe_addr; probe_offset; config2 } VER1
        ("branch_sample_type", ctypes.c_uint64),  # 72  VER2
        ("sample_regs_user", ctypes.c_uint64),  # 80
        ("sample_stack_user", ctypes.c_uint32),  # 88
        ("clockid", ctypes.c_int32),  # 92  VER3
        ("sample_regs_intr", ctypes.c_uint64),  # 96  VER4
        ("aux_watermark", ctypes.c_uint32),  # 104
        ("sample_max_stack", ctypes.c_uint16),  # 108
        ("reserved_2", ctypes.c_uint16),  # 110 VER5
        ("aux_sample_size", ctypes.c_uint32),  # 112
        ("aux_action", ctypes.c_uint32),  # 116 __reserved_3 before Linux 6.13; VER6
        ("sig_data", ctypes.c_uint64),  # 120 VER7
        ("config3", ctypes.c_uint64),  # 128 VER8 (Linux 6.3)
    ]


PERF_ATTR_SIZE_VER8 = 136


def attr_flag_bit(position: int) -> int:
    """The u64 mask of bitfield ``position`` (0 = ``disabled``) in the attr's flags word.

    C bitfields fill from the least significant bit on little-endian ABIs and from the
    most significant on big-endian ones (s390x, ppc64).
    """
    return 1 << position if sys.byteorder == "little" else 1 << (63 - position)


ATTR_DISABLED = attr_flag_bit(0)


def make_attr(type_: int, config: int, read_format: int, disabled: bool) -> PerfEventAttr:
    attr = PerfEventAttr()
    attr.type = type_
    attr.size = ctypes.sizeof(PerfEventAttr)
    attr.config = config
    attr.read_format = read_format
    attr.flags = ATTR_DISABLED if disabled else 0  # count user, kernel and hypervisor time
    return attr


class Syscalls(Protocol):
    """The kernel interface the device uses; tests substitute it where the VM has no PMU."""

    def perf_event_open(self, attr: PerfEventAttr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        """A new fd, or raises OSError carrying the errno."""

    def read(self, fd: int, size: int) -> bytes: ...

    def ioctl(self, fd: int, request: int, arg: int) -> None: ...

    def close(self, fd: int) -> None: ...


class LinuxSyscalls:
    """``perf_event_open(2)`` through libc's ``syscall(3)``; reads, ioctls and closes through ``os``."""

    def __init__(self, machine: str | None = None):
        self.machine = machine or platform.machine()
        self.number = SYSCALL_NUMBERS.get(self.machine.lower())
        self._syscall = None
        if self.number is not None:
            libc = ctypes.CDLL(None, use_errno=True)
            self._syscall = libc.syscall
            self._syscall.restype = ctypes.c_long
            self._syscall.argtypes = [
                ctypes.c_long,
                ctypes.POINTER(PerfEventAttr),
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_ulong,
            ]

    def perf_event_open(self, attr: PerfEventAttr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        if self._syscall is None:
            raise OSError(errno.ENOSYS, f"perf_event_open syscall number unknown for machine {self.machine!r}")
        fd = self._syscall(self.number, ctypes.byref(attr), pid, cpu, group_fd, flags)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def ioctl(self, fd: int, request: int, arg: int) -> None:
        fcntl.ioctl(fd, request, arg)

    def close(self, fd: int) -> None:
        os.close(fd)


def parse_group_read(data: bytes, events: tuple[str, ...]) -> dict[str, CounterValue]:
    """A group read: ``u64 nr, time_enabled, time_running, value[nr]`` (no PERF_FORMAT_ID)."""
    nr, enabled, running = struct.unpack_from("=QQQ", data)
    if nr != len(events) or len(data) < 8 * (3 + nr):
        raise ValueError(f"group read returned {nr} counters in {len(data)} bytes, expected {len(events)}")
    values = struct.unpack_from(f"={nr}Q", data, 24)
    return {e: CounterValue(v, enabled, running) for e, v in zip(events, values)}


def parse_single_read(data: bytes) -> CounterValue:
    """A single counter's read: ``u64 value, time_enabled, time_running``."""
    if len(data) < 24:
        raise ValueError(f"counter read returned {len(data)} bytes, expected 24")
    return CounterValue(*struct.unpack_from("=QQQ", data))
