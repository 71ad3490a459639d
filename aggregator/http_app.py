"""The aggregator's HTTP side: /metrics, /v1/nodes, /healthz, /readyz.

A thin adapter over the snapshot and the Prometheus registry; all reads, no Redis on the
request path. Read-only endpoints are open by design (they expose telemetry, not control).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aggregator.errors import InvalidInput
from aggregator.snapshot import Snapshot

log = logging.getLogger(__name__)


async def _refusal(auth, request: Request, what: str, metrics) -> Response | None:
    """None when the caller may score; else the 401/403/503 answer (kube-scheduler's {"Error"} shape)."""
    from starlette.concurrency import run_in_threadpool

    from aggregator.security.auth import AuthError, authorize_score
    from aggregator.security.server_tls import scope_cert_uris

    def check() -> None:
        authorize_score(auth.principal(scope_cert_uris(request.scope), request.headers.get("authorization")), what)

    try:
        if auth.may_block:  # TokenReview may call the API server: keep it off the event loop
            await run_in_threadpool(check)
        else:
            check()
    except AuthError as e:
        if metrics is not None and getattr(metrics, "auth_refusals", None) is not None:
            metrics.auth_refusals.labels("extender", e.grpc_code.lower()).inc()
        headers = {"WWW-Authenticate": 'Bearer realm="kubeattention"'} if e.http_status == 401 else None
        return Response(
            json.dumps({"Error": f"{what} refused: {e}"}),
            status_code=e.http_status,
            media_type="application/json",
            headers=headers,
        )
    return None


def build_app(
    snapshot: Snapshot,
    registry,
    clock_ms: Callable[[], int],
    max_staleness_ms: int,
    ready: Callable[[], tuple[bool, str]],
    model_version: str | Callable[[], str],
    extender=None,
    metrics=None,
    auth=None,
    model_validated_on: Callable[[], str | None] | None = None,
) -> FastAPI:
    """``model_version`` may be a callable: the version changes when a model is hot-reloaded.
    ``auth`` (an aggregator.security.auth.Authenticator) guards the extender: a scheduler identity from a
    client certificate or a bearer token; the read-only endpoints stay open."""
    version = model_version if callable(model_version) else (lambda: model_version)
    app = FastAPI(title="KubeAttention aggregator", docs_url=None, redoc_url=None)

    if extender is not None:

        def verb(name: str, call):
            async def handler(request: Request) -> Response:
                t0 = time.perf_counter()
                if auth is not None and auth.enabled:
                    refused = await _refusal(auth, request, f"the extender's {name}", metrics)
                    if refused is not None:
                        return refused
                raw = await request.body()
                try:
                    body = json.loads(raw)
                    answer = call(body)
                    status, result = 200, "ok"
                except json.JSONDecodeError as e:
                    answer, status, result = {"Error": f"body: not JSON ({e.msg} at position {e.pos})"}, 400, "invalid"
                except UnicodeDecodeError as e:  # json.loads of bytes that are no Unicode at all
                    answer, status, result = (
                        {"Error": f"body: not UTF-8 JSON ({e.reason} at byte {e.start})"},
                        400,
                        "invalid",
                    )
                except InvalidInput as e:
                    answer, status, result = {"Error": f"ExtenderArgs rejected: {e}"}, 400, "invalid"
                except Exception as e:  # a bug must still answer kube-scheduler in its protocol
                    log.exception("extender %s failed", name)
                    answer, status, result = (
                        {"Error": f"KubeAttention extender failed: {type(e).__name__}: {e}"},
                        500,
                        "error",
                    )
                if metrics is not None:
                    metrics.extender_requests.labels(name, result).inc()
                    metrics.extender_duration.labels(name).observe(time.perf_counter() - t0)
                return Response(
                    json.dumps(answer, separators=(",", ":")), status_code=status, media_type="application/json"
                )

            handler.__name__ = f"extender_{name}"
            return handler

        app.post("/scheduler/prioritize")(verb("prioritize", extender.prioritize))
        app.post("/scheduler/filter")(verb("filter", extender.filter))

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/nodes")
    def nodes() -> dict:
        now = clock_ms()
        recs = sorted(snapshot.records(), key=lambda r: r.node_name)
        return {
            "now_ms": now,
            "max_staleness_ms": max_staleness_ms,
            "model_version": version(),
            # What the serving model was checked against (its metadata's validated_on.text).
            "model_validated_on": model_validated_on() if model_validated_on is not None else None,
            "nodes": [r.to_json(now, max_staleness_ms) for r in recs],
        }

    @app.get("/v1/nodes/{name}")
    def node(name: str) -> dict:
        rec = snapshot.get(name)
        if rec is None:
            raise HTTPException(404, f"node {name!r}: no telemetry (never reported, or expired)")
        return rec.to_json(clock_ms(), max_staleness_ms)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        ok, why = ready()
        return JSONResponse({"ready": ok, "reason": why}, status_code=200 if ok else 503)

    return app
