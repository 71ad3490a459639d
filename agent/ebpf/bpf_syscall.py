"""The bare ``bpf(2)`` syscall through ctypes: command numbers, and info about an object held by fd.

The agent keeps only file descriptors of the programs, maps and links the compile helper
made (agent.ebpf.loader); it reads them with this syscall, never with bcc, so LLVM never
lives in its memory.
"""

from __future__ import annotations

import ctypes
import os
import platform

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
BPF_MAP_LOOKUP_ELEM, BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY = 1, 3, 4
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_ENABLE_STATS = 13, 15, 32
BPF_STATS_RUN_TIME = 0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


def sys_bpf(cmd: int, attr: ctypes.Structure) -> int:
    """``bpf(cmd, &attr, sizeof attr)``; raises OSError with the errno."""
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(f"bpf(2) syscall number unknown for {platform.machine()}")
    ret = _libc.syscall(
        ctypes.c_long(number), ctypes.c_long(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr))
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def obj_info(fd: int, info: ctypes.Structure) -> None:
    """Fill ``info`` (struct bpf_map_info, bpf_prog_info, ...) for the object behind ``fd``."""
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, InfoAttr(fd, ctypes.sizeof(info), ctypes.addressof(info)))
