"""Log2 histograms as the kernel builds them (``bpf/ka_common.h``), and their quantiles.

User space never sees a sample: the programs count waits and latencies into log2 slots
in the kernel, :class:`KaLatency` is that C structure, :class:`Log2Histogram` the slots as
a value with the q-quantile, deltas and sums.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

#: Slots of every log2 histogram (cflag KA_HIST_SLOTS; the last slot is open-ended).
HIST_SLOTS = 32


@dataclass(frozen=True)
class Log2Histogram:
    """Counts per log2 slot as bpf/ka_common.h builds them.

    Slot 0 holds [0, 1), slot k >= 1 holds [2^(k-1), 2^k), the last slot is open-ended
    (in the unit the kernel divided by: microseconds here).
    """

    slots: tuple[int, ...]

    @staticmethod
    def slot_of(value: int) -> int:
        """The slot the kernel puts an integer ``value`` in (ka_log2_slot)."""
        return min(int(value).bit_length(), HIST_SLOTS - 1) if value > 0 else 0

    @staticmethod
    def bounds(slot: int, nslots: int = HIST_SLOTS) -> tuple[float, float]:
        lo = 0.0 if slot == 0 else float(2 ** (slot - 1))
        hi = math.inf if slot == nslots - 1 else float(2**slot)
        return lo, hi

    @property
    def total(self) -> int:
        return sum(self.slots)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, None when empty.

        Rank q x total, found by walking the cumulative counts; inside the slot that holds
        it, linear interpolation between the slot's bounds (samples assumed spread evenly
        in the slot, as Prometheus' histogram_quantile does). The result is within a factor
        of 2 of the true value. In the open-ended last slot the lower bound is returned: a
        known minimum, never an invented maximum.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q: must be within [0, 1], got {q!r}")
        total = self.total
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for slot, count in enumerate(self.slots):
            if count == 0:
                continue
            if seen + count >= rank:
                lo, hi = self.bounds(slot, len(self.slots))
                if math.isinf(hi):
                    return lo
                return lo + (hi - lo) * (rank - seen) / count
            seen += count
        raise AssertionError("unreachable: rank <= total")

    def __sub__(self, earlier: Log2Histogram) -> Log2Histogram:
        if len(earlier.slots) != len(self.slots):
            raise ValueError(f"histograms of {len(self.slots)} and {len(earlier.slots)} slots")
        return Log2Histogram(tuple(a - b for a, b in zip(self.slots, earlier.slots, strict=True)))

    def __add__(self, other: Log2Histogram) -> Log2Histogram:
        return Log2Histogram(tuple(a + b for a, b in zip(self.slots, other.slots, strict=True)))


class KaLatency(ctypes.Structure):
    """struct ka_latency of bpf/ka_common.h."""

    _fields_ = [("count", ctypes.c_uint64), ("sum_ns", ctypes.c_uint64), ("slots", ctypes.c_uint64 * HIST_SLOTS)]

    def histogram(self) -> Log2Histogram:
        return Log2Histogram(tuple(self.slots))
