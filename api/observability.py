"""Prometheus metrics and JSON access logs, as one plain ASGI middleware.

Labels use the route *template* (``/v1/track/{tracking_id}``), never the raw path, so
tracking ids neither leak into metrics nor explode their cardinality.
"""
from __future__ import annotations

import logging
import sys
import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from fleetflow.logs import JsonFormatter

REQUESTS = Counter("fleetflow_api_requests_total", "HTTP requests by route template, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("fleetflow_api_request_duration_seconds", "Request latency by route template and method",
                    ["route", "method"],
                    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
ERRORS = Counter("fleetflow_api_errors_total", "Responses with status >= 500 by route template", ["route"])
PUBLISHED = Counter("fleetflow_api_events_total", "Partner events by outcome", ["kind", "outcome"])

access_log = logging.getLogger("fleetflow.api.access")
# Access lines are buffered and flushed in batches (and at least every FLUSH_EVERY_S by
# the app): one write per request cost about a fifth of the track route's CPU.
BUFFER_RECORDS = 512
FLUSH_EVERY_S = 1.0


def configure_access_log() -> logging.Handler | None:
    """Install the buffered JSON handler once; returns the handler to flush periodically."""
    from logging.handlers import MemoryHandler
    if not access_log.handlers:
        out = logging.StreamHandler(sys.stdout)
        out.setFormatter(JsonFormatter())
        access_log.addHandler(MemoryHandler(BUFFER_RECORDS, flushLevel=logging.ERROR, target=out))
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
    app_log = logging.getLogger("fleetflow.api")
    if not app_log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(JsonFormatter())
        app_log.addHandler(h)
        app_log.setLevel(logging.INFO)
        app_log.propagate = False
    return access_log.handlers[0]


class ObservabilityMiddleware:
    def __init__(self, app, log_requests: bool = True):
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status_holder = [500]

        async def _send(message):
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or ("/board" if scope["path"].startswith("/board")
                                                        else "unmatched")
            status = status_holder[0]
            REQUESTS.labels(template, scope["method"], str(status)).inc()
            LATENCY.labels(template, scope["method"]).observe(elapsed)
            if status >= 500:
                ERRORS.labels(template).inc()
            if self.log_requests:
                state = scope.get("state") or {}
                access_log.info("request", extra={"fields": {
                    "method": scope["method"], "route": template, "status": status,
                    "duration_ms": round(elapsed * 1000, 3), "key_id": state.get("key_id"),
                    "client": (scope.get("client") or ("", 0))[0]}})


async def metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
