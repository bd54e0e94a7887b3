"""API tests run the real app (FastAPI TestClient, in-process) against the running
stack's Redis, Cassandra and Kafka. Data is written in the documented layout
(docs/data-layout.md) under ids unique to the test run, and removed afterwards."""
from __future__ import annotations

import time
import uuid

import pytest


@pytest.fixture(scope="session")
def api_settings(stack):
    from api.settings import ApiSettings
    return ApiSettings(redis_url=stack.redis_url, cassandra_port=stack.cassandra_port,
                       kafka_bootstrap=stack.kafka_bootstrap, keyspace=stack.keyspace, json_access_log=False)


@pytest.fixture(scope="session")
def app(api_settings):
    from api.main import create_app
    return create_app(api_settings)


@pytest.fixture(scope="session")
def client(app):
    from fastapi.testclient import TestClient
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def key_session(stack):
    from fleetflow.cassandra_session import connect
    cluster, session = connect(stack, keyspace=stack.keyspace)
    yield session
    cluster.shutdown()


@pytest.fixture(scope="session")
def make_key(key_session, api_settings):
    """Factory: ``make_key(role, carrier=None, rate_limit=None, vehicles=()) -> auth headers``; keys are
    revoked at the end."""
    from fleetflow import apikeys
    made = []
    pepper = api_settings.key_pepper.get_secret_value().encode()

    def make(role: str, carrier: str | None = None, rate_limit: int | None = 100_000, name: str = "api-test",
             vehicles=()):
        key, raw = apikeys.create(key_session, pepper, role=role, carrier=carrier, name=name,
                                  rate_limit_per_min=rate_limit, vehicle_patterns=vehicles,
                                  now_ms=int(time.time() * 1000))
        made.append(key.key_id)
        return {"Authorization": f"Bearer {raw}"}

    yield make
    for key_id in made:
        apikeys.revoke(key_session, key_id, now_ms=int(time.time() * 1000))


@pytest.fixture
def run_id():
    return uuid.uuid4().hex[:10].upper()


@pytest.fixture
def redis_client(stack):
    import redis
    r = redis.Redis.from_url(stack.redis_url)
    yield r
    r.close()


@pytest.fixture
def shipment_hash(redis_client):
    """Factory: write ``ff:shipment:{tid}`` as the shipment (and ETA) job would; deleted after the test."""
    keys = []

    def put(tid: str, **fields):
        now_ms = int(time.time() * 1000)
        base = {"status": "IN_TRANSIT", "status_detail": "ARRIVED_AT_HUB", "prev_status": "PRE_TRANSIT",
                "carrier": "FEDEX", "leg": "1", "legs": '[{"leg": 1, "carrier": "FEDEX", "status": "IN_TRANSIT"}]',
                "version": "3", "last_event_id": f"{tid}-3", "last_event_time_ms": str(now_ms - 60_000),
                "status_since_ms": str(now_ms - 3_600_000), "service_level": "STANDARD", "order_id": f"O-{tid}",
                "promised_start_ms": str(now_ms), "promised_end_ms": str(now_ms + 4 * 3_600_000),
                "terminal": "False", "hidden_from_customers": "False", "last_facility_id": "BER1",
                "last_lat": "52.520008", "last_lon": "13.404954", "updated_ms": str(now_ms)}
        base.update({k: ("" if v is None else str(v)) for k, v in fields.items()})
        key = f"ff:shipment:{tid}"
        redis_client.delete(key)
        redis_client.hset(key, mapping=base)
        keys.append(key)
        return base

    yield put
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def topic_tail(stack):
    """Factory: ``tail = topic_tail(topic)`` marks the topic's end now; ``tail()`` returns
    the (key, value) pairs written after the mark."""
    from kafka import KafkaConsumer, TopicPartition

    consumers = []

    def mark(topic: str):
        c = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False, group_id=None)
        consumers.append(c)
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
        c.assign(parts)
        start = c.end_offsets(parts)
        for tp, off in start.items():
            c.seek(tp, off)

        def read(settle_s: float = 1.0) -> list[tuple[bytes | None, bytes]]:
            end = c.end_offsets(parts)
            out = []
            deadline = time.monotonic() + 15
            while any(c.position(tp) < end[tp] for tp in parts) and time.monotonic() < deadline:
                for msgs in c.poll(timeout_ms=500).values():
                    out += [(m.key, m.value) for m in msgs]
            return out

        return read

    yield mark
    for c in consumers:
        c.close()


@pytest.fixture(scope="session")
def live_api(live_api_server):
    return live_api_server[0]


@pytest.fixture(scope="session")
def live_api_server(stack, tmp_path_factory):
    """The API served by uvicorn in a subprocess on a free port (SSE and the browser need a real server)."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind((stack.host, 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("api") / "api.log"
    env = {**os.environ, "FLEETFLOW_API_REDIS_URL": stack.redis_url,
           "FLEETFLOW_API_CASSANDRA_PORT": str(stack.cassandra_port),
           "FLEETFLOW_API_KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "FLEETFLOW_API_KEYSPACE": stack.keyspace}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:app", "--host", stack.host, "--port",
                                 str(port), "--no-access-log"], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://{stack.host}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"API did not start: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    yield url, log
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def assert_error(resp, status: int, code: str | None = None):
    """The one error shape, with the expected status (and code)."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body
