"""NodeCollector: one tick of every collector, composed into a NodeVector.

Collectors are independent: one that raises or returns nonsense costs only its own
metrics (reported missing with the error), never the vector.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Collector, Measurement, Reading
from agent.vector import NodeVector, PodOffender
from wire.schema import METRIC_BY_NAME, METRICS, NUM_METRICS

log = logging.getLogger(__name__)

NO_COLLECTOR = "no collector for this metric in this agent version"


class NodeCollector:
    """Reads every collector and builds the node's vector; the same object is reused per tick."""

    def __init__(
        self,
        node_name: str,
        collectors: Sequence[Collector],
        clock: Clock = SYSTEM_CLOCK,
        attribution: Callable[[list[Reading]], tuple[PodOffender, ...]] | None = None,
    ):
        owner: dict[str, str] = {}
        for c in collectors:
            for metric in c.metrics:
                if metric not in METRIC_BY_NAME:
                    raise ValueError(f"collectors: {c.name} declares unknown metric {metric!r}")
                if metric in owner:
                    raise ValueError(f"collectors: metric {metric!r} provided by both {owner[metric]} and {c.name}")
                owner[metric] = c.name
        self.node_name = node_name
        self.collectors = list(collectors)
        self.clock = clock
        self.attribution = attribution
        self._failing: dict[str, str] = {}

    def collect(self) -> NodeVector:
        values = [math.nan] * NUM_METRICS
        available = [False] * NUM_METRICS
        reasons = {m.name: NO_COLLECTOR for m in METRICS}
        sources: dict[str, str] = {}
        readings: list[Reading] = []
        for c in self.collectors:
            reading = self._read(c)
            if reading is not None:
                readings.append(reading)
            for meas in self._measurements(c, reading):
                m = METRIC_BY_NAME[meas.metric]
                if meas.value is not None and m.lo <= meas.value <= m.hi:
                    values[m.index] = meas.value
                    available[m.index] = True
                    reasons.pop(m.name, None)
                    if meas.source:
                        sources[m.name] = meas.source
                elif meas.value is not None:
                    reasons[m.name] = (
                        f"collector {c.name} produced {meas.value!r}, outside the valid range [{m.lo}, {m.hi}] {m.unit}"
                    )
                else:
                    reasons[m.name] = meas.reason or "missing"
        return NodeVector(
            self.node_name,
            self.clock.wall_ms(),
            tuple(values),
            tuple(available),
            reasons,
            sources,
            offenders=self._offenders(readings),
        )

    def _read(self, c: Collector) -> Reading | None:
        try:
            reading = c.read()
        except Exception as err:  # one broken collector must not take the vector down
            message = f"{type(err).__name__}: {err}"
            if self._failing.get(c.name) != message:
                log.warning(
                    "collector %s failed (%s); its metrics %s are reported missing",
                    c.name,
                    message,
                    ", ".join(c.metrics),
                )
                self._failing[c.name] = message
            return None
        if self._failing.pop(c.name, None) is not None:
            log.info("collector %s works again", c.name)
        return reading

    def _measurements(self, c: Collector, reading: Reading | None) -> tuple[Measurement, ...]:
        if reading is None:
            message = self._failing.get(c.name, "unknown error")
            return tuple(Measurement.missing(m, f"collector {c.name} failed: {message}") for m in c.metrics)
        return tuple(m for m in reading.measurements if m.metric in c.metrics)

    def _offenders(self, readings: list[Reading]) -> tuple[PodOffender, ...]:
        if self.attribution is None:
            return ()
        try:
            return tuple(self.attribution(readings))
        except Exception as err:  # attribution is a bonus: never costs the vector
            log.warning("per-pod attribution failed this interval (%s: %s)", type(err).__name__, err)
            return ()


def availability_changes(before: NodeVector | None, after: NodeVector) -> list[str]:
    """Operator-facing lines for metrics that became available or missing (or changed reason)."""
    lines = []
    for m in METRICS:
        was = None if before is None else before.available[m.index]
        now = after.available[m.index]
        if now and was is False:
            lines.append(f"{m.name} is now measured")
        elif not now:
            reason = after.missing_reasons[m.name]
            if was is None or was or before.missing_reasons.get(m.name) != reason:
                lines.append(f"{m.name} missing: {reason}")
    return lines
