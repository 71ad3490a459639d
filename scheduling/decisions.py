"""Scheduling decisions as recorded in Redis (``ka:decisions``), one entry per scored pod.

Written by the extender (always in shadow mode, and in active mode too, so outcomes can be
joined with what KubeAttention said), read by ``kubeattention shadow-report`` and by the
outcome collector. One stream entry's fields, all strings (readable with ``redis-cli
XRANGE ka:decisions - +``):

* ``ts_ms`` — when the decision was made (aggregator clock, Unix ms);
* ``pod_uid``, ``pod_namespace``, ``pod_name``;
* ``pod`` — JSON of the pod context: cpu_request_cores, memory_request_bytes, qos,
  profile, priority (what the model saw);
* ``candidates`` — JSON list of node names, in the scheduler's order;
* ``scores`` — JSON list of 0-100 scores aligned with ``candidates``;
* ``statuses`` — JSON list of status names (``wire.status``: SCORED, STALE, UNKNOWN_NODE,
  FALLBACK);
* ``slowdowns`` — JSON list of predicted slowdowns (null where not scored);
* ``recommended`` — the best-scoring node ("" when nothing was scored), and
  ``recommended_reason`` — its reason string;
* ``model_version``, ``mode`` (``shadow`` or ``active``).

The stream is capped (approximately) at ``DEFAULT_DECISIONS_MAXLEN`` entries.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from dataclasses import dataclass

import redis

from aggregator.errors import StoreUnavailable
from aggregator.store import REDIS_ERRORS

_log = logging.getLogger(__name__)

DEFAULT_DECISIONS_MAXLEN = 100_000
DECISIONS_KEY = "decisions"  # under the store's prefix: ka:decisions


@dataclass(frozen=True)
class Decision:
    ts_ms: int
    pod_uid: str
    pod_namespace: str
    pod_name: str
    pod: dict
    candidates: list[str]
    scores: list[float]
    statuses: list[str]
    slowdowns: list[float | None]
    recommended: str
    model_version: str
    mode: str
    recommended_reason: str = ""

    def to_fields(self) -> dict[str, str]:
        return {
            "ts_ms": str(self.ts_ms),
            "pod_uid": self.pod_uid,
            "pod_namespace": self.pod_namespace,
            "pod_name": self.pod_name,
            "pod": json.dumps(self.pod, sort_keys=True),
            "candidates": json.dumps(self.candidates),
            "scores": json.dumps([round(s, 3) for s in self.scores]),
            "statuses": json.dumps(self.statuses),
            "slowdowns": json.dumps([None if s is None or math.isnan(s) else round(s, 4) for s in self.slowdowns]),
            "recommended": self.recommended,
            "recommended_reason": self.recommended_reason,
            "model_version": self.model_version,
            "mode": self.mode,
        }

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> Decision:
        """Raises ValueError naming the field that cannot be decoded."""
        try:
            d = cls(
                ts_ms=int(f["ts_ms"]),
                pod_uid=f.get("pod_uid", ""),
                pod_namespace=f["pod_namespace"],
                pod_name=f["pod_name"],
                pod=json.loads(f.get("pod") or "{}"),
                candidates=json.loads(f["candidates"]),
                scores=[float(s) for s in json.loads(f["scores"])],
                statuses=json.loads(f.get("statuses") or "[]"),
                slowdowns=json.loads(f.get("slowdowns") or "[]"),
                recommended=f.get("recommended", ""),
                model_version=f.get("model_version", ""),
                mode=f.get("mode", ""),
                recommended_reason=f.get("recommended_reason", ""),
            )
        except KeyError as e:
            raise ValueError(f"decision: field {e.args[0]!r} absent") from None
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"decision: {e}") from None
        if len(d.scores) != len(d.candidates):
            raise ValueError(f"decision: {len(d.scores)} scores for {len(d.candidates)} candidates")
        return d

    def score_of(self, node: str) -> float | None:
        try:
            return self.scores[self.candidates.index(node)]
        except ValueError:
            return None

    def slowdown_of(self, node: str) -> float | None:
        try:
            i = self.candidates.index(node)
        except ValueError:
            return None
        return self.slowdowns[i] if i < len(self.slowdowns) else None


class DecisionLog:
    """Appends to and reads ``ka:decisions``. Redis failures become StoreUnavailable."""

    def __init__(self, client: redis.Redis, prefix: str, maxlen: int = DEFAULT_DECISIONS_MAXLEN):
        self.client = client
        self.key = f"{prefix}{DECISIONS_KEY}"
        self.maxlen = maxlen

    def append(self, d: Decision) -> str:
        try:
            return self.client.xadd(self.key, d.to_fields(), maxlen=self.maxlen, approximate=True)
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"cannot record decision in {self.key}: {e}") from e

    def read(self, since_id: str = "-", count: int = 10_000) -> list[tuple[str, Decision]]:
        """Decisions after ``since_id`` (exclusive when not "-"), oldest first; undecodable ones skipped."""
        start = since_id if since_id == "-" else f"({since_id}"
        try:
            entries = self.client.xrange(self.key, min=start, count=count)
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"cannot read {self.key}: {e}") from e
        out = []
        for entry_id, fields in entries:
            try:
                out.append((entry_id, Decision.from_fields(fields)))
            except ValueError:
                continue
        return out

    def latest_for_pod(self, pod_uid: str, namespace: str, name: str, scan: int = 10_000) -> Decision | None:
        """The newest decision for this pod (by uid when known, else namespace/name)."""
        try:
            entries = self.client.xrevrange(self.key, count=scan)
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"cannot read {self.key}: {e}") from e
        for _id, fields in entries:
            if (pod_uid and fields.get("pod_uid") == pod_uid) or (
                not pod_uid and fields.get("pod_namespace") == namespace and fields.get("pod_name") == name
            ):
                try:
                    return Decision.from_fields(fields)
                except ValueError:
                    return None
        return None


class DecisionRecorder:
    """Records decisions off the request path: a bounded queue drained by one thread.

    The extender must answer kube-scheduler quickly whatever Redis is doing, so it only
    enqueues. When the queue is full (Redis slow or gone) the decision is dropped and
    counted; ``on_written`` hooks follow-up work (e.g. annotating the pod) after a write.
    """

    def __init__(self, log_: DecisionLog, maxsize: int = 10_000, on_written=None, dropped_counter=None):
        self.log = log_
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.on_written = on_written
        self.dropped_counter = dropped_counter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-recorder", daemon=True)
        self._warned = False

    def start(self) -> DecisionRecorder:
        self._thread.start()
        return self

    def __call__(self, d: Decision) -> None:
        try:
            self.queue.put_nowait(d)
        except queue.Full:
            if self.dropped_counter is not None:
                self.dropped_counter.inc()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set() or not self.queue.empty():
            try:
                d = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.log.append(d)
                self._warned = False
            except StoreUnavailable as e:
                if not self._warned:
                    _log.warning("decisions are not being recorded: %s", e)
                    self._warned = True
                if self.dropped_counter is not None:
                    self.dropped_counter.inc()
                if self._stop.is_set():
                    return  # shutting down with Redis gone: do not wait out a timeout per queued decision
                continue
            if self.on_written is not None:
                try:
                    self.on_written(d)
                except Exception as e:  # annotating is best effort; it must not stop recording
                    _log.warning("after recording the decision for %s/%s: %s", d.pod_namespace, d.pod_name, e)
