"""Memory bandwidth of the node in GB/s: resctrl MBM first, else an estimate from LLC misses.

**resctrl (first choice).** With Intel RDT / AMD PQoS memory-bandwidth monitoring and
``/sys/fs/resctrl`` mounted, every monitoring group has
``mon_data/mon_L3_<domain>/mbm_total_bytes``: bytes moved between that L3 domain and
memory by the group's tasks, accumulated by the kernel (which handles the narrow
hardware counter's wrap). A CTRL_MON group's figure already includes its child MON
groups, so the node total is the default (root) group plus every top-level CTRL_MON
group, summed over L3 domains::

    memory_bandwidth_gbps = sum(d mbm_total_bytes) / d seconds / 1e9

An interval in which the set of groups changed, or a counter went backwards (a group was
removed and recreated), is missing rather than under- or over-counted.

**Estimate (fallback).** Without resctrl, when the hardware counters work, each LLC miss
is taken as one cache line (``coherency_line_size``, 64 B by default) fetched from memory::

    memory_bandwidth_gbps ~= d(cache-misses) x line bytes / seconds / 1e9

It counts demand line fills only - not write-backs, not prefetches - so it is a lower
bound, and the metric's ``source`` says it is an estimate. With neither, the metric is
missing with both reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import FIRST_SAMPLE, Measurement, Reading
from agent.perf.counters import CounterSource
from agent.perf.events import CACHE_MISSES
from agent.perf.intervals import PerfSnapshot, interval_counts

log = logging.getLogger(__name__)

MEMORY_BANDWIDTH = "memory_bandwidth_gbps"
DEFAULT_LINE_BYTES = 64
#: Directories at the top of a resctrl mount that are not CTRL_MON groups.
RESCTRL_NOT_GROUPS = frozenset({"info", "mon_groups", "mon_data"})
ESTIMATE_SOURCE = (
    "estimate: LLC misses x {line} B (perf cache-misses; demand line fills only, no write-backs "
    "or prefetches: a lower bound); resctrl: {why}"
)


class ResctrlUnavailable(Exception):
    """resctrl cannot give memory bandwidth on this node; the message says why."""


def resctrl_status(resctrl: Path) -> str | None:
    """Why ``resctrl`` cannot monitor memory bandwidth, or None when it can."""
    if not (resctrl / "info").is_dir():
        return (
            f"not mounted at {resctrl} (needs Intel RDT MBM or AMD PQoS, CONFIG_X86_CPU_RESCTRL, and "
            f"'mount -t resctrl resctrl {resctrl}')"
        )
    features = resctrl / "info" / "L3_MON" / "mon_features"
    try:
        listed = features.read_text().split()
    except OSError:
        return f"mounted at {resctrl} without L3 monitoring ({features} absent): no MBM on this CPU"
    if "mbm_total_bytes" not in listed:
        return f"mounted at {resctrl} but {features} lists no mbm_total_bytes ({', '.join(listed) or 'nothing'})"
    return None


def read_mbm_totals(resctrl: Path) -> dict[str, int]:
    """``group/domain -> mbm_total_bytes`` for the root group and every top-level CTRL_MON group.

    Raises ResctrlUnavailable when a domain reports ``Unavailable``/``Error`` or cannot be read.
    """
    groups = [resctrl]
    try:
        groups += sorted(p for p in resctrl.iterdir() if p.is_dir() and p.name not in RESCTRL_NOT_GROUPS)
    except OSError as err:
        raise ResctrlUnavailable(f"cannot list {resctrl}: {err.strerror or err}") from err
    totals: dict[str, int] = {}
    for group in groups:
        try:
            domains = sorted(d for d in (group / "mon_data").iterdir() if d.name.startswith("mon_L3_"))
        except OSError:
            continue  # a CTRL-only group (no monitoring) or one removed mid-walk
        for domain in domains:
            path = domain / "mbm_total_bytes"
            try:
                text = path.read_text().strip()
            except OSError as err:
                raise ResctrlUnavailable(f"cannot read {path}: {err.strerror or err}") from err
            if not text.isdigit():
                raise ResctrlUnavailable(f"{path} reads {text!r} (no RMID or counter for this domain)")
            totals[f"{'' if group == resctrl else group.name}/{domain.name}"] = int(text)
    if not totals:
        raise ResctrlUnavailable(f"no mon_data/mon_L3_*/mbm_total_bytes under {resctrl}")
    return totals


def mbm_gbps(prev: Mapping[str, int], cur: Mapping[str, int], seconds: float) -> float:
    """GB/s between two resctrl readings; raises ValueError when the interval cannot be trusted."""
    if seconds <= 0:
        raise ValueError("no time elapsed between readings")
    if set(prev) != set(cur):
        changed = sorted(set(prev) ^ set(cur))
        raise ValueError(f"resctrl groups changed during the interval ({', '.join(changed)})")
    moved = 0
    for key, value in cur.items():
        if value < prev[key]:
            raise ValueError(f"resctrl counter {key} went backwards (group recreated)")
        moved += value - prev[key]
    return moved / seconds / 1e9


def line_bytes(sys_root: Path) -> int:
    """The LLC line size from sysfs (index3 is the L3 on x86), else 64."""
    for index in ("index3", "index2"):
        try:
            return int((sys_root / "devices/system/cpu/cpu0/cache" / index / "coherency_line_size").read_text())
        except (OSError, ValueError):
            continue
    return DEFAULT_LINE_BYTES


@dataclass(frozen=True)
class _Baseline:
    source: str
    """"resctrl" or "perf"."""
    at: float
    data: object


class MemoryBandwidthCollector:
    name = "memory_bandwidth"
    metrics = (MEMORY_BANDWIDTH,)

    def __init__(
        self,
        sys_root: str | Path = "/sys",
        perf: CounterSource | None = None,
        clock: Clock = SYSTEM_CLOCK,
        resctrl_root: str | Path | None = None,
    ):
        self.sys_root = Path(sys_root)
        self.resctrl = Path(resctrl_root) if resctrl_root else self.sys_root / "fs" / "resctrl"
        self.perf = perf
        self.clock = clock
        self.line_bytes = line_bytes(self.sys_root)
        self._prev: _Baseline | None = None
        self._logged: str | None = None

    def read(self) -> Reading:
        now = self.clock.monotonic()
        return Reading(self.name, now, (self._measure(now),))

    def _measure(self, now: float) -> Measurement:
        why_not = resctrl_status(self.resctrl)
        if why_not is None:
            try:
                return self._from_resctrl(now, read_mbm_totals(self.resctrl))
            except ResctrlUnavailable as err:
                why_not = str(err)
        self._note_source(f"resctrl: {why_not}")
        snap = self.perf.snapshot() if self.perf is not None else None
        if snap is None or CACHE_MISSES in self.perf.unavailable:
            self._prev = None
            perf_why = (
                "no counter source configured"
                if self.perf is None
                else (self.perf.reason or self.perf.unavailable[CACHE_MISSES])
            )
            return Measurement.missing(MEMORY_BANDWIDTH, f"resctrl: {why_not}; LLC-miss estimate: {perf_why}")
        return self._from_perf(now, snap, why_not)

    def _note_source(self, text: str) -> None:
        """Log once per change of why resctrl is not used (operators read the log, not every tick)."""
        if text != self._logged:
            log.info("memory bandwidth: %s", text)
            self._logged = text

    def _from_resctrl(self, now: float, totals: dict[str, int]) -> Measurement:
        prev, self._prev = self._prev, _Baseline("resctrl", now, totals)
        if prev is None or prev.source != "resctrl":
            return Measurement.missing(MEMORY_BANDWIDTH, FIRST_SAMPLE)
        try:
            return Measurement.measured(MEMORY_BANDWIDTH, mbm_gbps(prev.data, totals, now - prev.at))
        except ValueError as err:
            return Measurement.missing(MEMORY_BANDWIDTH, str(err))

    def _from_perf(self, now: float, snap: PerfSnapshot, resctrl_why: str) -> Measurement:
        prev, self._prev = self._prev, _Baseline("perf", now, snap)
        if prev is None or prev.source != "perf":
            return Measurement.missing(MEMORY_BANDWIDTH, FIRST_SAMPLE)
        counts = interval_counts(prev.data, snap, (CACHE_MISSES,))
        if not counts.complete:
            detail = "; ".join(f"cpu{c}: {why}" for c, why in sorted(counts.excluded.items()))
            return Measurement.missing(
                MEMORY_BANDWIDTH,
                f"LLC-miss estimate would undercount: counters of "
                f"{len(counts.excluded)} CPU(s) not measurable ({detail})",
            )
        gbps = counts.rates[CACHE_MISSES] * self.line_bytes / 1e9
        source = ESTIMATE_SOURCE.format(line=self.line_bytes, why=resctrl_why)
        if (note := counts.coverage()) is not None:
            source += f"; {note}"
        return Measurement.measured(MEMORY_BANDWIDTH, gbps, source)
