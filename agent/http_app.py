"""The agent's HTTP surface: /metrics, /v1/node, /healthz, /readyz.

A thin adapter: every answer is rendered from the store's latest vector and the agent's
registry; nothing here collects or blocks on I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from agent.clock import SYSTEM_CLOCK, Clock
from agent.exposition import AgentMetrics
from agent.latest_vector import LatestVector

#: /readyz turns 503 when the latest vector is older than this many intervals (collection stuck).
STALE_AFTER_INTERVALS = 5.0
#: ... but never sooner than this many seconds.
STALE_AFTER_MIN_S = 10.0


def build_app(
    store: LatestVector,
    metrics: AgentMetrics,
    interval_s: float,
    clock: Clock = SYSTEM_CLOCK,
    capabilities: dict | None = None,
) -> FastAPI:
    """``capabilities``: what this node can measure (agent.capabilities, probed once), shown on /v1/node."""
    app = FastAPI(title="KubeAttention node agent", docs_url=None, redoc_url=None, openapi_url=None)
    stale_after_s = max(STALE_AFTER_MIN_S, STALE_AFTER_INTERVALS * interval_s)

    def age_s(collected_at_ms: int) -> float:
        return max(clock.wall_ms() - collected_at_ms, 0) / 1000.0

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/node")
    def node() -> JSONResponse:
        vector, _ = store.latest()
        if vector is None:
            return JSONResponse({"error": "no vector collected yet"}, status_code=503)
        body = vector.to_json()
        body["collected_at"] = datetime.fromtimestamp(vector.collected_at_ms / 1000, UTC).isoformat()
        body["age_seconds"] = age_s(vector.collected_at_ms)
        body["mask"] = list(vector.available)
        body["available_count"] = vector.available_count
        body["missing_reasons"] = dict(vector.missing_reasons)
        if capabilities is not None:
            body["capabilities"] = capabilities
        return JSONResponse(body)

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/readyz")
    def readyz() -> PlainTextResponse:
        vector, _ = store.latest()
        if vector is None:
            return PlainTextResponse(
                f"not ready: no vector collected yet (the first one comes after one {interval_s:g} s interval)\n",
                status_code=503,
            )
        age = age_s(vector.collected_at_ms)
        if age > stale_after_s:
            return PlainTextResponse(
                f"not ready: latest vector is {age:.1f} s old (limit {stale_after_s:g} s); is collection stuck?\n",
                status_code=503,
            )
        return PlainTextResponse(
            f"ready: {vector.available_count}/{len(vector.values)} metrics measured, latest vector {age:.1f} s old\n"
        )

    return app
