"""Customer tracking: nothing personal, a coarse position, hidden shipments are 404,
one Redis round trip, history pages newest first."""
import math
import time

import h3
import pytest

from tests.api.conftest import assert_error

pytestmark = pytest.mark.stack

# Fields the shipment hash holds that a tracking id must never reveal.
PRIVATE = {"last_facility_id", "last_lat", "last_lon", "order_id", "legs", "last_event_id", "prev_status",
           "service_level", "version", "address", "postcode", "facility_id", "raw_text", "vehicle_id"}


def _keys(x):
    if isinstance(x, dict):
        for k, v in x.items():
            yield k
            yield from _keys(v)
    elif isinstance(x, list):
        for v in x:
            yield from _keys(v)


def _distance_m(lat1, lon1, lat2, lon2):
    r = 6_371_000
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def test_track_hides_address_and_coarsens_location(client, make_key, shipment_hash, run_id):
    tid = f"TRK{run_id}"
    exact = (52.520008, 13.404954)
    shipment_hash(tid, last_lat=exact[0], last_lon=exact[1], last_facility_id="STOP-Musterstrasse-12",
                  eta_ms=1, eta_earliest_ms=0, eta_latest_ms=2, eta_confidence=0.7, eta_as_of_ms=5, late_risk="OPEN")
    r = client.get(f"/v1/track/{tid}", headers=make_key("customer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert not PRIVATE & set(_keys(body)), body
    assert "Musterstrasse" not in r.text and "BER1" not in r.text and f"O-{tid}" not in r.text
    loc = body["approx_location"]
    assert h3.get_resolution(loc["h3_cell"]) == 7
    assert h3.latlng_to_cell(exact[0], exact[1], 7) == loc["h3_cell"]
    # The shown point is the cell centre: near the scan, but not the scan.
    assert (loc["lat"], loc["lon"]) != exact
    assert 0 < _distance_m(loc["lat"], loc["lon"], *exact) < 2 * loc["precision_m"]
    assert body["status"] == "IN_TRANSIT" and body["carrier"] == "FEDEX"
    assert body["eta"] == {"eta_ms": 1, "earliest_ms": 0, "latest_ms": 2, "confidence": 0.7, "as_of_ms": 5}
    assert body["late_risk"] is True and body["delivered_or_closed"] is False


def test_track_without_eta_or_position_has_nulls(client, make_key, shipment_hash, run_id):
    tid = f"TRK{run_id}N"
    shipment_hash(tid, last_lat="", last_lon="", promised_start_ms="", promised_end_ms="")
    body = client.get(f"/v1/track/{tid}", headers=make_key("customer")).json()
    assert body["eta"] is None and body["approx_location"] is None and body["promised"] is None
    assert body["late_risk"] is None


def test_hidden_shipment_is_404_for_customers_but_visible_to_dispatchers(client, make_key, shipment_hash, run_id):
    tid = f"DEL{run_id}"
    shipment_hash(tid, status="CANCELLED", hidden_from_customers="True", terminal="True")
    assert_error(client.get(f"/v1/track/{tid}", headers=make_key("customer")), 404, "SHIPMENT_NOT_FOUND")
    assert_error(client.get(f"/v1/track/{tid}/history", headers=make_key("customer")), 404, "SHIPMENT_NOT_FOUND")
    r = client.get(f"/v1/shipments/{tid}", headers=make_key("dispatcher"))
    assert r.status_code == 200 and r.json()["state"]["hidden_from_customers"] is True


class _CountingRedis:
    """Counts round trips: every awaited command and every pipeline execute."""

    def __init__(self, inner):
        self._inner, self.round_trips = inner, 0

    def pipeline(self, *a, **kw):
        pipe = self._inner.pipeline(*a, **kw)
        outer = self
        real_execute = pipe.execute

        async def execute(*ea, **ekw):
            outer.round_trips += 1
            return await real_execute(*ea, **ekw)

        pipe.execute = execute
        return pipe

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        async def call(*a, **kw):
            self.round_trips += 1
            return await attr(*a, **kw)

        return call


def test_track_is_one_redis_round_trip(app, client, make_key, shipment_hash, run_id):
    tid = f"RT{run_id}"
    shipment_hash(tid)
    h = make_key("customer")
    client.get(f"/v1/track/{tid}", headers=h)  # warms the key cache, as on any busy server
    real = app.state.redis
    spy = app.state.redis = _CountingRedis(real)
    try:
        assert client.get(f"/v1/track/{tid}", headers=h).status_code == 200
    finally:
        app.state.redis = real
    assert spy.round_trips == 1


def test_history_pages_newest_first_without_raw_text(client, make_key, shipment_hash, cql, run_id):
    tid = f"HIS{run_id}"
    shipment_hash(tid)
    session = cql()
    now_ms = int(time.time() * 1000)
    for i, (status, detail) in enumerate([("PRE_TRANSIT", "LABEL_CREATED"), ("IN_TRANSIT", "PICKED_UP"),
                                          ("IN_TRANSIT", "ARRIVED_AT_HUB")]):
        session.execute("INSERT INTO shipment_history (tracking_id, event_time_ms, event_id, status, status_detail, "
                        "carrier, raw_code, raw_text, facility_id, leg, source, late) "
                        "VALUES (%s, %s, %s, %s, %s, 'FEDEX', 'X', 'Signed by J. Doe', 'BER1', 1, 'CARRIER', false)",
                        (tid, now_ms - (3 - i) * 60_000, f"{tid}-{i}", status, detail))
    h = make_key("customer")
    first = client.get(f"/v1/track/{tid}/history?limit=2", headers=h).json()
    assert [e["status_detail"] for e in first["events"]] == ["ARRIVED_AT_HUB", "PICKED_UP"]
    assert "J. Doe" not in str(first) and "BER1" not in str(first)
    second = client.get(f"/v1/track/{tid}/history?limit=2&page_token={first['next_page_token']}", headers=h).json()
    assert [e["status_detail"] for e in second["events"]] == ["LABEL_CREATED"]
    assert second["next_page_token"] is None
    # A token belongs to its query: it does not open another shipment's history.
    assert_error(client.get(f"/v1/track/OTHER{run_id}/history?limit=2&page_token={first['next_page_token']}",
                            headers=h), 404)
    shipment_hash(f"OTHER{run_id}")
    assert_error(client.get(f"/v1/track/OTHER{run_id}/history?limit=2&page_token={first['next_page_token']}",
                            headers=h), 400, "INVALID_PAGE_TOKEN")
