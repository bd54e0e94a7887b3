"""Walking-skeleton rule: latest status per shipment, deduplicated by event_id.

Superseded by ``udfs.lifecycle`` once carrier codes are normalised; kept as the
smallest example of the Decision shape and as the fallback for unmapped carriers.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from udfs.decision import Decision
from udfs.events import Scan

# Remember this many recent event_ids per shipment; a shipment sees tens of scans.
RECENT_IDS = 64


@dataclass(frozen=True)
class LatestState:
    status: str
    carrier: str
    last_event_id: str
    last_event_time_ms: int
    recent_event_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryRow:
    tracking_id: str
    event_time_ms: int
    event_id: str
    status: str
    status_detail: str
    carrier: str
    raw_code: str
    raw_text: str
    facility_id: str | None
    leg: int
    source: str
    late: bool


@dataclass(frozen=True)
class CurrentState:
    tracking_id: str
    status: str
    status_detail: str
    carrier: str
    last_event_id: str
    last_event_time_ms: int


def step(state: LatestState | None, scan: Scan, now_ms: int) -> Decision[LatestState]:
    if state is not None and scan.event_id in state.recent_event_ids:
        return Decision(state)
    late = state is not None and scan.event_time_ms < state.last_event_time_ms
    history = HistoryRow(scan.tracking_id, scan.event_time_ms, scan.event_id, scan.raw_code, "", scan.carrier,
                         scan.raw_code, scan.raw_text, scan.facility_id, scan.leg, scan.source, late)
    recent = ((state.recent_event_ids if state else ()) + (scan.event_id,))[-RECENT_IDS:]
    if late:
        return Decision(replace(state, recent_event_ids=recent), (history,))
    new = LatestState(scan.raw_code, scan.carrier, scan.event_id, scan.event_time_ms, recent)
    current = CurrentState(scan.tracking_id, new.status, "", new.carrier, new.last_event_id, new.last_event_time_ms)
    return Decision(new, (history, current))
