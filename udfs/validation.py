"""Admission checks for scans and pings, before any stateful rule sees them.

Each check returns ``None`` when the record is acceptable, or a reason code that
becomes the dead letter's ``reason``. Checks run in a fixed order (ids, coordinates,
time, carrier) so one record always gets the same reason. The functions never raise
on malformed values: a wrong type is reported as the reason for that field.

Whether a carrier's *status code* is known is not decided here; the lifecycle
normaliser owns the carrier mappings and emits UNKNOWN_CARRIER_CODE itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from udfs.normalise import carrier_key

MISSING_ID = "MISSING_ID"
BAD_COORDINATES = "BAD_COORDINATES"
BAD_EVENT_TIME = "BAD_EVENT_TIME"
FUTURE_EVENT = "FUTURE_EVENT"
TOO_OLD = "TOO_OLD"
UNKNOWN_CARRIER = "UNKNOWN_CARRIER"

REASONS = frozenset({MISSING_ID, BAD_COORDINATES, BAD_EVENT_TIME, FUTURE_EVENT, TOO_OLD, UNKNOWN_CARRIER})

# Device clocks drift and phones batch uploads; a few minutes ahead is skew, more is a bug.
DEFAULT_FUTURE_TOLERANCE_MS = 5 * 60_000
# Matches the scans/pings topic retention: older events could not be replayed consistently.
DEFAULT_RETENTION_MS = 7 * 24 * 3_600_000
# (0, 0) is what broken GPS units and defaulted database columns report, not a real fix in the Gulf of Guinea.
DEFAULT_NULL_ISLAND_EPSILON_DEG = 1e-6


@dataclass(frozen=True)
class ValidationConfig:
    future_tolerance_ms: int = DEFAULT_FUTURE_TOLERANCE_MS
    retention_ms: int = DEFAULT_RETENTION_MS
    null_island_epsilon_deg: float = DEFAULT_NULL_ISLAND_EPSILON_DEG


DEFAULT_CONFIG = ValidationConfig()


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def coordinates_reason(lat: Any, lon: Any, cfg: ValidationConfig = DEFAULT_CONFIG) -> str | None:
    if not (_is_number(lat) and _is_number(lon)):
        return BAD_COORDINATES
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return BAD_COORDINATES
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return BAD_COORDINATES
    eps = cfg.null_island_epsilon_deg
    if abs(lat) < eps and abs(lon) < eps:
        return BAD_COORDINATES
    return None


def event_time_reason(event_time_ms: Any, now_ms: int, cfg: ValidationConfig = DEFAULT_CONFIG) -> str | None:
    if not isinstance(event_time_ms, int) or isinstance(event_time_ms, bool):
        return BAD_EVENT_TIME
    if event_time_ms > now_ms + cfg.future_tolerance_ms:
        return FUTURE_EVENT
    if event_time_ms < now_ms - cfg.retention_ms:
        return TOO_OLD
    return None


def validate_scan(record: Mapping[str, Any], now_ms: int, cfg: ValidationConfig,
                  known_carriers: frozenset[str]) -> str | None:
    """Reason code for a PackageScan dict, or None if it may enter the pipeline."""
    if _blank(record.get("event_id")) or _blank(record.get("tracking_id")):
        return MISSING_ID
    vehicle_id = record.get("vehicle_id")
    # Optional, but an empty string would become a real (and shared) key downstream.
    if vehicle_id is not None and _blank(vehicle_id):
        return MISSING_ID
    location = record.get("location")
    if location is not None:
        if not isinstance(location, Mapping):
            return BAD_COORDINATES
        reason = coordinates_reason(location.get("lat"), location.get("lon"), cfg)
        if reason:
            return reason
    reason = event_time_reason(record.get("event_time_ms"), now_ms, cfg)
    if reason:
        return reason
    carrier = record.get("carrier")
    # Folded as the normaliser folds it (udfs.normalise.carrier_key): "dhl" from one feed
    # and "DHL" from another are one carrier, at the API and in the jobs alike.
    if not isinstance(carrier, str) or carrier_key(carrier) not in known_carriers:
        return UNKNOWN_CARRIER
    return None


def validate_ping(record: Mapping[str, Any], now_ms: int, cfg: ValidationConfig) -> str | None:
    """Reason code for a GpsPing dict, or None if it may enter the pipeline."""
    if _blank(record.get("event_id")) or _blank(record.get("vehicle_id")):
        return MISSING_ID
    reason = coordinates_reason(record.get("lat"), record.get("lon"), cfg)
    if reason:
        return reason
    return event_time_reason(record.get("event_time_ms"), now_ms, cfg)
