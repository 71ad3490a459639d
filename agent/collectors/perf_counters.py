"""Hardware performance counters: LLC miss ratio, LLC MPKI and CPI of the whole node.

Per online CPU the agent opens four ``PERF_TYPE_HARDWARE`` counters - cache-misses,
cache-references, instructions, cycles - counting every process on that CPU
(``pid=-1, cpu=N``; this needs CAP_PERFMON or CAP_SYS_ADMIN, or
``kernel.perf_event_paranoid <= 0``). Each interval the metrics come from the deltas
summed over CPUs::

    llc_miss_ratio         = d(cache-misses) / d(cache-references)
    llc_mpki               = d(cache-misses) / (d(instructions) / 1000)
    cycles_per_instruction = d(cycles) / d(instructions)

The module has three layers, top to bottom:

* the arithmetic (:func:`interval_counts`, :func:`perf_measurements`): pure functions over
  recorded :class:`PerfSnapshot` values, unit-tested on readings in tests/fixtures/perf/;
* the device (:class:`PerfCounters`): opens, reads and closes the counters, and turns a
  failure at start-up into one operator-readable reason (logged once; the agent runs on);
* the syscall layer (:class:`PerfEventAttr`, :class:`Syscalls`): ctypes over
  ``perf_event_open(2)``, because no maintained Python library exposes it.

**Multiplexing.** When more events are open than the PMU has counters, the kernel rotates
them and each counter runs only part of the time. Every read carries ``time_enabled`` and
``time_running`` (``PERF_FORMAT_TOTAL_TIME_ENABLED | _RUNNING``); like ``perf stat -I``,
the delta of the raw count is scaled by d(enabled)/d(running) of the same interval. The
four events of a CPU are one group (scheduled together, so the ratios compare the same
time window); when the PMU cannot hold the group, they are opened separately and scaled
one by one. A counter that did not run at all in an interval cannot be scaled and leaves
its CPU out of that interval.

**Wrap and restart.** The kernel presents 64-bit counts. A count below its previous value
is taken as a 2**64 wrap when the wrapped delta is plausible (< ``MAX_PLAUSIBLE_DELTA``),
otherwise as a restart (the counter was reopened or reset): that CPU is left out of
that interval, never turned into a huge or negative number.

A ratio with a zero denominator (no cache references, no instructions in the interval)
is missing with that reason, not 0.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import platform
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import FIRST_SAMPLE, Measurement, Reading, all_missing

log = logging.getLogger(__name__)

LLC_MISS_RATIO = "llc_miss_ratio"
LLC_MPKI = "llc_mpki"
CPI = "cycles_per_instruction"

CACHE_MISSES = "cache-misses"
CACHE_REFERENCES = "cache-references"
INSTRUCTIONS = "instructions"
CYCLES = "cycles"
#: The events, in group order (the first one leads the group), named as perf(1) names them.
EVENTS: tuple[str, ...] = (CYCLES, INSTRUCTIONS, CACHE_REFERENCES, CACHE_MISSES)
#: Which events each metric needs (numerator, denominator).
METRIC_EVENTS: dict[str, tuple[str, str]] = {
    LLC_MISS_RATIO: (CACHE_MISSES, CACHE_REFERENCES),
    LLC_MPKI: (CACHE_MISSES, INSTRUCTIONS),
    CPI: (CYCLES, INSTRUCTIONS),
}

#: A wrapped delta larger than this is a restart, not a wrap: 2**48 events is ~8 hours at
#: 10**10 events per second, far beyond any interval.
MAX_PLAUSIBLE_DELTA = 2**48
U64 = 2**64
#: A miss ratio up to this much above 1 is scaling noise and is clipped to 1; beyond it the
#: events are not comparable on this CPU and the ratio is reported missing.
RATIO_NOISE = 1.05


# =========================================================================== arithmetic


@dataclass(frozen=True)
class CounterValue:
    """One event on one CPU as read: the cumulative count and the kernel's timing (ns)."""

    value: int
    enabled_ns: int
    running_ns: int


@dataclass(frozen=True)
class PerfSnapshot:
    """Cumulative readings of every open counter at one instant: cpu -> event -> value."""

    cpus: Mapping[int, Mapping[str, CounterValue]]
    unreadable: Mapping[int, str] = field(default_factory=dict)
    """CPUs whose counters could not be read this time, with why."""


def counter_delta(prev: int, cur: int) -> int | None:
    """``cur - prev`` for a u64 counter: modulo 2**64 when that is plausible, None on a restart."""
    d = cur - prev
    if d >= 0:
        return d
    wrapped = d + U64
    return wrapped if wrapped <= MAX_PLAUSIBLE_DELTA else None


def scaled_delta(prev: CounterValue, cur: CounterValue) -> tuple[float, float, float]:
    """(scaled count delta, enabled seconds, running share) of one counter over an interval.

    Raises ValueError with the reason when the interval cannot be measured on this counter.
    """
    dv = counter_delta(prev.value, cur.value)
    de = counter_delta(prev.enabled_ns, cur.enabled_ns)
    dr = counter_delta(prev.running_ns, cur.running_ns)
    if dv is None or de is None or dr is None or dr > de:
        raise ValueError("counter restarted (went backwards)")
    if de == 0:
        raise ValueError("counter not enabled during the interval (CPU offline?)")
    if dr == 0:
        raise ValueError("counter never scheduled on the PMU during the interval (multiplexed out)")
    return dv * de / dr, de / 1e9, dr / de


@dataclass(frozen=True)
class IntervalCounts:
    """Event counts of one interval, summed over the CPUs whose every counter was measurable."""

    totals: Mapping[str, float]
    """event -> scaled count delta, summed over ``cpus``."""
    rates: Mapping[str, float]
    """event -> events per second: sum over ``cpus`` of count / that CPU's enabled time."""
    cpus: tuple[int, ...]
    excluded: Mapping[int, str]
    """CPU -> why it is left out of this interval."""
    running_share: float
    """Smallest share of the interval any used counter actually ran (1.0 = no multiplexing)."""

    @property
    def complete(self) -> bool:
        return not self.excluded

    def coverage(self) -> str | None:
        """Human note on multiplexing or left-out CPUs; None when the interval is clean."""
        notes = []
        if self.excluded:
            detail = "; ".join(f"cpu{c}: {why}" for c, why in sorted(self.excluded.items()))
            notes.append(f"{len(self.cpus)} of {len(self.cpus) + len(self.excluded)} CPUs ({detail})")
        if self.running_share < 1.0:
            notes.append(f"multiplexed, scaled from {self.running_share:.0%} of the interval")
        return "perf counters: " + ", ".join(notes) if notes else None


def interval_counts(prev: PerfSnapshot, cur: PerfSnapshot, events: tuple[str, ...] = EVENTS) -> IntervalCounts:
    """Sum the scaled per-CPU deltas of ``events`` between two snapshots."""
    totals = dict.fromkeys(events, 0.0)
    rates = dict.fromkeys(events, 0.0)
    used: list[int] = []
    excluded: dict[int, str] = dict(cur.unreadable)
    share = 1.0
    for cpu in sorted(set(prev.cpus) | set(cur.cpus)):
        if cpu in excluded:
            continue
        before, after = prev.cpus.get(cpu), cur.cpus.get(cpu)
        if before is None or after is None:
            excluded[cpu] = "no baseline reading" if before is None else "no current reading"
            continue
        try:
            deltas = {}
            for event in events:
                if event not in before or event not in after:
                    raise ValueError(f"{event} not read")
                deltas[event] = scaled_delta(before[event], after[event])
        except ValueError as err:
            excluded[cpu] = str(err)
            continue
        used.append(cpu)
        for event, (count, seconds, running) in deltas.items():
            totals[event] += count
            rates[event] += count / seconds
            share = min(share, running)
    return IntervalCounts(totals, rates, tuple(used), excluded, share)


def lacking_events(metric: str, unavailable: Mapping[str, str]) -> str | None:
    """Why ``metric`` cannot be computed because one of its events is not counted, or None."""
    lacking = [f"{e}: {unavailable[e]}" for e in METRIC_EVENTS[metric] if e in unavailable]
    return "; ".join(lacking) or None


def perf_measurements(counts: IntervalCounts, unavailable: Mapping[str, str] | None = None) -> tuple[Measurement, ...]:
    """The three metrics from one interval's counts; ``unavailable`` maps event -> why it is not counted."""
    out = []
    for metric, (num_event, den_event) in METRIC_EVENTS.items():
        if lacking := lacking_events(metric, unavailable or {}):
            out.append(Measurement.missing(metric, lacking))
            continue
        if not counts.cpus:
            detail = "; ".join(f"cpu{c}: {why}" for c, why in sorted(counts.excluded.items())) or "no CPUs"
            out.append(Measurement.missing(metric, f"no CPU's counters were measurable this interval ({detail})"))
            continue
        num, den = counts.totals[num_event], counts.totals[den_event]
        if den <= 0:
            out.append(Measurement.missing(metric, f"no {den_event} counted in the interval: {metric} undefined"))
            continue
        value = num / den
        if metric == LLC_MPKI:
            value *= 1000.0
        elif metric == LLC_MISS_RATIO and value > 1.0:
            if value > RATIO_NOISE:
                out.append(
                    Measurement.missing(
                        metric,
                        f"cache-misses ({num:.0f}) exceed cache-references "
                        f"({den:.0f}): the two events are not comparable here",
                    )
                )
                continue
            value = 1.0
        out.append(Measurement(metric, value, None, counts.coverage()))
    return tuple(out)


# =========================================================================== syscall layer

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


# =========================================================================== device


def parse_cpu_list(text: str) -> list[int]:
    """``0-3,5,7-8`` (sysfs cpu lists) -> [0, 1, 2, 3, 5, 7, 8]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def online_cpus(sys_root: str | Path) -> list[int]:
    try:
        return parse_cpu_list((Path(sys_root) / "devices/system/cpu/online").read_text())
    except (OSError, ValueError):
        return list(range(os.cpu_count() or 1))


UNSUPPORTED_ERRNOS = (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV)
PERMISSION_ERRNOS = (errno.EACCES, errno.EPERM)


def core_pmus(sys_root: str | Path) -> list[str]:
    """Registered PMUs (/sys/bus/event_source/devices), for the operator's benefit."""
    try:
        return sorted(p.name for p in (Path(sys_root) / "bus/event_source/devices").iterdir())
    except OSError:
        return []


def errno_name(code: int | None) -> str:
    """EACCES, ENOENT...; EOPNOTSUPP rather than its Linux alias ENOTSUP, as perf_event_open(2) documents it."""
    if code == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(code or 0, str(code))


def explain_open_error(err: OSError, sys_root: str | Path, proc_root: str | Path) -> str:
    """An operator-readable reason for a failed perf_event_open of a hardware counter."""
    code = errno_name(err.errno)
    if err.errno in UNSUPPORTED_ERRNOS:
        pmus = core_pmus(sys_root)
        listed = f"registered PMUs: {', '.join(pmus)}" if pmus else "no PMUs listed"
        return (
            f"no hardware PMU: perf_event_open(PERF_TYPE_HARDWARE) failed with {code} ({listed}); "
            "usual in VMs without a virtual PMU (Firecracker, many cloud instance types)"
        )
    if err.errno in PERMISSION_ERRNOS:
        try:
            paranoid = (Path(proc_root) / "sys/kernel/perf_event_paranoid").read_text().strip()
        except OSError:
            paranoid = "unknown"
        return (
            f"not permitted to count system-wide ({code}): needs CAP_PERFMON (Linux >= 5.8) or "
            f"CAP_SYS_ADMIN, or kernel.perf_event_paranoid <= 0 (it is {paranoid}); fix and restart the agent"
        )
    if err.errno in (errno.EMFILE, errno.ENFILE):
        return f"out of file descriptors ({code}): the counters need 4 per CPU; raise the agent's open-file limit"
    if err.errno == errno.EBUSY:
        return f"PMU busy ({code}): held exclusively by another user or the hypervisor"
    if err.errno == errno.ENOSYS:
        return f"perf_event_open unavailable: {err.strerror}"
    return f"perf_event_open failed: {code} ({err.strerror})"


@dataclass
class _CpuCounters:
    cpu: int
    fds: list[int]
    grouped: bool


class PerfCounters:
    """Per-CPU hardware counter groups, opened on first use, read cumulatively.

    Shared by the perf-counter and memory-bandwidth collectors: the device keeps no
    interval state, each consumer keeps its own previous :class:`PerfSnapshot`.
    ``reason`` says why nothing can be counted; ``unavailable`` says which single events
    this PMU lacks (e.g. an ARM core without generic cache events).
    """

    def __init__(
        self,
        sys_root: str | Path = "/sys",
        proc_root: str | Path = "/proc",
        syscalls: Syscalls | None = None,
        cpus: list[int] | None = None,
        announce: bool = True,
        event_type: int = PERF_TYPE_HARDWARE,
        configs: Mapping[str, int] = HW_CONFIG,
    ):
        self.sys_root = Path(sys_root)
        self.event_type = event_type
        self.configs = dict(configs)
        """event name -> attr.config; the tests map the names onto software events to exercise the
        syscall path on machines without a PMU."""
        self.announce = announce
        """Log the outcome of start-up (once); a probe keeps quiet."""
        self.proc_root = Path(proc_root)
        self._syscalls = syscalls
        self._cpus = cpus
        self.started = False
        self.reason: str | None = None
        self.unavailable: dict[str, str] = {}
        self.events: tuple[str, ...] = ()
        self._open: list[_CpuCounters] = []
        self.failed_cpus: dict[int, str] = {}

    # ------------------------------------------------------------------ start-up

    def start(self) -> None:
        """Detect what can be counted and open it. Idempotent; never raises; logs the outcome once."""
        if self.started:
            return
        self.started = True
        self._syscalls = self._syscalls or LinuxSyscalls()
        cpus = self._cpus if self._cpus is not None else online_cpus(self.sys_root)
        if not cpus:
            self._give_up("no online CPUs listed")
            return
        self.events = self._detect_events(cpus[0])
        if not self.events:
            self._give_up("; ".join(dict.fromkeys(self.unavailable.values())))
            return
        grouped = True
        for cpu in cpus:
            try:
                self._open.append(self._open_cpu(cpu, grouped))
            except OSError as err:
                if grouped and err.errno == errno.EINVAL:
                    # x86 validates a group at open: EINVAL = the PMU can never hold all events at once.
                    grouped = False
                    self._reopen_separately([c.cpu for c in self._open] + [cpu])
                else:
                    self.failed_cpus[cpu] = explain_open_error(err, self.sys_root, self.proc_root)
        if not self._open:
            self._give_up("; ".join(f"cpu{c}: {why}" for c, why in self.failed_cpus.items()))
            return
        if self.announce:
            for e, why in self.unavailable.items():
                log.warning("perf event %s cannot be counted: %s", e, why)
            for cpu, why in self.failed_cpus.items():
                log.warning("perf counters not opened on cpu%d: %s", cpu, why)
            log.info(
                "perf counters open on %d CPUs (%s): %s",
                len(self._open),
                "one group per CPU" if grouped else "separately, each scaled on its own",
                ", ".join(self.events),
            )

    def _give_up(self, reason: str) -> None:
        self.reason = reason
        if self.announce:
            log.warning(
                "hardware counter metrics (llc_miss_ratio, llc_mpki, cycles_per_instruction) are "
                "missing on this node: %s",
                reason,
            )

    def _detect_events(self, cpu: int) -> tuple[str, ...]:
        """Which events this PMU counts, tried one by one on ``cpu``."""
        found, errors = [], {}
        for event in self.configs:
            attr = make_attr(self.event_type, self.configs[event], self._read_format(False), disabled=True)
            try:
                fd = self._syscalls.perf_event_open(attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
            except OSError as err:
                errors[event] = err
                continue
            self._syscalls.close(fd)
            found.append(event)
        for event, err in errors.items():
            if found and err.errno in UNSUPPORTED_ERRNOS:  # a PMU exists, it just lacks this generic event
                self.unavailable[event] = f"this CPU's PMU has no generic {event} event ({errno_name(err.errno)})"
            else:
                self.unavailable[event] = explain_open_error(err, self.sys_root, self.proc_root)
        return tuple(found)

    @staticmethod
    def _read_format(grouped: bool) -> int:
        fmt = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING
        return fmt | PERF_FORMAT_GROUP if grouped else fmt

    def _open_cpu(self, cpu: int, grouped: bool) -> _CpuCounters:
        fds: list[int] = []
        try:
            for i, event in enumerate(self.events):
                leader = fds[0] if grouped and fds else -1
                attr = make_attr(
                    self.event_type, self.configs[event], self._read_format(grouped), disabled=(i == 0 or not grouped)
                )
                fds.append(self._syscalls.perf_event_open(attr, -1, cpu, leader, PERF_FLAG_FD_CLOEXEC))
            if grouped:
                self._syscalls.ioctl(fds[0], PERF_EVENT_IOC_RESET, PERF_IOC_FLAG_GROUP)
                self._syscalls.ioctl(fds[0], PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP)
            else:
                for fd in fds:
                    self._syscalls.ioctl(fd, PERF_EVENT_IOC_RESET, 0)
                    self._syscalls.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
        except OSError:
            for fd in fds:
                self._syscalls.close(fd)
            raise
        return _CpuCounters(cpu, fds, grouped)

    def _reopen_separately(self, cpus: list[int]) -> None:
        if self.announce:
            log.info("perf: the PMU cannot hold the %d events as one group; counting them separately", len(self.events))
        self._close_all()
        for c in cpus:
            try:
                self._open.append(self._open_cpu(c, grouped=False))
            except OSError as err:
                self.failed_cpus[c] = explain_open_error(err, self.sys_root, self.proc_root)

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> PerfSnapshot | None:
        """Cumulative counts of every open counter, or None when nothing can be counted."""
        self.start()
        if self.reason is not None:
            return None
        cpus: dict[int, dict[str, CounterValue]] = {}
        unreadable: dict[int, str] = dict(self.failed_cpus)
        for c in self._open:
            try:
                if c.grouped:
                    size = 8 * (3 + len(self.events))
                    cpus[c.cpu] = parse_group_read(self._syscalls.read(c.fds[0], size), self.events)
                else:
                    cpus[c.cpu] = {
                        e: parse_single_read(self._syscalls.read(fd, 24)) for e, fd in zip(self.events, c.fds)
                    }
            except (OSError, ValueError, struct.error) as err:
                unreadable[c.cpu] = f"read failed: {err}"
        return PerfSnapshot(cpus, unreadable)

    def _close_all(self) -> None:
        for c in self._open:
            for fd in c.fds:
                try:
                    self._syscalls.close(fd)
                except OSError:
                    pass
        self._open = []

    def close(self) -> None:
        """Close every counter; later snapshots report the device closed."""
        if self._syscalls is not None:
            self._close_all()
        self.started = True
        self.reason = self.reason or "perf counters closed"


@dataclass(frozen=True)
class PmuStatus:
    """Result of a cheap probe: can this node count the hardware events?"""

    events: tuple[str, ...]
    reason: str | None
    unavailable: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return self.reason is None


def probe_pmu(
    sys_root: str | Path = "/sys", proc_root: str | Path = "/proc", syscalls: Syscalls | None = None
) -> PmuStatus:
    """Open each event once on the first online CPU and close it again (no counting is kept)."""
    dev = PerfCounters(sys_root, proc_root, syscalls, cpus=online_cpus(sys_root)[:1], announce=False)
    try:
        dev.start()
        return PmuStatus(dev.events if dev.reason is None else (), dev.reason, dict(dev.unavailable))
    finally:
        dev.close()


# =========================================================================== collector


class CounterSource(Protocol):
    """What the collectors need from :class:`PerfCounters` (tests replay recorded snapshots)."""

    reason: str | None
    unavailable: dict[str, str]

    def snapshot(self) -> PerfSnapshot | None: ...


class PerfCountersCollector:
    name = "perf_counters"
    metrics = (LLC_MISS_RATIO, LLC_MPKI, CPI)

    def __init__(self, source: CounterSource, clock: Clock = SYSTEM_CLOCK):
        self.source = source
        self.clock = clock
        self._prev: PerfSnapshot | None = None

    def read(self) -> Reading:
        now = self.clock.monotonic()
        snap = self.source.snapshot()
        if snap is None:
            self._prev = None
            return all_missing(self.name, now, self.metrics, self.source.reason or "perf counters unavailable")
        prev, self._prev = self._prev, snap
        unavailable = self.source.unavailable
        if prev is None:
            return Reading(
                self.name,
                now,
                tuple(Measurement.missing(m, lacking_events(m, unavailable) or FIRST_SAMPLE) for m in self.metrics),
            )
        counted = tuple(e for e in EVENTS if e not in unavailable)
        return Reading(self.name, now, perf_measurements(interval_counts(prev, snap, counted), unavailable))
