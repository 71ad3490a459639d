"""The status of one node's score, named once: the proto's ``ScoreStatus`` as a Python enum.

``Status.SCORED`` is a model score from fresh telemetry; the other three carry the neutral
fallback score. ``name`` (``SCORED``) is what the extender, the decision log and the
rebalancer print; ``label`` (``scored``) is the Prometheus label value.
"""

from __future__ import annotations

import enum

from wire.v1 import scoring_pb2


class Status(enum.IntEnum):
    """Mirrors ``kubeattention.v1.ScoreStatus`` (the values are the wire's)."""

    SCORED = scoring_pb2.SCORE_STATUS_SCORED
    STALE = scoring_pb2.SCORE_STATUS_STALE
    UNKNOWN_NODE = scoring_pb2.SCORE_STATUS_UNKNOWN_NODE
    FALLBACK = scoring_pb2.SCORE_STATUS_FALLBACK

    @property
    def label(self) -> str:
        """The Prometheus label value: ``scored``, ``stale``, ``unknown_node``, ``fallback``."""
        return self.name.lower()

    @classmethod
    def from_wire(cls, value: int) -> Status:
        """A ``ScoreStatus`` received over gRPC; raises ValueError for UNSPECIFIED or an unknown value."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"score status {value!r} is not one of {[s.name for s in cls]}") from None


#: Status names by wire value, for the hot path (enum attribute access costs about a microsecond).
NAMES: dict[int, str] = {int(s): s.name for s in Status}
#: Prometheus label values, in wire order.
LABELS: tuple[str, ...] = tuple(s.label for s in Status)
