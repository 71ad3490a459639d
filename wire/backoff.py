"""Capped exponential backoff with downward jitter, for every retry loop that crosses the wire
(the agent's pusher, the Tetragon gRPC source, Kubernetes watches).

``Backoff`` is the pure rule (delay before retry n); ``Retry`` counts failures over it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_INITIAL_S = 0.5
DEFAULT_CAP_S = 30.0
DEFAULT_FACTOR = 2.0
DEFAULT_JITTER = 0.2


@dataclass(frozen=True)
class Backoff:
    """initial_s, ×factor per failure, at most cap_s, minus up to ``jitter`` of it at random."""

    initial_s: float = DEFAULT_INITIAL_S
    cap_s: float = DEFAULT_CAP_S
    jitter: float = DEFAULT_JITTER
    factor: float = DEFAULT_FACTOR

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.cap_s:
            raise ValueError(f"backoff: need 0 < initial_s <= cap_s, got {self.initial_s!r} and {self.cap_s!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff.jitter: must be in [0, 1), got {self.jitter!r}")
        if not self.factor >= 1:
            raise ValueError(f"backoff.factor: must be >= 1, got {self.factor!r}")

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Delay before retry number ``failures`` (1 = after the first failure); ``rand`` gives [0, 1)."""
        base = min(self.cap_s, self.initial_s * self.factor ** min(max(failures - 1, 0), 64))
        return base * (1.0 - self.jitter * rand())


class Retry:
    """Failures counted over a Backoff: ``next()`` after each failure, ``reset()`` after a success."""

    def __init__(self, backoff: Backoff | None = None, rand: Callable[[], float] = random.random):
        self.backoff = backoff or Backoff()
        self.rand = rand
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return self.backoff.delay(self.failures, self.rand)

    def reset(self) -> None:
        self.failures = 0
