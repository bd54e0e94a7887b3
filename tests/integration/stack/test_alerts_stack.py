"""The alerts job on the real stack: Kafka in, one alert per condition out to Kafka,
Cassandra and the Redis stream; acks land in the audit and on the stream.

A second test drives the store writer directly against the real Cassandra and Redis to
show what a replay after a restart does: nothing new on the stream, no state regression.
"""
import json
import time
import uuid

import pytest

from fleetflow import contracts, kafka_io, topics
from tests.builders import alert as alert_record, alert_ack, minutes

pytestmark = pytest.mark.stack

STREAM = "ff:alerts:stream"
DAY_MS = 24 * 3600 * 1000


def _wait(what, fetch, done, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    got = fetch()
    while not done(got) and time.monotonic() < deadline:
        time.sleep(2)
        got = fetch()
    assert done(got), f"{what} not complete after {timeout_s} s: {got}"
    return got


def _stream_entries(redis_client, ids):
    # The newest 5,000 are plenty: this test's entries were added in the last minutes.
    out = []
    for _, fields in redis_client.xrevrange(STREAM, count=5000):
        f = {k.decode(): v.decode() for k, v in fields.items()}
        if f.get("alert_id") in ids:
            out.append(f)
    return out


def test_candidates_with_duplicates_become_one_alert_each_everywhere_and_acks_follow(stack, alerts_job, cql):
    import redis

    run = uuid.uuid4().hex[:8].upper()
    t0 = int(time.time() * 1000) - minutes(20)
    van1, van2, parcel = f"VAN-{run}-1", f"VAN-{run}-2", f"TRK{run}"
    c1, c2, c3 = f"stall-{run}", f"restricted-{run}", f"late-{run}"
    stall_open = alert_record("VEHICLE_STALLED", van1, at_ms=t0, alert_id=c1, details={"lat": "52.5"})
    stall_resolved = alert_record("VEHICLE_STALLED", van1, at_ms=t0 + minutes(9), alert_id=c1, state="RESOLVED")
    restricted = alert_record("RESTRICTED_AREA", van2, at_ms=t0 + minutes(1), alert_id=c2, severity="CRITICAL")
    late = alert_record("LATE_RISK", parcel, entity_type="PACKAGE", at_ms=t0 + minutes(2), alert_id=c3)
    candidates = [stall_open, stall_open, restricted, late, stall_open, stall_resolved, restricted, stall_resolved]
    kafka_io.publish_encoded(stack.kafka_bootstrap, topics.ALERT_CANDIDATES.name, [
        (f"{r['entity_type']}:{r['entity_id']}".encode(), contracts.encode("alerts", r)) for r in candidates])

    expected = sorted([(c1, "OPEN"), (c1, "RESOLVED"), (c2, "OPEN"), (c3, "OPEN")])
    ids = {c1, c2, c3}

    def published():
        recs = [contracts.decode(v, expected="alerts")[1]
                for v in kafka_io.read_all(stack.kafka_bootstrap, topics.ALERTS.name)]
        return sorted((r["alert_id"], r["state"]) for r in recs if r["alert_id"] in ids)

    r = redis.Redis.from_url(stack.redis_url)
    _wait("ff:alerts:stream", lambda: sorted((e["alert_id"], e["state"]) for e in _stream_entries(r, ids)
                                             if e["type"] != "ALERT_ACK"), lambda got: len(got) >= 4)
    _wait("ff.alerts", published, lambda got: len(got) >= 4)
    time.sleep(5)  # room for a wrongly duplicated alert to show up
    assert published() == expected
    entries = [e for e in _stream_entries(r, ids) if e["type"] != "ALERT_ACK"]
    assert sorted((e["alert_id"], e["state"]) for e in entries) == expected
    by_state = {(e["alert_id"], e["state"]): e for e in entries}
    assert by_state[(c2, "OPEN")]["route_to"] == "security"
    assert by_state[(c1, "OPEN")]["route_to"] == "dispatch"
    assert json.loads(by_state[(c1, "OPEN")]["details"]) == {"lat": "52.5"}
    assert by_state[(c3, "OPEN")]["entity_type"] == "PACKAGE"

    s = cql()
    timeline = sorted((row.alert_id, row.state) for row in s.execute(
        "SELECT alert_id, state FROM alerts_by_entity WHERE entity_type = 'VEHICLE' AND entity_id = %s", (van1,)))
    assert timeline == [(c1, "OPEN"), (c1, "RESOLVED")]
    day_rows = [(row.alert_id, row.route_to) for row in s.execute(
        "SELECT alert_id, route_to FROM alerts_by_day_type WHERE day = %s AND type = 'RESTRICTED_AREA'",
        ((t0 + minutes(1)) // DAY_MS,)) if row.alert_id == c2]
    assert day_rows == [(c2, "security")]
    current = s.execute("SELECT state, opened_ms, resolved_ms, route_to FROM alerts_by_id WHERE alert_id = %s",
                        (c1,)).one()
    assert (current.state, current.opened_ms, current.resolved_ms, current.route_to) == (
        "RESOLVED", t0, t0 + minutes(9), "dispatch")
    assert s.execute("SELECT state FROM alerts_by_id WHERE alert_id = %s", (c3,)).one().state == "OPEN"

    ack_id = f"ack-{run}"
    ack = alert_ack(c2, action="ACK", actor="key-dispatch", assignee="ana", note="on it", at_ms=t0 + minutes(15),
                    ack_id=ack_id)
    kafka_io.publish(stack.kafka_bootstrap, topics.ALERT_ACKS.name, "alert_acks", [ack, ack], "alert_id")

    def audit():
        return [(row.action_id, row.action, row.actor) for row in s.execute(
            "SELECT action_id, action, actor FROM alert_audit WHERE alert_id = %s", (c2,))]

    rows = _wait("alert_audit", audit, lambda got: any(a == ack_id for a, _, _ in got))
    assert rows == [("OPEN", "OPEN", "fleetflow"), (ack_id, "ACK", "key-dispatch")]
    acked = s.execute("SELECT acked_by, acked_ms, assignee, state FROM alerts_by_id WHERE alert_id = %s", (c2,)).one()
    assert (acked.acked_by, acked.acked_ms, acked.assignee, acked.state) == (
        "key-dispatch", t0 + minutes(15), "ana", "OPEN")
    acks_on_stream = _wait("ALERT_ACK on the stream",
                           lambda: [e for e in _stream_entries(r, {c2}) if e["type"] == "ALERT_ACK"],
                           lambda got: len(got) >= 1)
    time.sleep(3)
    acks_on_stream = [e for e in _stream_entries(r, {c2}) if e["type"] == "ALERT_ACK"]
    assert [(e["ack_id"], e["action"], e["acked_by"], e["assignee"]) for e in acks_on_stream] == [
        (ack_id, "ACK", "key-dispatch", "ana")]


class _Counter:
    def __init__(self):
        self.n = 0

    def inc(self, by=1):
        self.n += by


class _Context:
    """Just what AlertStoreWriter.open uses of a Flink RuntimeContext."""

    def __init__(self):
        self.counters = {}

    def get_metrics_group(self):
        return self

    def counter(self, name):
        return self.counters.setdefault(name, _Counter())


def test_replayed_writes_push_nothing_twice_and_never_move_an_alert_backwards(stack, cql):
    import redis

    from jobs.alerts_sinks import AlertStoreWriter
    from jobs.sinks import StoreConfig
    from udfs.alerts import AckApplied, Alert, AlertAck

    run = uuid.uuid4().hex[:8].upper()
    t0 = int(time.time() * 1000) - minutes(30)
    aid = f"replay-{run}"
    base = dict(alert_id=aid, type="VEHICLE_STALLED", severity="WARNING", entity_type="VEHICLE",
                entity_id=f"VAN-{run}", detected_time_ms=t0, route_to="dispatch")
    opened = Alert(**base, event_time_ms=t0, state="OPEN")
    resolved = Alert(**base, event_time_ms=t0 + minutes(5), state="RESOLVED")
    applied = AckApplied(AlertAck(f"ack-{run}", aid, "ACK", "key-1", t0 + minutes(2)), "key-1", t0 + minutes(2),
                         None, None)

    ctx = _Context()
    w = AlertStoreWriter(StoreConfig.from_settings(stack))
    w.open(ctx)
    try:
        # The live run, then a replay from an older checkpoint of everything, in order.
        for emit in [opened, applied, resolved] + [opened, applied, resolved]:
            list(w.flat_map(emit))
        # A late copy of the OPEN written after the RESOLVED (e.g. from another replay path).
        list(w.flat_map(opened))
    finally:
        w.close()

    assert (ctx.counters["stream_pushed"].n, ctx.counters["stream_replays_skipped"].n) == (3, 4)
    r = redis.Redis.from_url(stack.redis_url)
    entries = _stream_entries(r, {aid})
    assert sorted((e["type"], e.get("state", "")) for e in entries) == [
        ("ALERT_ACK", ""), ("VEHICLE_STALLED", "OPEN"), ("VEHICLE_STALLED", "RESOLVED")]
    s = cql()
    row = s.execute("SELECT state, event_time_ms, opened_ms, resolved_ms, acked_by FROM alerts_by_id"
                    " WHERE alert_id = %s", (aid,)).one()
    assert (row.state, row.event_time_ms, row.opened_ms, row.resolved_ms, row.acked_by) == (
        "RESOLVED", t0 + minutes(5), t0, t0 + minutes(5), "key-1")
    audit = [(a.at_ms - t0, a.action) for a in s.execute("SELECT at_ms, action FROM alert_audit WHERE alert_id = %s",
                                                         (aid,))]
    assert audit == [(0, "OPEN"), (minutes(2), "ACK"), (minutes(5), "RESOLVED")]
    ttl = s.execute("SELECT TTL(state) AS t FROM alerts_by_id WHERE alert_id = %s", (aid,)).one().t
    assert 3 * 365 * 86400 - 600 < ttl <= 3 * 365 * 86400
