"""Identifier checks (udfs.validation.ID_FIELDS) for every topic the jobs validate."""
import pytest

from tests.builders import (T0_MS, alert, alert_ack, assignment, carrier_mapping, geofence, minutes, ping, plan,
                            scan, shipment_state)
from udfs.alerts import validate_ack, validate_alert
from udfs.eta import assignment_problem
from udfs.lanes import shipment_state_problem
from udfs.validation import (BAD_ID, ID_FIELDS, ID_REASONS, ID_TOO_LONG, MAX_EVENT_ID_CHARS, MAX_KEY_CHARS,
                             MISSING_ID, REASONS, IdField, ValidationConfig, id_problem, id_value_problem, ids_reason,
                             topic_id_problem, validate_ping, validate_scan)

NOW_MS = T0_MS + minutes(1)
CFG = ValidationConfig()
CARRIERS = frozenset({"FEDEX", "UPS", "DHL"})

# Every topic a job validates: a valid record and its own admission check (None: ids only,
# applied by fleetflow.ingest.route_record).
TOPICS = {
    "scans": (lambda: scan(), lambda r: validate_scan(r, NOW_MS, CFG, CARRIERS)),
    "pings": (lambda: ping(), lambda r: validate_ping(r, NOW_MS, CFG)),
    "plans": (lambda: plan(tracking_ids=("TRK1", "TRK2")), None),
    "assignments": (lambda: assignment(), assignment_problem),
    "geofences": (lambda: geofence(), None),
    "carrier_mappings": (lambda: carrier_mapping(), None),
    "shipment_states": (lambda: shipment_state(), shipment_state_problem),
    "alerts": (lambda: alert(at_ms=NOW_MS), lambda r: validate_alert(r, NOW_MS)),
    "alert_acks": (lambda: alert_ack(at_ms=NOW_MS), lambda r: validate_ack(r, NOW_MS)),
}
EVENT_IDS = {("scans", "event_id"), ("pings", "event_id"), ("assignments", "event_id"),
             ("shipment_states", "event_id"), ("alerts", "alert_id"), ("alert_acks", "ack_id"),
             ("alert_acks", "alert_id")}
CASES = [(schema, f) for schema, fields in ID_FIELDS.items() for f in fields]


def _set(record, path, value):
    """A copy of ``record`` with every value at ``path`` (``a[].b`` style) replaced."""
    head, _, rest = path.partition(".")
    out = dict(record)
    if head.endswith("[]"):
        out[head[:-2]] = [_set(item, rest, value) for item in record[head[:-2]]]
    elif rest:
        out[head] = _set(record[head], rest, value)
    else:
        out[head] = value
    return out


def _checks(schema):
    """Reason codes from the shared id check and from the topic's own check (if any)."""
    _, own = TOPICS[schema]
    return lambda r: {ids_reason(r, ID_FIELDS[schema])} | ({own(r)} if own else set())


# ------------------------------------------------------------------ the table itself

def test_new_reasons_are_in_reasons_for_the_per_reason_metrics():
    assert {MISSING_ID, BAD_ID, ID_TOO_LONG} == ID_REASONS
    assert ID_REASONS <= REASONS


def test_every_validated_topic_has_id_fields():
    assert set(ID_FIELDS) == set(TOPICS)


def test_limits_are_128_for_keys_and_512_for_event_ids():
    assert (MAX_KEY_CHARS, MAX_EVENT_ID_CHARS) == (128, 512)
    for schema, f in CASES:
        expected = MAX_EVENT_ID_CHARS if (schema, f.path) in EVENT_IDS else MAX_KEY_CHARS
        assert f.max_chars == expected, (schema, f.path)


@pytest.mark.parametrize("schema", sorted(TOPICS))
def test_valid_records_of_every_topic_pass(schema):
    make, own = TOPICS[schema]
    assert topic_id_problem(schema, make()) is None
    if own:
        assert own(make()) is None


# ------------------------------------------------------------------ one value

@pytest.mark.parametrize("value", [None, "", "   ", "\t\n", 42, b"TRK1", ["TRK1"]])
def test_absent_blank_or_non_string_is_missing_id(value):
    p = id_value_problem(value, "tracking_id")
    assert p.reason == MISSING_ID and p.field == "tracking_id" and p.detail.startswith("tracking_id is ")


@pytest.mark.parametrize("value", [" TRK1", "TRK1 ", "\tTRK1", "TRK1\n", "\u00a0TRK1", "TRK1\u3000"])
def test_whitespace_at_either_end_is_bad_id(value):
    p = id_value_problem(value, "tracking_id")
    assert p.reason == BAD_ID
    assert "tracking_id" in p.detail and "whitespace" in p.detail


@pytest.mark.parametrize("value", ["TRK\x001", "TRK\x1b[31m", "TR\rK", "TRK\x7f1", "TRK\x851", "TRK\u20281",
                                   "a\nb"])
def test_control_characters_inside_are_bad_id(value):
    p = id_value_problem(value, "vehicle_id")
    assert p.reason == BAD_ID
    assert p.detail.startswith("vehicle_id ") and "control character U+" in p.detail


@pytest.mark.parametrize("value", ["TRK 0001", "müller-paket-1", "订单-42", "a:b|c#1", "x" * MAX_KEY_CHARS,
                                   "TRK\u200b1"])
def test_ordinary_ids_pass(value):
    assert id_value_problem(value, "tracking_id") is None


def test_key_boundary_is_inclusive_128_accepted_129_rejected():
    assert id_value_problem("T" * 128, "tracking_id") is None
    p = id_value_problem("T" * 129, "tracking_id")
    assert p.reason == ID_TOO_LONG
    assert p.detail == "tracking_id is 129 chars, over the 128-char limit (starts 'TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT')"


def test_event_id_boundary_is_inclusive_512_accepted_513_rejected():
    assert id_value_problem("e" * 512, "event_id", MAX_EVENT_ID_CHARS) is None
    assert id_value_problem("e" * 513, "event_id", MAX_EVENT_ID_CHARS).reason == ID_TOO_LONG


def test_length_counts_characters_not_bytes():
    assert id_value_problem("ü" * 128, "tracking_id") is None
    assert id_value_problem("ü" * 129, "tracking_id").reason == ID_TOO_LONG


def test_a_megabyte_id_is_too_long_and_the_detail_stays_short():
    huge = " \x00" + "T" * 1_000_000
    p = id_value_problem(huge, "tracking_id")
    # Length is checked before content, so a huge id is reported as too long, not scanned.
    assert p.reason == ID_TOO_LONG
    assert len(p.detail) < 200 and "1000002 chars" in p.detail


def test_an_over_long_id_that_is_also_padded_is_too_long():
    assert id_value_problem(" " + "T" * 128, "tracking_id").reason == ID_TOO_LONG


# ------------------------------------------------------------------ records

def test_first_failing_field_in_table_order_wins():
    fields = (IdField("event_id", MAX_EVENT_ID_CHARS), IdField("tracking_id"))
    both = {"event_id": "e\x00", "tracking_id": "T" * 200}
    assert id_problem(both, fields).field == "event_id"
    assert id_problem({**both, "event_id": "e1"}, fields).reason == ID_TOO_LONG


def test_optional_id_may_be_absent_but_not_blank_or_bad():
    fields = (IdField("vehicle_id", optional=True),)
    assert id_problem({}, fields) is None
    assert id_problem({"vehicle_id": None}, fields) is None
    assert id_problem({"vehicle_id": ""}, fields).reason == MISSING_ID
    assert id_problem({"vehicle_id": "VAN\x00"}, fields).reason == BAD_ID
    assert id_problem({"vehicle_id": "V" * 129}, fields).reason == ID_TOO_LONG


def test_nested_ids_name_their_position():
    record = plan(tracking_ids=("TRK1", "TRK2 "))
    p = topic_id_problem("plans", record)
    assert (p.reason, p.field) == (BAD_ID, "shipments[0].packages[1].tracking_id")
    assert p.detail.startswith("shipments[0].packages[1].tracking_id 'TRK2 '")


def test_nested_arrays_that_are_missing_hold_no_ids():
    assert topic_id_problem("plans", {"order_id": "ORD1"}) is None
    assert topic_id_problem("plans", {"order_id": "ORD1", "shipments": "nope"}) is None


def test_missing_keys_do_not_raise():
    for schema in ID_FIELDS:
        assert topic_id_problem(schema, {}).reason == MISSING_ID


def test_unknown_schema_has_no_id_rules():
    assert topic_id_problem("fence_events", {}) is None


# ------------------------------------------------------------------ every field of every topic

@pytest.mark.parametrize("schema,field", CASES, ids=[f"{s}.{f.path}" for s, f in CASES])
def test_each_id_accepts_its_limit_and_rejects_one_more(schema, field):
    make, _ = TOPICS[schema]
    check = _checks(schema)
    assert check(_set(make(), field.path, "i" * field.max_chars)) == {None}
    too_long = _set(make(), field.path, "i" * (field.max_chars + 1))
    assert check(too_long) == {ID_TOO_LONG}
    assert topic_id_problem(schema, too_long).field.endswith(field.path.rsplit(".", 1)[-1].replace("[]", ""))


@pytest.mark.parametrize("schema,field", CASES, ids=[f"{s}.{f.path}" for s, f in CASES])
@pytest.mark.parametrize("value", ["ID1 ", " ID1", "ID\x001", "ID\n1"])
def test_each_id_rejects_padding_and_control_characters(schema, field, value):
    make, _ = TOPICS[schema]
    bad = _set(make(), field.path, value)
    assert _checks(schema)(bad) == {BAD_ID}
    name = field.path.rsplit(".", 1)[-1]
    assert topic_id_problem(schema, bad).detail.split(" ", 1)[0].endswith(name)


@pytest.mark.parametrize("schema,field", CASES, ids=[f"{s}.{f.path}" for s, f in CASES])
@pytest.mark.parametrize("value", ["", "   "])
def test_each_id_blank_is_still_missing_id(schema, field, value):
    make, _ = TOPICS[schema]
    assert _checks(schema)(_set(make(), field.path, value)) == {MISSING_ID}


# ------------------------------------------------------------------ topic checks keep their order

def test_scan_ids_come_before_coordinates_time_and_carrier():
    everything_wrong = {**scan(tracking_id="T" * 129, lat=0.0, lon=0.0, at_ms=NOW_MS + minutes(60)),
                        "carrier": "ACME"}
    assert validate_scan(everything_wrong, NOW_MS, CFG, CARRIERS) == ID_TOO_LONG


def test_an_over_long_carrier_is_unknown_even_to_an_any_carrier_set():
    class AnyCarrier:
        def __contains__(self, carrier):
            return True

    assert validate_scan({**scan(), "carrier": "F" * 129}, NOW_MS, CFG, AnyCarrier()) == "UNKNOWN_CARRIER"
    assert validate_scan({**scan(), "carrier": "F" * 128}, NOW_MS, CFG, AnyCarrier()) is None


def test_alert_ids_come_before_the_admission_window():
    rec = alert(entity_id="VAN\x00", at_ms=NOW_MS + minutes(60))
    assert validate_alert(rec, NOW_MS) == BAD_ID


def test_assignment_ids_come_before_coordinates():
    assert assignment_problem({**assignment(route_id="R" * 129), "stop_lat": 95.0}) == ID_TOO_LONG


def test_shipment_state_ids_come_before_version():
    assert shipment_state_problem(shipment_state(tracking_id="TRK1\t", version=0)) == BAD_ID
    assert shipment_state_problem(shipment_state(order_id=None)) is None
