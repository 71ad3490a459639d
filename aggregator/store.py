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
* ``ka:updates`` — pub/sub channel; each push publishes ``NAME RECEIVED_MS``, so a
  replica that already holds that vector (it took the push itself) skips the read.

The braces are Redis Cluster hash tags: a node's hash and its history land on one slot.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import redis

from aggregator.errors import StoreUnavailable
from aggregator.records import NodeRecord, Offender, empty_values
from scorer.schema import METRICS, NUM_METRICS

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "ka:"
DEFAULT_NODE_TTL_S = 600
DEFAULT_HISTORY_MAXLEN = 1000
SOCKET_TIMEOUT_S = 2.0


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
        offenders = tuple(Offender(str(ns), str(pod), str(metric), float(value))
                          for ns, pod, metric, value in json.loads(fields.get("offenders") or "[]"))
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


class RedisStore:
    """Reads and writes node telemetry in Redis. Every Redis failure becomes StoreUnavailable."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, node_ttl_s: int = DEFAULT_NODE_TTL_S,
                 history_maxlen: int = DEFAULT_HISTORY_MAXLEN):
        self.url = url
        self.keys = Keys(prefix)
        self.node_ttl_s = node_ttl_s
        self.history_maxlen = history_maxlen
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S,
                                           socket_connect_timeout=SOCKET_TIMEOUT_S, health_check_interval=10)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def write(self, rec: NodeRecord) -> None:
        fields = encode_record(rec)
        k = self.keys
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(k.node(rec.node_name))  # a metric that went missing must not keep its old value
            pipe.hset(k.node(rec.node_name), mapping=fields)
            pipe.expire(k.node(rec.node_name), self.node_ttl_s)
            pipe.zadd(k.nodes, {rec.node_name: rec.received_at_ms})
            pipe.xadd(k.history(rec.node_name), fields, maxlen=self.history_maxlen, approximate=True)
            pipe.expire(k.history(rec.node_name), self.node_ttl_s)
            pipe.publish(k.updates, f"{rec.node_name} {rec.received_at_ms}")
            pipe.execute()
        except redis.RedisError as e:
            raise StoreUnavailable(f"redis at {self.where} did not take the write: {e}") from e

    def read_node(self, name: str) -> NodeRecord | None:
        try:
            fields = self.client.hgetall(self.keys.node(name))
        except redis.RedisError as e:
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
        except redis.RedisError as e:
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
        except redis.RedisError as e:
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
        except redis.RedisError as e:
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

    def close(self) -> None:
        self.client.close()

    @property
    def where(self) -> str:
        """host:port of the Redis server, for messages (the URL may hold a password)."""
        kw = self.client.connection_pool.connection_kwargs
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}"
