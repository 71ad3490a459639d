"""The Redis adapter: DESIGN.md's key layout, and nothing else touches Redis keys.

Layout (prefix ``ka:`` by default), readable with plain ``redis-cli``:

* ``ka:node:{NAME}`` — hash: one field per measured metric by name, plus
  ``collected_at_ms``, ``received_at_ms``, ``mask`` (15 characters of 0/1 in schema order),
  ``schema``, ``agent``, ``missing_reasons`` (JSON object) and ``offenders`` (JSON list of
  [namespace, name, metric, value]). A missing metric has no field.
  Expires after the node TTL.
* ``ka:nodes`` — sorted set: node name -> last received time (ms).
* ``ka:history:{NAME}`` — stream of recent vectors, capped (approximately) at
  ``history_maxlen`` entries.
* ``ka:updates`` — pub/sub channel; each write publishes one line ``NAME RECEIVED_MS`` per
  node it stored (a group commit of many pushes sends one message of many lines), so a
  replica that already holds that vector (it took the push itself) skips the read.

The braces are Redis Cluster hash tags: a node's hash and its history land on one slot.

Redis Cluster: ``--redis-url redis+cluster://HOST:PORT[,HOST:PORT...]`` (``rediss+cluster://``
for TLS) uses redis-py's ``RedisCluster``; the listed nodes are only where discovery starts.
A push is one Lua script over the node's own keys (one slot, thanks to the hash tag), then
the ``ka:nodes`` entry (another slot) and the ``PUBLISH``: a cluster broadcasts it to every
node, so a subscriber on any node sees every update. When a master dies, the client re-reads the slot
map and retries (``CLUSTER_RETRIES`` with a capped backoff) until the replica has taken
over; a push that still fails answers UNAVAILABLE and the agent retries.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException
from redis.retry import Retry

from aggregator.errors import StoreUnavailable
from aggregator.group_commit import GroupCommit
from aggregator.node_record import NodeRecord, Offender, empty_values
from wire.address import AddressError, parse_host_port
from wire.schema import METRICS, NUM_METRICS

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "ka:"
DEFAULT_NODE_TTL_S = 600
DEFAULT_HISTORY_MAXLEN = 1000
SOCKET_TIMEOUT_S = 2.0
#: URL schemes of a Redis Cluster (``rediss+cluster`` = TLS).
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
#: Cluster client: attempts over MOVED/connection errors while a replica takes over, and the
#: backoff between them (the default cluster-node-timeout of 15 s needs the agent's retry too).
CLUSTER_RETRIES = 6
CLUSTER_BACKOFF_BASE_S, CLUSTER_BACKOFF_CAP_S = 0.05, 0.5
#: Writes in flight to Redis at once. A push that finds them all taken (Redis slow or paused)
#: is refused within WRITE_SLOT_WAIT_S with UNAVAILABLE instead of holding a gRPC worker, so the
#: remaining workers (default 8) stay free for BatchScore, which never waits on Redis.
DEFAULT_MAX_PENDING_WRITES = 6
#: How long a push waits for a free write slot before it is refused: long enough for a burst
#: to pass, far shorter than BatchScore's budget ...
WRITE_SLOT_WAIT_S = 0.02
#: ... unless the write in progress has already taken this long: Redis is stalled, refuse at once.
WRITE_STALL_S = 0.05
#: Most writes from the event loop waiting on Redis at once; past that a push is refused.
MAX_QUEUED_WRITES = 4096
#: Longest a push waits for its group commit: one batch ahead of it and its own, each bounded
#: by the socket timeout.
WRITE_WAIT_S = 2 * SOCKET_TIMEOUT_S + 1.0
#: Bound on the node -> last written map (cleared past it; only a shortcut is lost).
MAX_REMEMBERED_WRITES = 100_000
#: What redis-py raises when Redis fails: RedisClusterException (slot not covered, no node
#: reachable) does not derive from RedisError.
REDIS_ERRORS = (redis.RedisError, RedisClusterException)


#: One push, written by Redis in one step (atomically: no reader sees the hash between DEL and
#: HSET): KEYS node hash, history stream (one slot on a cluster: the hash tag); ARGV ttl,
#: history maxlen, then the hash's field/value pairs. The ka:nodes entry and the ka:updates
#: message follow in the same pipeline, one of each per group commit.
WRITE_LUA = """
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""


class CorruptRecord(ValueError):
    """A node hash in Redis cannot be decoded (written by something else, or truncated)."""


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def node(self, name: str) -> str:
        return f"{self.prefix}node:{{{name}}}"

    def history(self, name: str) -> str:
        return f"{self.prefix}history:{{{name}}}"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}nodes"

    @property
    def updates(self) -> str:
        return f"{self.prefix}updates"


def encode_record(rec: NodeRecord) -> dict[str, str]:
    fields = {m.name: repr(float(rec.values[m.index])) for m in METRICS if rec.mask[m.index]}
    fields.update(
        collected_at_ms=str(rec.collected_at_ms),
        received_at_ms=str(rec.received_at_ms),
        mask="".join("1" if b else "0" for b in rec.mask),
        schema=str(rec.schema_version),
        agent=rec.agent_version,
        missing_reasons=json.dumps(rec.missing_reasons, sort_keys=True),
        offenders=json.dumps([[o.namespace, o.name, o.metric, o.value] for o in rec.offenders]),
    )
    return fields


def decode_record(name: str, fields: dict[str, str]) -> NodeRecord:
    """Decode a node hash; raises CorruptRecord naming the bad field."""
    try:
        mask_text = fields["mask"]
        if len(mask_text) != NUM_METRICS or set(mask_text) - {"0", "1"}:
            raise CorruptRecord(f"{name}: mask {mask_text[:40]!r} is not {NUM_METRICS} characters of 0/1")
        mask = np.array([c == "1" for c in mask_text])
        values = empty_values()
        for m in METRICS:
            if mask[m.index]:
                v = float(fields[m.name])
                if not math.isfinite(v) or not (m.lo <= v <= m.hi):
                    raise CorruptRecord(f"{name}: {m.name}={v} outside [{m.lo:g}, {m.hi:g}]")
                values[m.index] = v
        reasons = json.loads(fields.get("missing_reasons") or "{}")
        if not isinstance(reasons, dict):
            raise CorruptRecord(f"{name}: missing_reasons is not a JSON object")
        offenders = tuple(
            Offender(str(ns), str(pod), str(metric), float(value))
            for ns, pod, metric, value in json.loads(fields.get("offenders") or "[]")
        )
        return NodeRecord(
            node_name=name,
            values=values,
            mask=mask,
            collected_at_ms=int(fields["collected_at_ms"]),
            received_at_ms=int(fields["received_at_ms"]),
            schema_version=int(fields["schema"]),
            agent_version=fields.get("agent", ""),
            missing_reasons={str(k): str(v) for k, v in reasons.items()},
            offenders=offenders,
        )
    except KeyError as e:
        raise CorruptRecord(f"{name}: field {e.args[0]!r} absent") from None
    except (ValueError, TypeError) as e:
        if isinstance(e, CorruptRecord):
            raise
        raise CorruptRecord(f"{name}: {e}") from None


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """``redis+cluster://[USER:PASS@]H1:P1,H2:P2/...`` -> (a plain redis:// URL for the first node
    carrying credentials and options, [(host, port), ...] of every listed node)."""
    scheme, rest = url.split("://", 1)
    parts = urlsplit("//" + rest)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for hp in hosts.split(","):
        try:
            nodes.append(parse_host_port(hp))
        except AddressError as e:
            raise ValueError(f"--redis-url: {hp!r} in {scheme}:// is not HOST:PORT: {e}") from None
    first = f"{userinfo}@{hosts.split(',')[0]}" if userinfo else hosts.split(",")[0]
    plain = "rediss" if scheme.startswith("rediss") else "redis"
    return urlunsplit((plain, first, parts.path, parts.query, "")), nodes


def connect(url: str):
    """A redis-py client for ``url``: ``RedisCluster`` for redis+cluster://, else ``Redis``."""
    common = dict(decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S)
    if is_cluster_url(url):
        first, nodes = cluster_nodes(url)
        return RedisCluster.from_url(
            first,
            startup_nodes=[ClusterNode(h, p) for h, p in nodes[1:]],
            retry=Retry(ExponentialBackoff(cap=CLUSTER_BACKOFF_CAP_S, base=CLUSTER_BACKOFF_BASE_S), CLUSTER_RETRIES),
            **common,
        )
    return redis.Redis.from_url(url, health_check_interval=10, **common)


class RedisStore:
    """Reads and writes node telemetry in Redis. Every Redis failure becomes StoreUnavailable."""

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        node_ttl_s: int = DEFAULT_NODE_TTL_S,
        history_maxlen: int = DEFAULT_HISTORY_MAXLEN,
        max_pending_writes: int = DEFAULT_MAX_PENDING_WRITES,
    ):
        self.url = url
        self.keys = Keys(prefix)
        self.node_ttl_s = node_ttl_s
        self.history_maxlen = history_maxlen
        self.cluster = is_cluster_url(url)
        self.max_pending_writes = max_pending_writes
        self._write_slots = threading.BoundedSemaphore(max_pending_writes)
        try:
            self.client = connect(url)
        except REDIS_ERRORS as e:  # the cluster client reads the slot map at once
            raise StoreUnavailable(f"redis cluster at {url.split('@')[-1]} unreachable: {e}") from e
        # EVALSHA, loading the script again when Redis lost it (a restart)
        self._write_script = self.client.register_script(WRITE_LUA)
        self._writer: GroupCommit | None = None  # started with the first write
        # node -> received ms of the latest vector this process wrote: its own ka:updates
        # messages need no read back (they often arrive before the snapshot holds the push)
        self._wrote: dict[str, int] = {}
        self._writer_lock = threading.Lock()
        self._script_loaded = False  # WRITE_LUA known to Redis (lost when Redis restarts)
        self._queued_async = 0  # write_async calls waiting on Redis (touched by the event loop only)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except REDIS_ERRORS:
            return False

    def write(self, rec: NodeRecord) -> None:
        """Stores ``rec``; returns once Redis acknowledged it (for a caller on a thread)."""
        if not self._write_slots.acquire(blocking=False):
            # every slot taken: a burst passes in milliseconds, a stalled Redis does not
            stalled_s = self._writer.busy_for_s() if self._writer is not None else 0.0
            if stalled_s > WRITE_STALL_S or not self._write_slots.acquire(timeout=WRITE_SLOT_WAIT_S):
                raise StoreUnavailable(
                    f"redis at {self.where} is slow: {self.max_pending_writes} writes already "
                    f"waiting on it, the oldest for {stalled_s:.2f} s"
                )
        try:
            self._start_write(rec).submit(rec)
        finally:
            self._write_slots.release()

    async def write_async(self, rec: NodeRecord) -> None:
        """The same for a caller on an event loop (the gRPC server): it awaits the group commit
        instead of holding a thread, so any number of pushes can wait on one flush. Refused at
        once while Redis is stalled (a flush has run over WRITE_STALL_S with writes queued
        behind it) or when MAX_QUEUED_WRITES already wait."""
        queued = self._queued_async
        if queued >= self.max_pending_writes:
            stalled_s = self._writer.busy_for_s() if self._writer is not None else 0.0
            if stalled_s > WRITE_STALL_S or queued >= MAX_QUEUED_WRITES:
                raise StoreUnavailable(
                    f"redis at {self.where} is slow: {queued} writes already waiting on it, "
                    f"the oldest flush running for {stalled_s:.2f} s"
                )
        done = self._start_write(rec).submit_async(rec)
        self._queued_async += 1
        try:
            await done
        finally:
            self._queued_async -= 1

    def _start_write(self, rec: NodeRecord) -> GroupCommit:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = GroupCommit(self._write_batch, WRITE_WAIT_S)
        # noted before the write: its ka:updates message can arrive before the write returns
        if len(self._wrote) > MAX_REMEMBERED_WRITES:
            self._wrote.clear()
        self._wrote[rec.node_name] = max(rec.received_at_ms, self._wrote.get(rec.node_name, 0))
        return self._writer

    def wrote_at(self, name: str) -> int:
        """Received ms of the latest vector of ``name`` this process wrote (-1: none)."""
        return self._wrote.get(name, -1)

    def _script_args(self, rec: NodeRecord) -> list:
        args: list = [self.node_ttl_s, self.history_maxlen]
        for kv in encode_record(rec).items():
            args.extend(kv)
        return args

    def _write_batch(self, recs: list[NodeRecord]) -> None:
        """Every record of one group commit (GroupCommit's flush). The hash is replaced, not
        updated: a metric that went missing must not keep its old value."""
        k = self.keys
        try:
            if self.cluster:  # one slot per node: script, index entry and broadcast one by one
                for rec in recs:
                    self._write_script(
                        keys=[k.node(rec.node_name), k.history(rec.node_name)], args=self._script_args(rec)
                    )
                    self.client.zadd(k.nodes, {rec.node_name: rec.received_at_ms})
                    self.client.publish(k.updates, f"{rec.node_name} {rec.received_at_ms}")
                return
            # the index entries and the update message of a whole flush go in one ZADD and one
            # PUBLISH after the scripts: every subscriber parses one message per flush, not per push
            latest: dict[str, int] = {}
            for rec in recs:
                latest[rec.node_name] = max(rec.received_at_ms, latest.get(rec.node_name, 0))
            for attempt in (1, 2):
                if not self._script_loaded:  # else a first EVALSHA fails while ZADD and PUBLISH go through
                    self.client.script_load(WRITE_LUA)
                    self._script_loaded = True
                pipe = self.client.pipeline(transaction=False)
                for rec in recs:
                    pipe.evalsha(
                        self._write_script.sha,
                        2,
                        k.node(rec.node_name),
                        k.history(rec.node_name),
                        *self._script_args(rec),
                    )
                pipe.zadd(k.nodes, latest)
                pipe.publish(k.updates, "\n".join(f"{n} {at}" for n, at in latest.items()))
                try:
                    pipe.execute()
                    return
                except NoScriptError:  # Redis restarted and lost its script cache: no node hash was
                    # written (the index entries and the message went out early; the retry repeats them)
                    self._script_loaded = False
                    if attempt == 2:
                        raise
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"redis at {self.where} did not take the write: {e}") from e

    def read_node(self, name: str) -> NodeRecord | None:
        try:
            fields = self.client.hgetall(self.keys.node(name))
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"redis at {self.where} unreachable: {e}") from e
        return decode_record(name, fields) if fields else None

    def read_index(self, now_ms: int | None = None) -> dict[str, int]:
        """ka:nodes as node -> last received ms, after pruning entries past the node TTL."""
        k = self.keys
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.zremrangebyscore(k.nodes, "-inf", f"({now_ms - self.node_ttl_s * 1000}")
            pipe.zrange(k.nodes, 0, -1, withscores=True)
            _, pairs = pipe.execute()
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"redis at {self.where} unreachable: {e}") from e
        return {name: int(score) for name, score in pairs}

    def read_nodes(self, names: list[str]) -> tuple[list[NodeRecord], list[str]]:
        """The named nodes' records. Returns (records, problems); absent hashes are skipped."""
        if not names:
            return [], []
        try:
            pipe = self.client.pipeline(transaction=False)
            for n in names:
                pipe.hgetall(self.keys.node(n))
            hashes = pipe.execute()
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"redis at {self.where} unreachable: {e}") from e
        records, problems = [], []
        for n, fields in zip(names, hashes):
            if not fields:
                continue  # expired between the index read and now
            try:
                records.append(decode_record(n, fields))
            except CorruptRecord as e:
                problems.append(str(e))
        return records, problems

    def read_all(self) -> tuple[list[NodeRecord], list[str]]:
        """Every node with a live hash. Returns (records, problems)."""
        return self.read_nodes(sorted(self.read_index()))

    def history(self, name: str, count: int = 100) -> list[NodeRecord]:
        try:
            entries = self.client.xrevrange(self.keys.history(name), count=count)
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"redis at {self.where} unreachable: {e}") from e
        out = []
        for _id, fields in entries:
            try:
                out.append(decode_record(name, fields))
            except CorruptRecord:
                continue
        return out

    def pubsub(self):
        return self.client.pubsub(ignore_subscribe_messages=True)

    def refresh_topology(self) -> None:
        """Cluster: re-read the slot map now (the pub/sub client picks its node from it and, unlike
        commands, does not refresh it on a connection error). No-op on a single Redis."""
        if self.cluster:
            try:
                self.client.nodes_manager.initialize()
            except REDIS_ERRORS as e:
                log.debug("cluster slot map not refreshed: %s", e)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.client.close()

    @property
    def where(self) -> str:
        """host:port of the Redis server (cluster: its start-up nodes), for messages; never the
        password the URL may hold."""
        if self.cluster:
            return "cluster " + ",".join(f"{h}:{p}" for h, p in cluster_nodes(self.url)[1])
        kw = self.client.connection_pool.connection_kwargs
        if kw.get("path"):
            return kw["path"]
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}"
