"""One node's 15-metric vector: the value object that leaves the agent.

A metric the node cannot measure is NaN with its ``available`` bit false and a reason in
``missing_reasons``; it is never 0. The same object renders to the gRPC message
(:meth:`NodeVector.to_proto`) and to the JSON used by ``/v1/node`` and by recordings
(:meth:`NodeVector.to_json` / :meth:`NodeVector.from_json`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wire import __version__
from wire.schema import METRIC_BY_NAME, METRICS, NUM_METRICS, SCHEMA_VERSION
from wire.v1 import telemetry_pb2


class VectorError(ValueError):
    """A vector that breaks the contract; the message names the field and the value."""


@dataclass(frozen=True)
class PodOffender:
    """A pod held responsible for part of a metric on this node (proto PodOffender)."""

    namespace: str
    name: str
    metric: str
    value: float

    def to_proto(self) -> telemetry_pb2.PodOffender:
        return telemetry_pb2.PodOffender(namespace=self.namespace, name=self.name, metric=self.metric, value=self.value)


@dataclass(frozen=True)
class NodeVector:
    node_name: str
    collected_at_ms: int
    values: tuple[float, ...]
    available: tuple[bool, ...]
    missing_reasons: Mapping[str, str] = field(default_factory=dict, hash=False)
    sources: Mapping[str, str] = field(default_factory=dict, hash=False)
    """How each measured metric was obtained, when it differs from the schema's first
    choice (e.g. the /proc/stat fallback for process churn). Informational, JSON only."""
    schema_version: int = SCHEMA_VERSION
    agent_version: str = __version__
    offenders: tuple[PodOffender, ...] = ()
    """Top offending pods per metric for this interval (per-pod attribution)."""

    def __post_init__(self) -> None:
        # Normalise containers so equality and hashing-free use behave predictably.
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        object.__setattr__(self, "available", tuple(bool(a) for a in self.available))
        object.__setattr__(self, "missing_reasons", dict(self.missing_reasons))
        object.__setattr__(self, "sources", dict(self.sources))
        object.__setattr__(self, "offenders", tuple(self.offenders))
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.node_name, str) or not self.node_name:
            raise VectorError(f"node_name: must be a non-empty string, got {self.node_name!r}")
        if (
            isinstance(self.collected_at_ms, bool)
            or not isinstance(self.collected_at_ms, int)
            or self.collected_at_ms <= 0
        ):
            raise VectorError(f"collected_at_ms: must be a positive int (Unix ms), got {self.collected_at_ms!r}")
        if len(self.values) != NUM_METRICS:
            raise VectorError(f"values: expected {NUM_METRICS} values in schema order, got {len(self.values)}")
        if len(self.available) != NUM_METRICS:
            raise VectorError(f"available: expected {NUM_METRICS} mask bits, got {len(self.available)}")
        if self.schema_version != SCHEMA_VERSION:
            raise VectorError(f"schema_version: this agent speaks schema {SCHEMA_VERSION}, got {self.schema_version!r}")
        for m, value, ok in zip(METRICS, self.values, self.available):
            if ok:
                if not math.isfinite(value):
                    raise VectorError(f"values[{m.index}] ({m.name}): marked available but is {value!r}")
                if not m.lo <= value <= m.hi:
                    raise VectorError(
                        f"values[{m.index}] ({m.name}): {value!r} outside the valid range [{m.lo}, {m.hi}] {m.unit}"
                    )
                if m.name in self.missing_reasons:
                    raise VectorError(f"missing_reasons[{m.name!r}]: metric is available, a reason makes no sense")
            else:
                if not math.isnan(value):
                    raise VectorError(f"values[{m.index}] ({m.name}): marked missing, so must be NaN, got {value!r}")
                if not self.missing_reasons.get(m.name):
                    raise VectorError(f"missing_reasons[{m.name!r}]: a missing metric needs a reason")
        for name in (*self.missing_reasons, *self.sources):
            if name not in METRIC_BY_NAME:
                raise VectorError(f"missing_reasons/sources: {name!r} is not a metric of schema {SCHEMA_VERSION}")
        for i, o in enumerate(self.offenders):
            if (
                o.metric not in METRIC_BY_NAME
                or not o.namespace
                or not o.name
                or not math.isfinite(o.value)
                or o.value < 0
            ):
                raise VectorError(
                    f"offenders[{i}]: {o!r} needs a namespace, a name, a schema metric and a finite value >= 0"
                )

    # ------------------------------------------------------------------ accessors

    @property
    def available_count(self) -> int:
        return sum(self.available)

    def value(self, name: str) -> float | None:
        """The metric's value, or None when it is missing."""
        m = METRIC_BY_NAME[name]
        return self.values[m.index] if self.available[m.index] else None

    def restamped(self, *, node_name: str | None = None, collected_at_ms: int | None = None) -> NodeVector:
        """A copy with another node name and/or collection time (replay agents)."""
        return dataclasses.replace(
            self,
            node_name=self.node_name if node_name is None else node_name,
            collected_at_ms=self.collected_at_ms if collected_at_ms is None else collected_at_ms,
            agent_version=__version__,
        )

    # ------------------------------------------------------------------ renderings

    def to_proto(self) -> telemetry_pb2.NodeTelemetry:
        return telemetry_pb2.NodeTelemetry(
            schema_version=self.schema_version,
            node_name=self.node_name,
            collected_at_unix_ms=self.collected_at_ms,
            values=list(self.values),
            available=list(self.available),
            missing_reasons=dict(self.missing_reasons),
            agent_version=self.agent_version,
            top_offenders=[o.to_proto() for o in self.offenders],
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: one entry per metric with name, unit, value or null, reason."""
        metrics = []
        for m, value, ok in zip(METRICS, self.values, self.available):
            entry: dict[str, Any] = {"name": m.name, "unit": m.unit, "value": value if ok else None, "available": ok}
            if not ok:
                entry["reason"] = self.missing_reasons[m.name]
            elif m.name in self.sources:
                entry["source"] = self.sources[m.name]
            metrics.append(entry)
        return {
            "node_name": self.node_name,
            "collected_at_ms": self.collected_at_ms,
            "schema_version": self.schema_version,
            "agent_version": self.agent_version,
            "metrics": metrics,
            "top_offenders": [dataclasses.asdict(o) for o in self.offenders],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeVector:
        """Inverse of :meth:`to_json`; raises :class:`VectorError` naming the bad field."""
        if not isinstance(data, Mapping):
            raise VectorError(f"vector: expected a JSON object, got {type(data).__name__}")
        for key in ("node_name", "collected_at_ms", "schema_version", "metrics"):
            if key not in data:
                raise VectorError(f"{key}: required field is absent")
        if data["schema_version"] != SCHEMA_VERSION:
            raise VectorError(
                f"schema_version: this agent speaks schema {SCHEMA_VERSION}, got {data['schema_version']!r}"
            )
        entries = data["metrics"]
        if not isinstance(entries, list) or len(entries) != NUM_METRICS:
            raise VectorError(
                f"metrics: expected a list of {NUM_METRICS} entries, "
                f"got {len(entries) if isinstance(entries, list) else type(entries).__name__}"
            )
        values, available, reasons, sources = [], [], {}, {}
        for m, entry in zip(METRICS, entries):
            if not isinstance(entry, Mapping) or entry.get("name") != m.name:
                got = entry.get("name") if isinstance(entry, Mapping) else entry
                raise VectorError(f"metrics[{m.index}].name: expected {m.name!r} (schema order), got {got!r}")
            ok = bool(entry.get("available", entry.get("value") is not None))
            if ok:
                if not isinstance(entry.get("value"), (int, float)) or isinstance(entry.get("value"), bool):
                    raise VectorError(
                        f"metrics[{m.index}].value ({m.name}): expected a number, got {entry.get('value')!r}"
                    )
                values.append(float(entry["value"]))
                if entry.get("source"):
                    sources[m.name] = str(entry["source"])
            else:
                values.append(math.nan)
                reasons[m.name] = str(entry.get("reason") or "missing (no reason recorded)")
            available.append(ok)
        return cls(
            node_name=data["node_name"],
            collected_at_ms=data["collected_at_ms"],
            values=tuple(values),
            available=tuple(available),
            missing_reasons=reasons,
            sources=sources,
            schema_version=data["schema_version"],
            agent_version=str(data.get("agent_version", __version__)),
            offenders=tuple(_offender(i, o) for i, o in enumerate(data.get("top_offenders") or [])),
        )


def _offender(i: int, o: Any) -> PodOffender:
    try:
        return PodOffender(str(o["namespace"]), str(o["name"]), str(o["metric"]), float(o["value"]))
    except (KeyError, TypeError, ValueError):
        raise VectorError(f"top_offenders[{i}]: expected namespace, name, metric and value, got {o!r}") from None
