"""Shipment reads: current state from Redis (the hot path), history and audit from Cassandra."""
from __future__ import annotations

import json
from typing import Any, Iterable

from redis.asyncio import Redis

SHIPMENT_KEY = "ff:shipment:{}"

INT_FIELDS = frozenset({
    "version", "leg", "last_event_time_ms", "status_since_ms", "promised_start_ms", "promised_end_ms", "updated_ms",
    "eta_ms", "eta_earliest_ms", "eta_latest_ms", "eta_as_of_ms", "late_by_ms"})
FLOAT_FIELDS = frozenset({"eta_confidence", "last_lat", "last_lon"})
BOOL_FIELDS = frozenset({"terminal", "hidden_from_customers"})
JSON_FIELDS = frozenset({"legs"})

HISTORY_CQL = ("SELECT event_time_ms, event_id, status, status_detail, carrier, raw_code, raw_text, facility_id, "
               "leg, source, late FROM shipment_history WHERE tracking_id = ?")
AUDIT_CQL = "SELECT * FROM shipment_audit WHERE tracking_id = ?"


def _bool(v: str) -> bool:
    return v.strip().lower() in ("1", "true", "yes")


def _num(v: str, kind):
    try:
        return kind(float(v)) if kind is int else kind(v)
    except ValueError:
        return None


def parse_hash(raw: dict) -> dict[str, Any] | None:
    """Typed fields of an ``ff:shipment:*`` hash (bytes from redis-py), or None if empty.

    Empty strings are how the writers store None. A field a writer garbled becomes None
    rather than failing the whole read.
    """
    if not raw:
        return None
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.decode() if isinstance(k, bytes) else k
        val = v.decode() if isinstance(v, bytes) else v
        if val == "":
            out[key] = None
        elif key in INT_FIELDS:
            out[key] = _num(val, int)
        elif key in FLOAT_FIELDS:
            out[key] = _num(val, float)
        elif key in BOOL_FIELDS:
            out[key] = _bool(val)
        elif key in JSON_FIELDS:
            try:
                out[key] = json.loads(val)
            except ValueError:
                out[key] = None
        else:
            out[key] = val
    return out


def carriers_of(state: dict[str, Any]) -> set[str]:
    """Every carrier that handles the shipment: the current one and any leg's."""
    found = {state["carrier"]} if state.get("carrier") else set()

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "carrier" and isinstance(v, str) and v:
                    found.add(v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(state.get("legs"))
    return found


def legs_of(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Legs as a list of objects whatever JSON shape the writer used (list of objects,
    list of [leg, {...}] pairs, or an object keyed by leg number)."""
    legs = state.get("legs")
    out: list[dict[str, Any]] = []
    if isinstance(legs, dict):
        legs = [[k, v] for k, v in legs.items()]
    for item in legs or ():
        if isinstance(item, dict):
            out.append(item)
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], dict):
            out.append({"leg": _num(str(item[0]), int), **item[1]})
    return out


async def current_state(redis: Redis, tracking_id: str) -> dict[str, Any] | None:
    return parse_hash(await redis.hgetall(SHIPMENT_KEY.format(tracking_id)))


async def current_states(redis: Redis, tracking_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Current state of many shipments in one pipelined round trip; missing ones are left out."""
    ids = list(dict.fromkeys(tracking_ids))
    if not ids:
        return {}
    pipe = redis.pipeline(transaction=False)
    for tid in ids:
        pipe.hgetall(SHIPMENT_KEY.format(tid))
    out = {}
    for tid, raw in zip(ids, await pipe.execute()):
        state = parse_hash(raw)
        if state is not None:
            out[tid] = state
    return out


async def planned_carriers(redis: Redis, tracking_ids: Iterable[str]) -> dict[str, set[str]]:
    """Carriers (``carriers_of``) of each shipment whose plan is known, in one pipelined
    round trip. A shipment's plan is known once ``order_id`` is set: only plans carry it
    (udfs/lifecycle.py). Ids with no state, or known only from scans so far, are left out."""
    ids = list(dict.fromkeys(tracking_ids))
    if not ids:
        return {}
    pipe = redis.pipeline(transaction=False)
    for tid in ids:
        pipe.hmget(SHIPMENT_KEY.format(tid), "order_id", "carrier", "legs")
    out: dict[str, set[str]] = {}
    for tid, (order_id, carrier, legs) in zip(ids, await pipe.execute()):
        if not order_id:
            continue
        state = parse_hash({k: v for k, v in (("carrier", carrier), ("legs", legs)) if v is not None}) or {}
        out[tid] = carriers_of(state)
    return out


def row_dict(row: Any) -> dict[str, Any]:
    d = row._asdict()
    return {k: (sorted(v) if isinstance(v, (set, frozenset)) else dict(v) if hasattr(v, "items") else v)
            for k, v in d.items()}
