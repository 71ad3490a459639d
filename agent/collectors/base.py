"""What every collector returns: frozen measurements stamped by the injected clock.

A collector owns a few metrics of the schema and reads one source on the host (a file
under ``proc_root`` or ``sys_root``). Each :meth:`Collector.read` returns a
:class:`Reading`; a metric it could not measure this time is a :class:`Measurement` with
``value=None`` and a human ``reason`` - never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wire.schema import METRIC_BY_NAME

#: Reason for any metric whose value is a rate or a delta, on the first reading.
FIRST_SAMPLE = "first sample: needs two readings"


@dataclass(frozen=True)
class Measurement:
    """One metric's value (schema units), or ``None`` and why not."""

    metric: str
    value: float | None
    reason: str | None = None
    source: str | None = None
    """How the value was obtained when it is not the schema's first-choice source."""

    def __post_init__(self) -> None:
        if self.metric not in METRIC_BY_NAME:
            raise ValueError(f"metric: {self.metric!r} is not a schema metric")
        if self.value is None:
            if not self.reason:
                raise ValueError(f"reason: missing {self.metric} needs a reason")
        elif not math.isfinite(self.value):
            raise ValueError(f"value: {self.metric} must be finite or None, got {self.value!r}")

    @property
    def available(self) -> bool:
        return self.value is not None

    @classmethod
    def measured(cls, metric: str, value: float, source: str | None = None) -> Measurement:
        return cls(metric, float(value), None, source)

    @classmethod
    def missing(cls, metric: str, reason: str) -> Measurement:
        return cls(metric, None, reason)


@dataclass(frozen=True)
class Reading:
    """Everything one collector measured at one instant (``at`` = clock.monotonic())."""

    collector: str
    at: float
    measurements: tuple[Measurement, ...]

    def get(self, metric: str) -> Measurement:
        for m in self.measurements:
            if m.metric == metric:
                return m
        raise KeyError(metric)


class Collector(Protocol):
    """A source of some of the 15 metrics. Plug a new one into NodeCollector's list."""

    name: str
    metrics: tuple[str, ...]
    """Names of the schema metrics this collector provides (each provided by exactly one)."""

    def read(self) -> Reading: ...


def clamp_ratio(x: float) -> float:
    """Clip float noise (1.0000000002) into [0, 1]."""
    return min(max(x, 0.0), 1.0)


def read_text(path: Path) -> str:
    """Read a small kernel file in one go (raises OSError as is)."""
    with open(path, "rb") as f:
        return f.read().decode("ascii", errors="replace")


def describe_os_error(path: Path, err: OSError) -> str:
    return f"cannot read {path}: {err.strerror or err}"


def all_missing(name: str, at: float, metrics: tuple[str, ...], reason: str) -> Reading:
    return Reading(name, at, tuple(Measurement.missing(m, reason) for m in metrics))
