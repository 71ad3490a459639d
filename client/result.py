"""What BatchScore answers, as the client hands it to its caller: a ScoreResult of NodeScores,
decoded from the aggregator's response or made up as the neutral fallback."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from client.errors import BadResponse
from inference.scoring import FALLBACK_SCORE
from wire.schema import PodContext, Profile
from wire.status import BY_VALUE, Status
from wire.v1 import scoring_pb2

_PROFILE_VALUES = frozenset(int(p) for p in Profile)


class NodeScore(NamedTuple):
    """One candidate's answer. A named tuple: building 5 000 of them per call costs half
    what frozen dataclasses do."""

    name: str
    score: float
    """0-100, higher is better; 50 for STALE, UNKNOWN_NODE and FALLBACK."""
    status: Status
    confidence: float
    """0-1; 0 for fallbacks."""
    predicted_slowdown: float | None
    """Predicted tail-latency slowdown (1.0 = as if alone); None unless SCORED."""
    reason: str
    telemetry_age_ms: int | None = None
    """Age of the telemetry used; None when there was none (unknown node, client fallback)."""


@dataclass(frozen=True)
class ScoreResult:
    scores: tuple[NodeScore, ...]
    """One per candidate, in request order."""
    model_version: str
    """The aggregator's model; "" when the client answered with the fallback."""
    profile: Profile
    """The profile scored for (the aggregator's, or the pod's resolved one on fallback)."""
    answered: bool
    """True when the aggregator answered this call, False when the client fell back."""
    fallback_reason: str = ""
    """Why the client fell back ("" when the aggregator answered)."""
    server_elapsed_us: int | None = None

    @property
    def fallback(self) -> bool:
        """Every node holds the neutral fallback: the client fell back, or the aggregator
        itself did (model failure, budget overrun). The reasons say why."""
        return not self.answered or (bool(self.scores) and all(s.status is Status.FALLBACK for s in self.scores))

    def ranked(self) -> list[NodeScore]:
        """Best first; ties keep the request order (the caller's own preference)."""
        return sorted(self.scores, key=lambda s: -s.score)

    def best(self) -> NodeScore | None:
        """The highest-scored node (first in request order among equals); None if no nodes.

        On a fallback every node scores 50, so this is the caller's first candidate: the
        fallback is neutral and leaves the choice to the scheduler's other criteria.
        """
        return max(self.scores, key=lambda s: s.score, default=None)

    def by_name(self) -> dict[str, NodeScore]:
        return {s.name: s for s in self.scores}


def fallback_result(pod: PodContext, nodes: Sequence[str], reason: str) -> ScoreResult:
    """The neutral answer the client gives when the aggregator cannot: 50 and FALLBACK for every node."""
    return ScoreResult(
        scores=tuple(NodeScore(n, FALLBACK_SCORE, Status.FALLBACK, 0.0, None, reason) for n in nodes),
        model_version="",
        profile=pod.resolved_profile(),
        answered=False,
        fallback_reason=reason,
    )


def decode_response(resp: scoring_pb2.BatchScoreResponse, pod: PodContext, nodes: Sequence[str]) -> ScoreResult:
    """The aggregator's answer for ``pod`` and ``nodes``; raises BadResponse when it does not fit
    the request (a server fault)."""
    status, isnan = BY_VALUE, math.isnan
    try:
        scores = tuple(
            NodeScore(
                s.node_name,
                s.score,
                status[s.status],
                s.confidence,
                None if isnan(s.predicted_slowdown) else s.predicted_slowdown,
                s.reason,
                None if s.telemetry_age_ms < 0 else s.telemetry_age_ms,
            )
            for s in resp.scores
        )
    except KeyError as e:
        raise BadResponse(f"unknown score status {e.args[0]}") from None
    except TypeError as e:
        raise BadResponse(str(e)) from None
    if len(scores) != len(nodes) or any(a.name != b for a, b in zip(scores, nodes)):
        raise BadResponse(f"answer for {len(scores)} nodes does not match the {len(nodes)} candidates asked for")
    # An unknown profile (a newer aggregator) is not worth failing the call over.
    profile = Profile(resp.profile) if resp.profile in _PROFILE_VALUES else pod.resolved_profile()
    return ScoreResult(
        scores=scores,
        model_version=resp.model_version,
        profile=profile,
        answered=True,
        server_elapsed_us=resp.elapsed_us,
    )
