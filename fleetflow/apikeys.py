"""API keys: creation, hashing, lookup and revocation.

A key is ``ffk_<key_id>_<secret>``. Only ``HMAC-SHA256(pepper, key)`` is stored (table
``api_keys``, migration 006; ``vehicle_patterns`` from 009), so a copy of the database does not hand out working
keys, and without the pepper (a setting, never in the database) the hashes cannot
even be brute-forced offline. The key id is public: it appears in logs, audit records
(``alert_acks.actor``) and rate-limit counters.
"""
from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

CUSTOMER, DISPATCHER, PARTNER, ADMIN = "customer", "dispatcher", "partner", "admin"
ROLES = (CUSTOMER, DISPATCHER, PARTNER, ADMIN)

KEY_PREFIX = "ffk_"
# 8 bytes of id: unique enough for any number of keys a deployment will issue, short in logs.
KEY_ID_BYTES = 8
# 32 bytes of secret: 256 bits, out of reach of guessing.
SECRET_BYTES = 32
_KEY_RE = re.compile(r"^ffk_([0-9a-f]{16})_([A-Za-z0-9_\-]{20,100})$")
_CARRIER_RE = re.compile(r"^[A-Z0-9_]{2,32}$")
# fnmatch patterns over vehicle ids: letters, digits, - _ . : and the wildcards * ? [ ] !
_VEHICLE_PATTERN_RE = re.compile(r"^[A-Za-z0-9_\-.:*?\[\]!]{1,64}$")
# Enough for any partner's fleet naming; each ping is matched against every pattern.
MAX_VEHICLE_PATTERNS = 20

# Requests per minute when a key is created without --rate-limit.
DEFAULT_RATE_LIMIT_PER_MIN = {CUSTOMER: 600, DISPATCHER: 1200, PARTNER: 600, ADMIN: 6000}


class ApiKeyError(ValueError):
    """A key cannot be created or changed as asked (bad role, carrier, limit or unknown id)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    role: str
    carrier: str | None
    name: str
    rate_limit_per_min: int
    created_ms: int
    revoked_ms: int | None = None
    # fnmatch patterns of the vehicle ids a partner key may submit pings for; () = none.
    vehicle_patterns: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.revoked_ms is None


def vehicle_allowed(vehicle_id: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``vehicle_id`` matches one of ``patterns`` (fnmatch, case-sensitive: van ids are)."""
    return any(fnmatch.fnmatchcase(vehicle_id, p) for p in patterns)


def hash_key(raw_key: str, pepper: bytes) -> str:
    if not pepper:
        raise ValueError("the API key pepper must not be empty")
    return hmac.new(pepper, raw_key.encode("utf-8"), hashlib.sha256).hexdigest()


def key_id_of(raw_key: str) -> str | None:
    """The key id inside a well-formed key, else None (no lookup is made for junk)."""
    m = _KEY_RE.match(raw_key or "")
    return m.group(1) if m else None


def matches(raw_key: str, stored_hash: str, pepper: bytes) -> bool:
    return hmac.compare_digest(hash_key(raw_key, pepper), stored_hash or "")


def new_key() -> tuple[str, str]:
    key_id = secrets.token_hex(KEY_ID_BYTES)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def check_spec(role: str, carrier: str | None, rate_limit_per_min: int | None) -> tuple[str | None, int]:
    """Normalised (carrier, limit) for a new key, or ApiKeyError saying what is wrong."""
    if role not in ROLES:
        raise ApiKeyError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    carrier = carrier.strip().upper() if carrier else None
    if role == PARTNER and not carrier:
        raise ApiKeyError("a partner key is scoped to one carrier: pass --carrier")
    if role != PARTNER and carrier:
        raise ApiKeyError("only partner keys are scoped to a carrier")
    if carrier and not _CARRIER_RE.match(carrier):
        raise ApiKeyError(f"carrier must be 2-32 of A-Z, 0-9 or _, not {carrier!r}")
    limit = DEFAULT_RATE_LIMIT_PER_MIN[role] if rate_limit_per_min is None else int(rate_limit_per_min)
    if limit < 1:
        raise ApiKeyError("rate limit must be at least 1 request per minute")
    return carrier, limit


def check_vehicle_patterns(role: str, patterns) -> tuple[str, ...]:
    """Normalised vehicle patterns (comma-separated items split, duplicates dropped, order kept),
    or ApiKeyError. Only partner keys carry them: admin keys are never restricted and the
    other roles cannot submit events."""
    out: list[str] = []
    for item in patterns or ():
        for p in str(item).split(","):
            p = p.strip()
            if p and p not in out:
                out.append(p)
    if not out:
        return ()
    if role != PARTNER:
        raise ApiKeyError("only partner keys are limited to vehicle patterns (admin keys may submit any vehicle)")
    if len(out) > MAX_VEHICLE_PATTERNS:
        raise ApiKeyError(f"at most {MAX_VEHICLE_PATTERNS} vehicle patterns per key")
    for p in out:
        if not _VEHICLE_PATTERN_RE.match(p):
            raise ApiKeyError(f"vehicle pattern must be 1-64 of A-Z, a-z, 0-9, - _ . : and the wildcards * ? [ ] !, "
                              f"not {p!r}")
        if not p.strip("*?"):
            raise ApiKeyError(f"vehicle pattern {p!r} matches every vehicle; name the partner's fleet "
                              f"(e.g. 'FX-VAN*')")
    return tuple(out)


def _row_to_key(r) -> ApiKey:
    return ApiKey(r.key_id, r.role, r.carrier, r.name or "", int(r.rate_limit_per_min), int(r.created_ms),
                  None if r.revoked_ms is None else int(r.revoked_ms),
                  tuple(getattr(r, "vehicle_patterns", None) or ()))


_COLUMNS = "key_id, role, carrier, name, rate_limit_per_min, created_ms, revoked_ms, vehicle_patterns"
SELECT_BY_ID = ("SELECT key_id, key_hash, role, carrier, name, rate_limit_per_min, created_ms, revoked_ms, "
                "vehicle_patterns FROM api_keys WHERE key_id = %s")


def create(session, pepper: bytes, *, role: str, carrier: str | None = None, name: str = "",
           rate_limit_per_min: int | None = None, vehicle_patterns=(), now_ms: int) -> tuple[ApiKey, str]:
    """Store a new key; returns it with the raw key, which is never stored or shown again."""
    carrier, limit = check_spec(role, carrier, rate_limit_per_min)
    patterns = check_vehicle_patterns(role, vehicle_patterns)
    key_id, raw = new_key()
    # IF NOT EXISTS: a (practically impossible) id collision must not overwrite another key.
    applied = session.execute(
        "INSERT INTO api_keys (key_id, key_hash, role, carrier, name, rate_limit_per_min, created_ms, revoked_ms,"
        " vehicle_patterns) VALUES (%s, %s, %s, %s, %s, %s, %s, null, %s) IF NOT EXISTS",
        (key_id, hash_key(raw, pepper), role, carrier, name, limit, now_ms, list(patterns) or None)).was_applied
    if not applied:
        raise ApiKeyError("key id collision; try again")
    return ApiKey(key_id, role, carrier, name, limit, now_ms, vehicle_patterns=patterns), raw


def list_keys(session) -> list[ApiKey]:
    rows = session.execute(f"SELECT {_COLUMNS} FROM api_keys")
    return sorted((_row_to_key(r) for r in rows), key=lambda k: (k.created_ms, k.key_id))


def get(session, key_id: str) -> ApiKey:
    row = session.execute(SELECT_BY_ID, (key_id,)).one()
    if row is None:
        raise ApiKeyError(f"no API key with id {key_id!r}")
    return _row_to_key(row)


def set_vehicle_patterns(session, key_id: str, patterns) -> ApiKey:
    """Replace a key's vehicle patterns (empty: no pings). Running APIs see the change
    within their key cache TTL, like a revocation."""
    key = get(session, key_id)
    new = check_vehicle_patterns(key.role, patterns)
    session.execute("UPDATE api_keys SET vehicle_patterns = %s WHERE key_id = %s", (list(new) or None, key_id))
    return ApiKey(key.key_id, key.role, key.carrier, key.name, key.rate_limit_per_min, key.created_ms,
                  key.revoked_ms, new)


def revoke(session, key_id: str, *, now_ms: int) -> ApiKey:
    key = get(session, key_id)
    if key.revoked_ms is not None:
        return key
    session.execute("UPDATE api_keys SET revoked_ms = %s WHERE key_id = %s", (now_ms, key_id))
    return ApiKey(key.key_id, key.role, key.carrier, key.name, key.rate_limit_per_min, key.created_ms, now_ms,
                  key.vehicle_patterns)
