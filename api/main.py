"""FleetFlow API: a thin read tier over Redis and Cassandra that writes only to Kafka."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from api import errors
from api.routes import health, shipments
from api.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI):
    s = get_settings()
    app.state.redis = Redis.from_url(s.redis_url)
    try:
        yield
    finally:
        await app.state.redis.aclose()


def create_app() -> FastAPI:
    app = FastAPI(title="FleetFlow API", version="0.1.0", lifespan=lifespan,
                  description="Shipment status, ETAs, vehicles and alerts from the FleetFlow pipeline.")
    errors.install(app)
    app.include_router(health.router)
    app.include_router(shipments.router)
    return app


app = create_app()
