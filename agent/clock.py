"""The agent's notion of time, injected everywhere so tests never patch ``time``.

Two readings matter: a monotonic one for rates and intervals (never jumps), and the
wall clock in Unix milliseconds for stamping vectors that travel to the aggregator.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; only differences mean something."""

    def wall_ms(self) -> int:
        """Unix epoch milliseconds."""


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000


SYSTEM_CLOCK = SystemClock()
