"""Carrier raw codes -> FleetFlow (status, detail), driven by data, changeable at runtime.

Mappings start as YAML files in ``fleetflow/carriers/`` and travel on the compacted
``ff.carrier-mappings`` topic (keyed by carrier, highest version wins), where the
lifecycle job holds them as broadcast state. Everything here is pure: the broadcast
side calls ``apply_mapping_update`` and stores what it returns; the scan side calls
``normalise``.

A code nobody mapped is never guessed at: it comes back as ``UnknownCode`` with reason
``UNKNOWN_CARRIER_CODE`` (the carrier is known, the code is not: an onboarding gap worth
an alert, ``carrier_onboarding_alert``) or ``UNKNOWN_CARRIER`` (no mapping for the
carrier at all), so it can be dead-lettered and replayed once a mapping is published.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from udfs.events import Scan
from udfs.taxonomy import (DEFAULT_DETAIL, DETAIL_STATUS, REQUIRED_PAIRS, Detail, Status, parse_detail,
                           parse_status)

UNKNOWN_CARRIER_CODE = "UNKNOWN_CARRIER_CODE"
# Same reason code the admission checks use (udfs/validation.py) for a carrier nobody onboarded.
UNKNOWN_CARRIER = "UNKNOWN_CARRIER"
CARRIER_ONBOARDING = "CARRIER_ONBOARDING"
INVALID_MAPPING = "INVALID_MAPPING"
STALE_MAPPING_VERSION = "STALE_MAPPING_VERSION"
MAPPING_VERSION_CONFLICT = "MAPPING_VERSION_CONFLICT"

# PackageScan fields a carrier's own field names may be mapped onto.
SCAN_FIELDS = frozenset({"event_id", "tracking_id", "carrier", "raw_code", "raw_text", "event_time_ms",
                         "facility_id", "lat", "lon", "vehicle_id", "leg", "source"})

# Keys a mapping may carry: the YAML file's plus the Avro record's (ff.carrier-mappings).
_KNOWN_KEYS = frozenset({"carrier", "display_name", "version", "codes", "custom_fields",
                         "field_mappings", "updated_time_ms"})


def code_key(raw_code: str) -> str:
    """The form codes are stored and looked up in. Carriers send the same code with
    stray whitespace or in lower case depending on the feed, so both sides fold."""
    return raw_code.strip().upper()


def carrier_key(carrier: str) -> str:
    return carrier.strip().upper()


@dataclass(frozen=True)
class CodeMapping:
    raw_code: str
    status: Status
    detail: Detail
    text: str = ""


@dataclass(frozen=True)
class CarrierMapping:
    """One carrier's code table. Treat ``codes`` and ``custom_fields`` as read-only:
    they are plain dicts (not proxies) because Flink pickles broadcast state."""

    carrier: str
    version: int
    codes: Mapping[str, CodeMapping] = field(default_factory=dict, hash=False)
    # Cosmetic and not on the Avro record, so it does not take part in equality.
    display_name: str = field(default="", compare=False)
    custom_fields: Mapping[str, str] = field(default_factory=dict, hash=False)
    updated_time_ms: int = field(default=0, compare=False)

    def lookup(self, raw_code: str) -> CodeMapping | None:
        return self.codes.get(code_key(raw_code))

    def pairs(self) -> frozenset[tuple[Status, Detail]]:
        return frozenset((c.status, c.detail) for c in self.codes.values())

    def codes_for(self, status: Status, detail: Detail) -> tuple[str, ...]:
        """Reverse lookup, sorted so a simulator seeded the same way picks the same code."""
        return tuple(sorted(k for k, c in self.codes.items() if c.status is status and c.detail is detail))

    def same_content(self, other: "CarrierMapping") -> bool:
        return dict(self.codes) == dict(other.codes) and dict(self.custom_fields) == dict(other.custom_fields)


@dataclass(frozen=True)
class NormalisedScan:
    """A scan whose carrier code has been resolved. Field names follow ``Scan``."""

    event_id: str
    tracking_id: str
    carrier: str
    raw_code: str
    event_time_ms: int
    status: Status
    detail: Detail
    raw_text: str = ""
    leg: int = 1
    source: str = "CARRIER"
    facility_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    vehicle_id: str | None = None
    mapping_version: int = 0

    @staticmethod
    def of(scan: Scan, status: Status, detail: Detail, *, text: str = "", mapping_version: int = 0) -> "NormalisedScan":
        return NormalisedScan(
            event_id=scan.event_id, tracking_id=scan.tracking_id, carrier=carrier_key(scan.carrier),
            raw_code=scan.raw_code, event_time_ms=scan.event_time_ms, status=status, detail=detail,
            raw_text=scan.raw_text or text, leg=scan.leg, source=scan.source, facility_id=scan.facility_id,
            lat=scan.lat, lon=scan.lon, vehicle_id=scan.vehicle_id, mapping_version=mapping_version)


@dataclass(frozen=True)
class UnknownCode:
    """A scan that could not be normalised; the original is kept for the dead-letter record."""

    scan: Scan
    reason: str
    detail: str


@dataclass(frozen=True)
class MappingRejected:
    carrier: str
    version: int | None
    reason: str
    errors: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.reason} {self.carrier or '?'} v{self.version}: " + "; ".join(self.errors)


def normalise(mappings: Mapping[str, CarrierMapping], scan: Scan) -> NormalisedScan | UnknownCode:
    mapping = mappings.get(carrier_key(scan.carrier))
    if mapping is None:
        return UnknownCode(scan, UNKNOWN_CARRIER, f"no mapping loaded for carrier {scan.carrier!r}")
    code = mapping.lookup(scan.raw_code)
    if code is None:
        return UnknownCode(scan, UNKNOWN_CARRIER_CODE,
                           f"carrier {mapping.carrier} mapping v{mapping.version} has no code {scan.raw_code!r}")
    return NormalisedScan.of(scan, code.status, code.detail, text=code.text, mapping_version=mapping.version)


def onboarding_alert_id(carrier: str, raw_code: str) -> str:
    """One id per carrier and code, so the alerts job raises a missing code once, however
    many scans carry it and however often they are replayed."""
    return f"{CARRIER_ONBOARDING}:{carrier_key(carrier)}:{code_key(raw_code)}"


def carrier_onboarding_alert(unknown: UnknownCode, mapping_version: int | None, detected_time_ms: int
                             ) -> dict[str, Any]:
    """The ``avro/alerts.avsc`` record that asks someone to map an unknown code."""
    scan = unknown.scan
    carrier = carrier_key(scan.carrier)
    return {
        "alert_id": onboarding_alert_id(carrier, scan.raw_code),
        "type": CARRIER_ONBOARDING,
        "severity": "WARNING",
        "entity_type": "CARRIER",
        "entity_id": carrier,
        "event_time_ms": int(scan.event_time_ms),
        "detected_time_ms": int(detected_time_ms),
        "details": {"raw_code": code_key(scan.raw_code), "raw_text": scan.raw_text or "",
                    "mapping_version": "" if mapping_version is None else str(mapping_version),
                    "example_event_id": scan.event_id, "example_tracking_id": scan.tracking_id,
                    "source": scan.source},
        "route_to": "ops",
        "state": "OPEN",
    }


def apply_custom_fields(mapping: CarrierMapping, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a carrier payload's own field names to PackageScan names, for ingestion
    adapters. Fields without a mapping pass through unchanged."""
    out: dict[str, Any] = {}
    for name, value in payload.items():
        out[mapping.custom_fields.get(name, name)] = value
    return out


def parse_mapping(obj: Any) -> tuple[CarrierMapping | None, list[str]]:
    """Build a CarrierMapping from the YAML shape (``codes`` as a dict keyed by raw code,
    ``custom_fields``) or the Avro shape (``codes`` as a list of records, ``field_mappings``).

    Returns every problem found rather than the first, so one CI run shows an author
    the whole list.
    """
    if isinstance(obj, CarrierMapping):
        errors = validate_carrier_mapping(obj)
        return (None if errors else obj), errors
    if not isinstance(obj, Mapping):
        return None, [f"a carrier mapping must be a mapping, got {type(obj).__name__}"]
    errors: list[str] = [f"unknown key {k!r}" for k in obj if k not in _KNOWN_KEYS]

    carrier = obj.get("carrier")
    if not isinstance(carrier, str) or not carrier.strip():
        errors.append("carrier is missing or empty")
        carrier = ""
    carrier = carrier_key(carrier)

    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        errors.append(f"version must be a positive integer, got {version!r}")
        version = 0

    codes, code_errors = _parse_codes(obj.get("codes"))
    errors.extend(code_errors)

    fields_obj = obj.get("custom_fields", obj.get("field_mappings")) or {}
    custom_fields: dict[str, str] = {}
    if not isinstance(fields_obj, Mapping):
        errors.append("custom_fields must be a mapping of carrier field name -> FleetFlow field name")
    else:
        for src, dst in fields_obj.items():
            if not isinstance(src, str) or not isinstance(dst, str):
                errors.append(f"custom_fields entry {src!r}: {dst!r} must map a string to a string")
            elif dst not in SCAN_FIELDS:
                errors.append(f"custom_fields {src!r} -> {dst!r}: target must be one of {sorted(SCAN_FIELDS)}")
            else:
                custom_fields[src] = dst

    display_name = obj.get("display_name") or ""
    updated = obj.get("updated_time_ms") or 0
    mapping = CarrierMapping(carrier=carrier, version=version, codes=codes, display_name=str(display_name),
                             custom_fields=custom_fields, updated_time_ms=int(updated))
    errors.extend(_missing_pairs(mapping))
    return (None if errors else mapping), errors


def _parse_codes(codes_obj: Any) -> tuple[dict[str, CodeMapping], list[str]]:
    errors: list[str] = []
    if isinstance(codes_obj, Mapping):
        entries = [(k, v) for k, v in codes_obj.items()]
    elif isinstance(codes_obj, (list, tuple)):
        entries = [((e.get("raw_code") if isinstance(e, Mapping) else None), e) for e in codes_obj]
    else:
        return {}, ["codes is missing or not a mapping of raw code -> {status, detail, text}"]
    if not entries:
        errors.append("codes is empty")

    codes: dict[str, CodeMapping] = {}
    for raw, entry in entries:
        if not isinstance(raw, str):
            # YAML reads 01 as the integer 1 and NO as False; the code would never match.
            errors.append(f"code {raw!r} is not a string: quote it in YAML (e.g. \"01\")")
            continue
        key = code_key(raw)
        if not key:
            errors.append("empty raw code")
            continue
        if key in codes:
            errors.append(f"duplicate code {raw!r} (codes compare trimmed and upper-cased)")
            continue
        if not isinstance(entry, Mapping):
            errors.append(f"code {raw!r}: entry must be a mapping with status, detail and text")
            continue
        try:
            status = parse_status(entry.get("status"))
        except ValueError as exc:
            errors.append(f"code {raw!r}: {exc}")
            continue
        detail_name = entry.get("detail")
        if detail_name in (None, ""):
            detail = DEFAULT_DETAIL[status]
        else:
            try:
                detail = parse_detail(detail_name)
            except ValueError as exc:
                errors.append(f"code {raw!r}: {exc}")
                continue
        if DETAIL_STATUS[detail] is not status:
            errors.append(f"code {raw!r}: detail {detail.value} belongs to {DETAIL_STATUS[detail].value}, "
                          f"not {status.value}")
            continue
        codes[key] = CodeMapping(key, status, detail, str(entry.get("text") or ""))
    return codes, errors


def _missing_pairs(mapping: CarrierMapping) -> list[str]:
    have = mapping.pairs()
    return [f"missing required pair ({s.value}, {d.value})" for s, d in REQUIRED_PAIRS if (s, d) not in have]


def validate_carrier_mapping(mapping: CarrierMapping) -> list[str]:
    """Checks on an already-built mapping (one that did not come through parse_mapping)."""
    errors: list[str] = []
    if not mapping.carrier or mapping.carrier != carrier_key(mapping.carrier):
        errors.append(f"carrier {mapping.carrier!r} must be non-empty, trimmed and upper case")
    if isinstance(mapping.version, bool) or not isinstance(mapping.version, int) or mapping.version < 1:
        errors.append(f"version must be a positive integer, got {mapping.version!r}")
    if not mapping.codes:
        errors.append("codes is empty")
    for key, code in mapping.codes.items():
        if key != code_key(key):
            errors.append(f"code {key!r} is not stored trimmed and upper case")
        if not isinstance(code.status, Status) or not isinstance(code.detail, Detail):
            errors.append(f"code {key!r}: status and detail must be taxonomy members")
        elif DETAIL_STATUS[code.detail] is not code.status:
            errors.append(f"code {key!r}: detail {code.detail.value} belongs to "
                          f"{DETAIL_STATUS[code.detail].value}, not {code.status.value}")
    for src, dst in mapping.custom_fields.items():
        if dst not in SCAN_FIELDS:
            errors.append(f"custom_fields {src!r} -> {dst!r}: target must be one of {sorted(SCAN_FIELDS)}")
    errors.extend(_missing_pairs(mapping))
    return errors


def apply_mapping_update(current: Mapping[str, CarrierMapping], update: Any
                         ) -> tuple[dict[str, CarrierMapping], MappingRejected | None]:
    """Fold one record from ``ff.carrier-mappings`` into the broadcast mappings.

    Invalid or stale updates are rejected and the previous mapping for that carrier
    stays in force: a bad publish must not turn a carrier's scans into dead letters.
    Re-reading the same version (the compacted topic replays on restart) is a no-op.
    """
    kept = dict(current)
    mapping, errors = parse_mapping(update)
    carrier = mapping.carrier if mapping else _carrier_hint(update)
    version = mapping.version if mapping else _version_hint(update)
    if mapping is None:
        return kept, MappingRejected(carrier, version, INVALID_MAPPING, tuple(errors))
    existing = current.get(mapping.carrier)
    if existing is not None:
        if mapping.version < existing.version:
            return kept, MappingRejected(carrier, version, STALE_MAPPING_VERSION,
                                         (f"version {mapping.version} is older than loaded v{existing.version}",))
        if mapping.version == existing.version:
            if mapping.same_content(existing):
                return kept, None
            return kept, MappingRejected(carrier, version, MAPPING_VERSION_CONFLICT,
                                         (f"v{mapping.version} is already loaded with different codes; "
                                          "bump the version",))
    kept[mapping.carrier] = mapping
    return kept, None


def _carrier_hint(update: Any) -> str:
    if isinstance(update, CarrierMapping):
        return update.carrier
    if isinstance(update, Mapping) and isinstance(update.get("carrier"), str):
        return carrier_key(update["carrier"])
    return ""


def _version_hint(update: Any) -> int | None:
    v = update.version if isinstance(update, CarrierMapping) else (
        update.get("version") if isinstance(update, Mapping) else None)
    return v if isinstance(v, int) and not isinstance(v, bool) else None
