"""``Idempotency-Key`` for POSTs: the same key with the same body gets the same answer.

The first request reserves ``ff:api:idem:<key_id>:<sha256(key)>`` (SET NX, short TTL)
and replaces the reservation with the response once it has one, kept for
``idempotency_ttl_s``. A retry with the same body replays that response without doing
the work again; a different body under the same key is a 422; a retry while the first
is still running is a 409. A failed request releases the key so it can be retried.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Header
from fastapi.responses import JSONResponse

from api.errors import ApiError

IDEM_KEY = "ff:api:idem:{}:{}"
# A request still "in progress" after this long is assumed dead (the process crashed).
PENDING_TTL_S = 60
REPLAY_HEADER = "Idempotent-Replayed"

IdempotencyKey = Header(None, alias="Idempotency-Key", min_length=1, max_length=200,
                        pattern=r"^[\x21-\x7e]+$",
                        description="Retry-safe key: the same key and body return the first response again")


@dataclass
class Reservation:
    redis: Any
    key: str
    body_hash: str
    ttl_s: int

    async def complete(self, status: int, body: Any) -> None:
        await self.redis.set(self.key, json.dumps({"h": self.body_hash, "s": status, "b": body}), ex=self.ttl_s)

    async def release(self) -> None:
        await self.redis.delete(self.key)


def body_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


async def reserve(redis, key_id: str, idem_key: str | None, payload: Any,
                  ttl_s: int) -> tuple[Reservation | None, JSONResponse | None]:
    """(reservation, None) to go ahead, (None, stored response) to replay, or (None, None) without a key."""
    if idem_key is None:
        return None, None
    key = IDEM_KEY.format(key_id, hashlib.sha256(idem_key.encode()).hexdigest()[:32])
    h = body_hash(payload)
    try:
        if await redis.set(key, json.dumps({"h": h, "pending": True}), nx=True, ex=PENDING_TTL_S):
            return Reservation(redis, key, h, ttl_s), None
        raw = await redis.get(key)
    except Exception as exc:
        raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
    if raw is None:
        # Expired between the two calls: treat as a fresh request.
        return await reserve(redis, key_id, idem_key, payload, ttl_s)
    stored = json.loads(raw)
    if stored.get("h") != h:
        raise ApiError(422, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with a different body")
    if stored.get("pending"):
        raise ApiError(409, "IDEMPOTENCY_IN_PROGRESS", "a request with this Idempotency-Key is still running")
    return None, JSONResponse(stored["b"], status_code=int(stored["s"]), headers={REPLAY_HEADER: "true"})
