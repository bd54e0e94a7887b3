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


def plan(order_id: str = "ORD0001", tracking_ids: tuple[str, ...] = ("TRK0001",), *, at_ms: int = T0_MS,
         window_start_ms: int | None = None, window_end_ms: int | None = None, service_level: str = "STANDARD",
         carrier: str = "FEDEX", postcode: str = "10115", country: str = "DE",
         lat: float = 52.5321, lon: float = 13.3849, customs: dict[str, Any] | None = None,
         plan_version: int = 1) -> dict[str, Any]:
    """One order, one shipment, one package per tracking id, one road leg; promise defaults to T0+1d..+1d4h."""
    start_ms = at_ms + hours(24) if window_start_ms is None else window_start_ms
    end_ms = start_ms + hours(4) if window_end_ms is None else window_end_ms
    return {
        "order_id": order_id,
        "plan_version": plan_version,
        "merchant_id": "MER001",
        "order_time_ms": at_ms,
        "destination": {"postcode": postcode, "city": None, "country": country, "point": {"lat": lat, "lon": lon}},
        "shipments": [{
            "shipment_id": f"{order_id}-S1",
            "service_level": service_level,
            "promised_window_start_ms": start_ms,
            "promised_window_end_ms": end_ms,
            "packages": [{
                "package_id": f"{order_id}-P{i}",
                "tracking_id": tid,
                "dimensions_cm": {"length_cm": 30.0, "width_cm": 20.0, "height_cm": 10.0},
                "weight_kg": 1.5,
            } for i, tid in enumerate(tracking_ids, start=1)],
            "legs": [{"leg": 1, "carrier": carrier, "mode": "ROAD", "origin_hub": "HUB-BER", "destination_hub": "DEPOT-BER-N"}],
            "customs": customs,
        }],
    }


def assignment(vehicle_id: str = "VAN001", tracking_id: str = "TRK0001", action: str = "LOADED", *,
               at_ms: int = T0_MS, event_id: str | None = None, route_id: str = "RT001", stop_order: int = 1,
               stop_id: str = "STOP001", stop_lat: float = 52.5321, stop_lon: float = 13.3849,
               driver_pseudonym: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or next_event_id("asg"),
        "vehicle_id": vehicle_id,
        "route_id": route_id,
        "tracking_id": tracking_id,
        "action": action,
        "stop_order": stop_order,
        "stop_id": stop_id,
        "stop_lat": stop_lat,
        "stop_lon": stop_lon,
        "driver_pseudonym": driver_pseudonym,
        "event_time_ms": at_ms,
    }


def geofence(geofence_id: str = "GF001", kind: str = "DEPOT", *, at_ms: int = T0_MS,
             circle: tuple[float, float, float] | None = (52.5200, 13.4050, 150.0), polygon_wkt: str | None = None,
             name: str = "Berlin Mitte depot", dwell_ms: int = minutes(2), min_pings: int = 2,
             exit_buffer_m: float = 30.0, facility_id: str | None = None, deleted: bool = False) -> dict[str, Any]:
    """A circle by default; pass ``circle=None, polygon_wkt=...`` for a polygon."""
    return {
        "geofence_id": geofence_id,
        "name": name,
        "kind": kind,
        "polygon_wkt": polygon_wkt,
        "circle": None if circle is None else {"lat": circle[0], "lon": circle[1], "radius_m": circle[2]},
        "dwell_ms": dwell_ms,
        "min_pings": min_pings,
        "exit_buffer_m": exit_buffer_m,
        "facility_id": facility_id,
        "deleted": deleted,
        "updated_time_ms": at_ms,
    }


def carrier_mapping(carrier: str = "FEDEX", codes: tuple[tuple[str, str], ...] = (("PU", "PICKED_UP"), ("DL", "DELIVERED")),
                    *, version: int = 1, at_ms: int = T0_MS,
                    field_mappings: dict[str, str] | None = None) -> dict[str, Any]:
    """``codes`` is (raw_code, status) pairs; detail and text are left empty."""
    return {
        "carrier": carrier,
        "version": version,
        "codes": [{"raw_code": raw, "status": status, "detail": "", "text": ""} for raw, status in codes],
        "field_mappings": dict(field_mappings or {}),
        "updated_time_ms": at_ms,
    }


def alert(alert_type: str = "VEHICLE_STALLED", entity_id: str = "VAN001", *, entity_type: str = "VEHICLE",
          at_ms: int = T0_MS, detected_ms: int | None = None, severity: str = "WARNING", state: str = "OPEN",
          alert_id: str | None = None, details: dict[str, str] | None = None, route_to: str = "ops") -> dict[str, Any]:
    return {
        "alert_id": alert_id or f"{alert_type}:{entity_type}:{entity_id}",
        "type": alert_type,
        "severity": severity,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "event_time_ms": at_ms,
        "detected_time_ms": at_ms if detected_ms is None else detected_ms,
        "details": dict(details or {}),
        "route_to": route_to,
        "state": state,
    }


def dead_letter(reason: str = "UNDECODABLE", original: bytes = b"\x00garbage", *, detail: str = "",
                source_topic: str = "ff.scans", source_partition: int = 0, source_offset: int = 0,
                detected_ms: int = T0_MS) -> dict[str, Any]:
    return {
        "reason": reason,
        "detail": detail,
        "original": original,
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "detected_time_ms": detected_ms,
    }


# --- geofence / vehicle geometry -------------------------------------------------------
# Metres per degree near the default ping position; good to ~0.5 %, which every geometry
# test leaves room for by keeping points tens of metres from any edge.
_M_PER_DEG_LAT = 111_250.0


def offset(lat: float, lon: float, *, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float, float]:
    """The point ``north_m``/``east_m`` metres from (lat, lon)."""
    import math
    return (lat + north_m / _M_PER_DEG_LAT,
            lon + east_m / (_M_PER_DEG_LAT * math.cos(math.radians(lat))))


def square_wkt(lat: float, lon: float, half_side_m: float) -> str:
    """WKT of an axis-aligned square of side 2*half_side_m centred on (lat, lon)."""
    s_lat, w_lon = offset(lat, lon, north_m=-half_side_m, east_m=-half_side_m)
    n_lat, e_lon = offset(lat, lon, north_m=half_side_m, east_m=half_side_m)
    return (f"POLYGON(({w_lon} {s_lat}, {e_lon} {s_lat}, {e_lon} {n_lat}, {w_lon} {n_lat}, {w_lon} {s_lat}))")


def shipment_state(tracking_id: str = "TRK0001", status: str = "IN_TRANSIT", detail: str = "DEPARTED_FACILITY", *,
                   version: int = 3, at_ms: int = T0_MS, event_id: str = "ev-1", carrier: str | None = "FEDEX",
                   leg: int = 1, facility_id: str | None = None, service_level: str = "STANDARD",
                   order_id: str | None = None, promised_start_ms: int | None = None,
                   promised_end_ms: int | None = None, prev_status: str | None = None, terminal: bool = False,
                   hidden: bool = False) -> dict[str, Any]:
    """An ``ff.shipment-states`` record (avro/shipment_states.avsc)."""
    return {
        "tracking_id": tracking_id, "version": version, "status": status, "status_detail": detail,
        "prev_status": prev_status, "event_id": event_id, "event_time_ms": at_ms, "status_since_ms": at_ms,
        "carrier": carrier, "leg": leg, "facility_id": facility_id, "service_level": service_level,
        "order_id": order_id, "promised_start_ms": promised_start_ms, "promised_end_ms": promised_end_ms,
        "terminal": terminal, "hidden_from_customers": hidden,
    }


def fence_event(event_type: str = "ENTER", vehicle_id: str = "VAN001", geofence_id: str = "HUB-1", *,
                kind: str = "HUB", at_ms: int = T0_MS, visit_start_ms: int | None = None,
                facility_id: str | None = None, detected_ms: int | None = None, interpolated: bool = False,
                reason: str = "OBSERVED") -> dict[str, Any]:
    """An ``ff.fence-events`` record (avro/fence_events.avsc)."""
    return {
        "event_id": f"{vehicle_id}|{geofence_id}|{event_type}|{at_ms}", "event_type": event_type,
        "vehicle_id": vehicle_id, "geofence_id": geofence_id, "kind": kind, "facility_id": facility_id,
        "event_time_ms": at_ms, "visit_start_ms": at_ms if visit_start_ms is None else visit_start_ms,
        "detected_time_ms": at_ms if detected_ms is None else detected_ms, "interpolated": interpolated,
        "reason": reason,
    }


def alert_ack(alert_id: str = "VEHICLE_STALLED:VEHICLE:VAN001", *, action: str = "ACK", assignee: str | None = None,
              actor: str = "key-1", note: str = "", at_ms: int = T0_MS, ack_id: str = "ack-1") -> dict[str, Any]:
    """An ``ff.alert-acks`` record (avro/alert_acks.avsc)."""
    return {"ack_id": ack_id, "alert_id": alert_id, "action": action, "assignee": assignee, "actor": actor,
            "note": note, "event_time_ms": at_ms}
