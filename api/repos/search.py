"""Shipment search over the append-only index tables (003_lifecycle.cql, 005_eta.cql).

Each index is partitioned by the filter it serves, so every query names whole
partitions and needs no server-side filtering. Index rows can be stale (a shipment has since changed
status), so the route checks every hit against the current state in Redis, and uses
that state to count each shipment once although several day partitions name it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Callable

DAY_MS = 86_400_000


def day_of(ms: int | None) -> int | None:
    return None if ms is None else ms // DAY_MS


@dataclass(frozen=True)
class IndexQuery:
    """One index read: the CQL, the bind values of each partition to read (newest first),
    and which partition a hit belongs to, given the shipment's current state."""
    table: str
    cql: str
    partitions: list[tuple[tuple, int | None]]  # (bind values, the day the partition stands for)
    # (state, partition day) -> is this partition the one place this shipment is reported?
    owns: Callable[[dict[str, Any], int | None], bool]


def days_desc(from_ms: int, to_ms: int) -> list[int]:
    return list(range(to_ms // DAY_MS, from_ms // DAY_MS - 1, -1))


def by_postcode(country: str, postcode: str, order_from_ms: int, order_to_ms: int) -> IndexQuery:
    return IndexQuery("shipments_by_postcode",
                      "SELECT tracking_id FROM shipments_by_postcode WHERE country = ? AND postcode = ? "
                      "AND order_time_ms >= ? AND order_time_ms <= ?",
                      [((country, postcode, order_from_ms, order_to_ms), None)], lambda s, d: True)


def by_order_day(order_from_ms: int, order_to_ms: int) -> IndexQuery:
    return IndexQuery("shipments_by_order_day",
                      "SELECT tracking_id FROM shipments_by_order_day WHERE order_day = ? "
                      "AND order_time_ms >= ? AND order_time_ms <= ?",
                      [((d, order_from_ms, order_to_ms), d) for d in days_desc(order_from_ms, order_to_ms)],
                      lambda s, d: True)


def by_status_day(status: str, from_ms: int, to_ms: int) -> IndexQuery:
    # Reported on the day the current status began: once, and only if that is in the window.
    return IndexQuery("shipments_by_status_day",
                      "SELECT tracking_id FROM shipments_by_status_day WHERE status = ? AND day = ?",
                      [((status, d), d) for d in days_desc(from_ms, to_ms)],
                      lambda s, d: day_of(s.get("status_since_ms")) == d)


def by_carrier_day(carrier: str, from_ms: int, to_ms: int) -> IndexQuery:
    # Reported on the day of the shipment's latest event.
    return IndexQuery("shipments_by_carrier_day",
                      "SELECT tracking_id FROM shipments_by_carrier_day WHERE carrier = ? AND day = ?",
                      [((carrier, d), d) for d in days_desc(from_ms, to_ms)],
                      lambda s, d: day_of(s.get("last_event_time_ms")) == d)


def iso_day(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def by_late_risk_day(from_ms: int, to_ms: int) -> IndexQuery:
    # 005_eta.cql keys this index by the UTC day the promise ends, as YYYY-MM-DD; a
    # shipment whose promise moved is reported on its current promise day only.
    def owns(s: dict[str, Any], d: int | None) -> bool:
        end = day_of(s.get("promised_end_ms"))
        return end is None or end == d

    return IndexQuery("late_risk_by_day", "SELECT tracking_id FROM late_risk_by_day WHERE day = ?",
                      [((iso_day(d),), d) for d in days_desc(from_ms, to_ms)], owns)
