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
    received_ms: np.ndarray  # int64 (n,): when the aggregator received the vector, 0 when unknown


class Snapshot:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        cap = INITIAL_CAPACITY
        self._values = np.full((cap, NUM_METRICS), np.nan)
        self._mask = np.zeros((cap, NUM_METRICS), dtype=bool)
        self._oldest = np.zeros(cap, dtype=np.int64)
        self._received = np.zeros(cap, dtype=np.int64)
        self._records: list[NodeRecord] = []
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
                if self._records[row].received_at_ms > rec.received_at_ms:
                    return  # an older copy (e.g. a late Redis read) must not replace newer data
                self._records[row] = rec
            self._values[row] = rec.values
            self._mask[row] = rec.mask
            self._oldest[row] = min(rec.collected_at_ms, rec.received_at_ms)
            self._received[row] = rec.received_at_ms

    def received_at(self, name: str) -> int | None:
        with self._lock:
            row = self._index.get(name)
            return None if row is None else int(self._received[row])

    def sync(self, index: dict[str, int], fetched: list[NodeRecord], now_ms: int, ttl_ms: int) -> list[NodeRecord]:
        """Take Redis' view: ``index`` is ka:nodes (node -> received ms), ``fetched`` the
        records that were newer there than here. Returns the local records Redis no longer
        holds but should.

        A node absent from Redis whose last receipt is older than the TTL has expired and
        leaves the snapshot. One absent but younger was lost by Redis (a restart without
        persistence, a flush): it stays, and the caller writes it back, so nothing the
        aggregator accepted is lost to a Redis restart.
        """
        for rec in fetched:
            self.upsert(rec)
        with self._lock:
            local = [r for r in self._records if r.node_name not in index]
        lost = [r for r in local if now_ms - r.received_at_ms < ttl_ms]
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
            last = len(self._names) - 1
            if row != last:
                moved = self._names[last]
                self._names[row], self._records[row] = moved, self._records[last]
                self._index[moved] = row
                for arr in (self._values, self._mask, self._oldest, self._received):
                    arr[row] = arr[last]
            self._names.pop()
            self._records.pop()
            self._values[last], self._mask[last], self._oldest[last], self._received[last] = np.nan, False, 0, 0

    def gather(self, names: list[str]) -> Gathered:
        with self._lock:
            get = self._index.get
            rows = np.fromiter((get(n, -1) for n in names), dtype=np.int64, count=len(names))
            known = rows >= 0
            safe = np.where(known, rows, 0)
            values = self._values[safe]
            mask = self._mask[safe] & known[:, None]
            oldest = np.where(known, self._oldest[safe], 0)
            received = np.where(known, self._received[safe], 0)
        return Gathered(known=known, values=values, mask=mask, oldest_ms=oldest, received_ms=received)

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
        received = np.zeros(cap, dtype=np.int64)
        n = len(self._names)
        values[:n], mask[:n], oldest[:n] = self._values[:n], self._mask[:n], self._oldest[:n]
        received[:n] = self._received[:n]
        self._values, self._mask, self._oldest, self._received = values, mask, oldest, received
