"""BPF maps held by file descriptor: lookup, keys, delete, drain, and per-CPU values added up."""

from __future__ import annotations

import contextlib
import ctypes
import errno
from collections.abc import Sequence

from agent.cpu_lists import possible_cpu_count
from agent.ebpf.bpf_syscall import (
    BPF_MAP_DELETE_ELEM,
    BPF_MAP_GET_NEXT_KEY,
    BPF_MAP_LOOKUP_AND_DELETE_BATCH,
    BPF_MAP_LOOKUP_ELEM,
    obj_info,
    sys_bpf,
)

PERCPU_MAP_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH


class _ElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _BatchAttr(ctypes.Structure):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _MapInfo(ctypes.Structure):  # struct bpf_map_info, the stable prefix
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


class BpfMap:
    """A BPF map held by file descriptor; keys and values are raw bytes."""

    def __init__(self, name: str, fd: int):
        info = _MapInfo()
        obj_info(fd, info)
        self.name = name
        self.fd = fd
        self.type = info.type
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.percpu = info.type in PERCPU_MAP_TYPES
        self.ncpus = possible_cpu_count() if self.percpu else 1
        self._stride = (self.value_size + 7) // 8 * 8
        self._batch: tuple | None = None  # buffers for drain(), made on first use
        self._batch_ok = not self.percpu

    def lookup(self, key: bytes) -> bytes | None:
        """The value (all CPUs' values, each padded to 8 bytes, for per-CPU maps), or None."""
        kbuf = ctypes.create_string_buffer(key, self.key_size)
        vbuf = ctypes.create_string_buffer(self._stride * self.ncpus)
        try:
            sys_bpf(BPF_MAP_LOOKUP_ELEM, _ElemAttr(self.fd, 0, ctypes.addressof(kbuf), ctypes.addressof(vbuf), 0))
        except FileNotFoundError:
            return None
        return vbuf.raw

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        raw = self.lookup(key)
        if raw is None:
            return []
        return [raw[i * self._stride : i * self._stride + self.value_size] for i in range(self.ncpus)]

    def keys(self) -> list[bytes]:
        out: list[bytes] = []
        prev = None
        nbuf = ctypes.create_string_buffer(self.key_size)
        for _ in range(2 * self.max_entries + 1):  # bounded even if the map churns under us
            kbuf = ctypes.create_string_buffer(prev, self.key_size) if prev is not None else None
            try:
                sys_bpf(
                    BPF_MAP_GET_NEXT_KEY,
                    _ElemAttr(self.fd, 0, ctypes.addressof(kbuf) if kbuf else 0, ctypes.addressof(nbuf), 0),
                )
            except FileNotFoundError:
                break
            prev = nbuf.raw
            out.append(prev)
        return out

    def delete(self, key: bytes) -> None:
        kbuf = ctypes.create_string_buffer(key, self.key_size)
        with contextlib.suppress(FileNotFoundError):
            sys_bpf(BPF_MAP_DELETE_ELEM, _ElemAttr(self.fd, 0, ctypes.addressof(kbuf), 0, 0))

    def drain(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value), each entry deleted as it is read.

        One BPF_MAP_LOOKUP_AND_DELETE_BATCH call (Linux 5.6+), else key by key. A program's
        update landing between an entry's read and its delete is lost (a handful of
        increments per drain at most); the node-level figures are not drained and lose nothing.
        """
        if self._batch_ok:
            try:
                return self._drain_batch()
            except OSError as err:
                if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, 524):  # 524: ENOTSUPP
                    raise
                self._batch_ok = False
        out = []
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                self.delete(key)
                out.append((key, value))
        return out

    def _drain_batch(self) -> list[tuple[bytes, bytes]]:
        if self._batch is None:
            self._batch = (
                ctypes.create_string_buffer(self.key_size * self.max_entries),
                ctypes.create_string_buffer(self.value_size * self.max_entries),
                ctypes.create_string_buffer(8),
                ctypes.create_string_buffer(8),
            )
        keys, values, token_in, token_out = self._batch
        out: list[tuple[bytes, bytes]] = []
        in_batch = 0
        for _ in range(self.max_entries + 1):
            attr = _BatchAttr(
                in_batch,
                ctypes.addressof(token_out),
                ctypes.addressof(keys),
                ctypes.addressof(values),
                self.max_entries,
                self.fd,
                0,
                0,
            )
            try:
                sys_bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH, attr)
                done = False
            except FileNotFoundError:  # ENOENT: the walk reached the end (count may still be > 0)
                done = True
            kbase, vbase = ctypes.addressof(keys), ctypes.addressof(values)
            out += [
                (
                    ctypes.string_at(kbase + i * self.key_size, self.key_size),
                    ctypes.string_at(vbase + i * self.value_size, self.value_size),
                )
                for i in range(attr.count)
            ]
            if done or attr.count == 0:
                break
            ctypes.memmove(token_in, token_out, 8)
            in_batch = ctypes.addressof(token_in)
        return out


def sum_percpu(values: Sequence[bytes], struct: type[ctypes.Structure]) -> ctypes.Structure:
    """Add up per-CPU copies of a structure made only of u64 fields and arrays (wrapping like u64)."""
    size = ctypes.sizeof(struct)
    if not values:
        return struct()
    rows = [memoryview(raw[:size]).cast("Q") for raw in values]
    sums = (sum(column) & 0xFFFF_FFFF_FFFF_FFFF for column in zip(*rows, strict=True))
    return struct.from_buffer_copy((ctypes.c_uint64 * (size // 8))(*sums))
