"""Readiness of all three stores, Prometheus metrics by route template, JSON access logs."""
import json
import time

import httpx

import pytest

pytestmark = pytest.mark.stack


def test_readyz_checks_redis_cassandra_and_kafka(client):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"redis": "ok", "cassandra": "ok", "kafka": "ok"}}


def test_readyz_is_503_when_a_store_is_down(api_settings):
    from fastapi.testclient import TestClient

    from api.main import create_app
    broken = create_app(api_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    with TestClient(broken) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["redis"] != "ok" and checks["cassandra"] == "ok" and checks["kafka"] == "ok"


def test_metrics_label_route_templates_not_ids(client, make_key, run_id):
    h = make_key("customer")
    client.get(f"/v1/track/MET{run_id}", headers=h)
    text = client.get("/metrics").text
    assert 'fleetflow_api_requests_total{method="GET",route="/v1/track/{tracking_id}",status="404"}' in text
    assert 'fleetflow_api_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/track/{tracking_id}"}' \
        in text
    assert f"MET{run_id}" not in text


def test_access_log_is_one_json_line_per_request(live_api_server, make_key, run_id):
    url, log = live_api_server
    h = make_key("dispatcher")
    assert httpx.get(f"{url}/v1/vehicles/LOG{run_id}", headers=h).status_code == 404
    lines = []
    deadline = time.monotonic() + 5
    while not lines and time.monotonic() < deadline:
        lines = [json.loads(ln) for ln in log.read_text().splitlines()
                 if ln.startswith("{") and '"/v1/vehicles/{vehicle_id}"' in ln]
        time.sleep(0.1)
    line = lines[-1]
    assert line["route"] == "/v1/vehicles/{vehicle_id}" and line["status"] == 404 and line["method"] == "GET"
    assert line["key_id"] == h["Authorization"].split("_")[1] and line["duration_ms"] >= 0
    assert f"LOG{run_id}" not in log.read_text()
