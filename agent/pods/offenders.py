"""The top-N pods per metric, as proto ``PodOffender`` rows."""

from __future__ import annotations

import math
from collections.abc import Mapping

from agent.pods.resolver import PodResolver
from agent.vector import PodOffender
from wire.schema import METRIC_BY_NAME


def top_offenders(
    figures: Mapping[str, Mapping[str, float]], resolver: PodResolver | None = None, n: int = 3
) -> list[PodOffender]:
    """The ``n`` highest pods of each metric, highest first, metrics in the order given.

    ``figures`` maps a schema metric name -> pod UID -> value (schema units). Zero, negative
    and non-finite values are not offences and are skipped. A pod the resolver does not know
    keeps its UID as ``name`` with an empty ``namespace``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    out: list[PodOffender] = []
    for metric, per_pod in figures.items():
        if metric not in METRIC_BY_NAME:
            raise ValueError(f"figures: {metric!r} is not a schema metric")
        rows = []
        for uid, value in per_pod.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                continue
            info = resolver.resolve(uid) if resolver is not None else None
            ns, name = (info.namespace, info.name) if info is not None else ("", uid)
            rows.append(PodOffender(ns, name, metric, float(value)))
        rows.sort(key=lambda r: (-r.value, r.namespace, r.name))
        out.extend(rows[:n])
    return out
