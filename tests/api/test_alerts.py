"""Alerts: list from Cassandra, SSE with Last-Event-ID resume, ack to ff.alert-acks."""
import json
import threading
import time

import httpx
import pytest

from fleetflow import contracts, topics
from tests.api.conftest import assert_error

pytestmark = pytest.mark.stack

STREAM = "ff:alerts:stream"


def xadd_alert(redis_client, alert_id, *, type_="VEHICLE_STALLED", severity="WARNING", entity_id="VAN001"):
    now_ms = int(time.time() * 1000)
    return redis_client.xadd(STREAM, {
        "alert_id": alert_id, "type": type_, "severity": severity, "state": "OPEN", "entity_type": "VEHICLE",
        "entity_id": entity_id, "event_time_ms": now_ms - 1000, "detected_time_ms": now_ms, "route_to": "ops",
        "details": json.dumps({"stalled_for_ms": "600000"})}, maxlen=100000, approximate=True).decode()


def read_sse(url, headers, want, timeout_s=20.0):
    """The first ``want`` SSE events as (id, data dict)."""
    events, current = [], {}
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(timeout_s)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "data" in current:
                events.append((current["id"], current["data"]))
                current = {}
                if len(events) == want:
                    return events
    return events


def test_sse_resumes_after_last_event_id_and_streams_new_entries(live_api, make_key, redis_client, run_id):
    h = make_key("dispatcher")
    first = xadd_alert(redis_client, f"A-{run_id}-1")
    second = xadd_alert(redis_client, f"A-{run_id}-2")

    def later():
        time.sleep(1.5)
        xadd_alert(redis_client, f"A-{run_id}-3")

    threading.Thread(target=later, daemon=True).start()
    got = read_sse(f"{live_api}/v1/alerts/stream", {**h, "Last-Event-ID": first}, want=2)
    ours = [(i, d["alert_id"]) for i, d in got]
    assert ours[0] == (second, f"A-{run_id}-2")
    assert ours[1][1] == f"A-{run_id}-3" and ours[1][0] > second
    assert got[0][1]["details"] == {"stalled_for_ms": "600000"} and isinstance(got[0][1]["event_time_ms"], int)


def test_sse_backlog_then_live(live_api, make_key, redis_client, run_id):
    xadd_alert(redis_client, f"B-{run_id}-1")
    got = read_sse(f"{live_api}/v1/alerts/stream?backlog=1", make_key("dispatcher"), want=1)
    assert got[0][1]["alert_id"] == f"B-{run_id}-1"


def test_sse_rejects_a_malformed_last_event_id(client, make_key):
    assert_error(client.get("/v1/alerts/stream", headers={**make_key("dispatcher"), "Last-Event-ID": "yesterday"}),
                 400, "INVALID_LAST_EVENT_ID")


def test_ack_and_assign_reach_the_acks_topic_once(client, make_key, topic_tail, run_id):
    h = make_key("dispatcher")
    key_id = h["Authorization"].split("_")[1]
    acks = topic_tail(topics.ALERT_ACKS.name)
    alert_id = f"VEHICLE_STALLED:VEHICLE:{run_id}"
    r = client.post(f"/v1/alerts/{alert_id}/ack", headers={**h, "Idempotency-Key": f"ack-{run_id}"},
                    json={"action": "ACK", "note": "calling the driver"})
    assert r.status_code == 202, r.text
    again = client.post(f"/v1/alerts/{alert_id}/ack", headers={**h, "Idempotency-Key": f"ack-{run_id}"},
                        json={"action": "ACK", "note": "calling the driver"})
    assert again.json() == r.json()
    client.post(f"/v1/alerts/{alert_id}/ack", headers=h, json={"action": "ASSIGN", "assignee": "anna"})
    got = [(k, contracts.decode(v, expected="alert_acks")[1]) for k, v in acks()]
    assert [(k.decode(), a["action"], a["assignee"], a["actor"]) for k, a in got] == [
        (alert_id, "ACK", None, key_id), (alert_id, "ASSIGN", "anna", key_id)]
    assert got[0][1]["ack_id"] == r.json()["ack_id"] and got[0][1]["note"] == "calling the driver"


def test_list_alerts_by_type_and_severity_with_latest_state(client, make_key, cql, run_id):
    session = cql()
    type_ = f"TEST_{run_id}"
    now_ms = int(time.time() * 1000)
    day = now_ms // 86_400_000
    for i, (sev, state) in enumerate([("WARNING", "OPEN"), ("CRITICAL", "OPEN"), ("WARNING", "OPEN")]):
        aid = f"{type_}-{i}"
        session.execute("INSERT INTO alerts_by_day_type (day, type, event_time_ms, alert_id, entity_type, entity_id,"
                        " severity, state, route_to, detected_time_ms) VALUES (%s, %s, %s, %s, 'VEHICLE', %s, %s,"
                        " %s, 'ops', %s)", (day, type_, now_ms - i * 1000, aid, f"V{i}", sev, state, now_ms))
    # The first alert has since been resolved: the list shows its latest state.
    session.execute("INSERT INTO alerts_by_id (alert_id, type, severity, state, entity_type, entity_id, event_time_ms,"
                    " acked_by) VALUES (%s, %s, 'WARNING', 'RESOLVED', 'VEHICLE', 'V0', %s, 'k1')",
                    (f"{type_}-0", type_, now_ms))
    h = make_key("dispatcher")
    body = client.get(f"/v1/alerts?type={type_}&since_ms={now_ms - 60_000}", headers=h).json()
    assert [(a["alert_id"], a["state"], a["severity"]) for a in body["items"]] == [
        (f"{type_}-0", "RESOLVED", "WARNING"), (f"{type_}-1", "OPEN", "CRITICAL"), (f"{type_}-2", "OPEN", "WARNING")]
    crit = client.get(f"/v1/alerts?type={type_}&severity=CRITICAL&since_ms={now_ms - 60_000}", headers=h).json()
    assert [a["alert_id"] for a in crit["items"]] == [f"{type_}-1"]
    paged = client.get(f"/v1/alerts?type={type_}&limit=2&since_ms={now_ms - 60_000}", headers=h).json()
    rest = client.get(f"/v1/alerts?type={type_}&limit=2&since_ms={now_ms - 60_000}"
                      f"&page_token={paged['next_page_token']}", headers=h).json()
    assert [a["alert_id"] for a in paged["items"] + rest["items"]] == [f"{type_}-{i}" for i in range(3)]
