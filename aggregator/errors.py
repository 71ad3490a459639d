"""The aggregator's exceptions: one small hierarchy, every message names the field."""

from __future__ import annotations


class AggregatorError(Exception):
    """Base of everything the aggregator raises on purpose."""


class InvalidInput(AggregatorError):
    """A request or pushed vector is malformed. Maps to gRPC INVALID_ARGUMENT / HTTP 400."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class StoreUnavailable(AggregatorError):
    """Redis could not be reached or refused the write. Maps to gRPC UNAVAILABLE."""


class ConfigError(AggregatorError):
    """The aggregator's configuration is invalid; the message lists every problem."""
