"""Who is calling: API key → Principal, role checks and per-key rate limits.

Keys come as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Verified keys
are cached in-process for ``key_cache_ttl_s`` so the hot path (``/v1/track``) does not
touch Cassandra; that TTL is how long a revoked key keeps working on a running API.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from fleetflow import apikeys
from fleetflow.apikeys import ADMIN, CUSTOMER, DISPATCHER, PARTNER

RATE_KEY = "ff:api:rl:{}:{}"

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer ffk_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: ffk_...`")


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    carrier: str | None
    rate_limit_per_min: int
    # Partner keys: fnmatch patterns of the vehicle ids they may submit pings for (() = none).
    vehicle_patterns: tuple[str, ...] = ()

    def can_see_carrier(self, carriers: set[str]) -> bool:
        return self.role != PARTNER or self.carrier in carriers

    def may_ping(self, vehicle_id: str) -> bool:
        """Admin keys ping any vehicle; partner keys only those matching their patterns."""
        return self.role != PARTNER or apikeys.vehicle_allowed(vehicle_id, self.vehicle_patterns)


class KeyCache:
    """LRU of key_id → (expires_at, Principal or None, stored hash)."""

    def __init__(self, ttl_s: float, negative_ttl_s: float, size: int):
        self.ttl_s, self.negative_ttl_s, self.size = ttl_s, negative_ttl_s, size
        self._items: OrderedDict[str, tuple[float, Principal | None, str]] = OrderedDict()

    def get(self, key_id: str, now: float):
        hit = self._items.get(key_id)
        if hit is None or hit[0] < now:
            return None
        self._items.move_to_end(key_id)
        return hit

    def put(self, key_id: str, principal: Principal | None, key_hash: str, now: float) -> None:
        ttl = self.ttl_s if principal is not None else self.negative_ttl_s
        self._items[key_id] = (now + ttl, principal, key_hash)
        self._items.move_to_end(key_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"})


async def _lookup(request: Request, raw: str) -> Principal:
    app = request.app
    key_id = apikeys.key_id_of(raw)
    if key_id is None:
        raise _unauthorized("malformed API key")
    now = time.monotonic()
    cache: KeyCache = app.state.key_cache
    hit = cache.get(key_id, now)
    if hit is None:
        rows = await app.state.cassandra.all(apikeys.SELECT_BY_ID.replace("%s", "?"), (key_id,), limit=1)
        row = rows[0] if rows else None
        principal = None
        if row is not None and row.revoked_ms is None:
            principal = Principal(row.key_id, row.role, row.carrier, int(row.rate_limit_per_min),
                                  tuple(row.vehicle_patterns or ()))
        hit = (0.0, principal, row.key_hash if row is not None else "")
        cache.put(key_id, principal, hit[2], now)
    _, principal, key_hash = hit
    if principal is None or not apikeys.matches(raw, key_hash, app.state.pepper):
        raise _unauthorized("unknown or revoked API key")
    return principal


async def authenticate(request: Request,
                       bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                       header: Annotated[str | None, Depends(_header)]) -> Principal:
    raw = bearer.credentials if bearer is not None else header
    if not raw:
        raise _unauthorized("an API key is required (Authorization: Bearer <key> or X-API-Key)")
    return await _lookup(request, raw.strip())


class Quota:
    """Fixed-window request counter per key in Redis (``ff:api:rl:<key_id>:<window>``).

    ``queue`` adds the two commands to a caller's pipeline, so a route can count the
    request in the same round trip as its own reads; ``check`` reads the result.
    """

    def __init__(self, principal: Principal, window_s: int, now_s: float):
        self.principal = principal
        self.window_s = window_s
        self.window = int(now_s // window_s)
        self.retry_after_s = max(1, math.ceil((self.window + 1) * window_s - now_s))
        self.key = RATE_KEY.format(principal.key_id, self.window)

    def queue(self, pipe) -> None:
        pipe.incr(self.key)
        pipe.expire(self.key, self.window_s + 1)

    def check(self, count: int) -> None:
        if int(count) > self.principal.rate_limit_per_min * self.window_s / 60:
            raise ApiError(429, "RATE_LIMITED",
                           f"more than {self.principal.rate_limit_per_min} requests per minute for key "
                           f"{self.principal.key_id}", headers={"Retry-After": str(self.retry_after_s)})


def require(*roles: str, count_in_route: bool = False) -> Callable:
    """Dependency: the caller's Principal if its role is one of ``roles``; counts the request.

    With ``count_in_route`` the route gets a Quota in ``request.state.quota`` and must
    queue and check it in its own Redis pipeline (the one-round-trip hot path).
    """
    allowed = frozenset(roles)

    async def dep(request: Request, principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            raise ApiError(403, "FORBIDDEN", f"role {principal.role} may not use this route "
                                             f"(allowed: {', '.join(sorted(allowed))})")
        quota = Quota(principal, request.app.state.settings.rate_limit_window_s, time.time())
        request.state.key_id = principal.key_id
        if count_in_route:
            request.state.quota = quota
        else:
            pipe = request.app.state.redis.pipeline(transaction=False)
            quota.queue(pipe)
            try:
                count, _ = await pipe.execute()
            except Exception as exc:
                raise ApiError(503, "REDIS_UNAVAILABLE", f"cannot reach Redis: {exc}") from None
            quota.check(count)
        return principal

    return dep


ALL_STAFF = (DISPATCHER, ADMIN)
Customer = Annotated[Principal, Depends(require(CUSTOMER, DISPATCHER, ADMIN, count_in_route=True))]
Staff = Annotated[Principal, Depends(require(*ALL_STAFF))]
StaffOrPartner = Annotated[Principal, Depends(require(DISPATCHER, ADMIN, PARTNER))]
Submitter = Annotated[Principal, Depends(require(PARTNER, ADMIN))]
