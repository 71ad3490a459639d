"""Hot model reload: every aggregator replica follows ``ka:model:{active}`` without a restart.

Two triggers, both off the request path, one worker thread doing the loading:

* pub/sub on ``ka:model:updates`` (sent by ``kubeattention model publish`` and ``rollback``):
  the new model serves within a Redis round trip plus its load;
* a check every ``--model-check-interval-s`` (one ``HMGET version sha256``), so a replica
  that missed the message (Redis restarted, its subscription dropped, someone wrote the
  hash by hand) still converges.

A new model is loaded, validated against ``wire.schema`` and warmed up
(``model_store.check_model``) on that thread; only then is it handed to the BatchScorer in
one reference assignment. A BatchScore call reads that reference once, so calls in flight
finish on the old model and every answer names the version that scored it. Nothing the
snapshot or the BatchScorer caches depends on the model — node rows are the schema's
normalisation, confidences depend on the mask, reasons on the node's vector and the
fleet median, pod features on the schema — so a swap invalidates nothing.

A model that fails the checks is refused: logged once with the reason, counted in
``kubeattention_aggregator_model_refused_total{reason}``, remembered by its sha256 so it is
not reloaded every interval, and the current model keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aggregator.background import Loops, follow_channel
from aggregator.errors import StoreUnavailable
from aggregator.model_store import ModelRefused, ModelStore, check_model

log = logging.getLogger(__name__)

#: Refused models remembered (by sha256) so that each is reported once.
REFUSED_MEMORY = 32
#: Wait before re-subscribing after the pub/sub connection failed.
RESUBSCRIBE_S = 1.0
#: Longest a pub/sub read blocks, so stop() is prompt.
PUBSUB_POLL_S = 0.5


@dataclass(frozen=True)
class ServingModel:
    """The model answering BatchScore, and where it came from."""

    model: object  # inference.model.InterferenceModel
    sha256: str
    origin: str  # "file" or "redis"
    where: str  # the file path, or the Redis key

    @property
    def version(self) -> str:
        return self.model.version

    def labels(self) -> dict[str, str]:
        return {"version": self.version, "source": self.origin, "sha256": self.sha256[:12]}


class ModelReloader:
    def __init__(
        self,
        models: ModelStore,
        pubsub_factory: Callable[[], object],
        current: ServingModel,
        install: Callable[[ServingModel], None],
        *,
        interval_s: float,
        metrics=None,
    ):
        self.models, self.pubsub_factory = models, pubsub_factory
        self.current = current
        self.install, self.interval_s, self.metrics = install, interval_s, metrics
        self._refused: OrderedDict[str, str] = OrderedDict()  # sha256 -> reason message
        self._redis_ok = True
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one check at a time
        self._loops = Loops("model-reload")

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._loops.start((self._check_loop, "check"), (self._pubsub_loop, "pubsub"))

    def stop(self) -> None:
        """Stop both threads: a check in progress finishes (a model load: milliseconds), the pub/sub
        poll ends within PUBSUB_POLL_S."""
        self._stop.set()
        self._wake.set()
        self._loops.join()

    # --------------------------------------------------------------------- checks

    def check_once(self) -> str:
        """Look at Redis once; swap in a newer valid model. Returns what happened (for logs and tests):
        ``unchanged``, ``none-published``, ``unavailable``, ``refused`` or ``swapped``."""
        with self._lock:
            return self._check()

    def _check(self) -> str:
        key = self.models.keys.active
        try:
            head = self.models.active_head()
            if head is None:
                self._mark_redis(True)
                return "none-published"
            version, sha, published_at = head
            self._mark_redis(True)
            if sha == self.current.sha256:
                return "unchanged"
            # a refusal is remembered per publication: publishing the same bytes again retries
            seen = f"{sha}@{published_at}"
            if seen in self._refused:
                return "refused"
            t0 = time.perf_counter()
            published = self.models.read_active()
            if published is None:
                return "none-published"
            if published.sha256 == self.current.sha256:
                return "unchanged"
            model = check_model(published.data, f"{key} (version {published.version})")
        except StoreUnavailable as e:
            self._mark_redis(False, str(e))
            return "unavailable"
        except ModelRefused as e:
            self._refuse(seen, version, e)
            return "refused"
        new = ServingModel(model=model, sha256=published.sha256, origin="redis", where=key)
        old = self.current
        self.install(new)
        self.current = new
        if self.metrics is not None:
            self.metrics.model_info.info(new.labels())
            self.metrics.model_reloads.inc()
        log.info(
            "model %s (sha256 %s…, %d bytes, published by %s) now serves BatchScore, replacing %s from %s; "
            "loaded, validated and warmed up in %.0f ms",
            new.version,
            new.sha256[:12],
            published.size_bytes,
            published.published_by or "?",
            old.version,
            old.where,
            (time.perf_counter() - t0) * 1000,
        )
        return "swapped"

    def _refuse(self, seen: str, version: str, e: ModelRefused) -> None:
        self._refused[seen] = str(e)
        while len(self._refused) > REFUSED_MEMORY:
            self._refused.popitem(last=False)
        if self.metrics is not None:
            self.metrics.model_refused.labels(e.reason).inc()
        log.error(
            "refusing model %s published in Redis (%s): %s; still serving %s from %s",
            version or "?",
            e.reason,
            e,
            self.current.version,
            self.current.where,
        )

    def _mark_redis(self, ok: bool, why: str = "") -> None:
        if not ok and self._redis_ok:
            log.warning("cannot check Redis for a newer model (%s); still serving %s", why, self.current.version)
        elif ok and not self._redis_ok:
            log.info("Redis reachable again: checking %s for a newer model", self.models.keys.active)
        self._redis_ok = ok

    # -------------------------------------------------------------------- threads

    def _check_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check_once()
            except Exception:  # a bug here must not stop future reloads
                log.exception("model check failed; retrying in %g s", self.interval_s)

    def _pubsub_loop(self) -> None:
        channel = self.models.keys.updates

        def on_message(data) -> None:
            log.debug("model update on %s: %s", channel, data)
            self._wake.set()

        def on_lost(e: BaseException) -> float:
            log.debug(
                "pub/sub on %s failed (%s: %s); the periodic check covers until it is back",
                channel,
                type(e).__name__,
                e,
            )
            return RESUBSCRIBE_S

        follow_channel(
            self.pubsub_factory,
            channel,
            on_message,
            self._stop,
            poll_s=PUBSUB_POLL_S,
            # RedisError, OSError, or a connection closed under us: never die
            errors=(Exception,),
            on_subscribed=self._wake.set,  # anything published while we were not subscribed
            on_lost=on_lost,
        )


def serving_model_from_file(model) -> ServingModel:
    """The model loaded from --model (or the packaged default) as a ServingModel."""
    from aggregator.model_store import file_sha256

    return ServingModel(model=model, sha256=file_sha256(model.source), origin="file", where=model.source)


def start_model_source(
    source: str, file_model, store, prefix: str, interval_s: float, metrics, install: Callable[[ServingModel], None]
) -> ModelReloader | None:
    """Decide the model to serve at start-up; return the reloader to start, or None for ``file``.

    ``file`` serves ``file_model`` and never looks at Redis. ``redis`` serves the model
    published in Redis when there is a valid one, else ``file_model`` (saying why), and
    returns a reloader that follows every later publish.
    """
    serving = serving_model_from_file(file_model)
    install(serving)
    if metrics is not None:
        metrics.model_info.info(serving.labels())
    if source == "file":
        log.info(
            "model %s from %s (--model-source file: models published in Redis are ignored)",
            serving.version,
            serving.where,
        )
        return None
    models = ModelStore(store.client, prefix, store.where)
    reloader = ModelReloader(models, store.pubsub, serving, install, interval_s=interval_s, metrics=metrics)
    outcome = reloader.check_once()
    key = models.keys.active
    if outcome == "none-published":
        log.info(
            "no model published in Redis yet (%s absent): serving %s from %s until `kubeattention model "
            "publish` puts one there",
            key,
            serving.version,
            serving.where,
        )
    elif outcome == "unchanged":
        log.info("model %s from %s is also the one published in Redis (%s)", serving.version, serving.where, key)
    elif outcome == "unavailable":
        log.warning(
            "serving %s from %s until Redis answers; then the model published in %s takes over",
            serving.version,
            serving.where,
            key,
        )
    elif outcome == "swapped":
        log.info(
            "serving the model published in Redis (%s); %s is the fallback only (--model-source file pins it)",
            key,
            serving.where,
        )
    return reloader
