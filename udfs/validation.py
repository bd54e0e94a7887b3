"""Admission checks for every input topic, before any stateful rule sees a record.

Each check returns ``None`` when the record is acceptable, or a reason code that
becomes the dead letter's ``reason``. Checks run in a fixed order (ids, coordinates,
time, carrier) so one record always gets the same reason. The functions never raise
on malformed values: a wrong type is reported as the reason for that field.

Identifiers are checked the same way on every topic (``ID_FIELDS``): they become Kafka
keys, Redis keys and Cassandra partition keys, so each must be present (MISSING_ID),
at most ``MAX_KEY_CHARS`` (keys) or ``MAX_EVENT_ID_CHARS`` (event and alert ids) long
(ID_TOO_LONG), and free of control characters and of whitespace at either end (BAD_ID).
``id_problem`` says which field failed and why, for the dead letter's detail.

Whether a carrier's *status code* is known is not decided here; the lifecycle
normaliser owns the carrier mappings and emits UNKNOWN_CARRIER_CODE itself.
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping

from udfs.normalise import carrier_key

MISSING_ID = "MISSING_ID"
BAD_COORDINATES = "BAD_COORDINATES"
BAD_EVENT_TIME = "BAD_EVENT_TIME"
FUTURE_EVENT = "FUTURE_EVENT"
TOO_OLD = "TOO_OLD"
UNKNOWN_CARRIER = "UNKNOWN_CARRIER"
# An id that is present but unusable as a key: control characters, or whitespace at either end.
BAD_ID = "BAD_ID"
# An id longer than its field allows (MAX_KEY_CHARS / MAX_EVENT_ID_CHARS).
ID_TOO_LONG = "ID_TOO_LONG"

REASONS = frozenset({MISSING_ID, BAD_ID, ID_TOO_LONG, BAD_COORDINATES, BAD_EVENT_TIME, FUTURE_EVENT, TOO_OLD,
                     UNKNOWN_CARRIER})
# The reasons ``id_problem`` can give; their dead letters' detail names the field.
ID_REASONS = frozenset({MISSING_ID, BAD_ID, ID_TOO_LONG})

# Entity keys (tracking_id, vehicle_id, order_id, geofence_id...): Kafka, Redis and Cassandra partition keys.
MAX_KEY_CHARS = 128
# Event-like ids (event_id, alert_id, ack_id): clustering keys and dedup state, generated ids may be longer.
MAX_EVENT_ID_CHARS = 512
# How much of an over-long id the dead letter's detail quotes (the original bytes keep all of it).
ID_PREVIEW_CHARS = 32

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


@dataclass(frozen=True)
class IdField:
    """One identifier of a record. ``path`` is a field name, or a dotted path through
    nested records where ``name[]`` means every element of that array
    (``shipments[].packages[].tracking_id``). ``optional``: None is allowed (absent);
    any other value gets the full check, so an empty string is still MISSING_ID."""
    path: str
    max_chars: int = MAX_KEY_CHARS
    optional: bool = False


@dataclass(frozen=True)
class IdProblem:
    reason: str
    field: str  # the concrete field, array positions included: shipments[0].packages[1].tracking_id
    detail: str


def _event_id(path: str) -> IdField:
    return IdField(path, MAX_EVENT_ID_CHARS)


# The identifiers each input topic's record is keyed, joined or deduplicated by.
ID_FIELDS: dict[str, tuple[IdField, ...]] = {
    "scans": (_event_id("event_id"), IdField("tracking_id"), IdField("vehicle_id", optional=True)),
    "pings": (_event_id("event_id"), IdField("vehicle_id")),
    "plans": (IdField("order_id"), IdField("shipments[].shipment_id"), IdField("shipments[].packages[].package_id"),
              IdField("shipments[].packages[].tracking_id")),
    "assignments": (_event_id("event_id"), IdField("vehicle_id"), IdField("route_id"), IdField("tracking_id"),
                    IdField("stop_id")),
    "geofences": (IdField("geofence_id"),),
    "carrier_mappings": (IdField("carrier"),),
    "shipment_states": (IdField("tracking_id"), _event_id("event_id"), IdField("order_id", optional=True)),
    "alerts": (_event_id("alert_id"), IdField("type"), IdField("entity_type"), IdField("entity_id")),
    "alert_acks": (_event_id("ack_id"), _event_id("alert_id"), IdField("actor")),
}


def _is_control(ch: str) -> bool:
    # Cc: C0 controls, DEL, C1 controls. Zl/Zp: line and paragraph separators, which
    # split log lines and CSV exports as a newline would.
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def id_value_problem(value: Any, name: str, max_chars: int = MAX_KEY_CHARS) -> IdProblem | None:
    """Why ``value`` cannot be the identifier ``name``, or None. Blank (or not a string)
    is MISSING_ID; the length is checked before the content, so a huge id is not scanned."""
    if not isinstance(value, str) or not value.strip():
        shown = "missing" if value is None else ("blank" if isinstance(value, str) else
                                                 f"not a string ({type(value).__name__})")
        return IdProblem(MISSING_ID, name, f"{name} is {shown}")
    if len(value) > max_chars:
        return IdProblem(ID_TOO_LONG, name, f"{name} is {len(value)} chars, over the {max_chars}-char limit "
                                            f"(starts {value[:ID_PREVIEW_CHARS]!r})")
    if value != value.strip():
        return IdProblem(BAD_ID, name, f"{name} {value!r} has whitespace at either end")
    if value.isprintable():
        # The common case, at C speed: printable strings hold no Cc, Zl or Zp characters.
        return None
    for i, ch in enumerate(value):
        if _is_control(ch):
            return IdProblem(BAD_ID, name, f"{name} {value!r} has control character U+{ord(ch):04X} at {i}")
    return None


def _values(record: Any, parts: list[str], shown: str):
    """(concrete field name, value) for every value at ``parts`` below ``record``."""
    head, rest = parts[0], parts[1:]
    many = head.endswith("[]")
    name = head[:-2] if many else head
    value = record.get(name) if isinstance(record, Mapping) else None
    shown = f"{shown}.{name}" if shown else name
    if not many:
        if rest:
            yield from _values(value, rest, shown)
        else:
            yield shown, value
        return
    # A missing or mistyped array cannot pass schema decoding; for a raw dict it holds no ids.
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _values(item, rest, f"{shown}[{i}]")


def id_problem(record: Mapping[str, Any], fields: tuple[IdField, ...]) -> IdProblem | None:
    """The first identifier of ``record`` (in ``fields`` order) that fails, or None."""
    for f in fields:
        for name, value in _values(record, f.path.split("."), ""):
            if value is None and f.optional:
                continue
            problem = id_value_problem(value, name, f.max_chars)
            if problem is not None:
                return problem
    return None


def ids_reason(record: Mapping[str, Any], fields: tuple[IdField, ...]) -> str | None:
    """``id_problem``'s reason code, or None."""
    problem = id_problem(record, fields)
    return None if problem is None else problem.reason


def topic_id_problem(topic_schema: str, record: Mapping[str, Any]) -> IdProblem | None:
    """``id_problem`` with the identifiers ``ID_FIELDS`` lists for ``topic_schema`` (none: None)."""
    return id_problem(record, ID_FIELDS.get(topic_schema, ()))


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
    # vehicle_id is optional, but an empty string would become a real (and shared) key downstream.
    return ids_reason(record, ID_FIELDS["scans"]) or scan_admission_reason(record, now_ms, cfg, known_carriers)


def scan_admission_reason(record: Mapping[str, Any], now_ms: int, cfg: ValidationConfig,
                          known_carriers: frozenset[str]) -> str | None:
    """``validate_scan`` without the id checks, for callers that ran ``topic_id_problem``
    first (``fleetflow.ingest.route_record``, partner files): ids are checked once per record."""
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
    # Longer than any key: no carrier is called that (and the job's any-carrier admission
    # would otherwise pass it on into partition keys and onboarding alert ids).
    if not isinstance(carrier, str) or len(carrier) > MAX_KEY_CHARS or carrier_key(carrier) not in known_carriers:
        return UNKNOWN_CARRIER
    return None


def validate_ping(record: Mapping[str, Any], now_ms: int, cfg: ValidationConfig) -> str | None:
    """Reason code for a GpsPing dict, or None if it may enter the pipeline."""
    return ids_reason(record, ID_FIELDS["pings"]) or ping_admission_reason(record, now_ms, cfg)


def ping_admission_reason(record: Mapping[str, Any], now_ms: int, cfg: ValidationConfig) -> str | None:
    """``validate_ping`` without the id checks (see ``scan_admission_reason``)."""
    reason = coordinates_reason(record.get("lat"), record.get("lon"), cfg)
    if reason:
        return reason
    return event_time_reason(record.get("event_time_ms"), now_ms, cfg)
