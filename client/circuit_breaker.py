"""The circuit breaker in front of the aggregator: CLOSED, OPEN for a cool-down after
consecutive failures, then HALF_OPEN for one trial call. Pure logic over an injected clock."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class CircuitState(enum.IntEnum):
    """Values are those of the ``kubeattention_client_circuit_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class Ticket:
    """Permission for one call. ``generation`` ties its outcome to the state it was let
    through in: an outcome from an older state (a slow call finishing after the circuit
    opened) is not counted."""

    allowed: bool
    generation: int
    trial: bool = False
    denial: str = ""
    """Why the call is not let through, when it is not."""


class CircuitBreaker:
    """CLOSED -> OPEN after ``failure_threshold`` consecutive failures; OPEN -> HALF_OPEN when
    a call arrives after ``cooldown_s``; that one trial call closes it or re-opens it.

    Thread-safe; never calls out while holding its lock except ``on_change`` (keep it quick).
    """

    def __init__(
        self,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float],
        on_change: Callable[[CircuitState, CircuitState], None] | None = None,
    ):
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change or (lambda old, new: None)
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._generation = 0
        self._failures = 0
        self._last_failure = ""
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def last_failure(self) -> str:
        return self._last_failure

    def admit(self) -> Ticket:
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return Ticket(True, self._generation)
            if self._state is CircuitState.OPEN:
                remaining = self._opened_at + self.cooldown_s - self._clock()
                if remaining > 0:
                    return Ticket(False, self._generation, denial=self._open_text(remaining))
                self._move(CircuitState.HALF_OPEN)
            if self._trial_in_flight:
                return Ticket(
                    False,
                    self._generation,
                    denial=f"circuit half-open after {self._failures} consecutive failures "
                    f"(last: {self._last_failure}); a trial call is in flight",
                )
            self._trial_in_flight = True
            return Ticket(True, self._generation, trial=True)

    def succeeded(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.generation != self._generation:
                return
            self._failures = 0
            self._trial_in_flight = False
            if self._state is not CircuitState.CLOSED:
                log.info("KubeAttention aggregator answered the trial call: circuit closed")
                self._move(CircuitState.CLOSED)

    def failed(self, ticket: Ticket, code: str) -> str:
        """Counts a failure labelled ``code``; returns the circuit's state in words."""
        with self._lock:
            if ticket.generation != self._generation:
                # The circuit changed state while this call was out; it was decided without it.
                return self._describe()
            self._failures += 1
            self._last_failure = code
            self._trial_in_flight = False
            if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._move(CircuitState.OPEN)
                log.warning("KubeAttention aggregator: %s", self._open_text(self.cooldown_s))
            return self._describe()

    def released(self, ticket: Ticket) -> None:
        """The call proved nothing either way (the caller's own error): free the trial slot."""
        with self._lock:
            if ticket.trial and ticket.generation == self._generation:
                self._trial_in_flight = False

    # Called with the lock held.
    def _move(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        self._generation += 1
        self._on_change(old, new)

    def _open_text(self, remaining_s: float) -> str:
        return (
            f"circuit open after {self._failures} consecutive failures (last: {self._last_failure}); "
            f"retrying in {max(remaining_s, 0.0):.1f} s"
        )

    def _describe(self) -> str:
        if self._state is CircuitState.OPEN:
            return self._open_text(self._opened_at + self.cooldown_s - self._clock())
        if self._state is CircuitState.HALF_OPEN:
            return f"circuit half-open after {self._failures} consecutive failures"
        return f"{self._failures} of {self.failure_threshold} consecutive failures before the circuit opens"
