"""Geofences for dispatchers: create, list and delete through the compacted ff.geofences topic."""
from __future__ import annotations

import re
import time
import uuid
from typing import Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field, field_validator, model_validator

from api.auth import Staff
from api.errors import ApiError, responses
from fleetflow import contracts, geofences, topics
from udfs.geofence import GeofenceError

router = APIRouter(prefix="/v1/geofences", tags=["geofences"])

GeofenceId = Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-:.]+$", examples=["GF-DEPOT-BER1"])
_ID = re.compile(r"^[A-Za-z0-9_\-:.]{1,100}$")
# A fence bigger than a city is a mistake (a swapped lat/lon), not a delivery area.
MAX_RADIUS_M = 50_000.0


class Circle(BaseModel):
    lat: float = Field(ge=-90, le=90, examples=[52.52])
    lon: float = Field(ge=-180, le=180, examples=[13.405])
    radius_m: float = Field(gt=0, le=MAX_RADIUS_M, examples=[150])


class GeofenceIn(BaseModel):
    geofence_id: str | None = Field(None, description="Default: a new id. An existing id replaces that fence.",
                                    examples=["GF-DEPOT-BER1"])
    name: str = Field("", max_length=200, examples=["Berlin Nord depot"])
    kind: Literal["DEPOT", "HUB", "CUSTOMER_STOP", "RESTRICTED"]
    polygon_wkt: str | None = Field(None, max_length=200_000,
                                    examples=["POLYGON((13.40 52.52, 13.41 52.52, 13.41 52.53, 13.40 52.52))"])
    circle: Circle | None = None
    dwell_ms: int = Field(120_000, ge=0, le=24 * 3_600_000)
    min_pings: int = Field(2, ge=1, le=100)
    exit_buffer_m: float = Field(30.0, ge=0, le=5_000)
    facility_id: str | None = Field(None, max_length=100)

    @field_validator("geofence_id")
    @classmethod
    def _id(cls, v):
        if v is not None and not _ID.match(v):
            raise ValueError("geofence_id must be 1-100 of A-Z a-z 0-9 _ - : .")
        return v

    @model_validator(mode="after")
    def _one_shape(self):
        if (self.polygon_wkt is None) == (self.circle is None):
            raise ValueError("give exactly one of polygon_wkt and circle")
        return self

    model_config = {"json_schema_extra": {"examples": [
        {"name": "Berlin Nord depot", "kind": "DEPOT", "circle": {"lat": 52.55, "lon": 13.36, "radius_m": 200}}]}}


class Geofence(BaseModel):
    """As stored on the topic (other writers' records are shown as they are, unvalidated)."""
    geofence_id: str = Field(examples=["GF-DEPOT-BER1"])
    name: str = ""
    kind: str = Field(examples=["DEPOT"])
    polygon_wkt: str | None = None
    circle: dict[str, float] | None = Field(None, examples=[{"lat": 52.55, "lon": 13.36, "radius_m": 200.0}])
    dwell_ms: int
    min_pings: int
    exit_buffer_m: float
    facility_id: str | None = None
    deleted: bool = False
    updated_time_ms: int


class GeofenceList(BaseModel):
    items: list[Geofence]


def _out(rec: dict) -> Geofence:
    return Geofence(**{k: rec.get(k) for k in Geofence.model_fields})


@router.get("", response_model=GeofenceList, responses=responses(), summary="Active geofences")
async def list_geofences(request: Request, principal: Staff) -> GeofenceList:
    try:
        active = await request.app.state.geofences.active()
    except Exception as exc:
        raise ApiError(503, "KAFKA_UNAVAILABLE", f"cannot read {topics.GEOFENCES.name}: {exc}") from None
    return GeofenceList(items=[_out(r) for r in active])


@router.post("", status_code=201, response_model=Geofence, responses=responses(), summary="Create or replace")
async def create_geofence(request: Request, principal: Staff, body: GeofenceIn) -> Geofence:
    """Validated by the same rules the vehicle job applies (fleetflow.geofences.build_record)."""
    circle = (body.circle.lat, body.circle.lon, body.circle.radius_m) if body.circle else None
    try:
        rec = geofences.build_record(body.geofence_id or f"GF-{uuid.uuid4().hex[:12]}", body.kind,
                                     wkt=body.polygon_wkt, circle=circle, name=body.name, dwell_ms=body.dwell_ms,
                                     min_pings=body.min_pings, exit_buffer_m=body.exit_buffer_m,
                                     facility_id=body.facility_id)
    except GeofenceError as exc:
        raise ApiError(422, "INVALID_GEOFENCE", str(exc)) from None
    await _publish(request, rec)
    return _out(rec)


@router.delete("/{geofence_id}", status_code=202, response_model=Geofence, responses=responses(404),
               summary="Retire a geofence")
async def delete_geofence(request: Request, principal: Staff, geofence_id: str = GeofenceId) -> Geofence:
    try:
        latest = await request.app.state.geofences.latest()
    except Exception as exc:
        raise ApiError(503, "KAFKA_UNAVAILABLE", f"cannot read {topics.GEOFENCES.name}: {exc}") from None
    current = latest.get(geofence_id)
    if current is None or current.get("deleted"):
        raise ApiError(404, "GEOFENCE_NOT_FOUND", f"no active geofence {geofence_id}")
    rec = geofences.retired(current, max(int(time.time() * 1000), current["updated_time_ms"] + 1))
    await _publish(request, rec)
    return _out(rec)


async def _publish(request: Request, rec: dict) -> None:
    value = contracts.encode("geofences", rec)
    await request.app.state.publisher.publish(topics.GEOFENCES.name, [(rec["geofence_id"].encode(), value)])
    request.app.state.geofences.remember(rec)
