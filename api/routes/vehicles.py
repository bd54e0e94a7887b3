"""Vehicles for dispatchers: current state, nearby search and position history."""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from api.auth import Staff
from api.errors import ApiError, responses
from api.repos import vehicles as repo
from api.tokens import paging_from_str, paging_to_str

router = APIRouter(prefix="/v1/vehicles", tags=["vehicles"])

VehicleId = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-:.]+$", examples=["VAN001"])
DAY_MS = 86_400_000
MAX_POSITION_SPAN_MS = 31 * DAY_MS
MAX_INDEX_PAGES_PER_REQUEST = 40


class Vehicle(BaseModel):
    vehicle_id: str = Field(examples=["VAN001"])
    lat: float | None = Field(None, examples=[52.52])
    lon: float | None = Field(None, examples=[13.405])
    speed_mps: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None
    source: str | None = Field(None, examples=["GPS"])
    event_time_ms: int | None = None
    last_event_time_ms: int | None = None
    status: str | None = Field(None, examples=["MOVING"])
    route_id: str | None = None
    fences: list[str] = Field(default_factory=list, examples=[["GF-DEPOT-1"]])
    updated_ms: int | None = None
    distance_m: float | None = Field(None, description="Only in near searches")


class VehicleList(BaseModel):
    items: list[Vehicle]
    next_page_token: str | None = None


class Position(BaseModel):
    event_time_ms: int
    event_id: str
    lat: float
    lon: float
    speed_mps: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None
    source: str | None = None


class Positions(BaseModel):
    vehicle_id: str
    positions: list[Position]
    next_page_token: str | None = None


def _vehicle(d: dict[str, Any]) -> Vehicle:
    return Vehicle(**{k: v for k, v in d.items() if k in Vehicle.model_fields})


def _parse_near(near: str) -> tuple[float, float]:
    try:
        lat_s, lon_s = near.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise ApiError(400, "INVALID_NEAR", "near must be 'lat,lon' in decimal degrees") from None
    # Redis GEO covers latitudes up to ±85.05112878 (Web Mercator).
    if not (-85.05112878 <= lat <= 85.05112878 and -180 <= lon <= 180):
        raise ApiError(400, "INVALID_NEAR", "near is outside -85.05..85.05 latitude / -180..180 longitude")
    return lat, lon


@router.get("", response_model=VehicleList, responses=responses(), summary="List vehicles, or those near a point")
async def list_vehicles(request: Request, principal: Staff,
                        near: str | None = Query(None, max_length=64, pattern=r"^-?[0-9.]+,-?[0-9.]+$",
                                                 examples=["52.52,13.405"]),
                        radius_m: float = Query(2000, gt=0, le=200_000),
                        limit: int = Query(100, ge=1, le=500),
                        page_token: str | None = Query(None, max_length=1000)) -> VehicleList:
    """With `near`, vehicles within `radius_m`, nearest first (Redis GEOSEARCH). Without,
    every vehicle in the GEO index by id, paginated."""
    redis = request.app.state.redis
    tokens = request.app.state.tokens
    try:
        if near is not None:
            lat, lon = _parse_near(near)
            hits = await redis.geosearch(repo.GEO_KEY, longitude=lon, latitude=lat, radius=radius_m, unit="m",
                                         sort="ASC", count=limit, withdist=True)
            ids = [h[0].decode() for h in hits]
            dist = {h[0].decode(): float(h[1]) for h in hits}
            found = await repo.vehicles(redis, ids)
            return VehicleList(items=[_vehicle({**found[v], "distance_m": dist[v]}) for v in ids if v in found])
        scope = ["vehicles", limit]
        cursor = tokens.decode(scope, page_token) or {"o": 0}
        offset = int(cursor["o"])
        # SORT ALPHA gives a stable order by id (GEO scores are positions, which change).
        members = await redis.sort(repo.GEO_KEY, start=offset, num=limit + 1, alpha=True)
        ids = [m.decode() for m in members]
        found = await repo.vehicles(redis, ids[:limit])
    except ApiError:
        raise
    except Exception as exc:
        raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
    nxt = tokens.encode(scope, {"o": offset + limit}) if len(ids) > limit else None
    return VehicleList(items=[_vehicle(found[v]) for v in ids[:limit] if v in found], next_page_token=nxt)


@router.get("/{vehicle_id}", response_model=Vehicle, responses=responses(404), summary="One vehicle's current state")
async def get_vehicle(request: Request, principal: Staff, vehicle_id: str = VehicleId) -> Vehicle:
    try:
        found = await repo.vehicles(request.app.state.redis, [vehicle_id])
    except Exception as exc:
        raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
    if vehicle_id not in found:
        raise ApiError(404, "VEHICLE_NOT_FOUND", f"no vehicle {vehicle_id}")
    return _vehicle(found[vehicle_id])


@router.get("/{vehicle_id}/positions", response_model=Positions, responses=responses(),
            summary="Position history, newest first")
async def positions(request: Request, principal: Staff, vehicle_id: str = VehicleId,
                    from_ms: int | None = Query(None, ge=0, le=10**14, description="Default: to_ms - 1 hour"),
                    to_ms: int | None = Query(None, ge=0, le=10**14, description="Default: now"),
                    limit: int = Query(500, ge=1, le=5000),
                    page_token: str | None = Query(None, max_length=2000)) -> Positions:
    """Reads one Cassandra partition per UTC day (vehicle_positions), newest day first."""
    app = request.app
    scope = ["positions", vehicle_id, from_ms, to_ms, limit]
    cursor = app.state.tokens.decode(scope, page_token)
    if cursor is not None:
        # The first page fixed the bounds, so "now" does not move under later pages.
        lo, hi = cursor["b"]
    else:
        hi = to_ms if to_ms is not None else int(time.time() * 1000)
        lo = from_ms if from_ms is not None else hi - 3_600_000
        cursor = {"d": hi // DAY_MS, "p": None}
    if lo > hi:
        raise ApiError(400, "INVALID_RANGE", "from_ms is after to_ms")
    if hi - lo > MAX_POSITION_SPAN_MS:
        raise ApiError(400, "RANGE_TOO_LONG", "a position range may span at most 31 days")
    day, paging = int(cursor["d"]), paging_from_str(cursor.get("p"))
    out: list[Position] = []
    reads = 0
    while day >= lo // DAY_MS and len(out) < limit and reads < MAX_INDEX_PAGES_PER_REQUEST:
        page = await app.state.cassandra.page(repo.POSITIONS_CQL, (vehicle_id, day, lo, hi),
                                              fetch_size=limit - len(out), paging_state=paging)
        reads += 1
        out += [Position(**r._asdict()) for r in page.rows]
        if page.paging_state is not None:
            paging = page.paging_state
        else:
            day, paging = day - 1, None
    more = day >= lo // DAY_MS
    nxt = app.state.tokens.encode(scope, {"d": day, "p": paging_to_str(paging), "b": [lo, hi]}) if more else None
    return Positions(vehicle_id=vehicle_id, positions=out, next_page_token=nxt)
