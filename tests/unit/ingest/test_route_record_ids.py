"""The front door dead-letters bad identifiers on every topic, naming the field."""
import pytest

from fleetflow.contracts import decode, encode
from fleetflow.ingest import route_record
from tests.builders import (T0_MS, alert, alert_ack, assignment, carrier_mapping, geofence, minutes, ping, plan, scan,
                            shipment_state)
from udfs.validation import MAX_EVENT_ID_CHARS, ValidationConfig

CFG = ValidationConfig()
CARRIERS = frozenset({"FEDEX", "UPS"})
NOW_MS = T0_MS + minutes(1)
MB = 1_000_000

# (schema, valid record, a builder for that record with one key replaced, the key's name in the detail)
KEYS = [
    ("scans", lambda v: scan(tracking_id=v), "tracking_id"),
    ("scans", lambda v: scan(event_id=v), "event_id"),
    ("scans", lambda v: scan(vehicle_id=v), "vehicle_id"),
    ("pings", lambda v: ping(vehicle_id=v), "vehicle_id"),
    ("plans", lambda v: plan(order_id="ORD1", tracking_ids=("TRK1", v)), "shipments[0].packages[1].tracking_id"),
    ("plans", lambda v: {**plan(), "order_id": v}, "order_id"),
    ("assignments", lambda v: assignment(stop_id=v), "stop_id"),
    ("geofences", lambda v: geofence(geofence_id=v), "geofence_id"),
    ("carrier_mappings", lambda v: carrier_mapping(carrier=v), "carrier"),
    ("shipment_states", lambda v: shipment_state(tracking_id=v), "tracking_id"),
    ("alerts", lambda v: alert(entity_id=v, alert_id="a1", at_ms=NOW_MS), "entity_id"),
    ("alert_acks", lambda v: alert_ack(alert_id=v, at_ms=NOW_MS), "alert_id"),
]
IDS = [f"{schema}.{name}" for schema, _, name in KEYS]


def route(raw, schema, **kw):
    return route_record(raw, schema, NOW_MS, CFG, CARRIERS, **kw)


def _limit(name):
    return MAX_EVENT_ID_CHARS if name in ("event_id", "alert_id") else 128


@pytest.mark.parametrize("schema,make,name", KEYS, ids=IDS)
def test_ids_at_the_limit_pass(schema, make, name):
    record = make("k" * _limit(name))
    assert route(encode(schema, record), schema) == (record, None)


@pytest.mark.parametrize("schema,make,name", KEYS, ids=IDS)
@pytest.mark.parametrize("value,reason,says", [
    ("k" * 129, "ID_TOO_LONG", "129 chars"),
    ("k" * MB, "ID_TOO_LONG", f"{MB} chars"),
    ("TRK1 ", "BAD_ID", "whitespace"),
    ("TRK\x001", "BAD_ID", "control character U+0000"),
    ("  ", "MISSING_ID", "blank"),
], ids=["129", "1MB", "padded", "nul", "blank"])
def test_bad_ids_become_dead_letters_that_name_the_field(schema, make, name, value, reason, says):
    if value == "k" * 129 and _limit(name) == MAX_EVENT_ID_CHARS:
        value = "k" * (MAX_EVENT_ID_CHARS + 1)
        says = f"{MAX_EVENT_ID_CHARS + 1} chars"
    raw = encode(schema, make(value))
    valid, dead = route(raw, schema, source_topic=f"ff.{schema}", source_partition=2, source_offset=77)
    assert valid is None
    assert dead["reason"] == reason
    assert dead["detail"].startswith(f"{schema}: {name} ") and says in dead["detail"]
    # The detail never copies a huge id; the original bytes keep everything for a replay.
    assert len(dead["detail"]) < 300
    assert dead["original"] == raw
    assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == (f"ff.{schema}", 2, 77)
    assert dead["detected_time_ms"] == NOW_MS
    assert decode(encode("dead_letters", dead))[1] == dead


def test_other_reasons_clip_long_strings_in_the_detail():
    raw = encode("scans", scan(carrier="C" * MB))
    _, dead = route(raw, "scans")
    assert dead["reason"] == "UNKNOWN_CARRIER"
    assert len(dead["detail"]) < 1_000 and f"({MB} chars)" in dead["detail"]


def test_geofence_deletions_need_a_good_id_too():
    _, dead = route(encode("geofences", geofence(geofence_id="GF\x1b", deleted=True)), "geofences")
    assert dead["reason"] == "BAD_ID"
