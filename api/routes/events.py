"""Partner uploads: batches of scans and pings, validated exactly as the stream validates them.

Each event is encoded to its Avro record and passed through ``fleetflow.ingest.route_record``
(the jobs' own admission rules). Rejected events go to ``ff.dead-letters`` with their
reason; accepted ones to ``ff.scans``/``ff.pings``. The API answers only after Kafka
acknowledged both. An event_id already accepted (same content) is a ``duplicate`` and
is not republished; the same event_id with other content is rejected as
``EVENT_ID_CONFLICT``. Ids get the stream's id checks (MISSING_ID, ID_TOO_LONG, BAD_ID),
reported per event like every other rejection.

Partner keys are scoped to their carrier. A batch that steps outside that scope is
refused whole with a 403 and nothing is published (no event, no dead letter):

* ``CARRIER_NOT_ALLOWED``: a scan names another carrier;
* ``VEHICLE_NOT_ALLOWED``: a ping's ``vehicle_id`` matches none of the key's vehicle
  patterns (``fleetflow keys create --vehicles 'FX-VAN*'``); a key without patterns may
  submit no pings at all, so a partner cannot move our vans (pings drive geofences,
  stalls and ETAs);
* ``NOT_CARRIERS_SHIPMENT``: a scan's shipment has a known plan (``ff:shipment:{id}``
  has an ``order_id``) and none of its legs is the key's carrier. Unknown tracking ids
  and shipments not planned yet are accepted: carriers often scan before the plan arrives.

Whole-batch refusal, not a per-event ``rejected``: these are authorization failures
(a misconfigured client or an attempt to write someone else's data), not data-quality
problems. Per-event rejections are published to ``ff.dead-letters`` as pipeline input,
and a scope violation has no business there; one rule ("403: nothing was accepted")
is also simpler for a client than a partly accepted batch. The message names the
offending carriers, vehicles or tracking ids so the client can drop them and resend.
Admin keys are not scoped.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import idempotency
from api.auth import Principal, Submitter
from api.errors import ApiError, responses
from api.observability import PUBLISHED
from api.repos import shipments as shipments_repo
from fleetflow import contracts, topics
from fleetflow.apikeys import PARTNER
from fleetflow.contracts import ContractError
from fleetflow.ingest import make_dead_letter, route_record
from udfs.dedup import dedup_key
from udfs.validation import DEFAULT_CONFIG, MAX_EVENT_ID_CHARS

router = APIRouter(prefix="/v1/events", tags=["partner events"])

EVENT_KEY = "ff:api:event:{}:{}"
KINDS = {"scan": ("scans", topics.SCANS.name, "tracking_id"), "ping": ("pings", topics.PINGS.name, "vehicle_id")}
PARTNER_SOURCE = "PARTNER_API"
UNKNOWN_KIND = "UNKNOWN_KIND"
EVENT_ID_CONFLICT = "EVENT_ID_CONFLICT"
CARRIER_NOT_ALLOWED = "CARRIER_NOT_ALLOWED"
VEHICLE_NOT_ALLOWED = "VEHICLE_NOT_ALLOWED"
NOT_CARRIERS_SHIPMENT = "NOT_CARRIERS_SHIPMENT"
# How many offending ids a 403 message names (a 500-event batch could name 500).
MAX_IDS_IN_MESSAGE = 10

# SET NX every event id with its content hash; for ids already there, return the stored hash.
_CLAIM = """
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('SET', k, ARGV[i + 1], 'NX', 'EX', ARGV[1]) then
    out[i] = ''
  else
    out[i] = redis.call('GET', k) or ''
  end
end
return out
"""

SCAN_EXAMPLE = {"kind": "scan", "event_id": "acme-000123", "tracking_id": "TRK00000001", "carrier": "FEDEX",
                "raw_code": "AR", "raw_text": "Arrived at FedEx location", "event_time_ms": 1795000000000,
                "facility_id": "BER1", "location": {"lat": 52.52, "lon": 13.405}}
PING_EXAMPLE = {"kind": "ping", "event_id": "van7-1795000000000", "vehicle_id": "VAN007",
                "event_time_ms": 1795000000000, "lat": 52.52, "lon": 13.405, "speed_mps": 8.5}


class EventBatch(BaseModel):
    events: list[dict[str, Any]] = Field(
        min_length=1, max_length=500,
        description="Each event has `kind` (`scan` or `ping`) and the fields of avro/scans.avsc or "
                    "avro/pings.avsc. Malformed events are rejected one by one, not the whole batch.",
        examples=[[SCAN_EXAMPLE, PING_EXAMPLE]])


class EventResult(BaseModel):
    index: int
    kind: str | None = None
    event_id: str | None = None
    outcome: str = Field(description="accepted, duplicate or rejected", examples=["accepted"])
    reason: str | None = Field(None, examples=["TOO_OLD"])
    detail: str | None = None


class BatchResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


def _canonical(ev: Any) -> bytes:
    return json.dumps(ev, sort_keys=True, separators=(",", ":"), default=str).encode()


def _record(kind: str, ev: dict[str, Any], principal: Principal) -> dict[str, Any]:
    rec = {k: v for k, v in ev.items() if k != "kind"}
    if kind == "scan" and principal.role == PARTNER:
        rec["source"] = PARTNER_SOURCE
    return rec


def _forbidden_carriers(events: list[Any], principal: Principal) -> set[str]:
    if principal.role != PARTNER:
        return set()
    # A scan without a carrier is malformed (rejected on its own), not another carrier's.
    return {ev["carrier"] for ev in events
            if isinstance(ev, dict) and ev.get("kind") == "scan" and isinstance(ev.get("carrier"), str)
            and ev["carrier"] and ev["carrier"] != principal.carrier}


def _pings(events: list[Any]) -> list[dict]:
    return [ev for ev in events if isinstance(ev, dict) and ev.get("kind") == "ping"]


def _named(ids) -> str:
    ids = sorted(ids)
    more = len(ids) - MAX_IDS_IN_MESSAGE
    return ", ".join(ids[:MAX_IDS_IN_MESSAGE]) + (f" and {more} more" if more > 0 else "")


def _check_vehicles(events: list[Any], principal: Principal) -> None:
    """403 VEHICLE_NOT_ALLOWED if a partner batch pings a vehicle outside the key's patterns."""
    if principal.role != PARTNER:
        return
    pings = _pings(events)
    if pings and not principal.vehicle_patterns:
        raise ApiError(403, VEHICLE_NOT_ALLOWED,
                       f"this key may not submit pings (it has no vehicle patterns; an admin can add them with "
                       f"`fleetflow keys set-vehicles {principal.key_id} --vehicles 'PATTERN*'`); "
                       f"nothing in the batch was accepted")
    # A ping without a string vehicle_id is malformed (rejected on its own), not another fleet's.
    forbidden = {vid for vid in (ev.get("vehicle_id") for ev in pings)
                 if isinstance(vid, str) and vid and not principal.may_ping(vid)}
    if forbidden:
        raise ApiError(403, VEHICLE_NOT_ALLOWED,
                       f"this key may submit pings only for vehicles matching {', '.join(principal.vehicle_patterns)}, "
                       f"not {_named(forbidden)}; nothing in the batch was accepted")


async def _check_shipments(redis, events: list[Any], principal: Principal) -> None:
    """403 NOT_CARRIERS_SHIPMENT if a partner scans a planned shipment none of whose legs is its carrier."""
    if principal.role != PARTNER:
        return
    tids = {ev["tracking_id"] for ev in events
            if isinstance(ev, dict) and ev.get("kind") == "scan" and isinstance(ev.get("tracking_id"), str)
            and ev["tracking_id"]}
    if not tids:
        return
    try:
        planned = await shipments_repo.planned_carriers(redis, tids)
    except Exception as exc:
        raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
    foreign = {tid for tid, carriers in planned.items() if carriers and principal.carrier not in carriers}
    if foreign:
        raise ApiError(403, NOT_CARRIERS_SHIPMENT,
                       f"{principal.carrier} carries no leg of shipment {_named(foreign)}; this key may scan only "
                       f"its carrier's shipments (or ones not planned yet); nothing in the batch was accepted")


SUBMIT_DESCRIPTION = """Validates each event with the stream's own admission rules and publishes the
accepted ones to `ff.scans`/`ff.pings` (rejected ones to `ff.dead-letters`), answering after
Kafka acknowledged them.

**Partner scope** (admin keys are not scoped). The whole batch is refused with **403** and
nothing is published when:

* `CARRIER_NOT_ALLOWED`: a scan's `carrier` is not the key's carrier;
* `VEHICLE_NOT_ALLOWED`: a ping's `vehicle_id` matches none of the key's vehicle patterns
  (fnmatch, e.g. `FX-VAN*`, set with `fleetflow keys create --vehicles`); a key without
  patterns may not submit pings at all;
* `NOT_CARRIERS_SHIPMENT`: a scan's shipment has a known plan and none of its legs is the
  key's carrier. Unknown tracking ids (no plan yet) are accepted.

The message names the offending carriers, vehicles or tracking ids."""


@router.post("", status_code=202, response_model=BatchResult,
             responses=responses(409, _403="Partner scope: CARRIER_NOT_ALLOWED, VEHICLE_NOT_ALLOWED or "
                                           "NOT_CARRIERS_SHIPMENT (the whole batch is refused, nothing is "
                                           "published), or FORBIDDEN (role)"),
             summary="Submit scans and pings (partners)", description=SUBMIT_DESCRIPTION)
async def submit(request: Request, principal: Submitter, batch: EventBatch = Body(),
                 idempotency_key: str | None = idempotency.IdempotencyKey):
    app = request.app
    forbidden = _forbidden_carriers(batch.events, principal)
    if forbidden:
        raise ApiError(403, CARRIER_NOT_ALLOWED,
                       f"this key may submit only {principal.carrier} scans, not {', '.join(sorted(forbidden))}; "
                       f"nothing in the batch was accepted")
    _check_vehicles(batch.events, principal)
    reservation, replay = await idempotency.reserve(app.state.redis, principal.key_id, idempotency_key,
                                                    batch.events, app.state.settings.idempotency_ttl_s)
    if replay is not None:
        return replay
    try:
        # After the reservation: this check reads shipment state, which can change, so a
        # retry of a batch already accepted replays its answer instead of being re-judged.
        # A refusal releases the reservation (below), so a corrected retry is judged afresh.
        await _check_shipments(app.state.redis, batch.events, principal)
        out = await _process(app, principal, batch.events)
    except BaseException:
        if reservation is not None:
            await reservation.release()
        raise
    if reservation is not None:
        await reservation.complete(202, out)
    return JSONResponse(out, status_code=202)


async def _process(app, principal: Principal, events: list[Any]) -> dict:
    now_ms = int(time.time() * 1000)
    source = f"api:{principal.key_id}"
    results: list[dict] = []
    dead: list[bytes] = []
    candidates: list[tuple[int, str, str, bytes]] = []  # (index, kind, event_id, encoded)
    sources: list[str] = []  # each candidate's dedup key: its source (carrier or van) and event_id

    def reject(i, kind, event_id, reason, detail, original):
        results.append({"index": i, "kind": kind, "event_id": event_id, "outcome": "rejected", "reason": reason,
                        "detail": detail})
        dead.append(contracts.encode("dead_letters", make_dead_letter(
            reason, detail, original, source_topic=source, source_offset=i, detected_time_ms=now_ms)))

    for i, ev in enumerate(events):
        kind = ev.get("kind") if isinstance(ev, dict) else None
        event_id = ev.get("event_id") if isinstance(ev, dict) and isinstance(ev.get("event_id"), str) else None
        if event_id is not None and len(event_id) > MAX_EVENT_ID_CHARS:
            # Rejected as ID_TOO_LONG below; the result is found by its index, not echoed back whole.
            event_id = None
        if kind not in KINDS:
            reject(i, None, event_id, UNKNOWN_KIND, "kind must be 'scan' or 'ping'", _canonical(ev))
            continue
        schema, topic, _ = KINDS[kind]
        try:
            raw = contracts.encode(schema, _record(kind, ev, principal))
        except ContractError as exc:
            reject(i, kind, event_id, exc.reason, str(exc), _canonical(ev))
            continue
        except Exception as exc:  # fastavro raises plain errors for some type mismatches
            reject(i, kind, event_id, "BAD_RECORD", f"{schema}: {exc}", _canonical(ev))
            continue
        record, dl = route_record(raw, schema, now_ms, DEFAULT_CONFIG, app.state.known_carriers,
                                  source_topic=source, source_offset=i)
        if dl is not None:
            results.append({"index": i, "kind": kind, "event_id": event_id, "outcome": "rejected",
                            "reason": dl["reason"], "detail": dl["detail"]})
            dead.append(contracts.encode("dead_letters", dl))
            continue
        candidates.append((i, kind, record["event_id"], raw))
        sources.append(dedup_key(schema, record))

    claimed: list[str] = []
    to_publish: dict[str, list[tuple[bytes, bytes]]] = {}
    if candidates:
        # Claimed per source, as the stream deduplicates (udfs.dedup.dedup_key): two carriers'
        # or two vans' "evt-1" are different events, not a conflict.
        keys = [EVENT_KEY.format(k, src) for (_, k, _, _), src in zip(candidates, sources)]
        hashes = [hashlib.sha256(raw).hexdigest() for *_, raw in candidates]
        try:
            prior = await app.state.redis.eval(_CLAIM, len(keys), *keys, app.state.settings.event_id_ttl_s, *hashes)
        except Exception as exc:
            raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
        for (i, kind, eid, raw), key, h, was in zip(candidates, keys, hashes, prior):
            was = was.decode() if isinstance(was, bytes) else was
            if not was:
                claimed.append(key)
                schema, topic, key_field = KINDS[kind]
                rec = contracts.decode(raw, expected=schema)[1]
                to_publish.setdefault(topic, []).append((str(rec[key_field]).encode(), raw))
                results.append({"index": i, "kind": kind, "event_id": eid, "outcome": "accepted"})
            elif was == h:
                results.append({"index": i, "kind": kind, "event_id": eid, "outcome": "duplicate"})
            else:
                reject(i, kind, eid, EVENT_ID_CONFLICT,
                       f"event_id {eid} was already accepted with different content", raw)
    try:
        for topic, items in to_publish.items():
            await app.state.publisher.publish(topic, items)
        await app.state.publisher.publish(topics.DEAD_LETTERS.name, [(None, d) for d in dead])
    except BaseException:
        # Not published: forget the claims so a retry is accepted rather than called a duplicate.
        if claimed:
            await app.state.redis.delete(*claimed)
        raise
    results.sort(key=lambda r: r["index"])
    counts = {o: sum(1 for r in results if r["outcome"] == o) for o in ("accepted", "duplicate", "rejected")}
    for r in results:
        PUBLISHED.labels(r.get("kind") or "unknown", r["outcome"]).inc()
    return {"accepted": counts["accepted"], "duplicates": counts["duplicate"], "rejected": counts["rejected"],
            "results": [{k: r.get(k) for k in ("index", "kind", "event_id", "outcome", "reason", "detail")}
                        for r in results]}
