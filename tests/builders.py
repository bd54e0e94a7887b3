"""Shared test vocabulary: named instants and event factories.

Every factory returns the Avro-shaped dict for its topic; wrap with
``Scan.from_record`` / ``Ping.from_record`` where a rule wants the typed view.
"""
from __future__ import annotations

import itertools
from typing import Any

# 2026-03-02 08:00:00 UTC, a Monday morning: shift start for the simulated fleet.
T0_MS = 1_772_438_400_000

_ids = itertools.count(1)


def seconds(n: float) -> int:
    return int(n * 1000)


def minutes(n: float) -> int:
    return int(n * 60_000)


def hours(n: float) -> int:
    return int(n * 3_600_000)


def next_event_id(prefix: str = "ev") -> str:
    return f"{prefix}-{next(_ids):08d}"


def scan(tracking_id: str = "TRK0001", raw_code: str = "PU", *, at_ms: int = T0_MS, carrier: str = "FEDEX",
         event_id: str | None = None, raw_text: str = "", facility_id: str | None = None,
         lat: float | None = None, lon: float | None = None, vehicle_id: str | None = None,
         leg: int = 1, source: str = "CARRIER") -> dict[str, Any]:
    return {
        "event_id": event_id or next_event_id("scan"),
        "tracking_id": tracking_id,
        "carrier": carrier,
        "raw_code": raw_code,
        "raw_text": raw_text,
        "event_time_ms": at_ms,
        "facility_id": facility_id,
        "location": None if lat is None else {"lat": lat, "lon": lon},
        "vehicle_id": vehicle_id,
        "leg": leg,
        "source": source,
    }


def ping(vehicle_id: str = "VAN001", lat: float = 52.5200, lon: float = 13.4050, *, at_ms: int = T0_MS,
         event_id: str | None = None, speed_mps: float | None = 8.0, heading_deg: float | None = 90.0,
         accuracy_m: float | None = 5.0, source: str = "GPS", driver_pseudonym: str | None = "drv-test") -> dict[str, Any]:
    return {
        "event_id": event_id or next_event_id("ping"),
        "vehicle_id": vehicle_id,
        "driver_pseudonym": driver_pseudonym,
        "event_time_ms": at_ms,
        "lat": lat,
        "lon": lon,
        "speed_mps": speed_mps,
        "heading_deg": heading_deg,
        "accuracy_m": accuracy_m,
        "source": source,
    }
