"""The in-memory snapshot of every node's latest telemetry.

BatchScore reads only this, never Redis (trimaran's "cache, then score"). The snapshot is
kept as dense arrays so that gathering 1 000 candidates is a handful of numpy gathers:

* ``values`` (capacity, 15) float64, NaN where missing; ``mask`` (capacity, 15) bool;
* ``collected_ms`` / ``received_ms`` (capacity,) int64;
* ``index``: node name -> row.

Writers (the Push handler, the Redis refresher) take a lock per upsert; readers take it for
the gather only. The fleet median per metric, which reasons compare against, is recomputed
by the refresher in the background, never on the request path.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np

from aggregator.records import NodeRecord
from scorer.schema import NUM_METRICS

INITIAL_CAPACITY = 256


@dataclass(frozen=True)
class Gathered:
    """Candidates' rows as copied out of the snapshot; ``known`` False = never reported."""

    known: np.ndarray  # bool (n,)
    values: np.ndarray  # float64 (n, 15)
    mask: np.ndarray  # bool (n, 15)
    oldest_ms: np.ndarray  # int64 (n,): min(collected, received) per node, 0 when unknown


class Snapshot:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        cap = INITIAL_CAPACITY
        self._values = np.full((cap, NUM_METRICS), np.nan)
        self._mask = np.zeros((cap, NUM_METRICS), dtype=bool)
        self._oldest = np.zeros(cap, dtype=np.int64)
        self._records: list[NodeRecord | None] = []
        self.fleet_median = np.full(NUM_METRICS, np.nan)

    def __len__(self) -> int:
        return len(self._index)

    def upsert(self, rec: NodeRecord) -> None:
        with self._lock:
            row = self._index.get(rec.node_name)
            if row is None:
                row = len(self._names)
                if row >= self._values.shape[0]:
                    self._grow()
                self._index[rec.node_name] = row
                self._names.append(rec.node_name)
                self._records.append(rec)
            else:
                current = self._records[row]
                if current is not None and current.received_at_ms > rec.received_at_ms:
                    return  # an older copy (e.g. a late Redis read) must not replace newer data
                self._records[row] = rec
            self._values[row] = rec.values
            self._mask[row] = rec.mask
            self._oldest[row] = min(rec.collected_at_ms, rec.received_at_ms)

    def replace_all(self, records: list[NodeRecord], now_ms: int, ttl_ms: int) -> list[NodeRecord]:
        """Take Redis' full view. Returns the local records Redis no longer holds but should.

        A node absent from Redis whose last receipt is older than the TTL has expired and
        leaves the snapshot. One absent but younger was lost by Redis (a restart without
        persistence, a flush): it stays, and the caller writes it back, so nothing the
        aggregator accepted is lost to a Redis restart.
        """
        live = {r.node_name for r in records}
        with self._lock:
            local = [r for r in self._records if r is not None]
        lost = [r for r in local if r.node_name not in live and now_ms - r.received_at_ms < ttl_ms]
        fresh = Snapshot()
        for r in local:
            if r.node_name in live:
                fresh.upsert(r)
        for r in records + lost:
            fresh.upsert(r)
        with self._lock:
            self._index, self._names, self._records = fresh._index, fresh._names, fresh._records
            self._values, self._mask, self._oldest = fresh._values, fresh._mask, fresh._oldest
        return lost

    def gather(self, names: list[str]) -> Gathered:
        with self._lock:
            get = self._index.get
            rows = np.fromiter((get(n, -1) for n in names), dtype=np.int64, count=len(names))
            known = rows >= 0
            safe = np.where(known, rows, 0)
            values = self._values[safe]
            mask = self._mask[safe] & known[:, None]
            oldest = np.where(known, self._oldest[safe], 0)
        return Gathered(known=known, values=values, mask=mask, oldest_ms=oldest)

    def records(self) -> list[NodeRecord]:
        with self._lock:
            return [r for r in self._records if r is not None]

    def get(self, name: str) -> NodeRecord | None:
        with self._lock:
            row = self._index.get(name)
            return None if row is None else self._records[row]

    def recompute_fleet_median(self, now_ms: int, max_staleness_ms: int) -> None:
        """Per-metric median over fresh nodes that measure it (NaN where none does)."""
        with self._lock:
            n = len(self._names)
            values = self._values[:n].copy()
            mask = self._mask[:n].copy()
            fresh = (now_ms - self._oldest[:n]) <= max_staleness_ms
        values = np.where(mask & fresh[:, None], values, np.nan)
        if n == 0 or not fresh.any():
            self.fleet_median = np.full(NUM_METRICS, np.nan)
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected
            self.fleet_median = np.nanmedian(values, axis=0)

    def _grow(self) -> None:
        cap = self._values.shape[0] * 2
        values = np.full((cap, NUM_METRICS), np.nan)
        mask = np.zeros((cap, NUM_METRICS), dtype=bool)
        oldest = np.zeros(cap, dtype=np.int64)
        n = len(self._names)
        values[:n], mask[:n], oldest[:n] = self._values[:n], self._mask[:n], self._oldest[:n]
        self._values, self._mask, self._oldest = values, mask, oldest
