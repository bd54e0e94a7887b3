"""Geofences through the compacted ff.geofences topic."""
import pytest

from fleetflow import contracts, topics
from tests.api.conftest import assert_error

pytestmark = pytest.mark.stack


def test_create_list_delete_geofence(client, make_key, topic_tail, run_id):
    h = make_key("dispatcher")
    tail = topic_tail(topics.GEOFENCES.name)
    gid = f"GF-TEST-{run_id}"
    r = client.post("/v1/geofences", headers=h, json={
        "geofence_id": gid, "name": "Test hub", "kind": "HUB", "circle": {"lat": 52.5, "lon": 13.4, "radius_m": 150}})
    assert r.status_code == 201, r.text
    assert gid in [g["geofence_id"] for g in client.get("/v1/geofences", headers=h).json()["items"]]
    assert client.delete(f"/v1/geofences/{gid}", headers=h).status_code == 202
    assert gid not in [g["geofence_id"] for g in client.get("/v1/geofences", headers=h).json()["items"]]
    assert_error(client.delete(f"/v1/geofences/{gid}", headers=h), 404, "GEOFENCE_NOT_FOUND")
    records = [(k.decode(), contracts.decode(v, expected="geofences")[1]) for k, v in tail()]
    assert [(k, rec["deleted"]) for k, rec in records] == [(gid, False), (gid, True)]
    assert records[0][1]["circle"] == {"lat": 52.5, "lon": 13.4, "radius_m": 150.0}


@pytest.mark.parametrize("body", [
    {"kind": "HUB"},
    {"kind": "HUB", "polygon_wkt": "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"},
    {"kind": "HUB", "polygon_wkt": "LINESTRING(0 0, 1 1)"},
    {"kind": "HUB", "polygon_wkt": "not wkt"},
    {"kind": "HUB", "circle": {"lat": 91, "lon": 0, "radius_m": 10}},
    {"kind": "HUB", "circle": {"lat": 52, "lon": 13, "radius_m": 10},
     "polygon_wkt": "POLYGON((13 52, 13.1 52, 13.1 52.1, 13 52))"},
    {"kind": "PARKING", "circle": {"lat": 52, "lon": 13, "radius_m": 10}},
])
def test_invalid_geofences_are_422(client, make_key, body):
    assert_error(client.post("/v1/geofences", headers=make_key("dispatcher"), json=body), 422)
