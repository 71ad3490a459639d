"""The device: per-CPU hardware counter groups, opened on first use and read cumulatively.

Per online CPU the agent opens the four ``PERF_TYPE_HARDWARE`` counters of
agent.perf.events, counting every process on that CPU (``pid=-1, cpu=N``; this needs
CAP_PERFMON or CAP_SYS_ADMIN, or ``kernel.perf_event_paranoid <= 0``). The four events of a
CPU are one group (scheduled together, so the ratios compare the same time window); when
the PMU cannot hold the group, they are opened separately and scaled one by one. A failure
at start-up becomes one operator-readable reason (logged once; the agent runs on).
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.cpu_lists import online_cpus
from agent.perf.intervals import CounterValue, PerfSnapshot
from agent.perf.syscalls import (
    HW_CONFIG,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_RESET,
    PERF_FLAG_FD_CLOEXEC,
    PERF_FORMAT_GROUP,
    PERF_FORMAT_TOTAL_TIME_ENABLED,
    PERF_FORMAT_TOTAL_TIME_RUNNING,
    PERF_IOC_FLAG_GROUP,
    PERF_TYPE_HARDWARE,
    LinuxSyscalls,
    Syscalls,
    make_attr,
    parse_group_read,
    parse_single_read,
)

log = logging.getLogger(__name__)

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


class CounterSource(Protocol):
    """What the collectors need from :class:`PerfCounters` (tests replay recorded snapshots)."""

    reason: str | None
    unavailable: dict[str, str]

    def snapshot(self) -> PerfSnapshot | None: ...
