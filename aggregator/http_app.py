"""The aggregator's HTTP side: /metrics, /v1/nodes, /healthz, /readyz.

A thin adapter over the snapshot and the Prometheus registry; all reads, no Redis on the
request path. Read-only endpoints are open by design (they expose telemetry, not control).
"""

from __future__ import annotations

from typing import Callable

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aggregator.snapshot import Snapshot


def build_app(snapshot: Snapshot, registry, clock_ms: Callable[[], int], max_staleness_ms: int,
              ready: Callable[[], tuple[bool, str]], model_version: str) -> FastAPI:
    app = FastAPI(title="KubeAttention aggregator", docs_url=None, redoc_url=None)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/nodes")
    def nodes() -> dict:
        now = clock_ms()
        recs = sorted(snapshot.records(), key=lambda r: r.node_name)
        return {"now_ms": now, "max_staleness_ms": max_staleness_ms, "model_version": model_version,
                "nodes": [r.to_json(now, max_staleness_ms) for r in recs]}

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
