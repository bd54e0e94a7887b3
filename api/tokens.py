"""Opaque, signed page tokens.

A token carries the cursor (e.g. a Cassandra paging state and the day being read) and
the query it belongs to. It is signed with a key derived from the pepper, so a
client cannot forge a cursor or use one query's token on another: anything that does
not verify is a 400 INVALID_PAGE_TOKEN, never a store error.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from api.errors import ApiError

_MAC_BYTES = 16


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class PageTokens:
    def __init__(self, pepper: bytes):
        self._key = hmac.new(pepper, b"fleetflow-page-token", hashlib.sha256).digest()

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, scope: Any, cursor: dict[str, Any]) -> str:
        body = json.dumps({"q": scope, "c": cursor}, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def decode(self, scope: Any, token: str | None) -> dict[str, Any] | None:
        if not token:
            return None
        bad = ApiError(400, "INVALID_PAGE_TOKEN", "page_token is not one this API issued for this query")
        try:
            body_s, mac_s = token.split(".", 1)
            body, mac = _unb64(body_s), _unb64(mac_s)
        except (ValueError, TypeError):
            raise bad from None
        if not hmac.compare_digest(mac, self._mac(body)):
            raise bad
        data = json.loads(body)
        # Round-trip through JSON so a tuple scope compares equal to its decoded list.
        if data.get("q") != json.loads(json.dumps(scope)):
            raise bad
        return data["c"]


def paging_to_str(state: bytes | None) -> str | None:
    return None if state is None else _b64(state)


def paging_from_str(s: str | None) -> bytes | None:
    return None if not s else _unb64(s)
