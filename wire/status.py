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


#: For the hot path, by wire value (``Status(value)`` and enum attribute access cost about a
#: microsecond each): the member, and its name. UNSPECIFIED (0) or an unknown value is absent.
BY_VALUE: dict[int, Status] = {int(s): s for s in Status}
NAMES: dict[int, str] = {int(s): s.name for s in Status}
