"""Dispatcher and partner reads of shipments: search, full state, audit and history.

Partner keys see only shipments one of whose legs their carrier handles; anything
else is a 404, as if it did not exist. Within such a shipment a partner sees the state,
the legs (carrier and status of each hop) and the status audit, but only its own
carrier's history rows (other carriers' raw codes, texts and facilities are theirs),
and never an id that names one of our vans: geofence-derived scans (``geo|<vehicle>|...``,
udfs/vehicle_state.py) have their event id blanked in the state, audit and history.
"""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from api.auth import Principal, StaffOrPartner
from api.errors import ApiError, responses
from api.repos import search
from api.repos import shipments as repo
from api.tokens import paging_from_str, paging_to_str
from fleetflow.apikeys import PARTNER

router = APIRouter(prefix="/v1/shipments", tags=["shipments"])

TrackingId = Path(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$",
                  description="Carrier or FleetFlow tracking id", examples=["TRK00000001"])
# At most this many index pages are read per request, so a sparse filter answers quickly
# with a shorter page (and a next_page_token) instead of scanning for long.
MAX_INDEX_PAGES_PER_REQUEST = 20
DEFAULT_WINDOW_MS = 7 * search.DAY_MS
MAX_WINDOW_MS = 92 * search.DAY_MS

EXAMPLE_STATE = {"tracking_id": "TRK00000001", "status": "IN_TRANSIT", "status_detail": "ARRIVED_AT_HUB",
                 "carrier": "FEDEX", "leg": 1, "version": 4, "last_event_time_ms": 1794990000000,
                 "hidden_from_customers": False}


class ShipmentSummary(BaseModel):
    tracking_id: str = Field(examples=["TRK00000001"])
    status: str | None = Field(None, examples=["OUT_FOR_DELIVERY"])
    status_detail: str | None = Field(None, examples=["OUT_FOR_DELIVERY"])
    carrier: str | None = Field(None, examples=["FEDEX"])
    status_since_ms: int | None = None
    last_event_time_ms: int | None = None
    order_id: str | None = None
    late_risk: str | None = Field(None, examples=["OPEN"])
    eta_ms: int | None = None
    promised_end_ms: int | None = None
    hidden_from_customers: bool | None = None


class SearchResult(BaseModel):
    items: list[ShipmentSummary]
    next_page_token: str | None = Field(None, description="More hits may follow; null at the end. A page can hold "
                                                          "fewer than `limit` items even when more follow.")


class ShipmentDetail(BaseModel):
    tracking_id: str
    state: dict[str, Any] = Field(description="Every field of the current state (docs/data-layout.md)",
                                  examples=[EXAMPLE_STATE])
    legs: list[dict[str, Any]] = Field(examples=[[{"leg": 1, "carrier": "FEDEX", "status": "IN_TRANSIT"}]])
    audit: list[dict[str, Any]] = Field(description="Newest audit records from shipment_audit")


class HistoryEvent(BaseModel):
    event_time_ms: int
    event_id: str | None = Field(description="null for partner keys when the event was derived from one of our "
                                             "vans entering a geofence (its id names the van)")
    status: str | None = None
    status_detail: str | None = None
    carrier: str | None = None
    raw_code: str | None = None
    raw_text: str | None = None
    facility_id: str | None = None
    leg: int | None = None
    source: str | None = None
    late: bool | None = None


class History(BaseModel):
    tracking_id: str
    events: list[HistoryEvent]
    next_page_token: str | None = None


def _visible(principal: Principal, state: dict[str, Any]) -> bool:
    return principal.role != PARTNER or principal.carrier in repo.carriers_of(state)


# Event ids of scans the vehicle job derives from fence entries: "geo|<vehicle_id>|<fence>|...".
GEOFENCE_EVENT_PREFIX = "geo|"


def _names_a_van(event_id: Any) -> bool:
    return isinstance(event_id, str) and event_id.startswith(GEOFENCE_EVENT_PREFIX)


def _partner_state(state: dict[str, Any]) -> dict[str, Any]:
    if _names_a_van(state.get("last_event_id")):
        return {**state, "last_event_id": None}
    return state


def _partner_audit(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("source") == "GEOFENCE" or _names_a_van(row.get("event_id")):
        return {**row, "event_id": None}
    return row


def _summary(tid: str, s: dict[str, Any]) -> ShipmentSummary:
    return ShipmentSummary(tracking_id=tid, **{k: s.get(k) for k in ShipmentSummary.model_fields if k != "tracking_id"})


def _plan(status, carrier, country, postcode, late_risk, order_from_ms, order_to_ms, from_ms, to_ms,
          bounds: list[int] | None) -> tuple[search.IndexQuery, int, int]:
    """The index read for the most selective filter the query names, and its time bounds
    (taken from the page token after the first page, so "now" does not move under it)."""
    now_ms = int(time.time() * 1000)
    order_range = order_from_ms is not None or order_to_ms is not None
    if bounds is not None:
        lo, hi = bounds
    elif order_range or postcode is not None:
        hi = order_to_ms if order_to_ms is not None else now_ms
        lo = order_from_ms if order_from_ms is not None else hi - DEFAULT_WINDOW_MS
    else:
        # Late risk is indexed by promise day, which for parcels at risk is often ahead.
        ahead_ms = DEFAULT_WINDOW_MS if late_risk and status is None else 0
        hi = to_ms if to_ms is not None else now_ms + ahead_ms
        lo = from_ms if from_ms is not None else hi - DEFAULT_WINDOW_MS - ahead_ms
    if lo > hi:
        raise ApiError(400, "INVALID_RANGE", "the range's start is after its end")
    if hi - lo > MAX_WINDOW_MS:
        raise ApiError(400, "RANGE_TOO_LONG", f"a range may span at most {MAX_WINDOW_MS // search.DAY_MS} days")
    if postcode is not None:
        return search.by_postcode(country, postcode, lo, hi), lo, hi
    if order_range:
        return search.by_order_day(lo, hi), lo, hi
    if status is not None:
        return search.by_status_day(status, lo, hi), lo, hi
    if late_risk:
        return search.by_late_risk_day(lo, hi), lo, hi
    if carrier is not None:
        return search.by_carrier_day(carrier, lo, hi), lo, hi
    raise ApiError(400, "FILTER_REQUIRED",
                   "give at least one of status, carrier, postcode, late_risk=true or an order date range")


def _matches(s: dict[str, Any], status, carrier, late_risk) -> bool:
    if status is not None and s.get("status") != status:
        return False
    if carrier is not None and carrier not in repo.carriers_of(s):
        return False
    if late_risk is True and s.get("late_risk") != "OPEN":
        return False
    if late_risk is False and s.get("late_risk") == "OPEN":
        return False
    return True




@router.get("", response_model=SearchResult, responses=responses(), summary="Search shipments (dispatchers, partners)")
async def search_shipments(
        request: Request, principal: StaffOrPartner,
        status: str | None = Query(None, min_length=1, max_length=40, pattern=r"^[A-Z0-9_]+$",
                                   description="Current status, e.g. IN_TRANSIT", examples=["IN_TRANSIT"]),
        carrier: str | None = Query(None, min_length=1, max_length=40, pattern=r"^[A-Z0-9_]+$",
                                    examples=["FEDEX"]),
        postcode: str | None = Query(None, min_length=1, max_length=16, pattern=r"^[A-Za-z0-9 \-]+$",
                                     description="Destination postcode (with `country`)", examples=["10115"]),
        country: str = Query("DE", pattern=r"^[A-Z]{2}$", description="ISO country of `postcode`"),
        late_risk: bool | None = Query(None, description="true: only shipments whose ETA misses the promise"),
        order_from_ms: int | None = Query(None, ge=0, le=10**14,
                                          description="Order placed at or after (default: 7 days before order_to_ms)"),
        order_to_ms: int | None = Query(None, ge=0, le=10**14, description="Order placed at or before (default now)"),
        from_ms: int | None = Query(None, ge=0, le=10**14,
                                    description="Without postcode/order range: status entered (status), last "
                                                "event (carrier) or promise end (late_risk) at or after; default "
                                                "7 days before to_ms"),
        to_ms: int | None = Query(None, ge=0, le=10**14,
                                  description="Window end; default now (late_risk alone: 7 days ahead)"),
        limit: int = Query(50, ge=1, le=200),
        page_token: str | None = Query(None, max_length=4000)) -> SearchResult:
    """Hits come from the index of the most selective filter: postcode (+ order range),
    order range, status (entered within the window), late risk, carrier (last event
    within the window); newest first. Every hit is checked against the current state,
    so all given filters hold for what is returned, and each shipment is listed once.

    Partner keys search their own carrier's shipments only: `carrier` defaults to the
    key's carrier, another carrier is 403 `CARRIER_NOT_ALLOWED`, and every hit is one
    of whose legs is the key's carrier."""
    app = request.app
    if principal.role == PARTNER:
        if carrier is not None and carrier != principal.carrier:
            raise ApiError(403, "CARRIER_NOT_ALLOWED", f"this key may only read {principal.carrier} shipments")
        carrier = principal.carrier
    scope = ["search", status, carrier, country, postcode, late_risk, order_from_ms, order_to_ms, from_ms, to_ms,
             limit]
    cursor = app.state.tokens.decode(scope, page_token) or {"i": 0, "p": None}
    q, lo, hi = _plan(status, carrier, country, postcode, late_risk, order_from_ms, order_to_ms, from_ms, to_ms,
                      cursor.get("b"))
    db = app.state.cassandra
    await db.session()
    if not db.has_table(q.table):
        raise ApiError(503, "SEARCH_INDEX_MISSING", f"search index {q.table} does not exist yet; run `fleetflow init` "
                                                    f"once its migration is there")
    parts = q.partitions
    items: list[ShipmentSummary] = []
    seen: set[str] = set()
    i, paging = int(cursor["i"]), paging_from_str(cursor.get("p"))
    reads = 0
    while i < len(parts) and len(items) < limit and reads < MAX_INDEX_PAGES_PER_REQUEST:
        values, day = parts[i]
        page = await db.page(q.cql, values, fetch_size=limit - len(items), paging_state=paging)
        reads += 1
        ids = [r.tracking_id for r in page.rows if r.tracking_id not in seen]
        try:
            states = await repo.current_states(app.state.redis, ids)
        except Exception as exc:
            raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
        for tid in ids:
            s = states.get(tid)
            if tid in seen or s is None:
                continue
            seen.add(tid)
            if _visible(principal, s) and q.owns(s, day) and _matches(s, status, carrier, late_risk):
                items.append(_summary(tid, s))
        if page.paging_state is not None:
            paging = page.paging_state
        else:
            i, paging = i + 1, None
    more = i < len(parts)
    nxt = app.state.tokens.encode(scope, {"i": i, "p": paging_to_str(paging), "b": [lo, hi]}) if more else None
    return SearchResult(items=items, next_page_token=nxt)


async def _state_for(request: Request, principal: Principal, tracking_id: str) -> dict[str, Any]:
    try:
        state = await repo.current_state(request.app.state.redis, tracking_id)
    except ApiError:
        raise
    except Exception as exc:
        raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
    if state is None or not _visible(principal, state):
        raise ApiError(404, "SHIPMENT_NOT_FOUND", f"no shipment with tracking id {tracking_id}")
    return state


@router.get("/{tracking_id}", response_model=ShipmentDetail, responses=responses(404),
            summary="Full shipment state with legs and audit (dispatchers, partners)")
async def get_shipment(request: Request, principal: StaffOrPartner, tracking_id: str = TrackingId,
                       audit_limit: int = Query(50, ge=0, le=500)) -> ShipmentDetail:
    """Every field of the current state, the legs and the newest audit records.

    Partner keys: only shipments one of whose legs is their carrier (404 otherwise, as if
    it did not exist); event ids derived from our vans' geofence entries (`geo|...`) are
    null in `state.last_event_id` and `audit`."""
    state = await _state_for(request, principal, tracking_id)
    audit: list[dict[str, Any]] = []
    if audit_limit:
        db = request.app.state.cassandra
        await db.session()
        if db.has_table("shipment_audit"):
            rows = await db.all(repo.AUDIT_CQL, (tracking_id,), limit=audit_limit)
            audit = [repo.row_dict(r) for r in rows[:audit_limit]]
            audit.sort(key=lambda a: a.get("version") or 0, reverse=True)
    if principal.role == PARTNER:
        state, audit = _partner_state(state), [_partner_audit(a) for a in audit]
    return ShipmentDetail(tracking_id=tracking_id, state={**state, "tracking_id": tracking_id},
                          legs=repo.legs_of(state), audit=audit)


@router.get("/{tracking_id}/history", response_model=History, responses=responses(404),
            summary="Raw status history, newest first (dispatchers, partners)")
async def get_history(request: Request, principal: StaffOrPartner, tracking_id: str = TrackingId,
                      limit: int = Query(50, ge=1, le=500),
                      page_token: str | None = Query(None, max_length=2000)) -> History:
    """Raw `shipment_history` rows, newest first.

    Partner keys: only shipments one of whose legs is their carrier (404 otherwise), and
    only their own carrier's rows, so a page may hold fewer than `limit` rows while
    `next_page_token` is set."""
    await _state_for(request, principal, tracking_id)
    app = request.app
    scope = ["history", tracking_id, limit]
    cursor = app.state.tokens.decode(scope, page_token) or {}
    page = await app.state.cassandra.page(repo.HISTORY_CQL, (tracking_id,), fetch_size=limit,
                                          paging_state=paging_from_str(cursor.get("p")))
    rows = [r._asdict() for r in page.rows]
    if principal.role == PARTNER:
        # Only the partner's own carrier's rows (a page may then hold fewer than `limit`).
        rows = [_partner_audit(r) for r in rows if r.get("carrier") == principal.carrier]
    events = [HistoryEvent(**r) for r in rows]
    nxt = app.state.tokens.encode(scope, {"p": paging_to_str(page.paging_state)}) if page.paging_state else None
    return History(tracking_id=tracking_id, events=events, next_page_token=nxt)


