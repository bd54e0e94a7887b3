"""Customer tracking: what a tracking id may reveal, and nothing more.

No address, no postcode, no facility or stop id, no raw carrier text (it can carry a
signer's name), no vehicle. The last scan position is replaced by the centre of its
H3 cell (resolution 7 by default, ~1.4 km edge). Shipments hidden from customers
(soft-deleted) are a 404, exactly like unknown ids, so their existence is not revealed.
"""
from __future__ import annotations

from functools import lru_cache

import h3
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, Field

from api.auth import Customer
from api.errors import ApiError, responses
from api.repos import shipments as repo
from api.tokens import paging_from_str, paging_to_str

router = APIRouter(prefix="/v1/track", tags=["track"])

TrackingId = Path(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$",
                  description="Carrier or FleetFlow tracking id", examples=["TRK00000001"])


class EtaWindow(BaseModel):
    eta_ms: int | None = Field(None, examples=[1795000000000])
    earliest_ms: int | None = Field(None, examples=[1794998200000])
    latest_ms: int | None = Field(None, examples=[1795003600000])
    confidence: float | None = Field(None, examples=[0.8])
    as_of_ms: int | None = Field(None, examples=[1794990000000])


class PromiseWindow(BaseModel):
    start_ms: int | None = Field(None, examples=[1794988800000])
    end_ms: int | None = Field(None, examples=[1795017600000])


class ApproxLocation(BaseModel):
    lat: float = Field(examples=[52.5257])
    lon: float = Field(examples=[13.4091])
    h3_cell: str = Field(examples=["871f1d489ffffff"])
    precision_m: int = Field(description="Edge length of the cell: the position is only this precise",
                             examples=[1406])


class Tracking(BaseModel):
    tracking_id: str = Field(examples=["TRK00000001"])
    status: str | None = Field(examples=["OUT_FOR_DELIVERY"])
    status_detail: str | None = Field(None, examples=["OUT_FOR_DELIVERY"])
    status_since_ms: int | None = Field(None, examples=[1794990000000])
    last_event_time_ms: int | None = Field(None, examples=[1794990000000])
    carrier: str | None = Field(None, examples=["FEDEX"])
    delivered_or_closed: bool = Field(False, description="No further updates are expected")
    eta: EtaWindow | None = None
    promised: PromiseWindow | None = None
    late_risk: bool | None = Field(None, description="True while the ETA says the promise will be missed")
    approx_location: ApproxLocation | None = None


class TrackEvent(BaseModel):
    event_time_ms: int = Field(examples=[1794990000000])
    status: str | None = Field(examples=["IN_TRANSIT"])
    status_detail: str | None = Field(None, examples=["ARRIVED_AT_HUB"])
    carrier: str | None = Field(None, examples=["FEDEX"])


class TrackHistory(BaseModel):
    tracking_id: str
    events: list[TrackEvent]
    next_page_token: str | None = Field(None, description="Pass as page_token for older events; null at the end")


@lru_cache(maxsize=65536)
def _coarse(lat: float, lon: float, res: int) -> dict:
    cell = h3.latlng_to_cell(lat, lon, res)
    clat, clon = h3.cell_to_latlng(cell)
    return {"lat": round(clat, 5), "lon": round(clon, 5), "h3_cell": cell,
            "precision_m": int(h3.average_hexagon_edge_length(res, "m"))}


def customer_view(tracking_id: str, s: dict, res: int) -> dict:
    eta = None
    if s.get("eta_ms") is not None or s.get("eta_earliest_ms") is not None:
        eta = {"eta_ms": s.get("eta_ms"), "earliest_ms": s.get("eta_earliest_ms"),
               "latest_ms": s.get("eta_latest_ms"), "confidence": s.get("eta_confidence"),
               "as_of_ms": s.get("eta_as_of_ms")}
    promised = None
    if s.get("promised_start_ms") is not None or s.get("promised_end_ms") is not None:
        promised = {"start_ms": s.get("promised_start_ms"), "end_ms": s.get("promised_end_ms")}
    lat, lon = s.get("last_lat"), s.get("last_lon")
    location = None
    if isinstance(lat, float) and isinstance(lon, float) and -90 <= lat <= 90 and -180 <= lon <= 180:
        location = _coarse(lat, lon, res)
    late = s.get("late_risk")
    return {"tracking_id": tracking_id, "status": s.get("status"), "status_detail": s.get("status_detail"),
            "status_since_ms": s.get("status_since_ms"), "last_event_time_ms": s.get("last_event_time_ms"),
            "carrier": s.get("carrier"), "delivered_or_closed": bool(s.get("terminal")), "eta": eta,
            "promised": promised, "late_risk": None if late is None else late == "OPEN",
            "approx_location": location}


def _not_found(tracking_id: str) -> ApiError:
    return ApiError(404, "SHIPMENT_NOT_FOUND", f"no shipment with tracking id {tracking_id}")


@router.get("/{tracking_id}", response_model=Tracking, responses=responses(404),
            summary="Track a shipment (customers)")
async def track(request: Request, principal: Customer, tracking_id: str = TrackingId):
    """Status, ETA window and an approximate last position. One Redis round trip:
    the rate-limit counter and the shipment hash travel in the same pipeline."""
    app = request.app
    pipe = app.state.redis.pipeline(transaction=False)
    quota = request.state.quota
    quota.queue(pipe)
    pipe.hgetall(repo.SHIPMENT_KEY.format(tracking_id))
    try:
        count, _, raw = await pipe.execute()
    except Exception as exc:
        raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
    quota.check(count)
    state = repo.parse_hash(raw)
    if state is None or state.get("hidden_from_customers"):
        raise _not_found(tracking_id)
    return ORJSONResponse(customer_view(tracking_id, state, app.state.settings.track_h3_resolution))


@router.get("/{tracking_id}/history", response_model=TrackHistory, responses=responses(404),
            summary="Status history, newest first (customers)")
async def track_history(request: Request, principal: Customer, tracking_id: str = TrackingId,
                        limit: int = Query(20, ge=1, le=100),
                        page_token: str | None = Query(None, max_length=2000)) -> TrackHistory:
    app = request.app
    pipe = app.state.redis.pipeline(transaction=False)
    request.state.quota.queue(pipe)
    pipe.hmget(repo.SHIPMENT_KEY.format(tracking_id), ["status", "hidden_from_customers"])
    try:
        count, _, (status, hidden) = await pipe.execute()
    except Exception as exc:
        raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
    request.state.quota.check(count)
    if status is None or (hidden or b"").decode().lower() in ("1", "true"):
        raise _not_found(tracking_id)
    scope = ["track-history", tracking_id, limit]
    cursor = app.state.tokens.decode(scope, page_token) or {}
    page = await app.state.cassandra.page(repo.HISTORY_CQL, (tracking_id,), fetch_size=limit,
                                          paging_state=paging_from_str(cursor.get("p")))
    events = [TrackEvent(event_time_ms=r.event_time_ms, status=r.status, status_detail=r.status_detail,
                         carrier=r.carrier) for r in page.rows]
    nxt = app.state.tokens.encode(scope, {"p": paging_to_str(page.paging_state)}) if page.paging_state else None
    return TrackHistory(tracking_id=tracking_id, events=events, next_page_token=nxt)
