"""``kubeattention aggregator``: wires store, snapshot, refresher, model, gRPC and HTTP together."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import threading
import time

import uvicorn

from aggregator import config as cfgmod
from aggregator.batch import BatchScorer
from aggregator.errors import ConfigError, StoreUnavailable
from aggregator.grpc_server import GrpcServer, ScoringServicer, TelemetryServicer
from aggregator.http_app import build_app
from aggregator.metrics import AggregatorMetrics, SnapshotCollector
from aggregator.model_reload import start_model_source
from aggregator.redis_access import RedisAccessError, check_redis_access
from aggregator.refresher import Refresher
from aggregator.security import options as security
from aggregator.snapshot import Snapshot
from aggregator.store import RedisStore
from inference.model import validated_on_text
from scheduling.decisions import DecisionLog, DecisionRecorder
from scheduling.extender import Extender
from wire.address import parse_listen

log = logging.getLogger("kubeattention.aggregator")

SHUTDOWN_GRACE_S = 3.0


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def configure_parser(p: argparse.ArgumentParser) -> None:
    cfgmod.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = cfgmod.from_args(args)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    from inference.model import InterferenceModel, ModelError

    try:
        model = InterferenceModel.load(cfg.model_path)
    except (ModelError, OSError) as e:
        log.error("cannot load the scoring model: %s", e)
        return 2
    return serve(cfg, model)


ANNOTATION_PREFIX = "kubeattention.io/"


def pod_annotator(cfg: cfgmod.AggregatorConfig):
    """Shadow mode's optional pod annotations, written through the Kubernetes API after a decision is recorded."""
    from kubernetes import client

    from kubeapi.api_client import api_client

    api = client.CoreV1Api(api_client(cfg.kubeconfig))

    def annotate(d) -> None:
        if not d.pod_name or not d.recommended:
            return
        i = d.candidates.index(d.recommended)
        api.patch_namespaced_pod(
            d.pod_name,
            d.pod_namespace,
            {
                "metadata": {
                    "annotations": {
                        f"{ANNOTATION_PREFIX}recommended-node": d.recommended,
                        f"{ANNOTATION_PREFIX}score": f"{d.scores[i]:.1f}",
                        f"{ANNOTATION_PREFIX}reason": d.recommended_reason[:1000],
                    }
                }
            },
        )

    return annotate


def serve(cfg: cfgmod.AggregatorConfig, model) -> int:
    clock = wall_clock_ms
    metrics = AggregatorMetrics()
    try:
        store = RedisStore(cfg.redis_url, cfg.key_prefix, cfg.node_ttl_s, cfg.history_maxlen)
    except StoreUnavailable as e:  # only a Redis Cluster is contacted here: its client reads the slot map
        log.error("cannot start: %s", e)
        return 2
    try:  # a wrong password or a too-narrow ACL is a configuration error: say so now, not per push
        check_redis_access(store.client, cfg.key_prefix)
    except RedisAccessError as e:
        log.error("cannot start: %s", e)
        store.close()
        return 2
    for warning in security.warnings(cfg):
        log.warning("%s", warning)
    try:
        tls, auth = security.server_tls(cfg), security.authenticator(cfg)
    except security.SecuritySetupError as e:
        log.error("cannot start: %s", e)
        store.close()
        return 2
    snapshot = Snapshot()
    metrics.registry.register(SnapshotCollector(snapshot, clock, cfg.max_staleness_ms))
    refresher = Refresher(
        store,
        snapshot,
        interval_s=cfg.resync_interval_s,
        max_staleness_ms=cfg.max_staleness_ms,
        clock_ms=clock,
        metrics=metrics,
    )
    scorer = BatchScorer(
        snapshot, model, max_staleness_ms=cfg.max_staleness_ms, budget_ms=cfg.budget_ms, clock_ms=clock, metrics=metrics
    )
    # --model-source redis: the model published in ka:model:{active} wins over the file, and
    # every later publish is swapped in without a restart (aggregator.model_reload).
    model_reloader = start_model_source(
        cfg.model_source,
        model,
        store,
        cfg.key_prefix,
        cfg.model_check_interval_s,
        metrics,
        install=lambda serving: setattr(scorer, "model", serving.model),
    )
    # before the port opens: a SIGTERM from then on is a graceful stop
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    try:
        server = GrpcServer(
            cfg.grpc_listen,
            TelemetryServicer(store, snapshot, clock, metrics, auth, cfg.max_inflight_pushes),
            ScoringServicer(scorer, cfg.max_candidates, metrics, auth),
            tls,
        )
        grpc_port = server.start()
    except (OSError, RuntimeError) as e:
        log.error("cannot start gRPC: %s", e)
        return 2

    def ready() -> tuple[bool, str]:
        if not refresher.synced.is_set():
            return False, f"waiting for the first successful read of Redis at {store.where}"
        return True, f"model {scorer.model.version}, {len(snapshot)} nodes in snapshot"

    decisions = DecisionRecorder(
        DecisionLog(store.client, cfg.key_prefix),
        on_written=pod_annotator(cfg) if cfg.annotate_pods else None,
        dropped_counter=metrics.decisions_dropped,
    )
    from kubeapi.pods import pod_context

    extender = Extender(
        scorer, pod_context, shadow=cfg.shadow, max_candidates=cfg.max_candidates, record=decisions, clock_ms=clock
    )
    host, port = parse_listen(cfg.http_listen, "--http-listen")
    app = build_app(
        snapshot,
        metrics.registry,
        clock,
        cfg.max_staleness_ms,
        ready,
        lambda: scorer.model.version,
        extender=extender,
        metrics=metrics,
        auth=auth,
        model_validated_on=lambda: validated_on_text(scorer.model.metadata),
    )
    http = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            **(tls.uvicorn_kwargs() if tls else {}),
        )
    )
    http.install_signal_handlers = lambda: None  # we own SIGTERM/SIGINT below

    # Everything built so far lives as long as the process: keep it out of the cyclic
    # garbage collector's sweeps, which otherwise stall BatchScore for milliseconds.
    gc.collect()
    gc.freeze()
    refresher.start()
    decisions.start()
    if model_reloader is not None:
        model_reloader.start()
    http_thread = threading.Thread(target=http.run, name="http", daemon=True)
    http_thread.start()
    log.info(
        "aggregator up: gRPC %s (port %d), HTTP %s (extender %s at /scheduler/), Redis %s, model %s, "
        "staleness limit %d ms, budget %g ms",
        cfg.grpc_listen,
        grpc_port,
        cfg.http_listen,
        "in SHADOW mode" if cfg.shadow else "active",
        store.where,
        scorer.model.version,
        cfg.max_staleness_ms,
        cfg.budget_ms,
    )
    log.info("transport security: %s", security.describe(cfg))
    code = 0
    while not stop.is_set():
        if not http_thread.is_alive():
            log.error("HTTP server on %s stopped (port in use?); shutting down", cfg.http_listen)
            code = 1
            break
        stop.wait(0.5)
    log.info("shutting down: draining gRPC for up to %.0f s", SHUTDOWN_GRACE_S)
    server.stop(SHUTDOWN_GRACE_S)
    http.should_exit = True
    http_thread.join(timeout=SHUTDOWN_GRACE_S)
    refresher.stop()
    decisions.stop()
    if model_reloader is not None:
        model_reloader.stop()
    store.close()
    log.info("aggregator stopped")
    return code
