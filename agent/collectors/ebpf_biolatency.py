"""eBPF block-IO latency (metric 13): bpf/biolatency.bpf.c.

The kernel times every request from block_rq_issue to block_rq_complete (device service
time, keyed by device and sector) into a log2 histogram in microseconds, for the node
(cumulative; each read takes the delta) and per device (drained each read). The metric
is the p99 of the interval in milliseconds, interpolated within its log2 slot (see
:meth:`agent.ebpf.histogram.Log2Histogram.quantile`).

An interval in which no request completed reports the metric missing with
:data:`NO_IO` - not 0 ms: an idle disk has no latency, not a zero one.

``python -m agent.collectors.ebpf_biolatency`` prints readings every second;
``--ebpf`` prints the C program with its cflags instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Measurement, Reading, all_missing
from agent.ebpf import loader
from agent.ebpf.debug_cli import debug_main
from agent.ebpf.histogram import HIST_SLOTS, KaLatency, Log2Histogram
from agent.ebpf.loader import DEFAULT_LOAD_TIMEOUT_S, LoadedProgram
from agent.ebpf.maps import sum_percpu
from agent.ebpf.probes import BpfUnavailable
from agent.ebpf.program import Attach, ProgramSpec

log = logging.getLogger(__name__)

DISK_P99 = "disk_io_latency_p99_ms"
PROGRAM = "biolatency.bpf.c"

DEFAULT_MAX_INFLIGHT = 16384
DEFAULT_MAX_DISKS = 256
#: Issue -> completion longer than this is a stale match (a reused sector), not a latency.
#: Far beyond the block layer's default request timeout (30 s).
DEFAULT_MAX_LATENCY_S = 120

#: Node counters, in the order of enum ka_bio_counter in bpf/biolatency.bpf.c.
BIO_COUNTERS = ("issued", "unmatched", "stale", "inflight_drops", "disk_drops")

NO_IO = "no block IO completed in the interval"

#: Kernel dev_t as the block tracepoints report it: major << 20 | minor.
MINOR_BITS = 20


class _BioNode(ctypes.Structure):  # struct ka_bio_node
    _fields_ = [("counters", ctypes.c_uint64 * len(BIO_COUNTERS)), ("latency", KaLatency)]


MAPS = {"node_stats": (4, ctypes.sizeof(_BioNode)), "disks": (4, ctypes.sizeof(KaLatency))}


@dataclass(frozen=True)
class BlockIoTotals:
    """Node-wide figures: cumulative since load from the source, per interval in a reading."""

    issued: int = 0
    unmatched: int = 0
    """Completions whose issue was not seen (not measured)."""
    stale: int = 0
    """Completions matching an issue older than the maximum latency (a reused sector; not measured)."""
    inflight_drops: int = 0
    """Issues not tracked (the in-flight map refused the update)."""
    disk_drops: int = 0
    latency: Log2Histogram = Log2Histogram((0,) * HIST_SLOTS)
    """Issue -> completion, log2 slots in µs; its total is the number of completed requests."""
    latency_sum_ns: int = 0

    @property
    def completed(self) -> int:
        return self.latency.total

    def __sub__(self, earlier: BlockIoTotals) -> BlockIoTotals:
        counts = {name: getattr(self, name) - getattr(earlier, name) for name in _BIO_COUNTS}
        return BlockIoTotals(latency=self.latency - earlier.latency, **counts)

    @property
    def went_backwards(self) -> bool:
        return any(getattr(self, n) < 0 for n in _BIO_COUNTS) or min(self.latency.slots) < 0


_BIO_COUNTS = (*BIO_COUNTERS, "latency_sum_ns")


@dataclass(frozen=True)
class DiskLatency:
    """One device's completed requests over one interval."""

    dev: str
    """``major:minor``."""
    name: str | None
    """Kernel name (``vda``, ``nvme0n1p1``) from /sys/dev/block, None if not found."""
    count: int
    sum_ns: int
    latency: Log2Histogram

    @property
    def p99_ms(self) -> float | None:
        us = self.latency.quantile(0.99)
        return None if us is None else us / 1000.0


@dataclass(frozen=True)
class BlockIoReading(Reading):
    interval_s: float | None = None
    node: BlockIoTotals | None = None
    devices: Mapping[str, DiskLatency] = field(default_factory=lambda: MappingProxyType({}))
    """``major:minor`` -> that device's figures, for devices that completed IO in the interval."""


class BlockIoSource(Protocol):
    def totals(self) -> BlockIoTotals: ...

    def drain(self) -> dict[int, tuple[int, int, Log2Histogram]]:
        """Per-device figures since the last drain: kernel dev_t -> (count, sum_ns, histogram)."""

    def close(self) -> None: ...


def program_spec(
    max_inflight: int = DEFAULT_MAX_INFLIGHT,
    max_disks: int = DEFAULT_MAX_DISKS,
    max_latency_s: int = DEFAULT_MAX_LATENCY_S,
) -> ProgramSpec:
    for name, value in (("max_inflight", max_inflight), ("max_disks", max_disks), ("max_latency_s", max_latency_s)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    return ProgramSpec(
        PROGRAM,
        cflags={
            "MAX_INFLIGHT": max_inflight,
            "MAX_DISKS": max_disks,
            "MAX_LATENCY_NS": f"{max_latency_s * 1_000_000_000}ULL",
        },
        attach=(
            Attach("block:block_rq_issue", "ka_bio_issue", ("dev", "sector")),
            Attach("block:block_rq_complete", "ka_bio_done", ("dev", "sector")),
        ),
        maps=MAPS,
    )


class BpfBlockIoSource:
    """The loaded bpf/biolatency.bpf.c."""

    def __init__(self, program: LoadedProgram):
        self.program = program

    def totals(self) -> BlockIoTotals:
        node = sum_percpu(self.program.maps["node_stats"].lookup_percpu(bytes(4)), _BioNode)
        return BlockIoTotals(
            latency=node.latency.histogram(),
            latency_sum_ns=node.latency.sum_ns,
            **dict(zip(BIO_COUNTERS, node.counters, strict=True)),
        )

    def drain(self) -> dict[int, tuple[int, int, Log2Histogram]]:
        """Per-device figures since the last drain: kernel dev_t -> (count, sum_ns, histogram)."""
        out = {}
        for key, raw in self.program.maps["disks"].drain():
            v = KaLatency.from_buffer_copy(raw[: ctypes.sizeof(KaLatency)])
            out[int.from_bytes(key, sys.byteorder)] = (v.count, v.sum_ns, v.histogram())
        return out

    def close(self) -> None:
        self.program.close()


def dev_name(dev: int) -> str:
    return f"{dev >> MINOR_BITS}:{dev & ((1 << MINOR_BITS) - 1)}"


class BlockIoCollector:
    name = "ebpf_biolatency"
    metrics = (DISK_P99,)

    def __init__(
        self,
        sys_root: str | Path = "/sys",
        clock: Clock = SYSTEM_CLOCK,
        *,
        source: BlockIoSource | None = None,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_disks: int = DEFAULT_MAX_DISKS,
        load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
        proc_root: str | Path = "/proc",
        bpf_dir: Path | None = None,
    ):
        self.sys_root = Path(sys_root)
        self.clock = clock
        self.unavailable: str | None = None
        self.program: LoadedProgram | None = None
        self._names: dict[str, str | None] = {}
        if source is None:
            spec = program_spec(max_inflight, max_disks)
            try:
                self.program = loader.load(spec, sys_root, bpf_dir, load_timeout_s, proc_root)
            except BpfUnavailable as err:
                self.unavailable = err.reason
                log.warning("eBPF block-IO collector unavailable: %s", err.reason)
            except Exception as err:  # noqa: BLE001 - a loader bug must cost these metrics, not the agent
                self.unavailable = f"loading bpf/{PROGRAM} failed unexpectedly: {type(err).__name__}: {err}"
                log.exception("eBPF block-IO collector unavailable")
            else:
                source = BpfBlockIoSource(self.program)
                peak = self.program.helper_peak_rss_kb
                log.info(
                    "eBPF block-IO collector: bpf/%s attached in %.2f s (%s; compile helper peak RSS %s)",
                    PROGRAM,
                    self.program.load_seconds,
                    " ".join(f"{k}={v}" for k, v in spec.cflags.items()),
                    f"{peak / 1024:.0f} MB" if peak else "unknown",
                )
        self.source = source
        self._prev: tuple[float, BlockIoTotals] | None = None
        if source is not None:
            self._prev = (self.clock.monotonic(), source.totals())
            source.drain()

    def _device_name(self, dev: str) -> str | None:
        if dev not in self._names:
            try:
                self._names[dev] = os.path.basename(os.readlink(self.sys_root / "dev" / "block" / dev))
            except OSError:
                self._names[dev] = None
        return self._names[dev]

    def read(self) -> BlockIoReading:
        now = self.clock.monotonic()
        if self.source is None:
            return BlockIoReading(**vars(all_missing(self.name, now, self.metrics, self.unavailable)))
        prev_at, prev = self._prev
        try:
            totals = self.source.totals()
            delta = totals - prev
            # the kernel writes a device entry only with a completion: skip an empty map
            busy = delta.went_backwards or delta.disk_drops or delta.latency.total
            drained = self.source.drain() if busy else {}
        except OSError as err:
            reason = f"reading the eBPF maps of bpf/{PROGRAM} failed: {err.strerror or err}"
            return BlockIoReading(**vars(all_missing(self.name, now, self.metrics, reason)))
        self._prev = (now, totals)
        if delta.went_backwards:
            reason = "eBPF counters went backwards (program reloaded?); new baseline taken"
            return BlockIoReading(**vars(all_missing(self.name, now, self.metrics, reason)))
        devices = {}
        for raw_dev, (count, sum_ns, hist) in drained.items():
            dev = dev_name(raw_dev)
            devices[dev] = DiskLatency(dev, self._device_name(dev), count, sum_ns, hist)
        p99_us = delta.latency.quantile(0.99)
        m = Measurement.missing(DISK_P99, NO_IO) if p99_us is None else Measurement.measured(DISK_P99, p99_us / 1000)
        return BlockIoReading(
            self.name, now, (m,), interval_s=now - prev_at, node=delta, devices=MappingProxyType(devices)
        )

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
            self.unavailable = "collector closed"


def describe(r: BlockIoReading) -> str:
    m = r.measurements[0]
    head = f"{m.metric}={m.value:.3f}" if m.available else f"{m.metric}: {m.reason}"
    devs = ", ".join(f"{d.name or d.dev}: {d.count} IOs p99 {d.p99_ms:.3f} ms" for d in r.devices.values() if d.count)
    return f"{head} | {devs or '-'}"


def main(argv: list[str] | None = None) -> int:
    return debug_main(
        argv, "Print block-IO latency readings every interval.", program_spec(), BlockIoCollector, describe
    )


if __name__ == "__main__":
    sys.exit(main())
