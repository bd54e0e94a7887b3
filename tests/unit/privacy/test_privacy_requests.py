"""Subject parsing, schema-driven lookup rules and masking, without services."""
import pytest

from fleetflow import privacy
from fleetflow.privacy_requests import (DAY_MS, _row_keys, plan_lookups, REVIEWED_WITHOUT_LOOKUP, Masker, PrivacyError, Subject, TableShape,
                                        Window, alert_matches, column_action, locate, mask_plan, parse_subject,
                                        parse_window)
from tests.unit.cql.cqlparse import load_tables

KEY = b"test-key"


def shape(name, pk, ck=(), **cols):
    return TableShape(name, tuple(pk), tuple(ck), cols)


def test_identifiers_of_one_subject_are_collected_by_kind():
    s = parse_subject(["tracking:1Z1", "order:O-9", "tracking:1Z2"])
    assert s.tracking_ids == {"1Z1", "1Z2"} and s.order_ids == {"O-9"} and s.kind == "customer"


def test_raw_driver_id_is_pseudonymised_and_never_kept():
    s = parse_subject(["driver-id: D-42 "], hmac_key=KEY)
    assert s.driver_pseudonyms == {privacy.pseudonymise_driver("D-42", KEY)}
    assert "D-42" not in repr(s)
    assert s.kind == "driver"


@pytest.mark.parametrize("bad, message", [
    (["1Z1"], "KIND:VALUE"),
    (["tracking:"], "KIND:VALUE"),
    (["email:a@b"], "unknown kind"),
    (["driver:D-42"], "not a pseudonym"),
    ([], "no identifiers"),
])
def test_bad_identifiers_get_a_clear_error(bad, message):
    with pytest.raises(PrivacyError, match=message):
        parse_subject(bad, hmac_key=KEY)


def test_window_parses_and_spans_the_days_it_touches():
    w = parse_window(f"VAN-1:{DAY_MS - 1}:{2 * DAY_MS + 1}")
    assert w == Window("VAN-1", DAY_MS - 1, 2 * DAY_MS + 1)
    assert list(w.days()) == [0, 1, 2]
    assert list(parse_window(f"V:{DAY_MS}:{2 * DAY_MS}").days()) == [1]


def test_vehicle_ids_with_colons_keep_them():
    assert parse_window("fleet:VAN:1:0:10").vehicle_id == "fleet:VAN:1"


@pytest.mark.parametrize("bad, message", [
    ("VAN-1:10", "VEHICLE:FROM_MS:TO_MS"),
    ("VAN-1:a:b", "epoch milliseconds"),
    ("VAN-1:10:10", "before"),
    (f"VAN-1:0:{400 * DAY_MS}", "split it"),
])
def test_bad_windows_get_a_clear_error(bad, message):
    with pytest.raises(PrivacyError, match=message):
        parse_window(bad)


def test_windows_need_a_driver():
    with pytest.raises(PrivacyError, match="driver subject"):
        parse_subject(["tracking:1Z1"], ["VAN-1:0:10"])


def test_lookup_rules_follow_the_partition_key():
    assert locate(shape("a", ["tracking_id"], ["version"])) == "tracking"
    assert locate(shape("b", ["order_id"], ["tracking_id"])) == "order"
    assert locate(shape("c", ["driver_pseudonym"], ["day"])) == "driver"
    assert locate(shape("d", ["vehicle_id", "day"], ["event_time_ms", "event_id"])) == "window"
    assert locate(shape("e", ["vehicle_id", "day"], ["fence_id"])) is None
    assert locate(shape("f", ["status", "day"], ["tracking_id"])) is None
    assert locate(shape("g", ["entity_type", "entity_id"], ["event_time_ms", "alert_id"])) == "entity"
    assert locate(shape("h", ["alert_id"], ["at_ms"])) == "follow"


def test_index_tables_are_searched_by_keys_rebuilt_from_found_rows():
    shapes = [shape("by_id", ["alert_id"], type="text", event_time_ms="bigint", alert_id="text"),
              shape("by_day", ["day", "type"], ["event_time_ms", "alert_id"]),
              shape("by_postcode", ["postcode"], ["tracking_id"])]
    plan = plan_lookups(shapes)
    assert plan == {"by_id": "follow", "by_day": "index", "by_postcode": None}
    rows = [{"alert_id": "a1", "type": "STALL", "event_time_ms": DAY_MS + 5},
            {"alert_id": "a1", "type": "STALL", "event_time_ms": DAY_MS + 5}, {"alert_id": "a2", "type": None}]
    assert _row_keys(rows, ("day", "type", "event_time_ms", "alert_id")) == [(1, "STALL", DAY_MS + 5, "a1")]


def test_index_keys_respect_column_types():
    rows = [{"tracking_id": "1Z1", "event_time_ms": 3 * DAY_MS + 1, "status": "IN_TRANSIT"},
            {"tracking_id": "1Z1", "day": "2026-11-22"}]
    assert _row_keys(rows, ("status", "day", "tracking_id"), {"status": "text", "day": "int", "tracking_id": "text"}) \
        == [("IN_TRANSIT", 3, "1Z1")]
    # A text day is never invented from event_time_ms: only rows that carry one are used.
    assert _row_keys(rows, ("day", "tracking_id"), {"day": "text", "tracking_id": "text"}) == [("2026-11-22", "1Z1")]


def test_alert_tables_are_reached_from_the_entity_timeline():
    plan = migration_plan()
    if "alerts_by_entity" not in plan:
        pytest.skip("008_alerts.cql not present")
    assert plan["alerts_by_entity"] == "entity"
    assert plan["alerts_by_id"] == plan["alert_audit"] == "follow"
    assert plan["alerts_by_day_type"] == "index"


def migration_plan():
    return plan_lookups(TableShape(n, t.partition_key, t.clustering, t.columns) for n, t in load_tables().items())


def test_every_table_in_the_migrations_is_searched_or_reviewed():
    unreviewed = sorted(name for name, rule in migration_plan().items()
                        if rule is None and name not in REVIEWED_WITHOUT_LOOKUP)
    assert not unreviewed, (f"tables no privacy request would search: {unreviewed}. Give them a lookup rule "
                            "or add them with a reason to REVIEWED_WITHOUT_LOOKUP in fleetflow/privacy_requests.py")


def test_current_tables_are_found_by_their_keys():
    tables = load_tables()
    assert locate(TableShape("shipment_history", tables["shipment_history"].partition_key,
                             tables["shipment_history"].clustering, {})) == "tracking"
    vp = tables["vehicle_positions"]
    assert locate(TableShape("vehicle_positions", vp.partition_key, vp.clustering, {})) == "window"


def test_alerts_match_by_entity_pseudonym_or_vehicle_window():
    s = Subject(tracking_ids={"1Z1"}, driver_pseudonyms={"drv_ab"}, windows=[Window("VAN-1", 100, 200)])
    assert alert_matches({"entity_type": "shipment", "entity_id": "1Z1"}, s)
    assert alert_matches({"entity_type": "vehicle", "entity_id": "VAN-9", "details": '{"driver": "drv_ab"}'}, s)
    assert alert_matches({"entity_type": "vehicle", "entity_id": "VAN-1", "event_time_ms": "150"}, s)
    assert not alert_matches({"entity_type": "vehicle", "entity_id": "VAN-1", "event_time_ms": "200"}, s)
    assert not alert_matches({"entity_type": "vehicle", "entity_id": "VAN-1", "event_time_ms": "soon"}, s)
    assert not alert_matches({"entity_type": "shipment", "entity_id": "1Z2"}, s)


def test_mask_plan_pseudonymises_ids_coarsens_places_and_drops_free_text():
    plan = mask_plan(shape("t", ["tracking_id"], tracking_id="text", event_id="text", driver_pseudonym="text",
                           lat="double", stop_lon="double", raw_text="text", postcode="text", status="text",
                           event_time_ms="bigint", late="boolean", legs="map<int, text>"))
    assert plan == {"tracking_id": "pseudonymise", "event_id": "pseudonymise", "driver_pseudonym": "pseudonymise",
                    "lat": "coarsen", "stop_lon": "coarsen", "raw_text": "drop", "postcode": "drop",
                    "status": "keep", "event_time_ms": "keep", "late": "keep", "legs": "drop"}
    assert column_action("anything_new", "text") == "drop"


def test_masked_ids_join_within_one_export_but_not_across_exports():
    a, b = Masker(key=b"k1"), Masker(key=b"k2")
    assert a.pseudonym("1Z1") == a.pseudonym("1Z1") != a.pseudonym("1Z2")
    assert a.pseudonym("1Z1") != b.pseudonym("1Z1")
    assert "1Z1" not in a.pseudonym("1Z1")


def test_mask_rounds_locations_and_keeps_nulls():
    m = Masker(precision_decimals=2, key=b"k")
    plan = {"tracking_id": "pseudonymise", "lat": "coarsen", "lon": "coarsen", "raw_text": "drop", "leg": "keep"}
    out = m.mask({"tracking_id": "1Z1", "lat": 52.520008, "lon": None, "raw_text": "left at door", "leg": 1,
                  "unplanned": "x"}, plan)
    assert out == {"tracking_id": m.pseudonym("1Z1"), "lat": 52.52, "lon": None, "leg": 1}


def test_precision_is_bounded():
    with pytest.raises(PrivacyError):
        Masker(precision_decimals=7)


def test_subject_refs_are_stable_keyed_and_separate_kinds():
    ref = privacy.subject_ref("tracking", "1Z1", KEY)
    assert ref == privacy.subject_ref("tracking", " 1Z1 ", KEY) and ref.startswith("sub_")
    assert ref != privacy.subject_ref("order", "1Z1", KEY)
    assert ref != privacy.subject_ref("tracking", "1Z1", b"other-key")
    assert "1Z1" not in ref
    with pytest.raises(ValueError):
        privacy.subject_ref("tracking", " ", KEY)
