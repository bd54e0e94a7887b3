"""Keys, roles, carrier scope and rate limits; every refusal has the error shape."""
import time

import pytest

from fleetflow import apikeys
from tests.api.conftest import assert_error

pytestmark = pytest.mark.stack


def test_request_without_key_is_401_with_challenge(client):
    r = client.get("/v1/track/TRK00000001")
    assert_error(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("raw", ["nonsense", "ffk_0123456789abcdef_" + "x" * 43, "Bearer"])
def test_malformed_or_unknown_key_is_401(client, raw):
    assert_error(client.get("/v1/track/TRK00000001", headers={"Authorization": f"Bearer {raw}"}), 401)


def test_x_api_key_header_works_like_bearer(client, make_key):
    h = make_key("customer")
    raw = h["Authorization"].split(" ", 1)[1]
    assert_error(client.get("/v1/track/NOSUCHTRACKING", headers={"X-API-Key": raw}), 404, "SHIPMENT_NOT_FOUND")


def test_revoked_key_is_refused(client, key_session, api_settings):
    key, raw = apikeys.create(key_session, api_settings.key_pepper.get_secret_value().encode(), role="dispatcher",
                              name="revoked", now_ms=int(time.time() * 1000))
    apikeys.revoke(key_session, key.key_id, now_ms=int(time.time() * 1000))
    assert_error(client.get("/v1/vehicles", headers={"Authorization": f"Bearer {raw}"}), 401)


def test_key_hash_is_stored_never_the_key(key_session, api_settings):
    pepper = api_settings.key_pepper.get_secret_value().encode()
    key, raw = apikeys.create(key_session, pepper, role="customer", now_ms=int(time.time() * 1000))
    row = key_session.execute("SELECT * FROM api_keys WHERE key_id = %s", (key.key_id,)).one()
    assert raw not in " ".join(str(v) for v in row)
    assert row.key_hash == apikeys.hash_key(raw, pepper) and len(row.key_hash) == 64
    apikeys.revoke(key_session, key.key_id, now_ms=int(time.time() * 1000))


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/shipments?status=IN_TRANSIT"), ("GET", "/v1/shipments/TRK00000001"),
    ("GET", "/v1/vehicles"), ("GET", "/v1/vehicles/VAN001"), ("GET", "/v1/alerts"),
    ("POST", "/v1/alerts/A1/ack"), ("GET", "/v1/geofences"), ("POST", "/v1/events")])
def test_customer_key_cannot_use_dispatcher_or_partner_routes(client, make_key, method, path):
    h = make_key("customer")
    r = client.request(method, path, headers=h, json={"events": [{"kind": "scan"}]} if method == "POST" else None)
    assert_error(r, 403, "FORBIDDEN")


def test_partner_key_cannot_track_vehicles_or_alerts(client, make_key):
    h = make_key("partner", carrier="FEDEX")
    for path in ("/v1/track/TRK00000001", "/v1/vehicles", "/v1/alerts"):
        assert_error(client.get(path, headers=h), 403, "FORBIDDEN")


def test_partner_sees_only_its_carriers_shipments(client, make_key, shipment_hash, run_id):
    shipment_hash(f"FX{run_id}", carrier="FEDEX",
                  legs='[{"leg": 1, "carrier": "FEDEX"}]')
    shipment_hash(f"UP{run_id}", carrier="UPS", legs='[{"leg": 1, "carrier": "UPS"}]')
    shipment_hash(f"HO{run_id}", carrier="UPS", leg=2,
                  legs='[{"leg": 1, "carrier": "FEDEX"}, {"leg": 2, "carrier": "UPS"}]')
    fedex = make_key("partner", carrier="FEDEX")
    assert client.get(f"/v1/shipments/FX{run_id}", headers=fedex).status_code == 200
    # A shipment FedEx handed over to UPS is still partly FedEx's.
    assert client.get(f"/v1/shipments/HO{run_id}", headers=fedex).status_code == 200
    assert_error(client.get(f"/v1/shipments/UP{run_id}", headers=fedex), 404, "SHIPMENT_NOT_FOUND")
    assert_error(client.get("/v1/shipments?carrier=UPS", headers=fedex), 403, "CARRIER_NOT_ALLOWED")


def test_rate_limit_answers_429_with_retry_after(client, make_key):
    h = make_key("dispatcher", rate_limit=3)
    codes = [client.get("/v1/vehicles/NOSUCHVAN", headers=h).status_code for _ in range(3)]
    assert codes == [404, 404, 404]
    r = client.get("/v1/vehicles/NOSUCHVAN", headers=h)
    assert_error(r, 429, "RATE_LIMITED")
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_track_hot_path_counts_against_the_limit_too(client, make_key):
    h = make_key("customer", rate_limit=2)
    assert [client.get("/v1/track/NOSUCHTRK", headers=h).status_code for _ in range(2)] == [404, 404]
    assert_error(client.get("/v1/track/NOSUCHTRK", headers=h), 429, "RATE_LIMITED")


def test_bad_requests_get_4xx_with_the_error_shape(client, make_key):
    staff = make_key("dispatcher")
    cust = make_key("customer")
    assert_error(client.get("/v1/track/bad id!", headers=cust), 422, "INVALID_REQUEST")
    assert_error(client.get("/v1/track/NOSUCH/history?limit=0", headers=cust), 422, "INVALID_REQUEST")
    assert_error(client.get("/v1/shipments", headers=staff), 400, "FILTER_REQUIRED")
    assert_error(client.get("/v1/shipments?status=IN_TRANSIT&page_token=forged.token", headers=staff), 400,
                 "INVALID_PAGE_TOKEN")
    assert_error(client.get("/v1/vehicles?near=91,200", headers=staff), 400, "INVALID_NEAR")
    assert_error(client.get("/v1/vehicles/V1/positions?from_ms=2&to_ms=1", headers=staff), 400, "INVALID_RANGE")
    assert_error(client.post("/v1/alerts/A1/ack", headers=staff, json={"action": "ASSIGN"}), 422, "INVALID_REQUEST")
    assert_error(client.post("/v1/alerts/A1/ack", headers=staff, content=b"{not json",
                             ), 422, "INVALID_REQUEST")
    assert_error(client.get("/v1/nowhere", headers=staff), 404, "NOT_FOUND")
    assert_error(client.delete("/v1/vehicles", headers=staff), 405, "METHOD_NOT_ALLOWED")
