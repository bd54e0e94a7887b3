"""Shipment reads. The hot path (current state) is one Redis HGETALL."""
from __future__ import annotations

from redis.asyncio import Redis

SHIPMENT_KEY = "ff:shipment:{}"

INT_FIELDS = ("last_event_time_ms", "updated_ms")


async def current_state(redis: Redis, tracking_id: str) -> dict | None:
    raw = await redis.hgetall(SHIPMENT_KEY.format(tracking_id))
    if not raw:
        return None
    out = {k.decode(): v.decode() for k, v in raw.items()}
    for f in INT_FIELDS:
        if out.get(f):
            out[f] = int(out[f])
    return out
