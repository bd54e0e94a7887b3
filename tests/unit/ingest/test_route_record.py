import math

import pytest

from fleetflow.contracts import decode, encode
from fleetflow.ingest import make_dead_letter, route_record
from tests.builders import T0_MS, assignment, hours, minutes, ping, scan
from udfs.validation import ValidationConfig

CFG = ValidationConfig()
CARRIERS = frozenset({"FEDEX", "UPS"})
NOW_MS = T0_MS + minutes(1)


def route(raw, schema="scans", **kw):
    return route_record(raw, schema, NOW_MS, CFG, CARRIERS, **kw)


def test_valid_scan_passes_through_decoded():
    record = scan(event_id="e1", lat=52.5, lon=13.4)
    assert route(encode("scans", record)) == (record, None)


def test_valid_ping_passes_through_decoded():
    record = ping(event_id="p1")
    assert route(encode("pings", record), "pings") == (record, None)


def test_schemas_without_rules_pass_once_decoded():
    record = assignment(event_id="a1")
    assert route(encode("assignments", record), "assignments") == (record, None)


@pytest.mark.parametrize("record,schema,reason", [
    (scan(event_id="  "), "scans", "MISSING_ID"),
    (scan(lat=0.0, lon=0.0), "scans", "BAD_COORDINATES"),
    (scan(at_ms=NOW_MS + hours(1)), "scans", "FUTURE_EVENT"),
    (scan(at_ms=NOW_MS - hours(24 * 8)), "scans", "TOO_OLD"),
    (scan(carrier="ACME"), "scans", "UNKNOWN_CARRIER"),
    (ping(vehicle_id=""), "pings", "MISSING_ID"),
    (ping(lat=math.nan), "pings", "BAD_COORDINATES"),
    (ping(lat=91.0), "pings", "BAD_COORDINATES"),
    (ping(at_ms=NOW_MS + minutes(6)), "pings", "FUTURE_EVENT"),
])
def test_invalid_records_become_dead_letters(record, schema, reason):
    raw = encode(schema, record)
    valid, dead = route(raw, schema, source_partition=3, source_offset=1234)
    assert valid is None
    assert dead["reason"] == reason
    assert dead["original"] == raw
    assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == (f"ff.{schema}", 3, 1234)
    assert dead["detected_time_ms"] == NOW_MS


@pytest.mark.parametrize("raw,reason", [
    (b"", "UNDECODABLE"),
    (b"hello", "UNDECODABLE"),
    (b"\xc3\x01" + b"\xff" * 8 + b"\x00", "UNKNOWN_FINGERPRINT"),
    (encode("scans", scan())[:-3], "UNDECODABLE"),
    (encode("pings", ping()), "WRONG_SCHEMA"),
])
def test_undecodable_bytes_become_dead_letters_with_the_codec_reason(raw, reason):
    valid, dead = route(raw)
    assert valid is None
    assert dead["reason"] == reason
    assert dead["original"] == raw
    assert dead["detail"]


def test_dead_letters_are_encodable_on_the_dead_letter_topic():
    _, dead = route(b"\x00junk", source_topic="ff.scans", source_partition=1, source_offset=99)
    assert decode(encode("dead_letters", dead)) == ("dead_letters", dead)


def test_non_bytes_input_is_dead_lettered_not_raised():
    valid, dead = route("a str, not bytes")  # type: ignore[arg-type]
    assert valid is None and dead["reason"] == "UNDECODABLE"
    assert isinstance(dead["original"], bytes)


def test_explicit_source_topic_overrides_the_default():
    _, dead = route(b"x", source_topic="ff.scans.retry")
    assert dead["source_topic"] == "ff.scans.retry"


def test_make_dead_letter_defaults_mark_non_kafka_origin():
    dl = make_dead_letter("BAD_FILE_LINE", "why", b"line", source_topic="file:x.csv", detected_time_ms=T0_MS)
    assert (dl["source_partition"], dl["source_offset"]) == (-1, -1)
