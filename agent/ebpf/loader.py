"""The Python side of bpf/: probe, compile with bcc, attach, read maps, read BPF run-time stats.

Loading a ``bpf/*.bpf.c`` program (:func:`load`):

1. probe, in order, and turn the first failure into a human reason (:class:`BpfUnavailable`):
   privileges (root, or CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN), tracefs
   (``/sys/kernel/tracing`` then ``/sys/kernel/debug/tracing``), every tracepoint and the
   fields the program reads, bcc (this interpreter, then Debian's ``/usr/bin/python3``),
   kernel headers (``$BCC_KERNEL_SOURCE``, ``/lib/modules/$(uname -r)/build``, then
   ``/sys/kernel/kheaders.tar.xz``);
2. compile and attach in a **short-lived helper process** (this file run as a script) that
   imports bcc, hands the program, map and tracepoint-link file descriptors back over a
   Unix socket (SCM_RIGHTS) and exits without detaching. bcc pulls LLVM and clang into
   the process that compiles (~60 MB resident just to import, ~120 MB more at compile
   time); the agent keeps only the descriptors and reads the maps with the plain bpf(2)
   syscall, so its own footprint stays that of a Python process;
3. verify every map's key and value sizes against what the Python side expects.

Histograms come from the kernel in log2 slots (``bpf/ka_common.h``); :class:`Log2Histogram`
computes quantiles from them. :func:`prog_stats_of_pid` and :func:`bpf_stats_enabled`
read the kernel's per-program run time (``kernel.bpf_stats_enabled``) for the overhead
benchmark.

``python agent/ebpf/loader.py --print runqlat.bpf.c -DMAX_CGROUPS=64`` prints a program as it
would be compiled (the ``--ebpf`` of bcc's tools).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import math
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bpf

BPF_DIR = bpf.source_dir()
COMMON_HEADER = bpf.COMMON_HEADER

#: Slots of every log2 histogram (cflag KA_HIST_SLOTS; the last slot is open-ended).
HIST_SLOTS = 32
#: How long compiling and attaching one program may take before the helper is killed.
DEFAULT_LOAD_TIMEOUT_S = 60.0
#: Name prefix of this project's BPF programs (the kernel keeps 15 characters of a name).
PROG_PREFIX = "ka_"

TRACEFS_CANDIDATES = ("kernel/tracing", "kernel/debug/tracing")
DEBIAN_PYTHON = Path("/usr/bin/python3")
DEBIAN_BCC = Path("/usr/lib/python3/dist-packages/bcc/__init__.py")
INSTALL_BCC = "bcc not installed: apt-get install python3-bpfcc (then `make venv-bcc` links it into the venv)"

# Linux capability numbers (include/uapi/linux/capability.h).
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


class BpfUnavailable(Exception):
    """eBPF cannot be used here; ``reason`` says why in words an operator can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------------------- probes


def privilege_problem(euid: int, cap_eff: int) -> str | None:
    """Why a process with this uid and effective capability mask cannot load tracing BPF."""
    if euid == 0:
        return None
    has = lambda cap: bool(cap_eff >> cap & 1)  # noqa: E731
    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return None
    return (
        f"needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN, or root) to load eBPF tracing programs; "
        f"running as uid {euid} with CapEff=0x{cap_eff:x}"
    )


def own_privilege_problem() -> str | None:
    cap_eff = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                cap_eff = int(line.split()[1], 16)
    return privilege_problem(os.geteuid(), cap_eff)


def find_tracefs(sys_root: str | Path = "/sys") -> Path:
    """The tracefs events directory: /sys/kernel/tracing, then the debugfs location."""
    looked = []
    for rel in TRACEFS_CANDIDATES:
        path = Path(sys_root) / rel
        looked.append(str(path))
        if (path / "events").is_dir():
            return path
    raise BpfUnavailable(f"tracefs not mounted (looked at {', '.join(looked)}): mount -t tracefs nodev {looked[0]}")


@dataclass(frozen=True)
class TracepointFormat:
    """A tracepoint's record layout as the running kernel describes it in tracefs."""

    name: str
    fields: Mapping[str, str]
    """Field name -> C declaration (``long prev_state``)."""
    print_fmt: str

    @classmethod
    def parse(cls, name: str, text: str) -> TracepointFormat:
        fields = {}
        print_fmt = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("field:"):
                decl = line[len("field:") :].split(";", 1)[0].strip()
                match = re.search(r"(\w+)\s*(\[[^\]]*\])?$", decl)
                if match:
                    fields[match.group(1)] = decl
            elif line.startswith("print fmt:"):
                print_fmt = line[len("print fmt:") :].strip()
        return cls(name, fields, print_fmt)


def read_tracepoint(tracefs: Path, tracepoint: str) -> TracepointFormat:
    """Read ``category:event``'s format; BpfUnavailable when the kernel has no such tracepoint."""
    category, _, event = tracepoint.partition(":")
    path = tracefs / "events" / category / event / "format"
    try:
        return TracepointFormat.parse(tracepoint, path.read_text())
    except FileNotFoundError:
        raise BpfUnavailable(f"tracepoint {tracepoint} not in this kernel (no {path})") from None
    except OSError as err:
        raise BpfUnavailable(f"cannot read {path}: {err.strerror or err}") from None


def require_fields(fmt: TracepointFormat, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in fmt.fields]
    if missing:
        raise BpfUnavailable(
            f"tracepoint {fmt.name} has no field {', '.join(missing)} in this kernel (it has: {', '.join(fmt.fields)})"
        )


def bcc_python(spec_finder=None, debian_python: Path = DEBIAN_PYTHON, debian_bcc: Path = DEBIAN_BCC) -> str:
    """An interpreter that can import bcc: this one, else Debian's python3 with python3-bpfcc.

    Only looks (find_spec): bcc itself is imported by the compile helper, never here.
    """
    if spec_finder is None:
        import importlib.util

        spec_finder = importlib.util.find_spec
    with contextlib.suppress(ImportError, ValueError):
        if spec_finder("bcc") is not None:
            return sys.executable
    if debian_python.exists() and debian_bcc.exists():
        return str(debian_python)
    raise BpfUnavailable(INSTALL_BCC)


def find_kernel_headers(
    release: str | None = None,
    environ: Mapping[str, str] | None = None,
    modules_root: str | Path = "/lib/modules",
    sys_root: str | Path = "/sys",
) -> Path:
    """Where bcc will find kernel headers, in bcc's own order of preference."""
    release = release or platform.release()
    env = os.environ if environ is None else environ
    if env.get("BCC_KERNEL_SOURCE"):
        return Path(env["BCC_KERNEL_SOURCE"])
    build = Path(modules_root) / release / "build"
    if (build / "include").is_dir():
        return build
    kheaders = Path(sys_root) / "kernel" / "kheaders.tar.xz"
    if kheaders.exists():
        return kheaders
    raise BpfUnavailable(
        f"kernel headers not found at {build}: apt-get install linux-headers-{release} "
        f"(or link matching headers there: make ebpf-deps), or load the kheaders module"
    )


# ------------------------------------------------------------------------ program spec


@dataclass(frozen=True)
class Attach:
    tracepoint: str
    """``category:event``."""
    function: str
    """The C function (at most 15 characters: the kernel's program name)."""
    fields: tuple[str, ...] = ()
    """Tracepoint fields the function reads; probed before compiling."""
    required: bool = True
    """An optional tracepoint absent from this kernel is skipped (and noted), not fatal."""


@dataclass(frozen=True)
class ProgramSpec:
    source: str
    """File name under bpf/."""
    cflags: Mapping[str, int | str]
    attach: tuple[Attach, ...]
    maps: Mapping[str, tuple[int, int]]
    """Map name -> (key size, value size of one CPU) the Python side decodes."""

    def cflag_list(self, bpf_dir: Path = BPF_DIR) -> list[str]:
        return [
            f"-I{bpf_dir}",
            f"-DKA_HIST_SLOTS={HIST_SLOTS}",
            *(f"-D{k}={v}" for k, v in sorted(self.cflags.items())),
        ]


def render_source(spec_or_source: ProgramSpec | str, cflags: Sequence[str] = (), bpf_dir: Path = BPF_DIR) -> str:
    """The program as bcc compiles it: cflags, the shared header, then the source."""
    if isinstance(spec_or_source, ProgramSpec):
        source, flags = spec_or_source.source, [*spec_or_source.cflag_list(bpf_dir), *cflags]
    else:
        source, flags = spec_or_source, [f"-I{bpf_dir}", f"-DKA_HIST_SLOTS={HIST_SLOTS}", *cflags]
    parts = [f"// cflags: {' '.join(flags)}"]
    for name in (COMMON_HEADER, source):
        parts += [f"// ---- bpf/{name}", (bpf_dir / name).read_text()]
    return "\n".join(parts)


# ------------------------------------------------------------------------ bpf(2) syscall

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
BPF_MAP_LOOKUP_ELEM, BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY = 1, 3, 4
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_ENABLE_STATS = 13, 15, 32
BPF_STATS_RUN_TIME = 0
PERCPU_MAP_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


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


class _GetIdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _StatsAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32)]


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


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
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


def _obj_info(fd: int, info: ctypes.Structure) -> None:
    _bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(fd, ctypes.sizeof(info), ctypes.addressof(info)))


def possible_cpus(sys_root: str | Path = "/sys") -> int:
    """Number of possible CPUs: the stride count of per-CPU map values ("0-3,8-11" -> 8)."""
    text = (Path(sys_root) / "devices/system/cpu/possible").read_text().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


class BpfMap:
    """A BPF map held by file descriptor; keys and values are raw bytes."""

    def __init__(self, name: str, fd: int):
        info = _MapInfo()
        _obj_info(fd, info)
        self.name = name
        self.fd = fd
        self.type = info.type
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.percpu = info.type in PERCPU_MAP_TYPES
        self.ncpus = possible_cpus() if self.percpu else 1
        self._stride = (self.value_size + 7) // 8 * 8
        self._batch: tuple | None = None  # buffers for drain(), made on first use
        self._batch_ok = not self.percpu

    def lookup(self, key: bytes) -> bytes | None:
        """The value (all CPUs' values, each padded to 8 bytes, for per-CPU maps), or None."""
        kbuf = ctypes.create_string_buffer(key, self.key_size)
        vbuf = ctypes.create_string_buffer(self._stride * self.ncpus)
        try:
            _bpf(BPF_MAP_LOOKUP_ELEM, _ElemAttr(self.fd, 0, ctypes.addressof(kbuf), ctypes.addressof(vbuf), 0))
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
                _bpf(
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
            _bpf(BPF_MAP_DELETE_ELEM, _ElemAttr(self.fd, 0, ctypes.addressof(kbuf), 0, 0))

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
                _bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH, attr)
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


# ---------------------------------------------------------------------- BPF run stats


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
    _obj_info(fd, info)
    return ProgStats(info.name.decode(errors="replace"), info.id, info.run_time_ns, info.run_cnt)


def prog_stats_of_id(prog_id: int) -> ProgStats:
    fd = _bpf(BPF_PROG_GET_FD_BY_ID, _GetIdAttr(prog_id, 0, 0))
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
        fd = _bpf(BPF_ENABLE_STATS, _StatsAttr(BPF_STATS_RUN_TIME))
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


# ----------------------------------------------------------------------- log2 histogram


@dataclass(frozen=True)
class Log2Histogram:
    """Counts per log2 slot as bpf/ka_common.h builds them.

    Slot 0 holds [0, 1), slot k >= 1 holds [2^(k-1), 2^k), the last slot is open-ended
    (in the unit the kernel divided by: microseconds here).
    """

    slots: tuple[int, ...]

    @staticmethod
    def slot_of(value: int) -> int:
        """The slot the kernel puts an integer ``value`` in (ka_log2_slot)."""
        return min(int(value).bit_length(), HIST_SLOTS - 1) if value > 0 else 0

    @staticmethod
    def bounds(slot: int, nslots: int = HIST_SLOTS) -> tuple[float, float]:
        lo = 0.0 if slot == 0 else float(2 ** (slot - 1))
        hi = math.inf if slot == nslots - 1 else float(2**slot)
        return lo, hi

    @property
    def total(self) -> int:
        return sum(self.slots)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, None when empty.

        Rank q x total, found by walking the cumulative counts; inside the slot that holds
        it, linear interpolation between the slot's bounds (samples assumed spread evenly
        in the slot, as Prometheus' histogram_quantile does). The result is within a factor
        of 2 of the true value. In the open-ended last slot the lower bound is returned: a
        known minimum, never an invented maximum.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q: must be within [0, 1], got {q!r}")
        total = self.total
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for slot, count in enumerate(self.slots):
            if count == 0:
                continue
            if seen + count >= rank:
                lo, hi = self.bounds(slot, len(self.slots))
                if math.isinf(hi):
                    return lo
                return lo + (hi - lo) * (rank - seen) / count
            seen += count
        raise AssertionError("unreachable: rank <= total")

    def __sub__(self, earlier: Log2Histogram) -> Log2Histogram:
        if len(earlier.slots) != len(self.slots):
            raise ValueError(f"histograms of {len(self.slots)} and {len(earlier.slots)} slots")
        return Log2Histogram(tuple(a - b for a, b in zip(self.slots, earlier.slots, strict=True)))

    def __add__(self, other: Log2Histogram) -> Log2Histogram:
        return Log2Histogram(tuple(a + b for a, b in zip(self.slots, other.slots, strict=True)))


class KaLatency(ctypes.Structure):
    """struct ka_latency of bpf/ka_common.h."""

    _fields_ = [("count", ctypes.c_uint64), ("sum_ns", ctypes.c_uint64), ("slots", ctypes.c_uint64 * HIST_SLOTS)]

    def histogram(self) -> Log2Histogram:
        return Log2Histogram(tuple(self.slots))


def sum_percpu(values: Sequence[bytes], struct: type[ctypes.Structure]) -> ctypes.Structure:
    """Add up per-CPU copies of a structure made only of u64 fields and arrays (wrapping like u64)."""
    size = ctypes.sizeof(struct)
    if not values:
        return struct()
    rows = [memoryview(raw[:size]).cast("Q") for raw in values]
    sums = (sum(column) & 0xFFFF_FFFF_FFFF_FFFF for column in zip(*rows, strict=True))
    return struct.from_buffer_copy((ctypes.c_uint64 * (size // 8))(*sums))


# ------------------------------------------------------------------------ loaded program


@dataclass
class LoadedProgram:
    """A compiled, attached program: its maps, program fds and attachment (link) fds."""

    spec: ProgramSpec
    maps: dict[str, BpfMap]
    progs: dict[str, int]
    links: dict[str, int]
    """Tracepoint -> perf-event fd; closing it detaches."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Optional tracepoints not attached, with why."""
    notes: dict[str, str] = field(default_factory=dict)
    """What the probes found (headers, tracefs, interpreter), for logs and debugging."""
    load_seconds: float = 0.0
    helper_peak_rss_kb: int | None = None
    """VmHWM of the compiling helper process (bcc + LLVM): transient, not the agent's."""

    def prog_stats(self) -> dict[str, ProgStats]:
        return {name: prog_stats_of_fd(fd) for name, fd in self.progs.items()}

    def close(self) -> None:
        for group in (self.links, self.progs):
            for fd in group.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            group.clear()
        for m in self.maps.values():
            with contextlib.suppress(OSError):
                os.close(m.fd)
        self.maps.clear()

    @property
    def closed(self) -> bool:
        return not self.maps

    def __del__(self) -> None:  # an unclosed program must not stay attached for the process's life
        with contextlib.suppress(Exception):
            self.close()


def load(
    spec: ProgramSpec, sys_root: str | Path = "/sys", bpf_dir: Path = BPF_DIR, timeout_s: float = DEFAULT_LOAD_TIMEOUT_S
) -> LoadedProgram:
    """Probe, compile, attach; raises BpfUnavailable with the first problem found."""
    started = time.monotonic()
    if (problem := own_privilege_problem()) is not None:
        raise BpfUnavailable(problem)
    tracefs = find_tracefs(sys_root)
    attach, skipped = [], {}
    for a in spec.attach:
        try:
            require_fields(read_tracepoint(tracefs, a.tracepoint), a.fields)
            attach.append(a)
        except BpfUnavailable as err:
            if a.required:
                raise
            skipped[a.tracepoint] = err.reason
    path = bpf_dir / spec.source
    if not path.is_file() or not (bpf_dir / COMMON_HEADER).is_file():
        raise BpfUnavailable(f"eBPF sources not found: {path} (the agent ships bpf/ next to agent/)")
    python = bcc_python()
    headers = find_kernel_headers()
    request = {
        "path": str(path),
        "cflags": spec.cflag_list(bpf_dir),
        "attach": [[a.tracepoint, a.function] for a in attach],
        "maps": list(spec.maps),
    }
    reply, fds = _run_helper(python, request, timeout_s, spec.source)
    names = reply.get("fds", [])
    if len(names) != len(fds):
        for fd in fds:
            os.close(fd)
        raise BpfUnavailable(f"the eBPF compile helper sent {len(fds)} descriptors for {len(names)} names")
    by_name = dict(zip(names, fds, strict=True))
    program = LoadedProgram(
        spec,
        maps={},
        progs={n[len("prog:") :]: fd for n, fd in by_name.items() if n.startswith("prog:")},
        links={n[len("link:") :]: fd for n, fd in by_name.items() if n.startswith("link:")},
        skipped=skipped,
        notes={"tracefs": str(tracefs), "headers": str(headers), "python": python},
        helper_peak_rss_kb=reply.get("peak_rss_kb"),
    )
    try:
        for name, (key_size, value_size) in spec.maps.items():
            m = BpfMap(name, by_name[f"map:{name}"])
            program.maps[name] = m
            if (m.key_size, m.value_size) != (key_size, value_size):
                raise BpfUnavailable(
                    f"bpf/{spec.source} map {name}: kernel has key/value sizes "
                    f"{m.key_size}/{m.value_size} bytes, the agent expects {key_size}/{value_size} "
                    f"(bpf/ and agent/ out of step)"
                )
    except OSError as err:
        program.close()
        raise BpfUnavailable(f"bpf/{spec.source}: cannot inspect its maps: {err.strerror or err}") from None
    except BaseException:
        program.close()
        raise
    program.load_seconds = time.monotonic() - started
    return program


def _run_helper(python: str, request: dict, timeout_s: float, source: str) -> tuple[dict, list[int]]:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent, tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(
                [python, "-I", str(Path(__file__).resolve()), "--serve", str(child.fileno()), json.dumps(request)],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                close_fds=True,
            )
        except OSError as err:
            raise BpfUnavailable(f"cannot start the eBPF compile helper {python}: {err.strerror or err}") from None
        finally:
            child.close()
        parent.settimeout(timeout_s)
        try:
            data, fds, _, _ = socket.recv_fds(parent, 1 << 16, 64)
        except TimeoutError:
            proc.kill()
            proc.wait()
            raise BpfUnavailable(f"compiling bpf/{source} took longer than {timeout_s:g} s; gave up") from None
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        log_tail = stderr.read().decode(errors="replace")
    if not data:
        raise BpfUnavailable(
            f"the eBPF compile helper exited with {proc.returncode} before answering: "
            f"{_first_error(log_tail) or 'no output'}"
        )
    try:
        reply = json.loads(data)
    except ValueError:
        reply = {"ok": False, "error": f"unreadable answer {data[:200]!r}"}
    if not reply.get("ok"):
        for fd in fds:
            os.close(fd)
        raise BpfUnavailable(explain_failure(source, reply.get("error", ""), log_tail))
    return reply, fds


def _first_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln:
            return ln
    return lines[-1] if lines else ""


def explain_failure(source: str, error: str, log: str) -> str:
    """A human reason for a failed compile or attach (from bcc's exception and stderr)."""
    text = f"{error}\n{log}"
    if "Unable to find kernel headers" in text:
        return (
            f"kernel headers not found at /lib/modules/{platform.release()}/build: "
            f"apt-get install linux-headers-{platform.release()} (or make ebpf-deps)"
        )
    if "Operation not permitted" in text or "Permission denied" in text:
        return f"loading bpf/{source} was refused (needs CAP_BPF/root): {error.strip()}"
    if "No module named 'bcc'" in text or "No module named bcc" in text:
        return INSTALL_BCC
    if "Failed to compile BPF" in text or "error:" in log:
        return f"compiling bpf/{source} failed: {_first_error(log) or error.strip()}"
    if "attach" in error.lower():
        return f"attaching bpf/{source} failed: {error.strip()}"
    return f"loading bpf/{source} failed: {error.strip() or _first_error(log)}"


# ------------------------------------------------------------------ the compile helper


def _serve(sock_fd: int, request_json: str) -> None:
    """Helper process: compile and attach with bcc, send the fds back, exit without detaching."""
    sock = socket.socket(fileno=sock_fd)
    try:
        request = json.loads(request_json)
        from bcc import BPF  # noqa: PLC0415 (only the helper imports bcc)

        bpf = BPF(src_file=request["path"].encode(), cflags=request["cflags"])
        names, fds = [], []
        for tracepoint, function in request["attach"]:
            bpf.attach_tracepoint(tp=tracepoint.encode(), fn_name=function.encode())
            names += [f"prog:{function}", f"link:{tracepoint}"]
            fds += [bpf.funcs[function.encode()].fd, bpf.tracepoint_fds[tracepoint.encode()]]
        for name in request["maps"]:
            names.append(f"map:{name}")
            fds.append(bpf.get_table(name).map_fd)
        peak = None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1])
        socket.send_fds(sock, [json.dumps({"ok": True, "fds": names, "peak_rss_kb": peak}).encode()], fds)
    except BaseException as err:  # noqa: BLE001 - everything goes back to the agent as a reason
        with contextlib.suppress(OSError):
            sock.send(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}"}).encode())
    finally:
        sys.stderr.flush()
        os._exit(0)  # no atexit: bcc's cleanup would disable the tracepoints the agent now holds


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=2, metavar=("FD", "REQUEST"), help=argparse.SUPPRESS)
    parser.add_argument("--print", metavar="FILE", help="print bpf/FILE with the shared header and cflags")
    args, cflags = parser.parse_known_args(argv)
    if args.serve:
        _serve(int(args.serve[0]), args.serve[1])
    if args.print:
        print(render_source(args.print, cflags))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())


def debug_main(argv: list[str] | None, description: str, spec: ProgramSpec, make_collector, describe) -> int:
    """A collector module's ``python -m`` entry: ``--ebpf`` prints the C source with its cflags
    (bcc tools' hidden flag); otherwise print ``describe(reading)`` every ``--interval``."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=0, help="readings to print (0: until Ctrl-C)")
    args = parser.parse_args(argv)
    if args.ebpf:
        print(render_source(spec))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    collector = make_collector()
    try:
        n = 0
        while args.count == 0 or n < args.count:
            time.sleep(args.interval)
            print(describe(collector.read()))
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        collector.close()
    return 0
