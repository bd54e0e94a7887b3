import math

import pytest

from tests.builders import T0_MS, hours, minutes, ping, scan
from udfs.validation import (BAD_COORDINATES, BAD_EVENT_TIME, DEFAULT_FUTURE_TOLERANCE_MS, DEFAULT_RETENTION_MS,
                             FUTURE_EVENT, MISSING_ID, TOO_OLD, UNKNOWN_CARRIER, ValidationConfig, validate_ping,
                             validate_scan)

CFG = ValidationConfig()
CARRIERS = frozenset({"FEDEX", "UPS", "DHL"})
NOW_MS = T0_MS + minutes(1)


def scan_reason(record, now_ms=NOW_MS, cfg=CFG):
    return validate_scan(record, now_ms, cfg, CARRIERS)


def ping_reason(record, now_ms=NOW_MS, cfg=CFG):
    return validate_ping(record, now_ms, cfg)


def test_defaults_are_five_minutes_and_seven_days():
    assert CFG.future_tolerance_ms == DEFAULT_FUTURE_TOLERANCE_MS == minutes(5)
    assert CFG.retention_ms == DEFAULT_RETENTION_MS == hours(24 * 7)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        CFG.retention_ms = 1  # type: ignore[misc]


def test_accepts_plain_scan_and_ping():
    assert scan_reason(scan(lat=52.5, lon=13.4, vehicle_id="VAN001")) is None
    assert ping_reason(ping()) is None


@pytest.mark.parametrize("field", ["event_id", "tracking_id"])
@pytest.mark.parametrize("value", ["", "   ", "\t\n", None])
def test_scan_without_id_is_missing_id(field, value):
    assert scan_reason({**scan(), field: value}) == MISSING_ID


def test_scan_with_blank_optional_vehicle_id_is_missing_id():
    assert scan_reason(scan(vehicle_id=" ")) == MISSING_ID


@pytest.mark.parametrize("field", ["event_id", "vehicle_id"])
@pytest.mark.parametrize("value", ["", "  ", None, 42])
def test_ping_without_id_is_missing_id(field, value):
    assert ping_reason({**ping(), field: value}) == MISSING_ID


@pytest.mark.parametrize("lat,lon", [
    (90.0001, 0.5), (-90.5, 10.0), (10.0, 180.01), (10.0, -181.0),
    (math.nan, 13.4), (52.5, math.inf), (-math.inf, 1.0),
    (0.0, 0.0), (5e-7, -5e-7), ("52.5", 13.4), (None, 13.4), (True, 13.4),
])
def test_bad_coordinates(lat, lon):
    assert ping_reason(ping(lat=lat, lon=lon)) == BAD_COORDINATES
    assert scan_reason({**scan(), "location": {"lat": lat, "lon": lon}}) == BAD_COORDINATES


@pytest.mark.parametrize("lat,lon", [(90.0, 180.0), (-90.0, -180.0), (0.0, 13.4), (51.48, 0.0), (2e-6, 0.0)])
def test_edge_coordinates_are_fine(lat, lon):
    assert ping_reason(ping(lat=lat, lon=lon)) is None


def test_scan_without_location_is_fine_but_malformed_location_is_not():
    assert scan_reason(scan()) is None
    assert scan_reason({**scan(), "location": "52.5,13.4"}) == BAD_COORDINATES
    assert scan_reason({**scan(), "location": {"lat": 52.5}}) == BAD_COORDINATES


def test_future_tolerance_is_inclusive():
    assert ping_reason(ping(at_ms=NOW_MS + minutes(5))) is None
    assert ping_reason(ping(at_ms=NOW_MS + minutes(5) + 1)) == FUTURE_EVENT
    assert scan_reason(scan(at_ms=NOW_MS + hours(1))) == FUTURE_EVENT


def test_retention_is_inclusive():
    assert scan_reason(scan(at_ms=NOW_MS - hours(24 * 7))) is None
    assert scan_reason(scan(at_ms=NOW_MS - hours(24 * 7) - 1)) == TOO_OLD
    assert ping_reason(ping(at_ms=0)) == TOO_OLD


def test_thresholds_follow_config():
    strict = ValidationConfig(future_tolerance_ms=0, retention_ms=minutes(10))
    assert ping_reason(ping(at_ms=NOW_MS + 1), cfg=strict) == FUTURE_EVENT
    assert ping_reason(ping(at_ms=NOW_MS - minutes(11)), cfg=strict) == TOO_OLD
    loose_island = ValidationConfig(null_island_epsilon_deg=0.01)
    assert ping_reason(ping(lat=0.005, lon=-0.005), cfg=loose_island) == BAD_COORDINATES


@pytest.mark.parametrize("value", [None, "1772438400000", 1.7e12, True])
def test_non_integer_event_time_is_bad_event_time(value):
    assert ping_reason({**ping(), "event_time_ms": value}) == BAD_EVENT_TIME


@pytest.mark.parametrize("carrier", ["ACME", "", "fedx", None, 7])
def test_unknown_carrier(carrier):
    assert scan_reason({**scan(), "carrier": carrier}) == UNKNOWN_CARRIER


@pytest.mark.parametrize("carrier", ["fedex", " FedEx ", "FEDEX"])
def test_carrier_names_fold_as_the_normaliser_folds_them(carrier):
    assert scan_reason({**scan(), "carrier": carrier}) is None


def test_unknown_raw_code_is_not_decided_here():
    assert scan_reason(scan(raw_code="ZZ-NEVER-SEEN")) is None


def test_reason_order_is_ids_then_coordinates_then_time_then_carrier():
    everything_wrong = {**scan(event_id=" ", lat=math.nan, lon=0.0, at_ms=NOW_MS + hours(2)), "carrier": "ACME"}
    assert scan_reason(everything_wrong) == MISSING_ID
    assert scan_reason({**everything_wrong, "event_id": "e1"}) == BAD_COORDINATES
    assert scan_reason({**everything_wrong, "event_id": "e1", "location": None}) == FUTURE_EVENT
    assert scan_reason({**everything_wrong, "event_id": "e1", "location": None, "event_time_ms": NOW_MS}) == UNKNOWN_CARRIER


def test_missing_keys_do_not_raise():
    assert scan_reason({}) == MISSING_ID
    assert ping_reason({}) == MISSING_ID
    assert ping_reason({"event_id": "e", "vehicle_id": "v"}) == BAD_COORDINATES
