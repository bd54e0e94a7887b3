from __future__ import annotations

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.deps import RedisDep
from api.errors import ApiError
from api.repos import shipments as repo

router = APIRouter(prefix="/v1/shipments", tags=["shipments"])

TrackingId = Path(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$",
                  description="Carrier or FleetFlow tracking id", examples=["TRK00000001"])


class ShipmentStatus(BaseModel):
    tracking_id: str = Field(examples=["TRK00000001"])
    status: str = Field(examples=["OUT_FOR_DELIVERY"])
    status_detail: str = Field("", examples=["OUT_FOR_DELIVERY"])
    carrier: str = Field(examples=["FEDEX"])
    last_event_id: str
    last_event_time_ms: int
    updated_ms: int | None = None


@router.get("/{tracking_id}", response_model=ShipmentStatus,
            responses={404: {"description": "No shipment with this tracking id"}})
async def get_shipment(redis: RedisDep, tracking_id: str = TrackingId) -> ShipmentStatus:
    state = await repo.current_state(redis, tracking_id)
    if state is None:
        raise ApiError(404, "SHIPMENT_NOT_FOUND", f"no shipment with tracking id {tracking_id}")
    return ShipmentStatus(**{k: state.get(k) for k in ShipmentStatus.model_fields if k in state})
