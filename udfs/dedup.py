"""Drop repeated deliveries of the same event, keyed by ``event_id``.

Carriers retry webhooks, partners resend files and Kafka producers retry after a
timeout, so the same event arrives more than once. The first arrival wins and is
emitted unchanged; later arrivals with the same id are dropped, even if their payload
differs (a resend is not a correction).

State per event_id: a ``DedupState`` holding when the id was first seen and when
the state expires. It is cleared by the event-time timer at ``expires_at_ms``. A
duplicate does not extend the TTL, so a key whose twin keeps arriving is still
bounded; a twin arriving more than ``ttl_ms`` after the first is emitted again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from udfs.decision import Decision

# Comfortably longer than carrier webhook retry windows (hours) and partner file resend cycles (daily).
DEFAULT_DEDUP_TTL_MS = 24 * 3_600_000


@dataclass(frozen=True)
class DedupState:
    first_event_time_ms: int
    expires_at_ms: int


def _event_time_ms(event: Any) -> int:
    if isinstance(event, Mapping):
        return int(event["event_time_ms"])
    return int(event.event_time_ms)


def step(state: DedupState | None, event: Any, now_ms: int,
         ttl_ms: int = DEFAULT_DEDUP_TTL_MS) -> Decision[DedupState]:
    """``event`` is a record dict or an event view with ``event_time_ms``; the operator keys by event_id."""
    if state is not None:
        return Decision(state)
    event_time_ms = _event_time_ms(event)
    # now_ms is the operator's current event time (watermark), which may still be at its initial
    # minimum or may be ahead of a late event; anchoring on the later of the two keeps the state
    # alive for a full ttl in both cases instead of firing the expiry timer at once.
    expires_at_ms = max(now_ms, event_time_ms) + ttl_ms
    return Decision(DedupState(event_time_ms, expires_at_ms), emits=(event,), timer_ms=expires_at_ms)


def on_timer(state: DedupState | None, timer_ms: int) -> Decision[DedupState]:
    if state is None or timer_ms >= state.expires_at_ms:
        return Decision(None)
    # A timer from an earlier incarnation of this key (it expired, then the id came back).
    return Decision(state)
