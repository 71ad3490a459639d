"""gRPC adapters: TelemetryService.Push and ScoringService.BatchScore, plus health and reflection.

Thin: decode -> validate -> call the store / BatchScorer -> encode. Every bad input is
INVALID_ARGUMENT with a message naming the field; Redis trouble on Push is UNAVAILABLE so
agents retry; nothing here raises past the handler.

The server is ``grpc.aio`` on one event loop in its own thread (``GrpcServer``). A push
awaits its Redis group commit instead of holding a thread, so thousands of pushes can wait on
one flush; Python's per-call cost is also about a third lower than the thread-pool server's
(``bench/grpc_floor.py`` measures both). BatchScore runs on the loop itself: it never waits on
Redis (it reads the snapshot), and ~1 ms of NumPy and ONNX Runtime gains nothing from a hop to
another thread under the GIL. Only TokenReview, which calls the API server, runs off the loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from aggregator.batch import BatchScorer
from aggregator.config import DEFAULT_MAX_INFLIGHT_PUSHES
from aggregator.errors import InvalidInput, StoreUnavailable
from aggregator.security.auth import (
    Authenticator,
    AuthError,
    abort_grpc,
    authorize_push,
    authorize_score,
    grpc_principal,
)
from aggregator.security.server_tls import ServerTLS
from aggregator.snapshot import Snapshot
from aggregator.store import RedisStore
from aggregator.validate import validate_batch, validate_telemetry
from wire.v1 import scoring_pb2, scoring_pb2_grpc, telemetry_pb2, telemetry_pb2_grpc

log = logging.getLogger(__name__)

#: Calls the server admits at once besides the pushes: BatchScore, health, reflection. Past
#: the sum gRPC itself answers RESOURCE_EXHAUSTED; a backstop, the push limit acts first.
OTHER_CALLS_INFLIGHT = 256

#: The two services' full names, for health and reflection.
SERVICES = (
    telemetry_pb2.DESCRIPTOR.services_by_name["TelemetryService"].full_name,
    scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name,
)

#: Largest request accepted (bytes): 5 000 candidates of 253-character names fit with room.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(
        self,
        store: RedisStore,
        snapshot: Snapshot,
        clock_ms: Callable[[], int],
        metrics,
        auth: Authenticator | None = None,
        max_inflight: int = DEFAULT_MAX_INFLIGHT_PUSHES,
    ):
        self.store, self.snapshot, self.clock_ms, self.metrics = store, snapshot, clock_ms, metrics
        self.auth = auth or Authenticator()
        self.max_inflight = max_inflight
        self.inflight = 0  # pushes being handled; only the server's event loop touches it

    async def Push(self, request, context):
        if self.inflight >= self.max_inflight:
            self.metrics.push_shed.inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"aggregator overloaded: {self.inflight} pushes already in flight "
                f"(--max-inflight-pushes {self.max_inflight}); push again at the next interval",
            )
        self.inflight += 1
        try:
            return await self._push(request, context)
        finally:
            self.inflight -= 1

    async def _push(self, request, context):
        received = self.clock_ms()
        if isinstance(request, Undecodable):
            self.metrics.push_invalid.inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"telemetry rejected: {request.message}")
        if self.auth.enabled:
            try:  # before validation: who may not push learns nothing about what would be accepted
                authorize_push(await principal(self.auth, context), request.node_name)
            except AuthError as e:
                _count_refusal(self.metrics, "push", e)
                await abort_grpc(context, e)
        try:
            rec = validate_telemetry(request, received)
        except InvalidInput as e:
            self.metrics.push_invalid.inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"telemetry rejected: {e}")
        try:
            await self.store.write_async(rec)
        except StoreUnavailable as e:
            self.metrics.push_unavailable.inc()
            self.metrics.redis_up.set(0)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"telemetry not stored, retry: {e}")
        self.metrics.redis_up.set(1)
        self.snapshot.upsert(rec)
        self.metrics.push_accepted.inc()
        return telemetry_pb2.PushAck(received_at_unix_ms=received, clock_offset_ms=received - rec.collected_at_ms)


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, scorer: BatchScorer, max_candidates: int, metrics, auth: Authenticator | None = None):
        self.scorer, self.max_candidates, self.metrics = scorer, max_candidates, metrics
        self.auth = auth or Authenticator()

    async def BatchScore(self, request, context):
        if self.auth.enabled:
            try:
                authorize_score(await principal(self.auth, context))
            except AuthError as e:
                _count_refusal(self.metrics, "batchscore", e)
                await abort_grpc(context, e)
        with self.metrics.duration.time():
            if isinstance(request, Undecodable):
                self.metrics.req_invalid.inc()
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"BatchScore rejected: {request.message}")
            try:
                pod, names = validate_batch(request, self.max_candidates)
            except InvalidInput as e:
                self.metrics.req_invalid.inc()
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"BatchScore rejected: {e}")
            result = self.scorer.score(pod, names)
            self.metrics.req_ok.inc()
            return to_proto(result)


async def principal(auth: Authenticator, context):
    """The caller; verified off the event loop when that may call the API server (TokenReview)."""
    if auth.may_block:
        return await asyncio.to_thread(grpc_principal, auth, context)
    return grpc_principal(auth, context)


#: A refusal with the same message is logged at most this often (a misconfigured agent retries every few seconds).
REFUSAL_LOG_INTERVAL_S = 60.0
_refusals_logged: dict[str, float] = {}


def _count_refusal(metrics, endpoint: str, err: AuthError) -> None:
    counter = getattr(metrics, "auth_refusals", None)
    if counter is not None:
        counter.labels(endpoint, err.grpc_code.lower()).inc()
    key, now = f"{endpoint}: {err}", time.monotonic()
    if now - _refusals_logged.get(key, -REFUSAL_LOG_INTERVAL_S) >= REFUSAL_LOG_INTERVAL_S:
        if len(_refusals_logged) > 1000:
            _refusals_logged.clear()
        _refusals_logged[key] = now
        log.warning("%s refused (%s): %s", endpoint, err.grpc_code, err)


def to_proto(result) -> scoring_pb2.BatchScoreResponse:
    resp = scoring_pb2.BatchScoreResponse(
        model_version=result.model_version, elapsed_us=result.elapsed_us, profile=int(result.profile)
    )
    add = resp.scores.add
    for name, score, conf, reason, status, slow, age in zip(
        result.names,
        result.scores.tolist(),
        result.confidence.tolist(),
        result.reasons,
        result.status.tolist(),
        result.slowdown.tolist(),
        result.age_ms.tolist(),
    ):
        add(
            node_name=name,
            score=score,
            confidence=conf,
            reason=reason,
            status=status,
            predicted_slowdown=slow if not math.isnan(slow) else math.nan,
            telemetry_age_ms=age,
        )
    return resp


class Undecodable:
    """What a request that is not valid protobuf decodes to: its handler refuses it with
    INVALID_ARGUMENT naming the message type (grpc.aio itself would answer UNKNOWN)."""

    def __init__(self, type_name: str, error: Exception):
        self.message = f"the request is not a valid {type_name} protobuf: {error}"


def _decoder(cls):
    def decode(raw: bytes):
        try:
            return cls.FromString(raw)
        except DecodeError as e:
            return Undecodable(cls.DESCRIPTOR.full_name, e)

    return decode


def _service(name: str, module, methods: dict) -> grpc.GenericRpcHandler:
    """A service's unary methods (name -> (handler, request class, response class)), decoded
    by ``_decoder`` so that undecodable bytes reach the handler as ``Undecodable``."""
    full_name = module.DESCRIPTOR.services_by_name[name].full_name
    return grpc.method_handlers_generic_handler(
        full_name,
        {
            method: grpc.unary_unary_rpc_method_handler(
                handler, request_deserializer=_decoder(req), response_serializer=resp.SerializeToString
            )
            for method, (handler, req, resp) in methods.items()
        },
    )


class GrpcServer:
    """Both services, grpc.health.v1 and reflection on a ``grpc.aio`` server, over TLS when
    ``tls`` is given, on an event loop in a thread of its own."""

    def __init__(
        self, listen: str, telemetry: TelemetryServicer, scoring: ScoringServicer, tls: ServerTLS | None = None
    ):
        self.listen, self.telemetry, self.scoring, self.tls = listen, telemetry, scoring, tls
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="grpc", daemon=True)

    def start(self) -> int:
        """Binds and serves; returns the port. Raises OSError when the address cannot be bound."""
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self.port

    def stop(self, grace_s: float) -> None:
        """Health turns NOT_SERVING, calls in progress get ``grace_s`` to finish, then the loop ends."""
        if self._loop is None or not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(grace_s), self._loop).result(grace_s + 5)
        self._thread.join(5)

    async def _shutdown(self, grace_s: float) -> None:
        try:
            await self._health.enter_graceful_shutdown()
            await self._server.stop(grace_s)
        finally:
            self._stopped.set()  # only now may _serve return (asyncio.run cancels what is left)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            self._server = server = self._build()
            for svc in ("",) + SERVICES:  # "" = the server as a whole
                await self._health.set(svc, health_pb2.HealthCheckResponse.SERVING)
            await server.start()
        except BaseException as e:  # reported by start(), in the caller's thread
            self._error = e
            self._started.set()
            return
        self._started.set()
        await self._stopped.wait()

    def _build(self) -> grpc.aio.Server:
        server = grpc.aio.server(
            maximum_concurrent_rpcs=self.telemetry.max_inflight + OTHER_CALLS_INFLIGHT,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # BDP probing pings to size windows for bulk transfers; small unary calls only
                # get the jitter.
                ("grpc.http2.bdp_probe", 0),
            ],
        )
        server.add_generic_rpc_handlers(
            (
                _service(
                    "TelemetryService",
                    telemetry_pb2,
                    {"Push": (self.telemetry.Push, telemetry_pb2.NodeTelemetry, telemetry_pb2.PushAck)},
                ),
                _service(
                    "ScoringService",
                    scoring_pb2,
                    {
                        "BatchScore": (
                            self.scoring.BatchScore,
                            scoring_pb2.BatchScoreRequest,
                            scoring_pb2.BatchScoreResponse,
                        )
                    },
                ),
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(SERVICES + (health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        try:
            port = (
                server.add_secure_port(self.listen, self.tls.grpc_credentials())
                if self.tls
                else server.add_insecure_port(self.listen)
            )
        except RuntimeError as e:  # grpc.aio raises where the thread-pool server returned 0
            raise OSError(f"--grpc-listen {self.listen}: cannot bind (address in use or not local): {e}") from e
        if port == 0:
            raise OSError(f"--grpc-listen {self.listen}: cannot bind (address in use or not local)")
        self.port = port
        return server
