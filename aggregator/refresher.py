"""Keeps the snapshot in step with Redis, in the background.

Two paths, both off the request path:

* pub/sub on ``ka:updates``: each line of a message names a node that another replica (or
  this one) just stored; the refresher reads that node's hash and upserts it;
* a resync every ``resync_interval_s``: reads ``ka:nodes`` (node -> received time), fetches
  only the nodes Redis holds newer data for, drops the expired ones, writes back what a
  restarted Redis lost, and recomputes the fleet median that reasons compare against.

When Redis is gone the snapshot keeps what it had (BatchScore answers from it until the
data turns stale), the refresher logs the outage once and retries; it logs the recovery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from aggregator.background import Loops, follow_channel
from aggregator.errors import StoreUnavailable
from aggregator.snapshot import Snapshot
from aggregator.store import REDIS_ERRORS, CorruptRecord, RedisStore

log = logging.getLogger(__name__)

#: How often the resync thread looks for nodes that joined or left, to refresh the fleet median.
MEDIAN_CHECK_S = 0.25
#: A node missing from ka:nodes that this replica received less than this long before the
#: index was read may simply have been on its way into Redis (writes take milliseconds): it is
#: not taken for lost and written back (which would also overwrite what another replica wrote).
IN_FLIGHT_MARGIN_MS = 1000
#: Longest a pub/sub read blocks, so stop() is prompt.
PUBSUB_POLL_S = 0.5


class Refresher:
    def __init__(
        self,
        store: RedisStore,
        snapshot: Snapshot,
        *,
        interval_s: float,
        max_staleness_ms: int,
        clock_ms: Callable[[], int],
        metrics=None,
    ):
        self.store, self.snapshot = store, snapshot
        self.interval_s, self.max_staleness_ms = interval_s, max_staleness_ms
        self.clock_ms, self.metrics = clock_ms, metrics
        self._stop = threading.Event()
        self.synced = threading.Event()  # set after the first successful full read
        self._redis_ok = True
        self._pubsub_ok = True
        self._loops = Loops("refresher")

    def start(self) -> None:
        self._loops.start((self._resync_loop, "resync"), (self._pubsub_loop, "pubsub"))

    def stop(self) -> None:
        self._stop.set()
        self._loops.join()

    def resync_once(self) -> bool:
        now = self.clock_ms()
        try:
            index = self.store.read_index(now)
            newer = [n for n, received in index.items() if (self.snapshot.received_at(n) or -1) < received]
            records, problems = self.store.read_nodes(newer)
        except StoreUnavailable as e:
            self._mark(False, str(e))
            self.snapshot.recompute_fleet_median(self.clock_ms(), self.max_staleness_ms)
            return False
        for p in problems:
            log.warning("skipping undecodable node record in Redis: %s", p)
            if self.metrics is not None:
                self.metrics.corrupt.inc()
        lost = self.snapshot.sync(index, records, now, self.store.node_ttl_s * 1000, in_flight_ms=IN_FLIGHT_MARGIN_MS)
        if lost:
            self._write_back(lost)
        self.snapshot.recompute_fleet_median(now, self.max_staleness_ms)
        self._mark(True)
        if self.metrics is not None:
            self.metrics.last_sync.set(self.clock_ms() / 1000)
        self.synced.set()
        return True

    def _write_back(self, lost) -> None:
        try:
            for rec in lost:
                self.store.write(rec)
        except StoreUnavailable as e:
            log.warning("could not restore node state into Redis yet: %s", e)
            return
        log.warning(
            "Redis no longer held %d node(s) this aggregator had accepted (restarted without persistence, "
            "or flushed?); wrote them back: %s",
            len(lost),
            ", ".join(sorted(r.node_name for r in lost)[:10]),
        )

    def _resync_loop(self) -> None:
        next_resync = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_resync:
                self.resync_once()
                next_resync = time.monotonic() + self.interval_s
            elif self.snapshot.take_membership_change():
                # nodes joined or left: the fleet median reasons compare against moved
                self.snapshot.recompute_fleet_median(self.clock_ms(), self.max_staleness_ms)
            self._stop.wait(min(MEDIAN_CHECK_S, self.interval_s))

    def _pubsub_loop(self) -> None:
        follow_channel(
            self.store.pubsub,
            self.store.keys.updates,
            self._apply,
            self._stop,
            poll_s=PUBSUB_POLL_S,
            errors=(*REDIS_ERRORS, OSError),
            on_subscribed=self._subscribed,
            on_lost=self._subscription_lost,
        )

    def _subscribed(self) -> None:
        if not self._pubsub_ok:
            log.info("pub/sub on %s resubscribed", self.store.keys.updates)
            self._pubsub_ok = True

    def _subscription_lost(self, e: BaseException) -> float:
        # the resync loop owns redis_up; a lost subscription only delays updates until the
        # next resync, so it is said once per outage, not flapped
        if self._pubsub_ok:
            log.warning(
                "pub/sub on %s lost (%s); resubscribing, updates come with the resync every %g s meanwhile",
                self.store.keys.updates,
                e,
                self.interval_s,
            )
        self._pubsub_ok = False
        self.store.refresh_topology()
        return min(self.interval_s, 1.0)

    def _apply(self, message: str) -> None:
        for line in message.split("\n"):  # one line per node a write stored
            self._apply_one(line)

    def _apply_one(self, message: str) -> None:
        name, _, received = message.partition(" ")
        if not received.isdigit():
            log.warning("ignoring malformed message on %s: %r", self.store.keys.updates, message[:120])
            return
        at = int(received)
        known = self.snapshot.received_at(name)
        if (known is not None and known >= at) or self.store.wrote_at(name) >= at:
            return  # this replica already holds that vector (it took the push itself)
        try:
            rec = self.store.read_node(name)
        except (StoreUnavailable, CorruptRecord) as e:
            log.warning("could not read update for node %s: %s", name, e)
            return
        if rec is not None:
            self.snapshot.upsert(rec)

    def _mark(self, ok: bool, why: str = "") -> None:
        if self.metrics is not None:
            self.metrics.redis_up.set(1 if ok else 0)
        if ok and not self._redis_ok:
            log.info("Redis reachable again at %s; snapshot refreshed", self.store.where)
        elif not ok and self._redis_ok:
            log.error(
                "Redis unreachable (%s); BatchScore answers from the in-memory snapshot until it turns "
                "stale, pushes are refused with UNAVAILABLE until Redis is back",
                why,
            )
        self._redis_ok = ok
