"""gRPC adapters: TelemetryService.Push and ScoringService.BatchScore, plus health and reflection.

Thin: decode -> validate -> call the store / BatchScorer -> encode. Every bad input is
INVALID_ARGUMENT with a message naming the field; Redis trouble on Push is UNAVAILABLE so
agents retry; nothing here raises past the handler.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent import futures
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from aggregator.auth import Authenticator, AuthError, abort_grpc, authorize_push, authorize_score, grpc_principal
from aggregator.batch import BatchScorer
from aggregator.errors import InvalidInput, StoreUnavailable
from aggregator.snapshot import Snapshot
from aggregator.store import RedisStore
from aggregator.tls import ServerTLS
from aggregator.validate import validate_batch, validate_telemetry
from kubeattention.v1 import scoring_pb2, scoring_pb2_grpc, telemetry_pb2, telemetry_pb2_grpc

log = logging.getLogger(__name__)

#: Calls admitted at once (running or waiting for a handler thread), per handler thread. Past
#: that, gRPC answers RESOURCE_EXHAUSTED at once: an overloaded aggregator sheds pushes (the
#: agents retry) instead of queueing calls until their deadlines pass and then working on
#: calls nobody waits for any more, which starves BatchScore too.
QUEUED_RPCS_PER_WORKER = 4

#: Largest request accepted (bytes): 5 000 candidates of 253-character names fit with room.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(self, store: RedisStore, snapshot: Snapshot, clock_ms: Callable[[], int], metrics,
                 auth: Authenticator | None = None):
        self.store, self.snapshot, self.clock_ms, self.metrics = store, snapshot, clock_ms, metrics
        self.auth = auth or Authenticator()

    def Push(self, request, context):
        received = self.clock_ms()
        if self.auth.enabled:
            try:  # before validation: who may not push learns nothing about what would be accepted
                authorize_push(grpc_principal(self.auth, context), request.node_name)
            except AuthError as e:
                _count_refusal(self.metrics, "push", e)
                abort_grpc(context, e)
        try:
            rec = validate_telemetry(request, received)
        except InvalidInput as e:
            self.metrics.push_invalid.inc()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"telemetry rejected: {e}")
        try:
            self.store.write(rec)
        except StoreUnavailable as e:
            self.metrics.push_unavailable.inc()
            self.metrics.redis_up.set(0)
            context.abort(grpc.StatusCode.UNAVAILABLE, f"telemetry not stored, retry: {e}")
        self.metrics.redis_up.set(1)
        self.snapshot.upsert(rec)
        self.metrics.push_accepted.inc()
        return telemetry_pb2.PushAck(received_at_unix_ms=received,
                                     clock_offset_ms=received - rec.collected_at_ms)


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, scorer: BatchScorer, max_candidates: int, metrics, auth: Authenticator | None = None):
        self.scorer, self.max_candidates, self.metrics = scorer, max_candidates, metrics
        self.auth = auth or Authenticator()

    def BatchScore(self, request, context):
        if self.auth.enabled:
            try:
                authorize_score(grpc_principal(self.auth, context))
            except AuthError as e:
                _count_refusal(self.metrics, "batchscore", e)
                abort_grpc(context, e)
        with self.metrics.duration.time():
            try:
                pod, names = validate_batch(request, self.max_candidates)
            except InvalidInput as e:
                self.metrics.req_invalid.inc()
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"BatchScore rejected: {e}")
            result = self.scorer.score(pod, names)
            self.metrics.req_ok.inc()
            return to_proto(result)


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
    resp = scoring_pb2.BatchScoreResponse(model_version=result.model_version, elapsed_us=result.elapsed_us,
                                          profile=int(result.profile))
    add = resp.scores.add
    for name, score, conf, reason, status, slow, age in zip(
            result.names, result.scores.tolist(), result.confidence.tolist(), result.reasons,
            result.status.tolist(), result.slowdown.tolist(), result.age_ms.tolist()):
        add(node_name=name, score=score, confidence=conf, reason=reason, status=status,
            predicted_slowdown=slow if not math.isnan(slow) else math.nan, telemetry_age_ms=age)
    return resp


def build_server(listen: str, telemetry: TelemetryServicer, scoring: ScoringServicer, workers: int,
                 tls: ServerTLS | None = None):
    """A grpc.Server with both services, grpc.health.v1 and reflection, over TLS when ``tls``
    is given. Returns (server, port, health)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        maximum_concurrent_rpcs=workers * QUEUED_RPCS_PER_WORKER,
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.so_reuseport", 0),
                 # BDP probing pings to size windows for bulk transfers; small unary calls only
                 # get the jitter.
                 ("grpc.http2.bdp_probe", 0)],
    )
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(telemetry, server)
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(scoring, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = (
        telemetry_pb2.DESCRIPTOR.services_by_name["TelemetryService"].full_name,
        scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name,
    )
    for svc in ("",) + services:
        health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(services + (health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_secure_port(listen, tls.grpc_credentials()) if tls else server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"--grpc-listen {listen}: cannot bind (address in use or not local)")
    return server, port, health_servicer
