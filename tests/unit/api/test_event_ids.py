"""POST /v1/events with bad identifiers, without the stack: Redis and Kafka are fakes.

The route itself (tests/api/test_events.py) runs against the real stack; this covers only
how an id rejection is reported per event.
"""
import time
import typing
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import errors
from api.auth import Principal, Submitter
from api.routes import events
from fleetflow import contracts, topics
from fleetflow.apikeys import ADMIN


class FakeRedis:
    def __init__(self):
        self.keys = {}

    async def eval(self, _script, n, *args):
        keys, hashes = args[:n], args[n + 1:]
        out = []
        for k, h in zip(keys, hashes):
            out.append(self.keys.get(k, ""))
            self.keys.setdefault(k, h)
        return out

    async def delete(self, *keys):
        for k in keys:
            self.keys.pop(k, None)


class FakePublisher:
    def __init__(self):
        self.sent = {}

    async def publish(self, topic, items):
        self.sent.setdefault(topic, []).extend(items)


@pytest.fixture
def api():
    app = FastAPI()
    errors.install(app)
    app.include_router(events.router)
    app.state.redis, app.state.publisher = FakeRedis(), FakePublisher()
    app.state.settings = SimpleNamespace(event_id_ttl_s=3600, idempotency_ttl_s=3600)
    app.state.known_carriers = frozenset({"FEDEX"})
    submitter = typing.get_args(Submitter)[1].dependency
    app.dependency_overrides[submitter] = lambda: Principal("key-1", ADMIN, None, 600)
    with TestClient(app) as client:
        yield client, app.state.publisher


def _scan(event_id, tracking_id):
    return {"kind": "scan", "event_id": event_id, "tracking_id": tracking_id, "carrier": "FEDEX", "raw_code": "PU",
            "raw_text": "", "event_time_ms": int(time.time() * 1000) - 60_000, "leg": 1}


def _ping(event_id, vehicle_id):
    return {"kind": "ping", "event_id": event_id, "vehicle_id": vehicle_id,
            "event_time_ms": int(time.time() * 1000) - 60_000, "lat": 52.52, "lon": 13.405}


def test_bad_ids_are_rejected_per_event_with_a_reason_that_names_the_field(api):
    client, publisher = api
    batch = [_scan("e1", "T" * 128), _scan("e2", "T" * 129), _scan("e3", "TRK\x00"), _ping("e4", " VAN1"),
             _ping("x" * 600, "VAN1"), _scan("e6", "   ")]
    r = client.post("/v1/events", json={"events": batch})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (1, 5)
    got = [(x["index"], x["outcome"], x["reason"]) for x in body["results"]]
    assert got == [(0, "accepted", None), (1, "rejected", "ID_TOO_LONG"), (2, "rejected", "BAD_ID"),
                   (3, "rejected", "BAD_ID"), (4, "rejected", "ID_TOO_LONG"), (5, "rejected", "MISSING_ID")]
    details = [x["detail"] for x in body["results"][1:]]
    assert details[0].startswith("scans: tracking_id is 129 chars")
    assert details[1].startswith("scans: tracking_id 'TRK\\x00' has control character U+0000")
    assert details[2].startswith("pings: vehicle_id ' VAN1' has whitespace")
    assert details[3].startswith("pings: event_id is 600 chars")
    # An over-long event_id is not echoed back; the index identifies the result.
    assert body["results"][4]["event_id"] is None and body["results"][1]["event_id"] == "e2"

    (key, _), = publisher.sent[topics.SCANS.name]
    assert key == b"T" * 128 and topics.PINGS.name not in publisher.sent
    letters = [contracts.decode(v, expected="dead_letters")[1] for _, v in publisher.sent[topics.DEAD_LETTERS.name]]
    assert [(d["reason"], d["source_offset"]) for d in letters] == [
        ("ID_TOO_LONG", 1), ("BAD_ID", 2), ("BAD_ID", 3), ("ID_TOO_LONG", 4), ("MISSING_ID", 5)]
