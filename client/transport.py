"""The network under the client: the :class:`Transport` interface (so the client's logic is
tested with a fake one) and :class:`GrpcTransport`, ScoringService.BatchScore over one
long-lived gRPC channel."""

from __future__ import annotations

import threading
from typing import Protocol

import grpc

from wire.client_security import ClientSecurity, metadata
from wire.v1 import scoring_pb2, scoring_pb2_grpc

#: gRPC's own reconnect backoff. Its default grows to 120 s, and while a channel backs off
#: every call fails at once: after an aggregator restart (a rolling update) the client
#: must be connected again within a second, not count failures for minutes.
RECONNECT_BACKOFF_INITIAL_S = 0.1
RECONNECT_BACKOFF_MAX_S = 1.0
#: Largest response accepted: 5 000 candidates with long reasons fit with room.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class Transport(Protocol):
    def batch_score(self, request: scoring_pb2.BatchScoreRequest, timeout: float) -> scoring_pb2.BatchScoreResponse:
        """One BatchScore call; raises grpc.RpcError (or OSError) on failure."""

    def reconnect(self) -> None:
        """Start afresh before a half-open trial, so the trial measures the aggregator and
        not the connection's own retry state."""

    def close(self) -> None: ...


class GrpcTransport:
    """ScoringService.BatchScore over one long-lived channel, secured as ``security`` says (TLS,
    a client certificate, a bearer token re-read when its file changes; plaintext only with
    ``insecure=True``); gRPC reconnects underneath.

    The channel is replaced only before a half-open trial: a channel that saw the
    aggregator die sits in gRPC's reconnect backoff and fails calls at once until its next
    attempt, so a trial on it could fail against an aggregator that is already back.
    """

    def __init__(self, address: str, security: ClientSecurity):
        """Raises ValueError for settings that do not fit together and TokenFileError for an
        unusable token file (``ScoringClient`` turns both into ClientConfigError)."""
        security.check()
        self._tokens = security.token_source()
        self.address = address
        self.security = security
        self._lock = threading.Lock()
        self._channel, self._stub = self._open()

    def _open(self) -> tuple[grpc.Channel, scoring_pb2_grpc.ScoringServiceStub]:
        channel = self.security.channel(
            self.address,
            options=[
                ("grpc.initial_reconnect_backoff_ms", int(RECONNECT_BACKOFF_INITIAL_S * 1000)),
                ("grpc.max_reconnect_backoff_ms", int(RECONNECT_BACKOFF_MAX_S * 1000)),
                ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
                ("grpc.http2.bdp_probe", 0),
                # Own subchannels: with gRPC's global pool a new channel would inherit the old
                # connection's backoff, and reconnect() would start nothing afresh.
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        return channel, scoring_pb2_grpc.ScoringServiceStub(channel)

    def batch_score(self, request: scoring_pb2.BatchScoreRequest, timeout: float) -> scoring_pb2.BatchScoreResponse:
        return self._stub.BatchScore(request, timeout=timeout, metadata=metadata(self._tokens))

    def reconnect(self) -> None:
        with self._lock:
            old = self._channel
            self._channel, self._stub = self._open()
        old.close()  # calls still out on it end CANCELLED; they were let through before the outage

    def close(self) -> None:
        with self._lock:
            self._channel.close()
