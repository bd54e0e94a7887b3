"""Alerts for dispatchers: list (Cassandra), live stream (SSE from Redis) and ack/assign (Kafka)."""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, model_validator

from api import idempotency
from api.auth import Principal, Staff
from api.errors import ApiError, responses
from api.tokens import paging_from_str, paging_to_str
from fleetflow import contracts, topics

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

STREAM_KEY = "ff:alerts:stream"
DAY_MS = 86_400_000
MAX_SPAN_MS = 31 * DAY_MS
MAX_INDEX_PAGES_PER_REQUEST = 40
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
AlertId = Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_\-:|.]+$",
               examples=["VEHICLE_STALLED:VEHICLE:VAN001"])
BY_DAY_CQL = ("SELECT alert_id, type, severity, state, entity_type, entity_id, event_time_ms, detected_time_ms, "
              "route_to FROM alerts_by_day_type WHERE day = ? AND type = ? AND event_time_ms >= ?")
BY_ID_CQL = ("SELECT alert_id, type, severity, state, entity_type, entity_id, event_time_ms, detected_time_ms, "
             "route_to, details, acked_by, acked_ms, assignee FROM alerts_by_id WHERE alert_id IN ?")


class Alert(BaseModel):
    alert_id: str = Field(examples=["a1b2c3"])
    type: str | None = Field(None, examples=["VEHICLE_STALLED"])
    severity: str | None = Field(None, examples=["WARNING"])
    state: str | None = Field(None, examples=["OPEN"])
    entity_type: str | None = Field(None, examples=["VEHICLE"])
    entity_id: str | None = Field(None, examples=["VAN001"])
    event_time_ms: int | None = None
    detected_time_ms: int | None = None
    route_to: str | None = Field(None, examples=["ops"])
    details: dict[str, str] = Field(default_factory=dict)
    acked_by: str | None = None
    acked_ms: int | None = None
    assignee: str | None = None


class AlertList(BaseModel):
    items: list[Alert]
    next_page_token: str | None = None


class AckRequest(BaseModel):
    action: Literal["ACK", "ASSIGN"] = Field("ACK", description="ACK acknowledges; ASSIGN hands it to `assignee`")
    assignee: str | None = Field(None, min_length=1, max_length=100, examples=["dispatcher-anna"])
    note: str = Field("", max_length=1000, examples=["Called the driver"])

    @model_validator(mode="after")
    def _assignee_for_assign(self):
        if self.action == "ASSIGN" and not self.assignee:
            raise ValueError("ASSIGN needs an assignee")
        return self

    model_config = {"json_schema_extra": {"examples": [{"action": "ACK", "note": "on it"},
                                                       {"action": "ASSIGN", "assignee": "dispatcher-anna"}]}}


class AckAccepted(BaseModel):
    ack_id: str
    alert_id: str
    action: str
    event_time_ms: int


def known_types(settings) -> list[str]:
    return list(settings.alert_types)


@router.get("", response_model=AlertList, responses=responses(), summary="Recent alerts by type and severity")
async def list_alerts(request: Request, principal: Staff,
                      type: str | None = Query(None, min_length=1, max_length=64, pattern=r"^[A-Z0-9_]+$",
                                               examples=["VEHICLE_STALLED"]),
                      severity: Literal["INFO", "WARNING", "CRITICAL"] | None = Query(None),
                      since_ms: int | None = Query(None, ge=0, le=10**14, description="Default: 24 hours ago"),
                      limit: int = Query(100, ge=1, le=500),
                      page_token: str | None = Query(None, max_length=2000)) -> AlertList:
    """From `alerts_by_day_type`, newest day first, then type by type, newest first.
    Each alert appears once per page with its latest state (from `alerts_by_id`)."""
    app = request.app
    scope = ["alerts", type, severity, since_ms, limit]
    cursor = app.state.tokens.decode(scope, page_token)
    # The first page fixes "now", so later pages read the same partitions.
    now_ms, since = cursor["b"] if cursor else (int(time.time() * 1000), None)
    since = since if since is not None else since_ms if since_ms is not None else now_ms - DAY_MS
    cursor = cursor or {"i": 0, "p": None}
    if since > now_ms + DAY_MS:
        raise ApiError(400, "INVALID_RANGE", "since_ms is in the future")
    if now_ms - since > MAX_SPAN_MS:
        raise ApiError(400, "RANGE_TOO_LONG", "since_ms may be at most 31 days ago")
    types = [type] if type else known_types(app.state.settings)
    parts = [(d, t) for d in range(max(now_ms, since) // DAY_MS, since // DAY_MS - 1, -1) for t in types]
    i, paging = int(cursor["i"]), paging_from_str(cursor.get("p"))
    db = app.state.cassandra
    rows: list[Any] = []
    reads = 0
    while i < len(parts) and len(rows) < limit and reads < MAX_INDEX_PAGES_PER_REQUEST:
        day, t = parts[i]
        page = await db.page(BY_DAY_CQL, (day, t, since), fetch_size=limit - len(rows), paging_state=paging)
        reads += 1
        rows += page.rows
        if page.paging_state is not None:
            paging = page.paging_state
        else:
            i, paging = i + 1, None
    ids = list(dict.fromkeys(r.alert_id for r in rows))
    latest = {r.alert_id: r for r in await db.all(BY_ID_CQL, (ids,), limit=len(ids) or 1)} if ids else {}
    items = []
    for aid in ids:
        src = latest.get(aid) or next(r for r in rows if r.alert_id == aid)
        d = src._asdict()
        d["details"] = dict(d.get("details") or {})
        alert = Alert(**d)
        if severity is None or alert.severity == severity:
            items.append(alert)
    nxt = (app.state.tokens.encode(scope, {"i": i, "p": paging_to_str(paging), "b": [now_ms, since]})
           if i < len(parts) else None)
    return AlertList(items=items, next_page_token=nxt)


def _sse(entry_id: bytes, fields: dict) -> str:
    data = {k.decode(): v.decode() for k, v in fields.items()}
    if "details" in data:
        try:
            data["details"] = json.loads(data["details"])
        except ValueError:
            pass
    for k in ("event_time_ms", "detected_time_ms"):
        if data.get(k, "").lstrip("-").isdigit():
            data[k] = int(data[k])
    return f"id: {entry_id.decode()}\nevent: alert\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/stream", responses={**responses(), 200: {"description": "Server-sent events: one `alert` event per "
                                                                       "stream entry, `id` = Redis stream id",
                                                        "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
            response_class=StreamingResponse, summary="Live alerts (server-sent events)")
async def stream(request: Request, principal: Staff,
                 last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=50,
                                                    description="Resume after this stream id"),
                 backlog: int = Query(0, ge=0, le=500,
                                      description="Without Last-Event-ID: first replay this many recent entries")):
    """Every entry of `ff:alerts:stream` (alerts and ALERT_ACK updates) as it arrives.
    Reconnect with `Last-Event-ID` to receive what was missed, as long as the stream
    (capped at ~100,000 entries) still holds it."""
    if last_event_id is not None and not _STREAM_ID.match(last_event_id.strip()):
        raise ApiError(400, "INVALID_LAST_EVENT_ID", "Last-Event-ID must be a stream id like 1700000000000-0")
    redis = request.app.state.redis
    keepalive_ms = int(request.app.state.settings.sse_keepalive_s * 1000)
    try:
        if last_event_id is not None:
            cursor, initial = last_event_id.strip(), []
        else:
            latest = await redis.xrevrange(STREAM_KEY, count=max(backlog, 1))
            cursor = latest[0][0].decode() if latest else "0-0"
            initial = list(reversed(latest[:backlog])) if backlog else []
    except Exception as exc:
        raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None

    async def events():
        nonlocal cursor
        yield "retry: 2000\n\n"
        for entry_id, fields in initial:
            yield _sse(entry_id, fields)
        while not await request.is_disconnected():
            try:
                got = await redis.xread({STREAM_KEY: cursor}, count=100, block=keepalive_ms)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis blipped: tell the client to reconnect (it resumes from its last id).
                return
            if not got:
                yield ": keepalive\n\n"
                continue
            for entry_id, fields in got[0][1]:
                cursor = entry_id.decode()
                yield _sse(entry_id, fields)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/{alert_id}/ack", status_code=202, response_model=AckAccepted, responses=responses(409),
             summary="Acknowledge or assign an alert")
async def ack(request: Request, principal: Staff, body: AckRequest, alert_id: str = AlertId,
              idempotency_key: str | None = idempotency.IdempotencyKey):
    """Publishes an `alert_acks` record to `ff.alert-acks` and answers once Kafka has it;
    the alerts job records it in the alert audit and pushes an ALERT_ACK on the stream."""
    app = request.app
    payload = {"alert_id": alert_id, **body.model_dump()}
    reservation, replay = await idempotency.reserve(app.state.redis, principal.key_id, idempotency_key, payload,
                                                    app.state.settings.idempotency_ttl_s)
    if replay is not None:
        return replay
    try:
        out = await publish_ack(app, principal, alert_id, body)
    except BaseException:
        if reservation is not None:
            await reservation.release()
        raise
    if reservation is not None:
        await reservation.complete(202, out)
    return JSONResponse(out, status_code=202)


async def publish_ack(app, principal: Principal, alert_id: str, body: AckRequest) -> dict:
    now_ms = int(time.time() * 1000)
    record = {"ack_id": uuid.uuid4().hex, "alert_id": alert_id, "action": body.action,
              "assignee": body.assignee if body.action == "ASSIGN" else None, "actor": principal.key_id,
              "note": body.note, "event_time_ms": now_ms}
    await app.state.publisher.publish(topics.ALERT_ACKS.name,
                                      [(alert_id.encode(), contracts.encode("alert_acks", record))])
    return {"ack_id": record["ack_id"], "alert_id": alert_id, "action": body.action, "event_time_ms": now_ms}
