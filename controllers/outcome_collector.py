"""``kubeattention collector``: what became of each pod KubeAttention scored.

The collector watches pods, joins every bound pod (``spec.nodeName`` set) with its newest
decision in ``ka:decisions`` and, once the pod has settled, records one outcome per pod:

| outcome | when | weight |
|---|---|---|
| ``running`` | phase Running at the settle time, no restarts | 1 |
| ``succeeded`` | the pod ran to completion (phase Succeeded) | 1 |
| ``restarted`` | a container restarted (``restartCount > 0``) | 2 |
| ``failed`` | phase Failed (not an eviction) | 2 |
| ``oom_killed`` | a container's ``state``/``lastState`` terminated with reason ``OOMKilled`` | 3 |
| ``evicted`` | ``status.reason`` Evicted (kubelet node-pressure eviction) | 3 |
| ``deleted`` | deleted before settling, with none of the above | 0.5 |
| ``pending`` | bound but still Pending at the settle time (image pulls, volumes) | 0 |

Precedence when several apply: evicted > oom_killed > failed > restarted > deleted >
succeeded > running > pending; flags are sticky across the pod's updates (an OOM kill seen
once is not forgotten when ``lastState`` later shows another termination). The weights
for running, oom_killed and evicted are the original design's (bad placements 3x); the
others are ours: a restart or a failure may be contention (probes timing out under CPU
pressure) or a plain bug, so it sits between; a deletion before settling (rollout,
scale-down, preemption, an API eviction such as the rebalancer's) says little about the
node; a pod that never started says nothing about contention and is recorded (so it is not
re-examined) but not used for training.

Timing. The settle time (``--settle-s``, default 300 s) runs from the bind time (the
PodScheduled condition's transition time; else when the collector first saw the pod
bound). Final outcomes (evicted, oom_killed, failed, succeeded) are recorded as soon as
they are seen; deletions when the DELETED event (or a relist without the pod) arrives;
the rest at the settle time. ``observed_after_s`` says how long after binding the outcome
was taken (a collector started late records long-running pods with a large value).

The join. Decisions are indexed by tailing ``ka:decisions`` (uid -> entry id, newest
wins, bounded), so joining costs one dictionary lookup instead of a 10 000-entry scan per
pod; the decision itself is then read by id. A pod whose decision has not arrived yet is
retried until it settles (an early outcome waits at least 30 s after binding for it);
still none then -> skipped and counted (``skipped_no_decision``). The
node's telemetry *at decision time* is the ``ka:history:{node}`` entry at or before the
decision's ``ts_ms`` (``XREVRANGE key ts_ms - COUNT 1``), read as soon as the pod is seen
bound, because history is capped and expires.

Where outcomes go. Each outcome is one entry in the ``ka:outcomes`` stream (fields
``pod_uid``, ``pod_namespace``, ``pod_name``, ``node``, ``outcome``, ``weight``,
``decision_ts_ms``, ``recorded_at_ms`` and ``record``: the full JSON record) and, with
``--export FILE``, one line of that JSON record appended to FILE — the format
``kubeattention train --outcomes FILE`` reads. ``observed_slowdown`` is always null here:
pod status carries no latency; a latency source may fill it in before training.

Exactly once. Before writing, the collector claims the pod's uid in the sorted set
``ka:outcomes:seen`` (``ZADD NX``); a uid already there is never recorded again, also
after a collector restart or by a second replica. Entries are pruned on relist once their
pod no longer exists (a deleted pod's uid never comes back).

Resilience. List, then watch from the list's resourceVersion (with bookmarks); a watch that
ends is resumed from the last resourceVersion seen; ``410 Gone`` (an expired
resourceVersion, as an ERROR event or a status) -> relist, and pods that vanished in the
gap count as deleted; any other API or connection error -> capped exponential backoff with
jitter (0.5 s doubling to 30 s), then the same step again. A Redis outage keeps outcomes
pending in memory and retries them every tick.

Here: the collector and the command. The outcome names and the per-pod state are
``controllers.pod_outcome``, the join index ``controllers.decision_index``, the record
``controllers.outcome_record``, the pod watch ``controllers.pod_watch``.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from aggregator.config import add_redis_arguments
from aggregator.errors import StoreUnavailable
from aggregator.store import CorruptRecord, RedisStore, decode_record
from controllers.command_line import add_kubeconfig_argument, core_v1, refuse
from controllers.decision_index import DecisionIndex
from controllers.outcome_record import build_record, dump_stream, stream_fields
from controllers.pod_outcome import FINAL_OUTCOMES, Tracked, bind_time
from controllers.pod_watch import DEFAULT_WATCH_TIMEOUT_S, PodWatcher
from kubeapi.fields import meta, spec
from kubeapi.pods import workload_of
from scheduling.decisions import DecisionLog
from wire.schema import METRICS

log = logging.getLogger(__name__)

OUTCOMES_KEY = "outcomes"  # under the prefix: ka:outcomes
SEEN_KEY = "outcomes:seen"  # ka:outcomes:seen
DEFAULT_SETTLE_S = 300.0
DEFAULT_OUTCOMES_MAXLEN = 100_000
DEFAULT_TICK_S = 1.0
#: A seen uid is pruned only when its pod is gone and it was recorded at least this long ago.
SEEN_PRUNE_GRACE_S = 3600
STATS_LOG_INTERVAL_S = 60.0
MAX_EVENTS_PER_TICK = 5_000
#: An early outcome (OOM kill, eviction, deletion) waits this long after binding for its decision.
DECISION_GRACE_S = 30.0


class OutcomeCollector:
    """Turns pod observations into outcome records. Single-threaded: feed it ``relist`` /
    ``on_event`` and call ``tick`` regularly; every Redis write happens in ``tick``."""

    def __init__(
        self,
        store: RedisStore,
        *,
        settle_s: float = DEFAULT_SETTLE_S,
        export_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        outcomes_maxlen: int = DEFAULT_OUTCOMES_MAXLEN,
    ):
        if not settle_s > 0:
            raise ValueError(f"--settle-s: must be > 0, got {settle_s}")
        self.store = store
        self.client = store.client
        self.settle_s = settle_s
        self.export_path = export_path
        self.clock = clock
        self.outcomes_maxlen = outcomes_maxlen
        self.outcomes_key = f"{store.keys.prefix}{OUTCOMES_KEY}"
        self.seen_key = f"{store.keys.prefix}{SEEN_KEY}"
        self.decisions = DecisionIndex(DecisionLog(self.client, store.keys.prefix))
        self.tracked: dict[str, Tracked] = {}
        self.done: set[str] = set()  # recorded or skipped by this process (or found in ka:outcomes:seen)
        self.stats: Counter = Counter()
        self._redis_warned = False

    # ----------------------------------------------------------------- inputs

    def relist(self, pods: list[dict]) -> None:
        """A full list: pods tracked but absent were deleted while we were not watching."""
        live = {meta(p).get("uid") for p in pods}
        for uid, t in self.tracked.items():
            if uid not in live:
                t.obs.deleted = True
        self.done &= live
        self._skip_already_recorded(pods)
        for p in pods:
            self.on_event("ADDED", p)
        self._prune_seen(live)

    def on_event(self, kind: str, pod: dict) -> None:
        m = meta(pod)
        uid = m.get("uid") or ""
        if not uid:
            return
        if uid in self.done:
            if kind == "DELETED":
                self.done.discard(uid)
            return
        t = self.tracked.get(uid)
        if t is None:
            node = spec(pod).get("nodeName")
            if not node:
                return  # not bound yet; a deleted unbound pod was never placed
            t = Tracked(
                uid=uid,
                namespace=m.get("namespace") or "default",
                name=m.get("name") or "",
                node=node,
                bound_at=bind_time(pod) or self.clock(),
                workload=str(w) if (w := workload_of(pod)) else None,
            )
            self.tracked[uid] = t
            self.stats["bound_seen"] += 1
        t.obs.update(pod)
        if kind == "DELETED":
            t.obs.deleted = True

    # ----------------------------------------------------------------- work

    def tick(self) -> int:
        """Join, and record what is due. Returns how many outcomes were written."""
        if not self.tracked:
            return 0
        written = 0
        try:
            self.decisions.refresh()
            now = self.clock()
            for t in list(self.tracked.values()):
                if t.decision is None:
                    self._join(t)
                outcome = t.obs.outcome()
                age = now - t.bound_at
                if not (outcome in FINAL_OUTCOMES or t.obs.deleted or age >= self.settle_s):
                    continue
                if t.decision is None and age < min(self.settle_s, DECISION_GRACE_S):
                    continue  # the extender records decisions asynchronously: give it a moment
                written += self._finish(t, outcome, now)
            if self._redis_warned:
                log.info("Redis is back; outcomes are being recorded again")
                self._redis_warned = False
        except StoreUnavailable as e:
            self.stats["redis_errors"] += 1
            if not self._redis_warned:
                log.warning("outcomes not recorded for now (kept in memory, retried every tick): %s", e)
                self._redis_warned = True
        return written

    def _join(self, t: Tracked) -> None:
        d = self.decisions.lookup(t.uid, t.namespace, t.name)
        if d is None:
            return
        t.decision = d
        t.telemetry, t.telemetry_problem = self._telemetry_at(t.node, d.ts_ms)

    def _telemetry_at(self, node: str, ts_ms: int) -> tuple[dict | None, str]:
        key = self.store.keys.history(node)
        try:
            entries = self.client.xrevrange(key, max=str(ts_ms), min="-", count=1)
        except redis.RedisError as e:
            raise StoreUnavailable(f"cannot read {key}: {e}") from e
        if not entries:
            return None, f"no entry at or before the decision in {key} (trimmed, expired, or never reported)"
        entry_id, fields = entries[0]
        try:
            rec = decode_record(node, fields)
        except CorruptRecord as e:
            return None, f"{key} {entry_id}: {e}"
        return {
            "schema_version": rec.schema_version,
            "entry_id": entry_id,
            "collected_at_ms": rec.collected_at_ms,
            "received_at_ms": rec.received_at_ms,
            "age_ms": rec.age_ms(ts_ms),
            "mask": "".join("1" if b else "0" for b in rec.mask),
            "values": {m.name: (float(rec.values[m.index]) if rec.mask[m.index] else None) for m in METRICS},
        }, ""

    def _finish(self, t: Tracked, outcome: str, now: float) -> int:
        if t.decision is None:
            self.stats["skipped_no_decision"] += 1
            log.debug("pod %s/%s on %s: no decision in ka:decisions; not recorded", t.namespace, t.name, t.node)
            self._forget(t)
            return 0
        record = build_record(t, outcome, now)
        now_ms = int(now * 1000)
        try:
            claimed = self.client.zadd(self.seen_key, {t.uid: now_ms}, nx=True)
        except redis.RedisError as e:
            raise StoreUnavailable(f"cannot claim {t.uid} in {self.seen_key}: {e}") from e
        if not claimed:
            self.stats["skipped_already_recorded"] += 1
            self._forget(t)
            return 0
        try:
            self.client.xadd(self.outcomes_key, stream_fields(record), maxlen=self.outcomes_maxlen, approximate=True)
        except redis.RedisError as e:
            try:
                self.client.zrem(self.seen_key, t.uid)  # let the retry claim it again
            except redis.RedisError:
                log.error("pod %s: claimed in %s but not recorded; it will not be recorded", t.uid, self.seen_key)
                self._forget(t)
            raise StoreUnavailable(f"cannot append to {self.outcomes_key}: {e}") from e
        if self.export_path is not None:
            try:
                with self.export_path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record, sort_keys=True) + "\n")
            except OSError as e:
                self.stats["export_errors"] += 1
                log.error(
                    "outcome for %s/%s is in %s but not in %s: %s",
                    t.namespace,
                    t.name,
                    self.outcomes_key,
                    self.export_path,
                    e,
                )
        self.stats[f"recorded_{outcome}"] += 1
        self._forget(t)
        return 1

    def _forget(self, t: Tracked) -> None:
        self.tracked.pop(t.uid, None)
        self.done.add(t.uid)  # dropped again on its DELETED event or at the next relist

    def _skip_already_recorded(self, pods: list[dict]) -> None:
        uids = [
            u
            for p in pods
            if (u := meta(p).get("uid")) and u not in self.done and u not in self.tracked and spec(p).get("nodeName")
        ]
        if not uids:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for u in uids:
                pipe.zscore(self.seen_key, u)
            scores = pipe.execute()
        except redis.RedisError as e:
            log.warning("cannot read %s (the claim at record time still prevents duplicates): %s", self.seen_key, e)
            return
        self.done.update(u for u, s in zip(uids, scores) if s is not None)

    def _prune_seen(self, live: set) -> None:
        cutoff_ms = int((self.clock() - SEEN_PRUNE_GRACE_S) * 1000)
        try:
            old = self.client.zrangebyscore(self.seen_key, "-inf", cutoff_ms)
            gone = [u for u in old if u not in live]
            if gone:
                self.client.zrem(self.seen_key, *gone)
        except redis.RedisError as e:
            log.debug("pruning %s skipped: %s", self.seen_key, e)


def serve(
    collector: OutcomeCollector,
    watcher: PodWatcher,
    stop: threading.Event,
    tick_s: float = DEFAULT_TICK_S,
    stats_interval_s: float = STATS_LOG_INTERVAL_S,
) -> None:
    """Run the watcher in a thread and feed the collector until ``stop`` is set."""
    events: queue.Queue = queue.Queue(maxsize=10_000)

    def emit(kind: str, payload) -> None:
        while not stop.is_set():
            try:
                events.put((kind, payload), timeout=0.5)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=watcher.run, args=(emit, stop), name="pod-watch", daemon=True)
    thread.start()
    next_stats = time.monotonic() + stats_interval_s
    try:
        while not stop.is_set():
            batch = []
            try:
                batch.append(events.get(timeout=tick_s))
                while len(batch) < MAX_EVENTS_PER_TICK:  # bounded, so a flood of events cannot starve tick()
                    batch.append(events.get_nowait())
            except queue.Empty:
                pass
            for kind, payload in batch:
                if kind == "RELIST":
                    collector.relist(payload)
                else:
                    collector.on_event(kind, payload)
            collector.tick()
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + stats_interval_s
                log.info(
                    "collector: %d pods awaiting an outcome; %s; watch %s",
                    len(collector.tracked),
                    dict(collector.stats),
                    dict(watcher.stats),
                )
    finally:
        watcher.stop()
        thread.join(timeout=5)


# ---------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_redis_arguments(p, "Redis with ka:decisions")
    add_kubeconfig_argument(p)
    p.add_argument(
        "--settle-s",
        type=float,
        default=DEFAULT_SETTLE_S,
        help=f"seconds after binding at which a pod's outcome is taken (default {DEFAULT_SETTLE_S:g})",
    )
    p.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="FILE.jsonl",
        help="also append each outcome as a JSON line to FILE (the input of `kubeattention train --outcomes`)",
    )
    p.add_argument(
        "--dump",
        type=Path,
        default=None,
        metavar="FILE.jsonl",
        help="write every outcome already in ka:outcomes to FILE as JSONL and exit",
    )
    p.add_argument(
        "--watch-timeout-s",
        type=int,
        default=DEFAULT_WATCH_TIMEOUT_S,
        help=f"server-side timeout of one pod watch request (default {DEFAULT_WATCH_TIMEOUT_S})",
    )


def run(args: argparse.Namespace) -> int:
    store = RedisStore(args.redis_url, args.key_prefix)
    if args.dump is not None:
        try:
            n = dump_stream(store.client, f"{args.key_prefix}{OUTCOMES_KEY}", args.dump)
        except (redis.RedisError, OSError) as e:
            print(f"kubeattention collector: {e}", file=sys.stderr)
            return 1
        print(f"wrote {n} outcomes to {args.dump}")
        return 0
    problems = []
    if not args.settle_s > 0:
        problems.append(f"--settle-s: must be > 0, got {args.settle_s}")
    if args.watch_timeout_s < 1:
        problems.append(f"--watch-timeout-s: must be >= 1, got {args.watch_timeout_s}")
    if not args.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(f"--redis-url: {args.redis_url!r} must start with redis://, rediss:// or unix://")
    core = core_v1(args.kubeconfig, problems)
    if problems:
        return refuse("collector", problems)
    collector = OutcomeCollector(store, settle_s=args.settle_s, export_path=args.export)
    watcher = PodWatcher(core, watch_timeout_s=args.watch_timeout_s)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "collector: watching pods, settle %g s, outcomes to %s%s",
        args.settle_s,
        collector.outcomes_key,
        f" and {args.export}" if args.export else "",
    )
    serve(collector, watcher, stop)
    log.info("collector stopped: %s", dict(collector.stats))
    return 0
