"""Kubernetes resource quantities ("500m", "2", "512Mi", "1G", "1.5e9") as numbers."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def parse_quantity(text: str, field: str = "quantity") -> Decimal:
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"{field}: {text!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1G)")
    try:
        value = Decimal(m.group(1)) * Decimal(_SUFFIX[m.group(2)])
    except InvalidOperation:
        raise ValueError(f"{field}: {text!r} is not a number") from None
    if value < 0 or not value.is_finite():
        raise ValueError(f"{field}: {text!r} must be >= 0")
    return value


def cpu_cores(text: str, field: str = "cpu") -> float:
    return float(parse_quantity(text, field))


def memory_bytes(text: str, field: str = "memory") -> int:
    return int(parse_quantity(text, field).to_integral_value(rounding="ROUND_CEILING"))
