"""FleetFlow API: a thin read tier over Redis and Cassandra that writes only to Kafka."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis

from api import errors
from api.auth import KeyCache
from api.cassandra import CassandraDb
from api.kafka import Publisher
from api.observability import FLUSH_EVERY_S, ObservabilityMiddleware, configure_access_log, metrics
from api.repos.geofences import GeofenceStore
from api.routes import alerts, events, geofences, health, shipments, track, vehicles
from api.settings import ApiSettings, get_settings
from api.tokens import PageTokens

STATIC_DIR = Path(__file__).resolve().parent / "static"

DESCRIPTION = """Shipment status, ETAs, vehicles and alerts from the FleetFlow pipeline.

Authenticate with `Authorization: Bearer <key>` (or `X-API-Key`). Keys are made with
`fleetflow keys create --role customer|dispatcher|partner|admin`; see api/README.md for
which role may call which route. Every error has the shape
`{"error": {"code": "...", "message": "..."}}`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI):
    from fleetflow.carrier_mappings import load_all

    s: ApiSettings = app.state.settings
    flusher = None
    if s.json_access_log:
        handler = configure_access_log()

        async def flush_forever():
            while True:
                await asyncio.sleep(FLUSH_EVERY_S)
                handler.flush()

        flusher = asyncio.create_task(flush_forever())
    app.state.redis = Redis.from_url(s.redis_url)
    app.state.cassandra = CassandraDb(s)
    app.state.publisher = Publisher(s)
    app.state.geofences = GeofenceStore(s.kafka_bootstrap)
    app.state.known_carriers = frozenset(load_all())
    try:
        yield
    finally:
        if flusher is not None:
            flusher.cancel()
            handler.flush()
        await app.state.redis.aclose()
        app.state.cassandra.close()
        app.state.publisher.close()


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    s = settings or get_settings()
    app = FastAPI(title="FleetFlow API", version="0.2.0", lifespan=lifespan, description=DESCRIPTION)
    app.state.settings = s
    app.state.pepper = s.key_pepper.get_secret_value().encode("utf-8")
    app.state.key_cache = KeyCache(s.key_cache_ttl_s, s.key_negative_cache_ttl_s, s.key_cache_size)
    app.state.tokens = PageTokens(app.state.pepper)
    errors.install(app)
    for r in (health, track, shipments, vehicles, alerts, geofences, events):
        app.include_router(r.router)
    app.add_route("/metrics", metrics, include_in_schema=False)
    app.mount("/board/static", StaticFiles(directory=STATIC_DIR), name="board-static")

    @app.get("/board", include_in_schema=False)
    async def board():
        return RedirectResponse("/board/static/board.html")

    app.add_middleware(ObservabilityMiddleware, log_requests=s.json_access_log)
    return app


app = create_app()
