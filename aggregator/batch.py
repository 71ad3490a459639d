"""BatchScore: snapshot -> staleness guard -> one ONNX call -> scores, confidences, reasons.

No I/O happens here: the snapshot is in memory and the model is an in-process ONNX
Runtime session. The latency budget is checked after the model call (ONNX Runtime cannot
be interrupted): an overrun turns every node into FALLBACK, counted, so the scheduler never
acts on an answer that arrived too late to be trusted for its own deadline.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from aggregator.snapshot import Snapshot
from scorer import scoring
from scorer.schema import PodContext, Profile, model_input

log = logging.getLogger(__name__)


class Status(enum.IntEnum):
    """Mirrors proto ScoreStatus."""

    SCORED = 1
    STALE = 2
    UNKNOWN_NODE = 3
    FALLBACK = 4


# Plain ints for the hot path (enum attribute access costs a microsecond each).
_SCORED, _STALE, _UNKNOWN, _FALLBACK = (int(s) for s in Status)
_STATUS_LABELS = {int(s): s.name.lower() for s in Status}


@dataclass(frozen=True)
class BatchResult:
    names: list[str]
    scores: np.ndarray
    confidence: np.ndarray
    slowdown: np.ndarray  # NaN unless SCORED
    status: np.ndarray  # int (Status)
    age_ms: np.ndarray  # -1 for unknown nodes
    reasons: list[str]
    profile: Profile
    model_version: str
    elapsed_us: int


class ReasonCache:
    """(node, profile) -> the reason tail of the node's latest vector, keyed by its receive time.

    Formatting reasons is the costliest step of BatchScore in Python; all of a reason but
    the predicted slowdown only changes when the node pushes, so it is computed once per
    push and profile. Its fleet comparison is the fleet median as of that computation (refreshed at
    least every push interval). Bounded: cleared when it grows past ``max_entries``.
    """

    def __init__(self, max_entries: int = 50_000):
        self.max_entries = max_entries
        self._d: dict[tuple[str, int], tuple[int, str]] = {}

    def texts(self, names: list[str], received_ms: list[int], values: np.ndarray, mask: np.ndarray,
              profile: Profile, fleet_median: np.ndarray) -> list[str]:
        get = self._d.get
        out: list[str] = []
        miss: list[int] = []
        for j, (name, rec) in enumerate(zip(names, received_ms)):
            hit = get((name, profile))
            if hit is not None and hit[0] == rec:
                out.append(hit[1])
            else:
                out.append("")
                miss.append(j)
        if miss:
            if len(self._d) + len(miss) > self.max_entries:
                self._d.clear()
            for j, text in zip(miss, scoring.reason_tails(values[miss], mask[miss], profile, fleet_median)):
                out[j] = text
                self._d[(names[j], profile)] = (received_ms[j], text)
        return out


class BatchScorer:
    def __init__(self, snapshot: Snapshot, model, *, max_staleness_ms: int, budget_ms: float,
                 clock_ms: Callable[[], int], metrics=None):
        self.snapshot = snapshot
        self.model = model
        self.max_staleness_ms = max_staleness_ms
        self.budget_s = budget_ms / 1000.0
        self.clock_ms = clock_ms
        self.metrics = metrics
        self.reason_tails = ReasonCache()

    def score(self, pod: PodContext, names: list[str]) -> BatchResult:
        t0 = time.perf_counter()
        profile = pod.resolved_profile()
        now = self.clock_ms()
        g = self.snapshot.gather(names)
        n = len(names)
        age = np.where(g.known, now - g.oldest_ms, -1)
        fresh = g.known & (age <= self.max_staleness_ms)
        status = np.where(fresh, _SCORED, np.where(g.known, _STALE, _UNKNOWN)).astype(np.int64)
        scores = np.full(n, scoring.FALLBACK_SCORE)
        conf = np.zeros(n)
        slowdown = np.full(n, np.nan)
        reasons = [""] * n
        fresh_idx = np.flatnonzero(fresh)
        try:
            if fresh_idx.size:
                values, mask = g.values[fresh_idx], g.mask[fresh_idx]
                pred = self.model.predict_slowdown(model_input(values, mask, pod))
                scores[fresh_idx] = scoring.scores_from_slowdown(pred)
                conf[fresh_idx] = scoring.confidence(mask, profile)
                slowdown[fresh_idx] = pred
                all_fresh = fresh_idx.size == n  # the common case: no scatter needed
                fresh_names = names if all_fresh else [names[i] for i in fresh_idx.tolist()]
                tails = self.reason_tails.texts(fresh_names, g.received_ms[fresh_idx].tolist(), values, mask, profile,
                                                self.snapshot.fleet_median)
                if all_fresh:
                    reasons = scoring.compose(pred, tails)
                else:
                    for i, text in zip(fresh_idx.tolist(), scoring.compose(pred, tails)):
                        reasons[i] = text
            spent = time.perf_counter() - t0
            if spent > self.budget_s:
                return self._fallback(names, profile, age, t0,
                                      f"scoring took {spent * 1000:.1f} ms, over the {self.budget_s * 1000:g} ms "
                                      "budget: neutral fallback", budget=True)
        except Exception as e:  # the model or the math failed: answer neutrally, say so, count it
            log.exception("BatchScore failed; answering with the fallback")
            return self._fallback(names, profile, age, t0, f"scoring failed ({type(e).__name__}: {e}): neutral fallback",
                                  budget=False)
        limit_s = self.max_staleness_ms / 1000
        for i in np.flatnonzero(status == _STALE).tolist():
            reasons[i] = f"telemetry {age[i] / 1000:.1f} s old, over the {limit_s:g} s limit: not scored, neutral {scoring.FALLBACK_SCORE:g}"
        for i in np.flatnonzero(status == _UNKNOWN).tolist():
            reasons[i] = f"no telemetry from this node (never reported, or expired): neutral {scoring.FALLBACK_SCORE:g}"
        return self._result(names, scores, conf, slowdown, status, age, reasons, profile, t0)

    def _fallback(self, names, profile, age, t0, reason: str, budget: bool) -> BatchResult:
        n = len(names)
        if self.metrics is not None:
            (self.metrics.fallback_budget if budget else self.metrics.fallback_error).inc()
        return self._result(names, np.full(n, scoring.FALLBACK_SCORE), np.zeros(n), np.full(n, np.nan),
                            np.full(n, _FALLBACK, dtype=np.int64), age, [reason] * n, profile, t0)

    def _result(self, names, scores, conf, slowdown, status, age, reasons, profile, t0) -> BatchResult:
        if self.metrics is not None:
            for st, count in enumerate(np.bincount(status, minlength=5).tolist()):
                if count:
                    self.metrics.node_scores[_STATUS_LABELS[st]].inc(count)
        return BatchResult(names=names, scores=scores, confidence=conf, slowdown=slowdown, status=status,
                           age_ms=age.astype(np.int64), reasons=reasons, profile=profile,
                           model_version=self.model.version,
                           elapsed_us=int((time.perf_counter() - t0) * 1e6))
