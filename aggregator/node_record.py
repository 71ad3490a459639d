"""NodeRecord: one node's latest telemetry as the aggregator holds it.

Values are in schema units with NaN where the node could not measure; ``mask`` says which
are measured. The record is the single shape shared by validation, the Redis store, the
snapshot and the HTTP views, so each of them converts from or to it exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from wire.schema import METRICS, NUM_METRICS


@dataclass(frozen=True)
class Offender:
    """A pod the agent holds responsible for part of a metric (proto PodOffender)."""

    namespace: str
    name: str
    metric: str
    value: float

    @property
    def pod(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NodeRecord:
    node_name: str
    values: np.ndarray  # float64 (15,), NaN where missing
    mask: np.ndarray  # bool (15,)
    collected_at_ms: int
    received_at_ms: int
    schema_version: int
    agent_version: str = ""
    missing_reasons: dict[str, str] = field(default_factory=dict)
    offenders: tuple[Offender, ...] = ()

    def age_ms(self, now_ms: int) -> int:
        """Age as the older of the two clocks says: the agent's collection stamp and our receipt.

        Judging by the older stamp means neither a fast agent clock nor a slow one can
        make old data look fresh.
        """
        return now_ms - min(self.collected_at_ms, self.received_at_ms)

    @property
    def clock_skew_ms(self) -> int:
        """Receipt minus collection: positive when the agent's clock is behind ours (or the push was
        delayed), negative when it is ahead. Transit time is part of it (milliseconds on a LAN)."""
        return self.received_at_ms - self.collected_at_ms

    @property
    def missing(self) -> list[str]:
        return [m.name for m in METRICS if not self.mask[m.index]]

    def to_json(self, now_ms: int, max_staleness_ms: int) -> dict:
        age = self.age_ms(now_ms)
        return {
            "node": self.node_name,
            "age_ms": age,
            "stale": age > max_staleness_ms,
            "collected_at_ms": self.collected_at_ms,
            "received_at_ms": self.received_at_ms,
            "clock_skew_ms": self.clock_skew_ms,
            "schema_version": self.schema_version,
            "agent_version": self.agent_version,
            "metrics": [
                {
                    "name": m.name,
                    "unit": m.unit,
                    "value": float(self.values[m.index]) if self.mask[m.index] else None,
                    "display": m.format(float(self.values[m.index])) if self.mask[m.index] else "missing",
                    **({} if self.mask[m.index] else {"reason": self.missing_reasons.get(m.name, "not measured")}),
                }
                for m in METRICS
            ],
            "missing": self.missing,
            "top_offenders": [
                {"namespace": o.namespace, "name": o.name, "metric": o.metric, "value": o.value} for o in self.offenders
            ],
        }


def empty_values() -> np.ndarray:
    return np.full(NUM_METRICS, math.nan)
