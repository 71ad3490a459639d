"""Kubernetes resource quantities ("500m", "2", "512Mi", "1G", "1.5e9") as numbers."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def parse_quantity(text: str, field: str = "quantity") -> Decimal:
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"{field}: {text!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1G)")
    try:
        value = Decimal(m.group(1)) * _SUFFIX[m.group(2)]
    except InvalidOperation:
        raise ValueError(f"{field}: {text!r} is not a number") from None
    if value < 0 or not value.is_finite():
        raise ValueError(f"{field}: {text!r} must be >= 0")
    return value


def cpu_cores(text: str, field: str = "cpu") -> float:
    return float(parse_quantity(text, field))


def memory_bytes(text: str, field: str = "memory") -> int:
    return int(parse_quantity(text, field).to_integral_value(rounding="ROUND_CEILING"))
