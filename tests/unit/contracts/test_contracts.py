"""The wire contract: exact bytes, round trips, and old writers readable by the current reader."""
from __future__ import annotations

import io
import json
import math
import struct
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema, to_parsing_canonical_form

from fleetflow import topics
from fleetflow.contracts import AVRO_DIR, ContractError, current_fingerprint, decode, encode, schema_names
from tests import builders as b

HISTORY_DIR = AVRO_DIR / "history"
HISTORY_FILES = sorted(HISTORY_DIR.glob("*.avsc"))


def _history_stem(path: Path) -> str:
    return path.name.split(".v")[0]


# --- An independent CRC-64-AVRO (Rabin) implementation, written from the Avro spec, so the
# --- header check does not just compare fastavro with itself.
_CRC64_EMPTY = 0xC15D213AA4D7A795
_CRC64_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_CRC64_EMPTY & -(_fp & 1))
    _CRC64_TABLE.append(_fp)


def _crc64_avro(data: bytes) -> int:
    fp = _CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp


def _parsed(path: Path) -> Any:
    return parse_schema(json.loads(path.read_text()), named_schemas={})


# One fixed record per topic and its encoding, checked by hand. Header = C3 01 + fingerprint (LE).
# scans body: 08 "ev-1" | 0e "TRK0001" | 0a "FEDEX" | 04 "PU" | 00 "" | 80b0fdd89567 = zigzag(T0_MS)
#   | 00 facility null | 02 location + 52.5, 13.25 as LE doubles | 02 0c "VAN001" | 04 leg 2 | 18 "PARTNER_FILE"
# pings body: 08 "ev-2" | 0c "VAN001" | 00 driver null | time | lat | lon | 02 speed 8.0 | 00 heading null
#   | 02 accuracy 5.0 | 02 source enum index 1 = CELL
GOLDEN: dict[str, tuple[dict[str, Any], str, str]] = {
    "scans": (
        b.scan("TRK0001", "PU", event_id="ev-1", lat=52.5, lon=13.25, vehicle_id="VAN001", leg=2, source="PARTNER_FILE"),
        "0f73494c500fdd57",
        "0865762d310e54524b303030310a46454445580450550080b0fdd8956700020000000000404a400000000000802a40"
        "020c56414e3030310418504152544e45525f46494c45",
    ),
    "pings": (
        b.ping(event_id="ev-2", lat=52.5, lon=13.25, speed_mps=8.0, heading_deg=None, accuracy_m=5.0,
               driver_pseudonym=None, source="CELL"),
        "73b66f134279db14",
        "0865762d320c56414e3030310080b0fdd895670000000000404a400000000000802a40020000000000002040000200"
        "0000000000144002",
    ),
    "plans": (
        b.plan(customs={"hs_codes": ["8471.30"], "declared_value_minor": 129900, "currency": "EUR",
                        "customs_status": "SUBMITTED"}),
        "e1ad463df2bfb0c3",
        "0e4f52443030303102020c4d455230303180b0fdd895670a313031313500044445ce1951da1b444a40f775e09c11c52a40"
        "02144f5244303030312d53310680a0b0ab966780888eb9966702144f5244303030312d50310e54524b30303031000000"
        "0000003e4000000000000034400000000000002440000000000000f83f0002020a4645444558000e4855422d42455216"
        "4445504f542d4245522d4e0002020e383437312e333000d8ed0f064555520400",
    ),
    "assignments": (
        b.assignment(event_id="ev-3"),
        "93074866be793704",
        "0865762d330c56414e3030310a52543030310e54524b3030303100020e53544f50303031ce1951da1b444a40f775e09c"
        "11c52a400080b0fdd89567",
    ),
    "geofences": (
        b.geofence(),
        "382e4b17f1237df6",
        "0a4746303031244265726c696e204d69747465206465706f74000002c3f5285c8f424a408fc2f5285ccf2a4000000000"
        "00c0624080d30e040000000000003e40000080b0fdd89567",
    ),
    "carrier_mappings": (
        b.carrier_mapping(field_mappings={"scanTime": "event_time_ms"}),
        "7566f56fe48d79ef",
        "0a46454445580204045055125049434b45445f5550000004444c1244454c49564552454400000002107363616e54696d65"
        "1a6576656e745f74696d655f6d730080b0fdd89567",
    ),
    "alerts": (
        b.alert(details={"idle_ms": "600000"}, detected_ms=b.T0_MS + 1500),
        "42a218c110689a76",
        "3c56454849434c455f5354414c4c45443a56454849434c453a56414e3030311e56454849434c455f5354414c4c454402"
        "0e56454849434c450c56414e30303180b0fdd89567b8c7fdd89567020e69646c655f6d730c36303030303000066f7073"
        "00",
    ),
    # shipment_states: 0e "TRK0001" | 06 version 3 | 14 "IN_TRANSIT" | 22 "DEPARTED_FACILITY" | 00 prev null
    #   | 08 "ev-1" | time | since | 02 0a "FEDEX" | 02 leg 1 | 00 facility null | 10 "STANDARD" | 02 0a "ORD-1"
    #   | 00 start null | 02 end = T0 + 1 h | 00 terminal | 00 hidden
    "shipment_states": (
        b.shipment_state(order_id="ORD-1", promised_end_ms=b.T0_MS + 3_600_000),
        "3df190624a46adee",
        "0e54524b303030310614494e5f5452414e5349542244455041525445445f464143494c495459000865762d3180b0fdd8956780b0"
        "fdd89567020a46454445580200105354414e44415244020a4f52442d31000280eab4dc95670000",
    ),
    # fence_events: 40 "VAN001|HUB-1|ENTER|<T0>" | 00 enum ENTER | 0c "VAN001" | 0a "HUB-1" | 06 "HUB" | 00 facility null
    #   | time | visit start | detected | 01 interpolated | 10 "OBSERVED"
    "fence_events": (
        b.fence_event(interpolated=True),
        "a07b1cff91ba8f6a",
        "4056414e3030317c4855422d317c454e5445527c31373732343338343030303030000c56414e3030310a4855422d3106485542"
        "0080b0fdd8956780b0fdd8956780b0fdd8956701104f42534552564544",
    ),
    # alert_acks: 0a "ack-1" | 3c alert id | 02 enum ASSIGN | 02 14 "team-north" | 0a "key-1" | 00 note "" | time
    "alert_acks": (
        b.alert_ack(action="ASSIGN", assignee="team-north"),
        "d389280e087b99df",
        "0a61636b2d313c56454849434c455f5354414c4c45443a56454849434c453a56414e3030310202147465616d2d6e6f727468"
        "0a6b65792d310080b0fdd89567",
    ),
    "dead_letters": (
        b.dead_letter(),
        "7b48d4027d35948f",
        "16554e4445434f4441424c45001000676172626167651066662e7363616e73000080b0fdd89567",
    ),
}


def test_every_topic_schema_has_a_golden_encoding():
    assert set(GOLDEN) == set(schema_names()) == {t.schema for t in topics.ALL if t.schema}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_body_is_byte_exact(name):
    record, _, body_hex = GOLDEN[name]
    assert encode(name, record)[10:].hex() == body_hex


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_encoding_is_byte_exact(name):
    record, fingerprint_hex, body_hex = GOLDEN[name]
    assert encode(name, record).hex() == "c301" + fingerprint_hex + body_hex


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_header_starts_with_single_object_marker(name):
    assert encode(name, GOLDEN[name][0])[:2] == b"\xc3\x01"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_header_fingerprint_is_little_endian_crc64_avro_of_canonical_form(name):
    data = encode(name, GOLDEN[name][0])
    canonical = to_parsing_canonical_form(_parsed(AVRO_DIR / f"{name}.avsc"))
    assert data[2:10] == struct.pack("<Q", _crc64_avro(canonical.encode("utf-8")))
    assert data[2:10] == current_fingerprint(name)


def test_golden_fingerprints_are_little_endian_crc64_avro():
    """Checks the literals above independently of the codec."""
    for name, (_, fingerprint_hex, _) in GOLDEN.items():
        canonical = to_parsing_canonical_form(_parsed(AVRO_DIR / f"{name}.avsc"))
        assert struct.pack("<Q", _crc64_avro(canonical.encode("utf-8"))).hex() == fingerprint_hex


def test_crc64_avro_matches_the_spec_test_vector_for_null():
    # From Avro's schema normalisation test data: fingerprint64('"null"') == 7195948357588979594.
    assert _crc64_avro(b'"null"') == 7195948357588979594
    assert _crc64_avro(b'"int"') == 8247732601305521295


def test_zigzag_varint_of_t0_in_golden_scan_is_what_the_spec_says():
    # Hand check of one long: zigzag(n) = 2n for n >= 0, then 7-bit groups, low first, MSB = "more".
    n, out = b.T0_MS * 2, bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    assert out.hex() == "80b0fdd89567"
    assert out.hex() in GOLDEN["scans"][2]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_decode_inverts_encode(name):
    record = GOLDEN[name][0]
    assert decode(encode(name, record)) == (name, record)
    assert decode(encode(name, record), expected=name) == (name, record)


@pytest.mark.parametrize("factory,name", [
    (lambda: b.scan(), "scans"),
    (lambda: b.scan(lat=-33.86, lon=151.2, facility_id="SYD1", raw_text="Arrived at facility"), "scans"),
    (lambda: b.ping(speed_mps=None, heading_deg=None, accuracy_m=None, driver_pseudonym=None), "pings"),
    (lambda: b.plan(tracking_ids=("T1", "T2", "T3"), service_level="SAME_DAY"), "plans"),
    (lambda: b.assignment(action="UNLOADED", stop_order=7), "assignments"),
    (lambda: b.geofence(kind="RESTRICTED", circle=None,
                        polygon_wkt="POLYGON ((13.0 52.0, 13.1 52.0, 13.1 52.1, 13.0 52.0))"), "geofences"),
    (lambda: b.geofence(deleted=True, circle=None), "geofences"),
    (lambda: b.carrier_mapping("UPS", (("I", "IN_TRANSIT"),), version=3), "carrier_mappings"),
    (lambda: b.alert(severity="CRITICAL", state="RESOLVED"), "alerts"),
    (lambda: b.dead_letter(original=bytes(range(256)), source_partition=-1, source_offset=12), "dead_letters"),
])
def test_decode_inverts_encode_for_varied_records(factory, name):
    record = factory()
    assert decode(encode(name, record)) == (name, record)


# --- Schema evolution ---------------------------------------------------------------------------

def _sample(schema: Any, named: dict[str, Any], depth: int = 0) -> Any:
    """A deterministic value for any parsed schema: every branch filled, non-null union branch chosen."""
    if isinstance(schema, list):
        branch = next((s for s in schema if s != "null"), "null")
        return _sample(branch, named, depth)
    if isinstance(schema, str):
        primitives = {"null": None, "boolean": True, "int": 7, "long": b.T0_MS, "float": 1.5, "double": 2.25,
                      "bytes": b"\x01\x02", "string": "x"}
        return primitives[schema] if schema in primitives else _sample(named[schema], named, depth)
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return {f["name"]: _sample(f["type"], named, depth + 1) for f in schema["fields"]}
    if kind == "enum":
        named[schema["name"]] = schema
        return schema["symbols"][-1]
    if kind == "array":
        return [_sample(schema["items"], named, depth + 1)]
    if kind == "map":
        return {"k": _sample(schema["values"], named, depth + 1)}
    if kind == "fixed":
        named[schema["name"]] = schema
        return b"\x00" * schema["size"]
    return _sample(kind, named, depth)


def test_history_covers_scans_and_pings():
    assert {"scans", "pings"} <= {_history_stem(p) for p in HISTORY_FILES}


@pytest.mark.parametrize("path", HISTORY_FILES, ids=lambda p: p.name)
def test_history_file_names_a_current_schema_and_differs_from_it(path):
    name = _history_stem(path)
    assert name in schema_names()
    canonical_old = to_parsing_canonical_form(_parsed(path))
    canonical_now = to_parsing_canonical_form(_parsed(AVRO_DIR / f"{name}.avsc"))
    assert canonical_old != canonical_now, "a history file identical to the current schema is dead weight"


@pytest.mark.parametrize("path", HISTORY_FILES, ids=lambda p: p.name)
def test_current_reader_resolves_every_historical_writer(path):
    """Backward compatibility via fastavro schema resolution, without going through the codec."""
    name = _history_stem(path)
    writer = _parsed(path)
    reader = _parsed(AVRO_DIR / f"{name}.avsc")
    record = _sample(writer, {})
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer, record)
    buf.seek(0)
    resolved = fastavro.schemaless_reader(buf, writer, reader)
    for field in reader["fields"]:
        if field["name"] in record:
            assert resolved[field["name"]] == record[field["name"]]
        else:
            assert "default" in field, f"{name}.{field['name']} was added without a default"
            assert resolved[field["name"]] == field["default"]


@pytest.mark.parametrize("path", HISTORY_FILES, ids=lambda p: p.name)
def test_codec_decodes_historical_writer_bytes_into_current_shape(path):
    name = _history_stem(path)
    writer = _parsed(path)
    data = encode(name, _sample(writer, {}), writer_schema=writer)
    assert data[2:10] != current_fingerprint(name)
    decoded_name, record = decode(data, expected=name)
    assert decoded_name == name
    current_fields = [f["name"] for f in _parsed(AVRO_DIR / f"{name}.avsc")["fields"]]
    assert list(record) == current_fields


def test_v1_scan_reads_as_leg_1_from_carrier():
    v1 = _parsed(HISTORY_DIR / "scans.v1.avsc")
    old = {k: v for k, v in b.scan(event_id="ev-old", lat=52.5, lon=13.4).items() if k not in ("leg", "source")}
    _, record = decode(encode("scans", old, writer_schema=v1))
    assert record == {**old, "leg": 1, "source": "CARRIER"}


def test_v1_ping_reads_with_unknown_accuracy_from_gps():
    v1 = _parsed(HISTORY_DIR / "pings.v1.avsc")
    old = {k: v for k, v in b.ping(event_id="ev-old").items() if k not in ("accuracy_m", "source")}
    _, record = decode(encode("pings", old, writer_schema=v1))
    assert record == {**old, "accuracy_m": None, "source": "GPS"}


# --- Failure modes ------------------------------------------------------------------------------

def _reason(data: Any, expected: str | None = None) -> str:
    with pytest.raises(ContractError) as info:
        decode(data, expected=expected)
    return info.value.reason


def test_unknown_fingerprint_is_reported_as_such():
    valid = encode("scans", GOLDEN["scans"][0])
    assert _reason(valid[:2] + b"\x00" * 8 + valid[10:]) == "UNKNOWN_FINGERPRINT"


@pytest.mark.parametrize("cut", [0, 1, 2, 9, 10, 11, 20, -1])
def test_truncated_input_is_undecodable(cut):
    valid = encode("scans", GOLDEN["scans"][0])
    assert _reason(valid[:cut]) == "UNDECODABLE"


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"{\"event_id\": \"e\"}", b"\xc3\x02" + b"\x00" * 20, "not bytes at all", None,
])
def test_garbage_is_undecodable(data):
    assert _reason(data) == "UNDECODABLE"


def test_trailing_bytes_are_undecodable():
    assert _reason(encode("pings", GOLDEN["pings"][0]) + b"\x00") == "UNDECODABLE"


def test_invalid_utf8_in_a_string_is_undecodable():
    valid = bytearray(encode("scans", GOLDEN["scans"][0]))
    valid[11] = 0xFF  # first byte of "ev-1"
    assert _reason(bytes(valid)) == "UNDECODABLE"


def test_other_topics_bytes_are_the_wrong_schema():
    assert _reason(encode("pings", GOLDEN["pings"][0]), expected="scans") == "WRONG_SCHEMA"


def test_record_not_matching_the_schema_fails_to_encode():
    with pytest.raises(ContractError) as info:
        encode("pings", {**GOLDEN["pings"][0], "lat": "north"})
    assert info.value.reason == "ENCODE_FAILED"


# --- Schema hygiene -----------------------------------------------------------------------------

def _records(schema: Any):
    if isinstance(schema, list):
        for s in schema:
            yield from _records(s)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            yield schema
            for f in schema["fields"]:
                yield from _records(f["type"])
        elif schema.get("type") in ("array", "map"):
            yield from _records(schema.get("items") or schema.get("values"))


ALL_SCHEMA_FILES = sorted(AVRO_DIR.glob("*.avsc")) + HISTORY_FILES

# Personal data must not reach the streams; drivers appear only as HMAC pseudonyms.
PII_MARKERS = ("phone", "email", "first_name", "last_name", "full_name", "customer_name", "driver_name",
               "driver_id", "street", "address_line", "house_number", "birth")


@pytest.mark.parametrize("path", ALL_SCHEMA_FILES, ids=lambda p: p.name)
def test_every_record_is_documented_and_free_of_pii_fields(path):
    for record in _records(json.loads(path.read_text())):
        assert record.get("doc"), f"{path.name}: record {record['name']} has no doc"
        for field in record["fields"]:
            lowered = field["name"].lower()
            assert not any(marker in lowered for marker in PII_MARKERS), f"{path.name}: {field['name']}"
            if "driver" in lowered:
                assert lowered == "driver_pseudonym"


@pytest.mark.parametrize("path", sorted(AVRO_DIR.glob("*.avsc")), ids=lambda p: p.name)
def test_time_fields_carry_their_unit(path):
    for record in _records(json.loads(path.read_text())):
        for field in record["fields"]:
            if "time" in field["name"] and "mappings" not in field["name"]:
                assert field["name"].endswith("_ms"), f"{path.name}: {field['name']}"


def test_nan_coordinates_survive_the_wire_for_validation_to_reject():
    _, record = decode(encode("pings", b.ping(lat=math.nan)))
    assert math.isnan(record["lat"])
