"""Partner batches: stream validation rules, dead letters, idempotency, carrier scope."""
import time

import pytest

from fleetflow import contracts, topics
from tests.api.conftest import assert_error

pytestmark = pytest.mark.stack


def _scan(tid, i, carrier="FEDEX", at_ms=None, **kw):
    return {"kind": "scan", "event_id": f"{tid}-{i}", "tracking_id": tid, "carrier": carrier, "raw_code": "AR",
            "raw_text": "Arrived", "event_time_ms": at_ms or int(time.time() * 1000) - 60_000,
            "facility_id": "BER1", **kw}


def _ping(vid, i):
    return {"kind": "ping", "event_id": f"{vid}-{i}", "vehicle_id": vid, "event_time_ms": int(time.time() * 1000),
            "lat": 52.52, "lon": 13.405, "speed_mps": 7.5}


def _decoded(pairs, schema):
    return [contracts.decode(v, expected=schema)[1] for _, v in pairs]


def test_same_batch_twice_publishes_once_and_dead_letters_bad_events(client, make_key, topic_tail, run_id):
    h = make_key("partner", carrier="FEDEX", vehicles=[f"VAN{run_id}"])
    tid = f"PA{run_id}"
    eight_days_ago = int(time.time() * 1000) - 8 * 86_400_000
    batch = {"events": [_scan(tid, 1), _scan(tid, 2, location={"lat": 52.5, "lon": 13.4}),
                        _scan(tid, 3, at_ms=eight_days_ago), _ping(f"VAN{run_id}", 1),
                        {"kind": "scan", "event_id": f"{tid}-4"}, {"kind": "parcel"}]}
    scans, pings, dead = topic_tail(topics.SCANS.name), topic_tail(topics.PINGS.name), topic_tail(
        topics.DEAD_LETTERS.name)

    r = client.post("/v1/events", headers=h, json=batch)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 0, 3)
    outcomes = [(x["index"], x["outcome"], x["reason"]) for x in body["results"]]
    assert outcomes[:4] == [(0, "accepted", None), (1, "accepted", None), (2, "rejected", "TOO_OLD"),
                            (3, "accepted", None)]
    assert outcomes[4][1] == "rejected" and outcomes[5] == (5, "rejected", "UNKNOWN_KIND")

    published = _decoded(scans(), "scans")
    assert sorted(s["event_id"] for s in published) == [f"{tid}-1", f"{tid}-2"]
    assert {s["source"] for s in published} == {"PARTNER_API"}
    assert [p["event_id"] for p in _decoded(pings(), "pings")] == [f"VAN{run_id}-1"]
    letters = _decoded(dead(), "dead_letters")
    assert sorted(d["reason"] for d in letters) == sorted(["TOO_OLD", outcomes[4][2], "UNKNOWN_KIND"])
    assert all(d["source_topic"].startswith("api:") for d in letters)

    again = client.post("/v1/events", headers=h, json=batch).json()
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    assert _decoded(scans(), "scans") == [] and _decoded(pings(), "pings") == []


def test_idempotency_key_replays_the_first_response(client, make_key, topic_tail, run_id):
    h = {**make_key("partner", carrier="FEDEX"), "Idempotency-Key": f"batch-{run_id}"}
    batch = {"events": [_scan(f"IK{run_id}", 1), _scan(f"IK{run_id}", 2, at_ms=1)]}
    scans, dead = topic_tail(topics.SCANS.name), topic_tail(topics.DEAD_LETTERS.name)
    first = client.post("/v1/events", headers=h, json=batch)
    assert len(_decoded(scans(), "scans")) == 1 and len(dead()) == 1
    second = client.post("/v1/events", headers=h, json=batch)
    assert second.status_code == first.status_code == 202
    assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"
    # Not even the dead letter is written again.
    assert scans() == [] and dead() == []
    other = {"events": [_scan(f"IK{run_id}", 3)]}
    assert_error(client.post("/v1/events", headers=h, json=other), 422, "IDEMPOTENCY_KEY_REUSED")


def test_partner_cannot_submit_another_carriers_scans(client, make_key, topic_tail, run_id):
    h = make_key("partner", carrier="FEDEX")
    scans = topic_tail(topics.SCANS.name)
    batch = {"events": [_scan(f"MX{run_id}", 1), _scan(f"MX{run_id}", 2, carrier="UPS")]}
    body = assert_error(client.post("/v1/events", headers=h, json=batch), 403, "CARRIER_NOT_ALLOWED")
    assert "UPS" in body["error"]["message"]
    assert scans() == []


def test_admin_may_submit_any_known_carrier_but_not_unknown_ones(client, make_key, run_id):
    h = make_key("admin")
    body = client.post("/v1/events", headers=h, json={"events": [
        _scan(f"AD{run_id}", 1, carrier="UPS"), _scan(f"AD{run_id}", 2, carrier="NOPE")]}).json()
    assert [(x["outcome"], x["reason"]) for x in body["results"]] == [("accepted", None),
                                                                      ("rejected", "UNKNOWN_CARRIER")]


def test_reused_event_id_with_other_content_is_rejected(client, make_key, run_id):
    h = make_key("partner", carrier="FEDEX")
    tid = f"RE{run_id}"
    assert client.post("/v1/events", headers=h, json={"events": [_scan(tid, 1)]}).json()["accepted"] == 1
    changed = _scan(tid, 1, raw_text="something else")
    body = client.post("/v1/events", headers=h, json={"events": [changed]}).json()
    assert body["results"][0]["reason"] == "EVENT_ID_CONFLICT"


def test_two_carriers_may_use_the_same_event_id(client, make_key, topic_tail, run_id):
    # Event ids are the producer's: FedEx's and UPS's "evt-1" are different events, claimed
    # per carrier as the stream deduplicates them (udfs.dedup.dedup_key).
    fedex, ups = make_key("partner", carrier="FEDEX"), make_key("partner", carrier="UPS")
    scans = topic_tail(topics.SCANS.name)
    eid = f"SHARED{run_id}"
    a = client.post("/v1/events", headers=fedex, json={"events": [_scan(f"SF{run_id}", 1, event_id=eid)]}).json()
    b = client.post("/v1/events", headers=ups, json={"events": [
        _scan(f"SU{run_id}", 1, carrier="UPS", event_id=eid)]}).json()
    assert (a["accepted"], b["accepted"]) == (1, 1), (a, b)
    got = {(r["carrier"], r["event_id"]) for r in _decoded(scans(), "scans")}
    assert got == {("FEDEX", eid), ("UPS", eid)}
    # The same carrier reusing it with other content is still a conflict.
    again = client.post("/v1/events", headers=ups, json={"events": [
        _scan(f"SU{run_id}", 1, carrier="UPS", event_id=eid, raw_text="changed")]}).json()
    assert again["results"][0]["reason"] == "EVENT_ID_CONFLICT"


def test_batch_shape_errors_are_422(client, make_key):
    h = make_key("partner", carrier="FEDEX")
    assert_error(client.post("/v1/events", headers=h, json={"events": []}), 422, "INVALID_REQUEST")
    assert_error(client.post("/v1/events", headers=h, json={"events": [{}] * 501}), 422, "INVALID_REQUEST")
    assert_error(client.post("/v1/events", headers=h, json=[1, 2]), 422, "INVALID_REQUEST")
