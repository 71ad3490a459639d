"""Models shared through Redis: the ``ka:model:*`` keys, and the checks a model passes first.

Every aggregator replica serves the model named by one Redis hash, so replicas agree and a
new model reaches all of them without a restart (``aggregator.model_reload`` watches it;
``kubeattention model publish`` writes it). Layout (prefix ``ka:`` by default):

* ``ka:model:{active}`` — hash, the active model: ``version``, ``sha256`` (of the ONNX
  bytes), ``size_bytes``, ``onnx_base64`` (the ONNX file, base64), ``published_at_ms``,
  ``published_by`` (user@host), ``source`` (the file name it was published from) and
  ``previous`` (the version it replaced). Written with one HSET of every field, so a
  reader sees one model's version and bytes together, never a mix.
* ``ka:model:{active}:version:{VERSION}`` — the same fields for each of the last
  ``KEEP_VERSIONS`` published versions, for ``kubeattention model rollback``.
* ``ka:model:{active}:history`` — sorted set: version -> when it last became active (ms).
* ``ka:model:updates`` — pub/sub channel; each publish or rollback sends ``VERSION SHA256``.

The ``{active}`` hash tag puts all of them on one Redis Cluster slot. Bytes travel as
base64 so the same text-mode client as the telemetry store carries them.

A model is accepted only after :func:`check_model` has loaded it in ONNX Runtime, checked
its metadata against ``wire.schema`` (schema version, the 26 feature names in order, the
input width, the output kind) and run it once on a warm-up batch with finite results.
Refusals raise :class:`ModelRefused` with a bounded ``reason`` (for a metric label) and a
message naming what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from redis.exceptions import RedisClusterException

from aggregator.errors import AggregatorError, StoreUnavailable
from wire import schema

#: Published versions kept (bytes and all) for rollback, the active one included.
KEEP_VERSIONS = 5
#: A version names a Redis key: letters, digits, dot, underscore, dash.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Largest ONNX file accepted (the shipped MLP is ~20 KiB, an XGBoost model ~500 KiB).
MAX_MODEL_BYTES = 64 * 1024 * 1024

#: What redis-py raises when Redis fails (RedisClusterException does not derive from RedisError).
REDIS_ERRORS = (redis.RedisError, RedisClusterException)
#: ModelRefused.reason values, the label set of kubeattention_aggregator_model_refused_total.
REFUSAL_REASONS = ("incomplete", "checksum", "corrupt", "mismatch", "warmup")

ACTIVE_FIELDS = (
    "version",
    "sha256",
    "size_bytes",
    "onnx_base64",
    "published_at_ms",
    "published_by",
    "source",
    "previous",
)


class ModelRefused(AggregatorError):
    """A model is not usable. ``reason`` is one of REFUSAL_REASONS; the message says why."""

    def __init__(self, reason: str, message: str):
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"ModelRefused.reason: {reason!r} is not one of {REFUSAL_REASONS}")
        self.reason = reason
        super().__init__(message)


class ModelConflict(AggregatorError):
    """A publish or rollback that would make two different models share one version."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def warmup_batch() -> np.ndarray:
    """One row per profile with every node metric missing, plus a quiet fully-measured node
    per profile: exercises the session's allocations and the missing-value path."""
    quiet = np.array([m.lo for m in schema.METRICS], dtype=np.float64)
    rows = []
    for profile in schema.Profile:
        pod = schema.PodContext(cpu_request_cores=0.5, memory_request_bytes=512 << 20, profile=profile)
        rows.append(
            schema.model_input(np.zeros((1, schema.NUM_METRICS)), np.zeros((1, schema.NUM_METRICS), dtype=bool), pod)
        )
        rows.append(schema.model_input(quiet[None, :], np.ones((1, schema.NUM_METRICS), dtype=bool), pod))
    return np.ascontiguousarray(np.concatenate(rows).astype(np.float32))


def check_model(data: bytes, source: str):
    """Load ``data`` in ONNX Runtime, validate it against the schema and warm it up.

    Returns a ready ``inference.model.InterferenceModel``; raises ModelRefused.
    """
    import onnxruntime as ort

    from inference.model import InterferenceModel, ModelError, session_options

    if not data:
        raise ModelRefused("corrupt", f"model {source}: empty (0 bytes)")
    if len(data) > MAX_MODEL_BYTES:
        raise ModelRefused("corrupt", f"model {source}: {len(data)} bytes, over the {MAX_MODEL_BYTES} byte limit")
    try:
        session = ort.InferenceSession(data, sess_options=session_options(), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelRefused("corrupt", f"model {source}: not a loadable ONNX model (ONNX Runtime: {first})") from e
    try:
        model = InterferenceModel(session, source)
    except ModelError as e:
        raise ModelRefused(
            "mismatch", f"{e} (this aggregator speaks schema {schema.SCHEMA_VERSION}, {schema.NUM_FEATURES} features)"
        ) from e
    if not VERSION_PATTERN.fullmatch(model.version):
        raise ModelRefused(
            "mismatch",
            f"model {source}: model_version {model.version[:80]!r} is not 1-128 letters, digits, '.', '_' or '-'",
        )
    try:
        pred = model.predict_slowdown(warmup_batch())
    except Exception as e:
        raise ModelRefused("warmup", f"model {source} ({model.version}): failed on the warm-up batch: {e}") from e
    if not np.isfinite(pred).all():
        raise ModelRefused(
            "warmup",
            f"model {source} ({model.version}): predicted NaN or infinite slowdowns "
            f"on the warm-up batch (e.g. for a node with every metric missing)",
        )
    return model


def publisher_identity() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in a container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class ModelKeys:
    prefix: str = "ka:"

    @property
    def active(self) -> str:
        return f"{self.prefix}model:{{active}}"

    def version(self, version: str) -> str:
        return f"{self.prefix}model:{{active}}:version:{version}"

    @property
    def history(self) -> str:
        return f"{self.prefix}model:{{active}}:history"

    @property
    def updates(self) -> str:
        return f"{self.prefix}model:updates"


@dataclass(frozen=True)
class PublishedModel:
    """A model as Redis holds it. ``data`` is the decoded ONNX bytes, or None when not read."""

    version: str
    sha256: str
    size_bytes: int
    published_at_ms: int
    published_by: str
    source: str
    previous: str
    data: bytes | None = None

    def describe(self) -> dict:
        return {
            "version": self.version,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "published_at_ms": self.published_at_ms,
            "published_by": self.published_by,
            "source": self.source,
            "previous": self.previous,
        }


def decode_published(key: str, fields: dict[str, str], with_data: bool = True) -> PublishedModel:
    """Decode a model hash; raises ModelRefused (incomplete / checksum) naming the key and field."""
    absent = [f for f in ("version", "sha256", "onnx_base64") if not fields.get(f)]
    if absent:
        raise ModelRefused(
            "incomplete",
            f"{key}: field(s) {', '.join(absent)} absent or empty "
            "(written by something other than `kubeattention model publish`?)",
        )
    data = None
    if with_data:
        try:
            data = base64.b64decode(fields["onnx_base64"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise ModelRefused("incomplete", f"{key}: onnx_base64 is not valid base64 ({e})") from None
        actual = sha256_hex(data)
        if actual != fields["sha256"]:
            raise ModelRefused(
                "checksum",
                f"{key}: the ONNX bytes hash to sha256 {actual[:12]}…, the hash says "
                f"{fields['sha256'][:12]}… (truncated or overwritten)",
            )
    try:
        return PublishedModel(
            version=fields["version"],
            sha256=fields["sha256"],
            size_bytes=int(fields.get("size_bytes") or (len(data) if data is not None else 0)),
            published_at_ms=int(fields.get("published_at_ms") or 0),
            published_by=fields.get("published_by", ""),
            source=fields.get("source", ""),
            previous=fields.get("previous", ""),
            data=data,
        )
    except ValueError as e:
        raise ModelRefused("incomplete", f"{key}: {e}") from None


class ModelStore:
    """Reads and writes the shared model. Every Redis failure becomes StoreUnavailable.

    ``client`` is the telemetry store's client (``RedisStore.client``: text mode), so the
    model keys live wherever the telemetry does, standalone or cluster.
    """

    def __init__(self, client, prefix: str = "ka:", where: str = "redis"):
        self.client = client
        self.keys = ModelKeys(prefix)
        self.where = where

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"redis at {self.where}: {e}") from e

    # ------------------------------------------------------------------ readers

    def active_head(self) -> tuple[str, str, str] | None:
        """(version, sha256, published_at_ms) of the active model, or None when none is published.
        One cheap HMGET: what a replica polls."""
        version, sha, at = self._call(self.client.hmget, self.keys.active, ["version", "sha256", "published_at_ms"])
        return (version or "", sha or "", at or "") if (version or sha) else None

    def read_active(self) -> PublishedModel | None:
        """The active model with its bytes (integrity-checked), or None when none is published."""
        fields = self._call(self.client.hgetall, self.keys.active)
        return decode_published(self.keys.active, fields) if fields else None

    def read_version(self, version: str) -> PublishedModel | None:
        key = self.keys.version(version)
        fields = self._call(self.client.hgetall, key)
        return decode_published(key, fields) if fields else None

    def history(self) -> list[tuple[PublishedModel | str, int]]:
        """Kept versions, newest activation first: (model without bytes, or a problem text, activated ms)."""
        pairs = self._call(self.client.zrevrange, self.keys.history, 0, -1, withscores=True)
        out = []
        for version, activated in pairs:
            key = self.keys.version(version)
            fields = self._call(self.client.hgetall, key)
            if not fields:
                out.append((f"{version}: bytes no longer kept ({key} absent)", int(activated)))
                continue
            try:
                out.append((decode_published(key, fields, with_data=False), int(activated)))
            except ModelRefused as e:
                out.append((str(e), int(activated)))
        return out

    # ------------------------------------------------------------------ writers

    def publish(
        self, data: bytes, version: str, source: str, *, by: str | None = None, now_ms: int | None = None
    ) -> tuple[PublishedModel, bool]:
        """Make ``data`` (already checked with check_model) the active model.

        Returns (the published model, changed); ``changed`` is False when exactly these bytes
        were already active. Raises ModelConflict when ``version`` was published before with
        different bytes.
        """
        sha = sha256_hex(data)
        kept = self._call(self.client.hget, self.keys.version(version), "sha256")
        if kept and kept != sha:
            raise ModelConflict(
                f"model_version {version!r} was already published with different bytes "
                f"(sha256 {kept[:12]}…, this file {sha[:12]}…); one version must name one model: "
                "export the new model with a new model_version (e.g. retrain)"
            )
        head = self.active_head()
        if head is not None and head[:2] == (version, sha):
            try:
                return decode_published(self.keys.active, self._call(self.client.hgetall, self.keys.active)), False
            except ModelRefused:
                pass  # the active hash is damaged: writing it again repairs it
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        fields = {
            "version": version,
            "sha256": sha,
            "size_bytes": str(len(data)),
            "onnx_base64": base64.b64encode(data).decode("ascii"),
            "published_at_ms": str(now_ms),
            "published_by": by or publisher_identity(),
            "source": source,
            "previous": head[0] if head is not None else "",
        }
        self._activate(version, fields, now_ms, archive=True)
        return decode_published(self.keys.active, fields, with_data=False), True

    def rollback(
        self, to: str | None = None, *, by: str | None = None, now_ms: int | None = None
    ) -> tuple[PublishedModel, PublishedModel | None]:
        """Make a kept version active again: ``to``, or the most recently active one before the
        current. Returns (the model now active with its bytes, the one it replaced)."""
        head = self.active_head()
        current = head[0] if head else None
        if to is None:
            earlier = [
                v
                for v, _ in self._call(self.client.zrevrange, self.keys.history, 0, -1, withscores=True)
                if v != current
            ]
            if not earlier:
                raise ModelConflict(
                    f"nothing to roll back to: {self.keys.history} holds no version other than {current or 'none'}"
                )
            to = earlier[0]
        target = self.read_version(to)
        if target is None:
            kept = [v for v, _ in self._call(self.client.zrevrange, self.keys.history, 0, -1, withscores=True)]
            raise ModelConflict(
                f"version {to!r} is not kept in Redis ({self.keys.version(to)} absent); kept: "
                f"{', '.join(kept) or 'none'}; publish its file instead"
            )
        replaced = None
        if head is not None:
            try:
                replaced = decode_published(
                    self.keys.active, self._call(self.client.hgetall, self.keys.active), with_data=False
                )
            except ModelRefused:
                replaced = None
        if head is not None and head[:2] == (target.version, target.sha256):
            return target, replaced
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        fields = {
            **{k: str(v) for k, v in target.describe().items()},
            "onnx_base64": base64.b64encode(target.data).decode("ascii"),
            "published_at_ms": str(now_ms),
            "published_by": by or publisher_identity(),
            "previous": current or "",
        }
        self._activate(target.version, fields, now_ms, archive=False)
        return decode_published(self.keys.active, fields), replaced

    def _activate(self, version: str, fields: dict[str, str], now_ms: int, archive: bool) -> None:
        k = self.keys
        # One slot ({active}), but no MULTI: the active hash is written by one HSET, which is
        # atomic by itself; the kept copy is written first so a rollback target never lags.
        if archive:
            self._call(self.client.hset, k.version(version), mapping=fields)
        self._call(self.client.hset, k.active, mapping=fields)
        self._call(self.client.zadd, k.history, {version: now_ms})
        self._trim(version)
        self._call(self.client.publish, k.updates, f"{version} {fields['sha256']}")

    def _trim(self, active: str) -> None:
        old = self._call(self.client.zrevrange, self.keys.history, KEEP_VERSIONS, -1)
        old = [v for v in old if v != active]
        if old:
            self._call(self.client.delete, *[self.keys.version(v) for v in old])
            self._call(self.client.zrem, self.keys.history, *old)


def file_sha256(path: str | Path) -> str:
    return sha256_hex(Path(path).read_bytes())
