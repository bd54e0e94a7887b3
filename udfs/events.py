"""Plain, immutable views of the events FleetFlow processes.

Records arrive as Avro dicts (see ``avro/``); ``from_record`` builds these views so
that rules in ``udfs/`` never depend on a wire format. Field names follow the Avro
schemas one to one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Scan:
    event_id: str
    tracking_id: str
    carrier: str
    raw_code: str
    raw_text: str
    event_time_ms: int
    facility_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    vehicle_id: str | None = None
    leg: int = 1
    # Where the event came from: CARRIER, PARTNER_API, PARTNER_FILE, GEOFENCE, DRIVER_APP.
    source: str = "CARRIER"

    @staticmethod
    def from_record(r: Mapping[str, Any]) -> "Scan":
        loc = r.get("location") or {}
        return Scan(
            event_id=r["event_id"],
            tracking_id=r["tracking_id"],
            carrier=r["carrier"],
            raw_code=r["raw_code"],
            raw_text=r.get("raw_text") or "",
            event_time_ms=int(r["event_time_ms"]),
            facility_id=r.get("facility_id"),
            lat=loc.get("lat"),
            lon=loc.get("lon"),
            vehicle_id=r.get("vehicle_id"),
            # 0 is meaningful (GEOFENCE scans: "the current leg"); only a missing leg means 1.
            leg=int(r["leg"]) if r.get("leg") is not None else 1,
            source=r.get("source") or "CARRIER",
        )


@dataclass(frozen=True)
class Ping:
    event_id: str
    vehicle_id: str
    driver_pseudonym: str | None
    event_time_ms: int
    lat: float
    lon: float
    speed_mps: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None
    # GPS, CELL (tower fallback, poor accuracy) or DRIVER_CHECKIN.
    source: str = "GPS"

    @staticmethod
    def from_record(r: Mapping[str, Any]) -> "Ping":
        return Ping(
            event_id=r["event_id"],
            vehicle_id=r["vehicle_id"],
            driver_pseudonym=r.get("driver_pseudonym"),
            event_time_ms=int(r["event_time_ms"]),
            lat=float(r["lat"]),
            lon=float(r["lon"]),
            speed_mps=r.get("speed_mps"),
            heading_deg=r.get("heading_deg"),
            accuracy_m=r.get("accuracy_m"),
            source=r.get("source") or "GPS",
        )
