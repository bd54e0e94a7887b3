"""Vehicles: current state, nearby search from the GEO index, position history pages."""
import time

import pytest

from tests.api.conftest import assert_error

pytestmark = pytest.mark.stack

DAY_MS = 86_400_000


@pytest.fixture
def vans(redis_client, run_id):
    now_ms = int(time.time() * 1000)
    placed = {f"V{run_id}-NEAR": (52.5200, 13.4050), f"V{run_id}-MID": (52.5250, 13.4100),
              f"V{run_id}-FAR": (52.6500, 13.6000)}
    for vid, (lat, lon) in placed.items():
        redis_client.hset(f"ff:vehicle:{vid}", mapping={
            "lat": lat, "lon": lon, "speed_mps": 4.5, "heading_deg": "", "accuracy_m": 8, "source": "GPS",
            "event_time_ms": now_ms, "last_event_time_ms": now_ms, "fences": "GF-A,GF-B", "status": "MOVING",
            "route_id": "R1", "updated_ms": now_ms, "driver_pseudonym": "drv_0123"})
        redis_client.geoadd("ff:vehicles:geo", (lon, lat, vid))
    yield placed
    redis_client.zrem("ff:vehicles:geo", *placed)
    redis_client.delete(*[f"ff:vehicle:{v}" for v in placed])


def test_vehicle_state_is_typed_and_hides_the_driver_pseudonym(client, make_key, vans, run_id):
    body = client.get(f"/v1/vehicles/V{run_id}-NEAR", headers=make_key("dispatcher")).json()
    assert body["lat"] == 52.52 and body["fences"] == ["GF-A", "GF-B"] and body["heading_deg"] is None
    assert "driver_pseudonym" not in body and "drv_0123" not in str(body)
    assert_error(client.get(f"/v1/vehicles/V{run_id}-NONE", headers=make_key("dispatcher")), 404,
                 "VEHICLE_NOT_FOUND")


def test_near_search_is_nearest_first_within_radius(client, make_key, vans, run_id):
    body = client.get("/v1/vehicles?near=52.5200,13.4050&radius_m=2000", headers=make_key("dispatcher")).json()
    ours = [(v["vehicle_id"], v["distance_m"]) for v in body["items"] if v["vehicle_id"].startswith(f"V{run_id}")]
    assert [v for v, _ in ours] == [f"V{run_id}-NEAR", f"V{run_id}-MID"]
    assert ours[0][1] < 5 and 500 < ours[1][1] < 1000


def test_vehicle_list_pages_through_every_van(client, make_key, vans, run_id):
    h = make_key("dispatcher")
    seen, token = [], None
    while True:
        body = client.get("/v1/vehicles?limit=2" + (f"&page_token={token}" if token else ""), headers=h).json()
        seen += [v["vehicle_id"] for v in body["items"]]
        token = body["next_page_token"]
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert {v for v in seen if v.startswith(f"V{run_id}")} == set(vans)


def test_positions_come_newest_first_across_days_in_pages(client, make_key, cql, run_id):
    session = cql()
    vid = f"V{run_id}-HIST"
    now_ms = int(time.time() * 1000)
    times = [now_ms - DAY_MS - 60_000, now_ms - DAY_MS, now_ms - 120_000, now_ms - 60_000]
    for i, t in enumerate(times):
        session.execute("INSERT INTO vehicle_positions (vehicle_id, day, event_time_ms, event_id, lat, lon, source) "
                        "VALUES (%s, %s, %s, %s, 52.5, 13.4, 'GPS')", (vid, t // DAY_MS, t, f"p{i}"))
    h = make_key("dispatcher")
    url = f"/v1/vehicles/{vid}/positions?from_ms={now_ms - 2 * DAY_MS}&to_ms={now_ms}&limit=3"
    first = client.get(url, headers=h).json()
    assert [p["event_time_ms"] for p in first["positions"]] == sorted(times, reverse=True)[:3]
    second = client.get(url + f"&page_token={first['next_page_token']}", headers=h).json()
    assert [p["event_time_ms"] for p in second["positions"]] == [times[0]]
    assert second["next_page_token"] is None
    assert_error(client.get(f"/v1/vehicles/{vid}/positions?from_ms=0&to_ms={now_ms}", headers=h), 400,
                 "RANGE_TOO_LONG")
