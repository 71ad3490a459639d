"""BatchScore: snapshot -> staleness guard -> one ONNX call -> scores, confidences, reasons.

No I/O happens here: the snapshot is in memory and the model is an in-process ONNX
Runtime session. The latency budget is checked after the model call (ONNX Runtime cannot
be interrupted): an overrun turns every node into FALLBACK, counted, so the scheduler never
acts on an answer that arrived too late to be trusted for its own deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aggregator.node_record import NodeRecord
from aggregator.snapshot import Snapshot
from inference import scoring
from wire.schema import NUM_METRICS, PodContext, Profile, pod_features
from wire.status import Status

log = logging.getLogger(__name__)


# Plain ints for the hot path (enum attribute access costs a microsecond each).
_SCORED, _STALE, _UNKNOWN, _FALLBACK = (int(s) for s in Status)
_STATUS_SLOTS = max(Status) + 1  # np.bincount over status values
POD_CACHE_SIZE = 4096
#: Reasons computed per BatchScore at most (each costs about 10 us: 16 model rows and the text).
REASONS_PER_CALL = 1000


@dataclass(frozen=True)
class BatchResult:
    names: list[str]
    scores: np.ndarray
    confidence: np.ndarray
    slowdown: np.ndarray  # NaN unless SCORED
    status: np.ndarray  # int (wire.status.Status)
    age_ms: np.ndarray  # -1 for unknown nodes
    reasons: list[str]
    profile: Profile
    model_version: str
    elapsed_us: int


class ReasonCache:
    """(node, profile) -> the reason for the node's latest vector under the serving model.

    A reason asks the model what each metric does to the node's predicted slowdown
    (``inference.scoring.effects``: 16 predictions per node), the costliest step of
    BatchScore; it only changes when the node pushes or the model changes, so it is
    computed once per pushed record, profile and model (records are immutable: a hit is the
    very same record object), for all the records a request misses in one batched model
    call — at most ``max_per_call`` of them per request (the others say their reason is not
    computed yet and get it with a later answer), so a wave of pushes from 5 000 nodes costs
    one request about 10 ms, not 50. Its fleet comparison is the fleet median as of that
    computation. Bounded: cleared when it grows past ``max_entries``.
    """

    def __init__(self, max_entries: int = 50_000, max_per_call: int = REASONS_PER_CALL):
        self.max_entries, self.max_per_call = max_entries, max_per_call
        self._d: dict[tuple[str, int], tuple[NodeRecord, object, str]] = {}

    def texts(self, model, records: list[NodeRecord], profile: Profile, fleet_median: np.ndarray) -> list[str]:
        get = self._d.get
        out: list[str] = []
        miss: list[int] = []
        for j, rec in enumerate(records):
            hit = get((rec.node_name, profile))
            if hit is not None and hit[0] is rec and hit[1] is model:
                out.append(hit[2])
            else:
                out.append("")
                miss.append(j)
        if len(miss) > self.max_per_call:
            # Bound what one request pays (about 10 us a node): the rest come with later answers.
            later = miss[self.max_per_call :]
            miss = miss[: self.max_per_call]
            text = (
                f"reason not computed yet: {len(later) + len(miss)} nodes pushed new telemetry since the last "
                f"request, {self.max_per_call} are explained per answer; the score is computed"
            )
            for j in later:
                out[j] = text
        if miss:
            if len(self._d) + len(miss) > self.max_entries:
                self._d.clear()
            values = np.array([records[j].values for j in miss])
            mask = np.array([records[j].mask for j in miss])
            offenders = [records[j].offenders for j in miss]
            texts = scoring.reasons(model.predict_slowdown, values, mask, profile, fleet_median, offenders)
            for j, text in zip(miss, texts):
                out[j] = text
                self._d[(records[j].node_name, profile)] = (records[j], model, text)
        return out


class BatchScorer:
    def __init__(
        self,
        snapshot: Snapshot,
        model,
        *,
        max_staleness_ms: int,
        budget_ms: float,
        clock_ms: Callable[[], int],
        metrics=None,
    ):
        self.snapshot = snapshot
        self.model = model
        self.max_staleness_ms = max_staleness_ms
        self.budget_s = budget_ms / 1000.0
        self.clock_ms = clock_ms
        self.metrics = metrics
        self.reasons = ReasonCache()
        self._pod_cache: dict[tuple, np.ndarray] = {}

    def score(self, pod: PodContext, names: list[str]) -> BatchResult:
        t0 = time.perf_counter()
        # One read of the reference: a model swapped in meanwhile (aggregator.model_reload)
        # serves the next call; this one finishes on, and names, the model it started with.
        model = self.model
        profile = pod.resolved_profile()
        now = self.clock_ms()
        g = self.snapshot.gather(names)
        n = len(names)
        age = now - g.oldest_ms
        fresh = g.known & (age <= self.max_staleness_ms)
        all_fresh = bool(fresh.all())  # the common case: one vectorised pass, no scatter
        if not all_fresh:
            age[~g.known] = -1
        try:
            if all_fresh:
                scores, conf, slowdown, reasons = self._score_fresh(model, pod, profile, g, None)
                status = np.full(n, _SCORED, dtype=np.int64)
            else:
                scores, conf, slowdown, reasons, status = self._score_some(model, pod, profile, names, g, fresh, age)
            spent = time.perf_counter() - t0
            if spent > self.budget_s:
                why = (
                    f"scoring took {spent * 1000:.1f} ms, over the {self.budget_s * 1000:g} ms budget: neutral fallback"
                )
                return self._fallback(model, names, profile, age, t0, why, budget=True)
        except Exception as e:  # the model or the math failed: answer neutrally, say so, count it
            log.exception("BatchScore failed; answering with the fallback")
            why = f"scoring failed ({type(e).__name__}: {e}): neutral fallback"
            return self._fallback(model, names, profile, age, t0, why, budget=False)
        return self._result(model, names, scores, conf, slowdown, status, age, reasons, profile, t0)

    def _score_fresh(self, model, pod: PodContext, profile: Profile, g, idx):
        """Score the fresh rows (all of them when ``idx`` is None): one ONNX call."""
        if idx is None:
            x, conf, records = g.x, g.conf[:, profile - 1], g.records
        else:
            x, conf, records = g.x[idx], g.conf[idx, profile - 1], [g.records[i] for i in idx.tolist()]
        x[:, NUM_METRICS:] = self._pod_features(pod)
        pred = model.predict_slowdown(x)
        reasons = self.reasons.texts(model, records, profile, self.snapshot.fleet_median)
        return scoring.scores_from_slowdown(pred), conf, pred, reasons

    def _score_some(self, model, pod, profile, names, g, fresh, age):
        n = len(names)
        scores = np.full(n, scoring.FALLBACK_SCORE)
        conf = np.zeros(n)
        slowdown = np.full(n, np.nan)
        reasons = [""] * n
        status = np.where(fresh, _SCORED, np.where(g.known, _STALE, _UNKNOWN)).astype(np.int64)
        idx = np.flatnonzero(fresh)
        if idx.size:
            s, c, sl, r = self._score_fresh(model, pod, profile, g, idx)
            scores[idx], conf[idx], slowdown[idx] = s, c, sl
            for i, text in zip(idx.tolist(), r):
                reasons[i] = text
        limit_s = self.max_staleness_ms / 1000
        for i in np.flatnonzero(status == _STALE).tolist():
            reasons[i] = (
                f"telemetry {age[i] / 1000:.1f} s old, over the {limit_s:g} s limit: "
                f"not scored, neutral {scoring.FALLBACK_SCORE:g}"
            )
        for i in np.flatnonzero(status == _UNKNOWN).tolist():
            reasons[i] = f"no telemetry from this node (never reported, or expired): neutral {scoring.FALLBACK_SCORE:g}"
        return scores, conf, slowdown, reasons, status

    def _pod_features(self, pod: PodContext) -> np.ndarray:
        """schema.pod_features, cached by what they depend on (not the pod's name)."""
        key = (pod.cpu_request_cores, pod.memory_request_bytes, pod.qos, pod.profile, pod.priority)
        feats = self._pod_cache.get(key)
        if feats is None:
            if len(self._pod_cache) >= POD_CACHE_SIZE:
                self._pod_cache.clear()
            feats = self._pod_cache[key] = pod_features(pod)
        return feats

    def _fallback(self, model, names, profile, age, t0, reason: str, budget: bool) -> BatchResult:
        n = len(names)
        if self.metrics is not None:
            (self.metrics.fallback_budget if budget else self.metrics.fallback_error).inc()
        return self._result(
            model,
            names,
            np.full(n, scoring.FALLBACK_SCORE),
            np.zeros(n),
            np.full(n, np.nan),
            np.full(n, _FALLBACK, dtype=np.int64),
            age,
            [reason] * n,
            profile,
            t0,
        )

    def _result(self, model, names, scores, conf, slowdown, status, age, reasons, profile, t0) -> BatchResult:
        if self.metrics is not None:
            for st, count in enumerate(np.bincount(status, minlength=_STATUS_SLOTS).tolist()):
                if count:
                    self.metrics.node_scores[st].inc(count)
        return BatchResult(
            names=names,
            scores=scores,
            confidence=conf,
            slowdown=slowdown,
            status=status,
            age_ms=age,
            reasons=reasons,
            profile=profile,
            model_version=model.version,
            elapsed_us=int((time.perf_counter() - t0) * 1e6),
        )
