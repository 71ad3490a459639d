"""Everything the client raises on purpose. A transport failure never raises from
``ScoringClient.score``: it answers with the neutral fallback instead."""

from __future__ import annotations

import grpc


class ClientError(Exception):
    """Base of everything the client raises on purpose. Transport failures never raise."""


class ClientConfigError(ClientError, ValueError):
    """A constructor argument is invalid; the message names it and its value."""


class InvalidRequest(ClientError, ValueError):
    """The request is the caller's mistake: it cannot be encoded, or the aggregator
    answered INVALID_ARGUMENT. Not counted toward opening the circuit."""

    def __init__(self, field: str, problem: str, code: grpc.StatusCode | None = None):
        self.field = field
        self.problem = problem
        self.code = code
        """``grpc.StatusCode.INVALID_ARGUMENT`` when the aggregator rejected it, None when the
        client refused to send it."""
        super().__init__(f"{field}: {problem}")


class ClientClosed(ClientError):
    """``score()`` was called after ``close()``."""


class BadResponse(ClientError, ValueError):
    """The aggregator's answer does not fit the request (other nodes, another count, an unknown
    status): a server fault, counted as a failure with the label ``BAD_RESPONSE``."""
