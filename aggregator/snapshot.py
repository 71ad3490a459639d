"""The in-memory snapshot of every node's latest telemetry.

BatchScore reads only this, never Redis (trimaran's "cache, then score"). Everything a
request needs per node is prepared once per push, in dense arrays, so gathering 1 000
candidates is a handful of numpy gathers:

* ``x`` (capacity, 26) float32: the model input row — the 15 normalised metrics
  (``schema.MISSING`` where missing) and room for the pod's 11 features;
* ``conf`` (capacity, 5) float64: the node's confidence for each workload profile;
* ``oldest`` (capacity,) int64: min(collected, received), what staleness is judged on;
* ``values`` / ``mask``: raw values and mask, for the fleet median;
* ``records``: the immutable NodeRecord per row, for reasons and the HTTP views;
* ``index``: node name -> row.

Writers (the Push handler, the Redis refresher) take a lock per upsert; readers take it for
the gather only.

Clock skew: staleness is judged on the older of the agent's collection stamp and the
aggregator's receipt, so neither an agent clock running ahead (data would look fresh
forever) nor one running behind can make old data look fresh. A node whose skew (receipt
minus collection) passes ``CLOCK_SKEW_WARN_MS`` either way is logged once as it crosses
(and once when it is back), counted in ``skewed_nodes()``, and shown in the node views.
The fleet median per metric, which reasons compare against, is recomputed
by the refresher in the background, never on the request path.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from aggregator.node_record import NodeRecord
from inference.scoring import confidence_table
from wire.schema import NUM_FEATURES, NUM_METRICS, Profile, normalise_matrix

INITIAL_CAPACITY = 256
#: |receipt - collection| above which a node's clock is reported as skewed (ms). A fifth of
#: the default staleness limit: skew that large eats visibly into how long data counts fresh.
CLOCK_SKEW_WARN_MS = 2_000

#: Skew messages: at most SKEW_LOG_BURST per SKEW_LOG_PERIOD_S (the gauge counts every node).
SKEW_LOG_BURST, SKEW_LOG_PERIOD_S = 10, 60.0

log = logging.getLogger(__name__)


class LogBudget:
    """At most ``burst`` messages per ``period_s``; says once per period how many it held back."""

    def __init__(self, burst: int, period_s: float, clock=time.monotonic):
        self.burst, self.period_s, self.clock = burst, period_s, clock
        self._start, self._used, self._held = -period_s, 0, 0

    def allow(self) -> bool:
        now = self.clock()
        if now - self._start >= self.period_s:
            if self._held:
                log.warning("%d more clock-skew messages held back in the last %.0f s", self._held, self.period_s)
            self._start, self._used, self._held = now, 0, 0
        if self._used < self.burst:
            self._used += 1
            return True
        self._held += 1
        return False


@dataclass(frozen=True)
class Gathered:
    """Candidates' rows as copied out of the snapshot; ``known`` False = never reported."""

    known: np.ndarray  # bool (n,)
    x: np.ndarray  # float32 (n, 26): node columns filled, pod columns to fill
    conf: np.ndarray  # float64 (n, 5): confidence per profile
    oldest_ms: np.ndarray  # int64 (n,): min(collected, received), 0 when unknown
    records: list  # NodeRecord, or None when unknown


class Snapshot:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[str, int] = {}
        self._records: list[NodeRecord] = []
        self._alloc(INITIAL_CAPACITY)
        self.fleet_median = np.full(NUM_METRICS, np.nan)
        self._membership_changed = False
        self._skewed: set[str] = set()
        self._skew_log = LogBudget(SKEW_LOG_BURST, SKEW_LOG_PERIOD_S)

    def _alloc(self, cap: int) -> None:
        self._x = np.zeros((cap, NUM_FEATURES), dtype=np.float32)
        self._conf = np.zeros((cap, len(Profile)))
        self._oldest = np.zeros(cap, dtype=np.int64)
        self._values = np.full((cap, NUM_METRICS), np.nan)
        self._mask = np.zeros((cap, NUM_METRICS), dtype=bool)

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self._x, self._conf, self._oldest, self._values, self._mask

    def __len__(self) -> int:
        return len(self._index)

    def upsert(self, rec: NodeRecord) -> None:
        norm = normalise_matrix(rec.values[None, :], rec.mask[None, :])[0]
        conf = confidence_table(rec.mask[None, :])[0]
        with self._lock:
            row = self._index.get(rec.node_name)
            if row is None:
                row = len(self._records)
                if row >= self._x.shape[0]:
                    self._grow()
                self._index[rec.node_name] = row
                self._records.append(rec)
                self._membership_changed = True
            else:
                if self._records[row].received_at_ms > rec.received_at_ms:
                    return  # an older copy (e.g. a late Redis read) must not replace newer data
                self._records[row] = rec
            self._x[row, :NUM_METRICS] = norm
            self._conf[row] = conf
            self._oldest[row] = min(rec.collected_at_ms, rec.received_at_ms)
            self._values[row] = rec.values
            self._mask[row] = rec.mask
        self._note_skew(rec)

    def _note_skew(self, rec: NodeRecord) -> None:
        skew = rec.clock_skew_ms
        skewed = abs(skew) > CLOCK_SKEW_WARN_MS
        if skewed == (rec.node_name in self._skewed):
            return
        if skewed:
            self._skewed.add(rec.node_name)
        else:
            self._skewed.discard(rec.node_name)
        if not self._skew_log.allow():
            return  # a fleet-wide cause (an overloaded aggregator delays every receipt) is one story, not 5 000
        if skewed:
            log.warning(
                "node %s: clock skew %+.1f s (received at %d, collected at %d by the agent's clock: the "
                "agent's clock is %s ours, or the push waited that long); staleness is judged on the older "
                "stamp. Check NTP on the node; kubeattention_aggregator_clock_skewed_nodes counts them all",
                rec.node_name,
                skew / 1000,
                rec.received_at_ms,
                rec.collected_at_ms,
                "behind" if skew > 0 else "ahead of",
            )
        else:
            log.info("node %s: clock skew back to %+.1f s", rec.node_name, skew / 1000)

    def skewed_nodes(self) -> int:
        """Nodes whose latest vector is skewed by more than CLOCK_SKEW_WARN_MS."""
        return len(self._skewed)

    def received_at(self, name: str) -> int | None:
        with self._lock:
            row = self._index.get(name)
            return None if row is None else self._records[row].received_at_ms

    def sync(
        self, index: dict[str, int], fetched: list[NodeRecord], now_ms: int, ttl_ms: int, in_flight_ms: int = 0
    ) -> list[NodeRecord]:
        """Take Redis' view: ``index`` is ka:nodes (node -> received ms), ``fetched`` the
        records that were newer there than here. Returns the local records Redis no longer
        holds but should.

        A node absent from Redis whose last receipt is older than the TTL has expired and
        leaves the snapshot. One absent but younger was lost by Redis (a restart without
        persistence, a flush): it stays, and the caller writes it back, so nothing the
        aggregator accepted is lost to a Redis restart. A record received less than
        ``in_flight_ms`` before ``now_ms`` (when the index was read) may still have been on its
        way into Redis then: it is not counted lost.
        """
        for rec in fetched:
            self.upsert(rec)
        with self._lock:
            local = [r for r in self._records if r.node_name not in index]
        lost = [r for r in local if in_flight_ms <= now_ms - r.received_at_ms < ttl_ms]
        for r in local:
            if now_ms - r.received_at_ms >= ttl_ms:
                self.remove(r.node_name)
        return lost

    def remove(self, name: str) -> None:
        """Drop a node; the last row moves into its place so the arrays stay dense."""
        with self._lock:
            row = self._index.pop(name, None)
            if row is None:
                return
            last = len(self._records) - 1
            if row != last:
                moved = self._records[last]
                self._records[row] = moved
                self._index[moved.node_name] = row
                for arr in self._arrays():
                    arr[row] = arr[last]
            self._records.pop()
            self._membership_changed = True
            self._skewed.discard(name)

    def take_membership_change(self) -> bool:
        """True once after nodes joined or left (the fleet median then deserves a recompute)."""
        with self._lock:
            changed, self._membership_changed = self._membership_changed, False
            return changed

    def gather(self, names: list[str]) -> Gathered:
        with self._lock:
            get = self._index.get
            rows = np.fromiter((get(n, -1) for n in names), dtype=np.int64, count=len(names))
            known = rows >= 0
            all_known = bool(known.all())
            safe = rows if all_known else np.where(known, rows, 0)
            x, conf, oldest = self._x[safe], self._conf[safe], self._oldest[safe]
            recs = self._records
            records = (
                [recs[r] for r in rows.tolist()] if all_known else [recs[r] if r >= 0 else None for r in rows.tolist()]
            )
        if not all_known:
            oldest[~known] = 0
        return Gathered(known=known, x=x, conf=conf, oldest_ms=oldest, records=records)

    def records(self) -> list[NodeRecord]:
        with self._lock:
            return list(self._records)

    def get(self, name: str) -> NodeRecord | None:
        with self._lock:
            row = self._index.get(name)
            return None if row is None else self._records[row]

    def recompute_fleet_median(self, now_ms: int, max_staleness_ms: int) -> None:
        """Per-metric median over fresh nodes that measure it (NaN where none does)."""
        with self._lock:
            n = len(self._records)
            values = self._values[:n].copy()
            mask = self._mask[:n].copy()
            fresh = (now_ms - self._oldest[:n]) <= max_staleness_ms
        if n == 0 or not fresh.any():
            self.fleet_median = np.full(NUM_METRICS, np.nan)
            return
        values = np.where(mask & fresh[:, None], values, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected
            self.fleet_median = np.nanmedian(values, axis=0)

    def _grow(self) -> None:
        n = len(self._records)
        old = self._arrays()
        self._alloc(self._x.shape[0] * 2)
        for new, prev in zip(self._arrays(), old):
            new[:n] = prev[:n]
