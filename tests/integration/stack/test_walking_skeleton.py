"""End to end on the real stack: Kafka → Flink session cluster → Redis/Cassandra → API."""
import json
import random
import time
import urllib.request
import uuid

import pytest

from fleetflow import kafka_io, topics
from tests.builders import minutes, scan

pytestmark = pytest.mark.stack

CODES = ["OC", "PU", "AR", "DP", "OD"]


def _status_of(code):
    """What the lifecycle makes of a FedEx code (fleetflow/carriers/fedex.yaml)."""
    from fleetflow.carrier_mappings import load_all
    return load_all()["FEDEX"].lookup(code).status.value


@pytest.fixture
def dispatcher_key(cql):
    """A dispatcher API key for this test, revoked afterwards."""
    from api.settings import get_settings
    from fleetflow import apikeys

    session = cql()
    key, raw = apikeys.create(session, get_settings().key_pepper.get_secret_value().encode("utf-8"),
                              role=apikeys.DISPATCHER, name="walking-skeleton test",
                              now_ms=int(time.time() * 1000))
    yield raw
    apikeys.revoke(session, key.key_id, now_ms=int(time.time() * 1000))


def _get(url, key):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"X-API-Key": key}), timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_published_scans_with_duplicates_reach_the_api_and_cassandra_once(stack, shipment_status_job, api_server, cql,
                                                                          dispatcher_key):
    run = uuid.uuid4().hex[:8].upper()
    now_ms = int(time.time() * 1000)
    rng = random.Random(11)
    events, expected = [], {}
    for n in range(12):
        tid = f"E2E{run}{n:03d}"
        steps = CODES[: rng.randint(1, len(CODES))]
        for i, code in enumerate(steps):
            events.append(scan(tid, code, at_ms=now_ms - minutes(60) + minutes(10 * i), event_id=f"{tid}-{i}"))
        expected[tid] = _status_of(steps[-1])
    duplicates = rng.sample(events, k=len(events) // 4)
    stream = events + duplicates
    rng.shuffle(stream)

    kafka_io.publish(stack.kafka_bootstrap, topics.SCANS.name, "scans", stream, "tracking_id")

    deadline = time.monotonic() + 120
    pending = dict(expected)
    while pending and time.monotonic() < deadline:
        for tid, code in list(pending.items()):
            status, body = _get(f"{api_server}/v1/shipments/{tid}", dispatcher_key)
            if status == 200 and body["state"]["status"] == code:
                del pending[tid]
        time.sleep(1)
    assert not pending, f"shipments without the expected status after 120 s: {pending}"

    session = cql()
    rows = []
    for tid in expected:
        rows += [(r.tracking_id, r.event_id) for r in
                 session.execute("SELECT tracking_id, event_id FROM shipment_history WHERE tracking_id = %s", (tid,))]
    assert sorted(rows) == sorted((e["tracking_id"], e["event_id"]) for e in events)

    status, body = _get(f"{api_server}/v1/shipments/NOSUCH{run}", dispatcher_key)
    assert status == 404 and body["error"]["code"] == "SHIPMENT_NOT_FOUND"
