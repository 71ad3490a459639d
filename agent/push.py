"""Pusher: sends the latest vector to the aggregator over gRPC, in its own thread.

Collection never waits for the network. When the aggregator is unreachable the pusher
backs off (capped exponential with jitter) and, once it answers again, sends the
*latest* vector - a backlog is never replayed, old vectors would only be scored as stale.
An INVALID_ARGUMENT answer means the aggregator refuses this vector: it is logged with
the aggregator's message and not retried (the next tick brings a new vector).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Protocol

import grpc

from agent.clock import SYSTEM_CLOCK, Clock
from agent.latest_vector import LatestVector
from agent.vector import NodeVector
from wire.backoff import Backoff
from wire.client_security import ClientSecurity, TokenFile, TokenFileError, metadata
from wire.v1 import telemetry_pb2, telemetry_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_INITIAL_S = 0.5
DEFAULT_BACKOFF_CAP_S = 5.0
#: Each delay is drawn from [base * (1 - JITTER), base]: agents restarted together spread out.
DEFAULT_BACKOFF_JITTER = 0.5
DEFAULT_PUSH_DEADLINE_S = 2.0
#: While the aggregator stays down, repeat the warning at most this often.
STILL_DOWN_REMINDER_S = 60.0
#: How long the idle pusher sleeps between checks for shutdown.
_IDLE_WAIT_S = 0.5


#: The pusher's retry schedule (wire.backoff.Backoff: doubling from initial_s up to cap_s).
DEFAULT_BACKOFF = Backoff(
    initial_s=DEFAULT_BACKOFF_INITIAL_S, cap_s=DEFAULT_BACKOFF_CAP_S, jitter=DEFAULT_BACKOFF_JITTER
)


def backoff_for_interval(interval_s: float) -> Backoff:
    """The agent's retry backoff: never longer than one push interval (nor DEFAULT_BACKOFF_CAP_S).

    A restarted aggregator then hears from every agent within about two intervals, and a
    fleet retrying at that pace pushes no faster than it does in steady state anyway.
    """
    cap = min(DEFAULT_BACKOFF_CAP_S, max(interval_s, DEFAULT_BACKOFF_INITIAL_S))
    return Backoff(initial_s=min(DEFAULT_BACKOFF_INITIAL_S, cap), cap_s=cap, jitter=DEFAULT_BACKOFF_JITTER)


class Transport(Protocol):
    def push(self, message: telemetry_pb2.NodeTelemetry, timeout: float) -> telemetry_pb2.PushAck: ...

    def close(self) -> None: ...


class GrpcTransport:
    """TelemetryService.Push over one channel (TLS, mTLS and/or a bearer token as ``security``
    says; plaintext only with ``insecure=True``); gRPC reconnects underneath."""

    def __init__(self, target: str, backoff: Backoff, security: ClientSecurity):
        security.check()
        # Keep gRPC's own reconnect backoff in line with ours, or a restarted aggregator
        # could be ignored for up to gRPC's default 120 s.
        options = [
            ("grpc.initial_reconnect_backoff_ms", int(backoff.initial_s * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(backoff.initial_s * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(backoff.cap_s * 1000)),
        ]
        self.channel = security.channel(target, options=options)
        self.stub = telemetry_pb2_grpc.TelemetryServiceStub(self.channel)
        self.tokens: TokenFile | None = security.token_source()

    def push(self, message: telemetry_pb2.NodeTelemetry, timeout: float) -> telemetry_pb2.PushAck:
        try:
            md = metadata(self.tokens)  # re-reads a rotated token file
        except TokenFileError as e:
            raise PushCredentialsError(str(e)) from None
        return self.stub.Push(message, timeout=timeout, metadata=md)

    def close(self) -> None:
        self.channel.close()


class PushCredentialsError(grpc.RpcError):
    """The bearer token file could not be read: a failed push, retried like an unreachable aggregator."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAUTHENTICATED

    def details(self) -> str:
        return self.message


def describe_rpc_error(err: grpc.RpcError) -> str:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    return f"{code.name if code else 'UNKNOWN'}: {details}"


class Pusher(threading.Thread):
    """Pushes every new vector in ``store`` to ``target``; ``stop()`` ends it."""

    def __init__(
        self,
        target: str,
        store: LatestVector,
        *,
        deadline_s: float = DEFAULT_PUSH_DEADLINE_S,
        backoff: Backoff = DEFAULT_BACKOFF,
        on_result: Callable[[bool, float], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        transport: Transport | None = None,
        security: ClientSecurity | None = None,
    ):
        super().__init__(name="pusher", daemon=True)
        self.target = target
        self.store = store
        self.deadline_s = deadline_s
        self.backoff = backoff
        self.on_result = on_result or (lambda ok, at: None)
        self.clock = clock
        self.rng = rng or random.Random()
        if transport is None and security is None:
            raise ValueError("Pusher: pass security=ClientSecurity(...) (TLS, token, or insecure=True) or a transport")
        self.transport = transport or GrpcTransport(target, backoff, security)
        self._stop_event = threading.Event()
        self.failures = 0
        """Consecutive failed pushes (0 while the aggregator answers)."""
        self.pushed = 0
        self.rejected = 0
        self._down_since_warned = 0.0
        self._last_error = ""
        self._last_rejection = ""

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        self.store.wake_all()
        if self.is_alive():
            self.join(timeout)
        self.transport.close()

    def run(self) -> None:
        done_seq = 0
        while not self._stop_event.is_set():
            vector, seq = self.store.wait_newer(done_seq, _IDLE_WAIT_S)
            if self._stop_event.is_set():
                break
            if vector is None or seq <= done_seq:
                continue
            if self._push(vector):
                done_seq = seq
            else:
                delay = self.backoff.delay(self.failures, self.rng.random)
                self._log_failure(delay)
                self._stop_event.wait(delay)
                # Loop: wait_newer returns at once with whatever is latest now.

    def _push(self, vector: NodeVector) -> bool:
        """True when this vector is done with (accepted or refused), False to retry later."""
        try:
            self.transport.push(vector.to_proto(), timeout=self.deadline_s)
        except grpc.RpcError as err:
            self.on_result(False, self.clock.wall_ms() / 1000.0)
            if hasattr(err, "code") and err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                if self.failures:
                    log.info("aggregator %s answers again after %d failed pushes", self.target, self.failures)
                    self.failures = 0
                self._log_rejection(vector, err)
                return True
            self.failures += 1
            self._last_error = describe_rpc_error(err)
            return False
        self.on_result(True, self.clock.wall_ms() / 1000.0)
        self.pushed += 1
        if self.failures:
            age = max(self.clock.wall_ms() - vector.collected_at_ms, 0) / 1000.0
            log.info(
                "reconnected to aggregator %s after %d failed pushes; sent latest vector (collected %.1f s ago)",
                self.target,
                self.failures,
                age,
            )
        elif self.pushed == 1:
            log.info("pushing to aggregator %s: first vector accepted", self.target)
        self.failures = 0
        self._last_rejection = ""
        return True

    def _log_failure(self, delay: float) -> None:
        now = self.clock.monotonic()
        if self.failures == 1:
            log.warning(
                "aggregator %s unreachable (%s); retrying in %.1f s, still collecting",
                self.target,
                self._last_error,
                delay,
            )
            self._down_since_warned = now
        elif now - self._down_since_warned >= STILL_DOWN_REMINDER_S:
            log.warning(
                "aggregator %s still unreachable after %d failed pushes (%s); retrying every <= %g s, still collecting",
                self.target,
                self.failures,
                self._last_error,
                self.backoff.cap_s,
            )
            self._down_since_warned = now
        else:
            log.debug(
                "push %d to %s failed (%s); retrying in %.1f s", self.failures, self.target, self._last_error, delay
            )

    def _log_rejection(self, vector: NodeVector, err: grpc.RpcError) -> None:
        self.rejected += 1
        message = describe_rpc_error(err)
        if message != self._last_rejection:
            log.error(
                "aggregator %s rejected the vector of node %s collected at %d (%s); not retrying it",
                self.target,
                vector.node_name,
                vector.collected_at_ms,
                message,
            )
            self._last_rejection = message
        else:
            log.debug("aggregator %s rejected another vector (%s)", self.target, message)
