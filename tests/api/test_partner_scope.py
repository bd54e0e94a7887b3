"""A partner key is scoped to its carrier: it submits only that carrier's events (its own
vehicles' pings, scans of its shipments) and reads only that carrier's data."""
import time

import pytest

from fleetflow import contracts, topics
from tests.api.conftest import assert_error

pytestmark = pytest.mark.stack


def _scan(tid, i, carrier="FEDEX"):
    return {"kind": "scan", "event_id": f"{tid}-{i}", "tracking_id": tid, "carrier": carrier, "raw_code": "AR",
            "raw_text": "Arrived", "event_time_ms": int(time.time() * 1000) - 60_000, "facility_id": "BER1"}


def _ping(vid, i):
    return {"kind": "ping", "event_id": f"{vid}-{i}", "vehicle_id": vid, "event_time_ms": int(time.time() * 1000),
            "lat": 52.52, "lon": 13.405, "speed_mps": 7.5}


def _ids(pairs, schema):
    return sorted(contracts.decode(v, expected=schema)[1]["event_id"] for _, v in pairs)


@pytest.fixture
def tails(topic_tail):
    """Marks ff.scans, ff.pings and ff.dead-letters now; ``tails()`` returns what each got since."""
    scans, pings, dead = (topic_tail(t.name) for t in (topics.SCANS, topics.PINGS, topics.DEAD_LETTERS))
    return lambda: (scans(), pings(), dead())


def _nothing_published(tails):
    scans, pings, dead = tails()
    assert (scans, pings, dead) == ([], [], [])


# --- pings ---------------------------------------------------------------------------------------------------


def test_partner_pings_for_vehicles_matching_its_patterns_are_accepted(client, make_key, tails, run_id):
    h = make_key("partner", carrier="FEDEX", vehicles=[f"FX{run_id}-VAN*", f"FX{run_id}-TRUCK?"])
    batch = {"events": [_ping(f"FX{run_id}-VAN1", 1), _ping(f"FX{run_id}-TRUCK2", 1), _scan(f"PS{run_id}", 1)]}
    r = client.post("/v1/events", headers=h, json=batch)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 3
    scans, pings, _ = tails()
    assert _ids(pings, "pings") == sorted([f"FX{run_id}-VAN1-1", f"FX{run_id}-TRUCK2-1"])
    assert _ids(scans, "scans") == [f"PS{run_id}-1"]


def test_partner_ping_for_our_van_refuses_the_whole_batch(client, make_key, tails, run_id):
    h = make_key("partner", carrier="FEDEX", vehicles=[f"FX{run_id}-VAN*"])
    batch = {"events": [_scan(f"PV{run_id}", 1), _ping(f"FX{run_id}-VAN1", 1), _ping("VAN007", 1),
                        _ping(f"FX{run_id}-TRUCK1", 1)]}
    body = assert_error(client.post("/v1/events", headers=h, json=batch), 403, "VEHICLE_NOT_ALLOWED")
    msg = body["error"]["message"]
    assert "VAN007" in msg and f"FX{run_id}-TRUCK1" in msg and f"FX{run_id}-VAN*" in msg
    assert f"FX{run_id}-VAN1," not in msg and "nothing in the batch was accepted" in msg
    _nothing_published(tails)


def test_partner_key_without_vehicle_patterns_may_not_submit_pings(client, make_key, tails, run_id):
    h = make_key("partner", carrier="FEDEX")
    body = assert_error(client.post("/v1/events", headers=h, json={"events": [_ping(f"FX{run_id}", 1)]}),
                        403, "VEHICLE_NOT_ALLOWED")
    assert "no vehicle patterns" in body["error"]["message"]
    # Scans alone are still fine for such a key.
    assert client.post("/v1/events", headers=h, json={"events": [_scan(f"NP{run_id}", 1)]}).json()["accepted"] == 1
    scans, pings, dead = tails()
    assert _ids(scans, "scans") == [f"NP{run_id}-1"] and pings == [] and dead == []


def test_partner_ping_without_a_vehicle_id_is_rejected_on_its_own(client, make_key, run_id):
    h = make_key("partner", carrier="FEDEX", vehicles=[f"FX{run_id}*"])
    bad = {k: v for k, v in _ping(f"FX{run_id}", 1).items() if k != "vehicle_id"}
    r = client.post("/v1/events", headers=h, json={"events": [bad, _ping(f"FX{run_id}", 2)]})
    assert r.status_code == 202, r.text
    assert [x["outcome"] for x in r.json()["results"]] == ["rejected", "accepted"]
    assert r.json()["results"][0]["reason"]


def test_vehicle_patterns_change_takes_effect_for_a_fresh_api(client, make_key, key_session, run_id):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from fleetflow import apikeys
    h = make_key("partner", carrier="FEDEX")
    key_id = h["Authorization"].split("_")[1]
    apikeys.set_vehicle_patterns(key_session, key_id, [f"FX{run_id}*"])
    with TestClient(create_app(client.app.state.settings)) as fresh:
        r = fresh.post("/v1/events", headers=h, json={"events": [_ping(f"FX{run_id}1", 1)]})
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text


def test_admin_may_ping_any_vehicle(client, make_key, tails, run_id):
    h = make_key("admin")
    r = client.post("/v1/events", headers=h, json={"events": [_ping(f"VAN{run_id}", 1)]})
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    assert _ids(tails()[1], "pings") == [f"VAN{run_id}-1"]


# --- scans on shipments ----------------------------------------------------------------------------------------


def test_partner_scan_of_a_planned_shipment_of_other_carriers_refuses_the_batch(client, make_key, shipment_hash,
                                                                                 tails, run_id):
    shipment_hash(f"UP{run_id}", carrier="UPS", legs='[{"leg": 1, "carrier": "UPS"}, {"leg": 2, "carrier": "DHL"}]')
    h = make_key("partner", carrier="FEDEX")
    batch = {"events": [_scan(f"NEW{run_id}", 1), _scan(f"UP{run_id}", 1)]}
    body = assert_error(client.post("/v1/events", headers=h, json=batch), 403, "NOT_CARRIERS_SHIPMENT")
    assert f"UP{run_id}" in body["error"]["message"] and f"NEW{run_id}" not in body["error"]["message"]
    _nothing_published(tails)


def test_partner_scans_of_its_own_handed_over_and_unknown_shipments_are_accepted(client, make_key, shipment_hash,
                                                                                tails, run_id):
    # FedEx carries leg 1, UPS leg 2 (now current): still partly FedEx's.
    shipment_hash(f"HO{run_id}", carrier="UPS", leg=2,
                  legs='[{"leg": 1, "carrier": "FEDEX"}, {"leg": 2, "carrier": "UPS"}]')
    # Known only from a UPS scan, no plan yet (no order_id): the plan may still name FedEx.
    shipment_hash(f"NP{run_id}", carrier="UPS", order_id=None, legs='[{"leg": 1, "carrier": "UPS"}]')
    h = make_key("partner", carrier="FEDEX")
    batch = {"events": [_scan(f"HO{run_id}", 1), _scan(f"NP{run_id}", 1), _scan(f"UNKNOWN{run_id}", 1)]}
    r = client.post("/v1/events", headers=h, json=batch)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 3
    assert _ids(tails()[0], "scans") == sorted(f"{t}{run_id}-1" for t in ("HO", "NP", "UNKNOWN"))


def test_refused_batch_keeps_no_idempotency_reservation(client, make_key, shipment_hash, run_id):
    shipment_hash(f"IR{run_id}", carrier="UPS", legs='[{"leg": 1, "carrier": "UPS"}]')
    h = {**make_key("partner", carrier="FEDEX"), "Idempotency-Key": f"refused-{run_id}"}
    batch = {"events": [_scan(f"IR{run_id}", 1)]}
    assert_error(client.post("/v1/events", headers=h, json=batch), 403, "NOT_CARRIERS_SHIPMENT")
    assert_error(client.post("/v1/events", headers=h, json=batch), 403, "NOT_CARRIERS_SHIPMENT")


def test_admin_may_scan_any_shipment(client, make_key, shipment_hash, run_id):
    shipment_hash(f"AU{run_id}", carrier="UPS", legs='[{"leg": 1, "carrier": "UPS"}]')
    r = client.post("/v1/events", headers=make_key("admin"), json={"events": [_scan(f"AU{run_id}", 1)]})
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text


# --- reads -----------------------------------------------------------------------------------------------------


@pytest.fixture
def shipments(cql, shipment_hash, run_id):
    """FX: FedEx only; UP: UPS only; HO: FedEx leg 1 handed over to UPS leg 2 and delivered by our van
    (a geofence-derived scan whose id names the van). History and audit rows in Cassandra."""
    session = cql()
    now_ms = int(time.time() * 1000)
    geo_id = f"geo|VAN{run_id}|fence-1|ENTER|{now_ms}|HO{run_id}"
    shipment_hash(f"FX{run_id}", carrier="FEDEX", legs='[{"leg": 1, "carrier": "FEDEX"}]')
    shipment_hash(f"UP{run_id}", carrier="UPS", legs='[{"leg": 1, "carrier": "UPS"}]')
    shipment_hash(f"HO{run_id}", carrier="UPS", leg=2, last_event_id=geo_id,
                  legs='[{"leg": 1, "carrier": "FEDEX"}, {"leg": 2, "carrier": "UPS"}]')
    history = [(f"HO{run_id}", now_ms - 3000, f"fx-{run_id}", "FEDEX", "AR", "FedEx hub", "MEM1", 1, "CARRIER"),
               (f"HO{run_id}", now_ms - 2000, f"up-{run_id}", "UPS", "XD", "UPS depot", "UPS9", 2, "CARRIER"),
               (f"HO{run_id}", now_ms - 1000, geo_id, "FEDEX", "GEO_NEAR_DESTINATION", "", "STOP1", 0, "GEOFENCE"),
               (f"UP{run_id}", now_ms - 1000, f"up2-{run_id}", "UPS", "XD", "UPS depot", "UPS9", 1, "CARRIER")]
    for row in history:
        session.execute("INSERT INTO shipment_history (tracking_id, event_time_ms, event_id, carrier, raw_code, "
                        "raw_text, facility_id, leg, source, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                        "'IN_TRANSIT')", row)
    session.execute("INSERT INTO shipment_audit (tracking_id, version, changed_time_ms, event_id, prev_status, "
                    "new_status, source) VALUES (%s, 1, %s, %s, 'PENDING', 'IN_TRANSIT', 'CARRIER')",
                    (f"HO{run_id}", now_ms - 3000, f"fx-{run_id}"))
    session.execute("INSERT INTO shipment_audit (tracking_id, version, changed_time_ms, event_id, prev_status, "
                    "new_status, source) VALUES (%s, 2, %s, %s, 'IN_TRANSIT', 'OUT_FOR_DELIVERY', 'GEOFENCE')",
                    (f"HO{run_id}", now_ms - 1000, geo_id))
    yield {"geo_id": geo_id}
    for tid in (f"HO{run_id}", f"UP{run_id}"):
        session.execute("DELETE FROM shipment_history WHERE tracking_id = %s", (tid,))
        session.execute("DELETE FROM shipment_audit WHERE tracking_id = %s", (tid,))


def test_partner_shipment_detail_is_its_carriers_and_never_names_our_vans(client, make_key, shipments, run_id):
    fedex = make_key("partner", carrier="FEDEX")
    assert client.get(f"/v1/shipments/FX{run_id}", headers=fedex).status_code == 200
    assert_error(client.get(f"/v1/shipments/UP{run_id}", headers=fedex), 404, "SHIPMENT_NOT_FOUND")
    body = client.get(f"/v1/shipments/HO{run_id}", headers=fedex).json()
    assert body["state"]["last_event_id"] is None
    assert [(a["version"], a["event_id"]) for a in body["audit"]] == [(2, None), (1, f"fx-{run_id}")]
    assert f"VAN{run_id}" not in str(body)
    # Staff see everything.
    staff = client.get(f"/v1/shipments/HO{run_id}", headers=make_key("dispatcher")).json()
    assert staff["state"]["last_event_id"] == shipments["geo_id"]
    assert {a["event_id"] for a in staff["audit"]} == {f"fx-{run_id}", shipments["geo_id"]}


def test_partner_history_holds_only_its_carriers_rows(client, make_key, shipments, run_id):
    fedex = make_key("partner", carrier="FEDEX")
    assert_error(client.get(f"/v1/shipments/UP{run_id}/history", headers=fedex), 404, "SHIPMENT_NOT_FOUND")
    body = client.get(f"/v1/shipments/HO{run_id}/history", headers=fedex).json()
    assert [(e["event_id"], e["carrier"]) for e in body["events"]] == [(None, "FEDEX"), (f"fx-{run_id}", "FEDEX")]
    assert "UPS" not in str(body["events"]) and f"VAN{run_id}" not in str(body)
    ups = client.get(f"/v1/shipments/HO{run_id}/history", headers=make_key("partner", carrier="UPS")).json()
    assert [e["event_id"] for e in ups["events"]] == [f"up-{run_id}"]
    staff = client.get(f"/v1/shipments/HO{run_id}/history", headers=make_key("dispatcher")).json()
    assert len(staff["events"]) == 3 and staff["events"][0]["event_id"] == shipments["geo_id"]


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/track/{tid}"), ("GET", "/v1/track/{tid}/history"),
    ("GET", "/v1/vehicles"), ("GET", "/v1/vehicles?near=52.52,13.405&radius_m=5000"),
    ("GET", "/v1/vehicles/VAN{run}"), ("GET", "/v1/vehicles/VAN{run}/positions"),
    ("GET", "/v1/alerts"), ("GET", "/v1/alerts/stream"), ("POST", "/v1/alerts/A{run}/ack"),
    ("GET", "/v1/geofences"), ("POST", "/v1/geofences"), ("DELETE", "/v1/geofences/G{run}")])
def test_partner_cannot_read_tracking_vehicles_alerts_or_geofences(client, make_key, shipments, run_id, method,
                                                                   path):
    # Even its own carrier's shipment: tracking is the customer view, vans and alerts are ours.
    fedex = make_key("partner", carrier="FEDEX", vehicles=[f"VAN{run_id}*"])
    url = path.format(tid=f"FX{run_id}", run=run_id)
    body = {"action": "ACK"} if "ack" in path else {"geofence_id": f"G{run_id}"} if method == "POST" else None
    assert_error(client.request(method, url, headers=fedex, json=body), 403, "FORBIDDEN")


def test_partner_search_lists_only_its_carriers_shipments(client, make_key, cql, shipment_hash, run_id):
    session = cql()
    now_ms = int(time.time() * 1000)
    day = now_ms // 86_400_000
    carriers = {f"Q{run_id}F": "FEDEX", f"Q{run_id}U": "UPS", f"Q{run_id}H": "UPS"}
    for tid, carrier in carriers.items():
        legs = ('[{"leg": 1, "carrier": "FEDEX"}, {"leg": 2, "carrier": "UPS"}]' if tid.endswith("H")
                else f'[{{"leg": 1, "carrier": "{carrier}"}}]')
        shipment_hash(tid, status="AT_CUSTOMS", carrier=carrier, legs=legs, status_since_ms=now_ms - 1000,
                      last_event_time_ms=now_ms - 1000)
        session.execute("INSERT INTO shipments_by_status_day (status, day, tracking_id, status_since_ms, carrier, "
                        "version) VALUES ('AT_CUSTOMS', %s, %s, %s, %s, 3)", (day, tid, now_ms - 1000, carrier))
    fedex = make_key("partner", carrier="FEDEX")
    r = client.get("/v1/shipments?status=AT_CUSTOMS&limit=200", headers=fedex)
    assert r.status_code == 200, r.text
    ours = sorted(i["tracking_id"] for i in r.json()["items"] if i["tracking_id"].startswith(f"Q{run_id}"))
    assert ours == [f"Q{run_id}F", f"Q{run_id}H"]
    staff = client.get("/v1/shipments?status=AT_CUSTOMS&limit=200", headers=make_key("dispatcher")).json()
    assert sum(i["tracking_id"].startswith(f"Q{run_id}") for i in staff["items"]) == 3
    assert_error(client.get("/v1/shipments?status=AT_CUSTOMS&carrier=UPS", headers=fedex), 403,
                 "CARRIER_NOT_ALLOWED")
