"""cpu and memory amounts as kube-scheduler adds them up: a resource name -> Decimal quantity."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from kubeapi.fields import mapping
from kubeapi.quantity import parse_quantity

#: Resources that enter the pod context and the QoS class (as in Kubernetes' QoS helper).
COMPUTE_RESOURCES = ("cpu", "memory")

Resources = dict[str, Decimal]


def zero_resources() -> Resources:
    return {r: Decimal(0) for r in COMPUTE_RESOURCES}


def quantities(values: Mapping | None, field: str) -> Resources:
    """The cpu and memory entries of a requests/limits/allocatable object that are set."""
    out: Resources = {}
    values = mapping(values, field)
    for r in COMPUTE_RESOURCES:
        if values and values.get(r) is not None:
            out[r] = parse_quantity(values[r], f"{field}.{r}")
    return out


def add_resources(into: Resources, other: Resources) -> None:
    for r, q in other.items():
        into[r] = into.get(r, Decimal(0)) + q


def max_resources(into: Resources, other: Resources) -> None:
    for r, q in other.items():
        into[r] = max(into.get(r, Decimal(0)), q)
