import pickle

import pytest

from fleetflow.contracts import decode, encode
from tests.builders import T0_MS, hours, minutes, ping, scan
from udfs.dedup import (DEFAULT_DEDUP_TTL_MS, EVENT_ID_CONFLICT, KEY_SEPARATOR, Arrival, Conflict, DedupState,
                        content_hash, dedup_key, on_timer, step)
from udfs.events import Ping, Scan
from udfs.lanes import ShipmentView
from udfs.validation import BAD_ID, id_value_problem

TTL_MS = hours(24)


def run(events_with_now, state=None, ttl_ms=TTL_MS):
    """Feed (event, now_ms) pairs for one event_id key; return (state, emitted events, timers)."""
    emitted, timers = [], []
    for event, now_ms in events_with_now:
        d = step(state, event, now_ms, ttl_ms)
        state = d.state
        emitted.extend(d.emits)
        if d.timer_ms is not None:
            timers.append(d.timer_ms)
    return state, emitted, timers


def test_default_ttl_is_one_day():
    assert DEFAULT_DEDUP_TTL_MS == hours(24)


def test_first_event_is_emitted_and_state_expires_a_ttl_later():
    first = scan(event_id="e1", at_ms=T0_MS)
    d = step(None, first, T0_MS)
    assert d.emits == (first,)
    assert d.state == DedupState(first_event_time_ms=T0_MS, expires_at_ms=T0_MS + TTL_MS)
    assert d.timer_ms == T0_MS + TTL_MS


def test_duplicate_is_dropped_without_touching_state_or_timers():
    first = scan(event_id="e1")
    state, emitted, timers = run([(first, T0_MS), (dict(first), T0_MS + minutes(3)), (dict(first), T0_MS + hours(5))])
    assert emitted == [first]
    assert timers == [T0_MS + TTL_MS]
    assert state.expires_at_ms == T0_MS + TTL_MS


def test_late_event_keeps_state_a_full_ttl_past_the_watermark():
    late = scan(event_id="e1", at_ms=T0_MS - hours(30))
    d = step(None, late, T0_MS)
    assert d.emits == (late,)
    assert d.timer_ms == T0_MS + TTL_MS


def test_first_event_before_any_watermark_anchors_on_event_time():
    d = step(None, scan(event_id="e1", at_ms=T0_MS), -(2 ** 63))
    assert d.timer_ms == T0_MS + TTL_MS


def test_timer_at_expiry_clears_state():
    d = step(None, scan(event_id="e1"), T0_MS)
    assert on_timer(d.state, d.timer_ms).state is None


def test_stale_timer_keeps_newer_state():
    state = DedupState(first_event_time_ms=T0_MS, expires_at_ms=T0_MS + TTL_MS)
    assert on_timer(state, T0_MS + minutes(1)).state == state


def test_timer_on_empty_state_is_a_no_op():
    d = on_timer(None, T0_MS)
    assert d.state is None and d.emits == () and d.timer_ms is None


def test_twin_after_expiry_is_emitted_again():
    first = scan(event_id="e1")
    state, _, timers = run([(first, T0_MS)])
    state = on_timer(state, timers[0]).state
    assert state is None
    _, emitted, _ = run([(dict(first), T0_MS + TTL_MS + 1)], state=state)
    assert emitted == [first]


def test_works_on_typed_views_too():
    view = Scan.from_record(scan(event_id="e1"))
    state, emitted, _ = run([(view, T0_MS), (view, T0_MS)])
    assert emitted == [view]
    assert on_timer(state, state.expires_at_ms).state is None


def test_custom_ttl():
    d = step(None, scan(event_id="e1"), T0_MS, ttl_ms=minutes(10))
    assert d.timer_ms == T0_MS + minutes(10)


# ------------------------------------------------------------------ the key: source identity, not the bare id

def test_scans_are_keyed_by_folded_carrier_and_event_id():
    assert dedup_key("scans", scan(carrier="FEDEX", event_id="evt-1")) == f"FEDEX{KEY_SEPARATOR}evt-1"
    assert dedup_key("scans", scan(carrier=" fedex", event_id="evt-1")) == dedup_key(
        "scans", scan(carrier="FEDEX", event_id="evt-1"))


def test_two_carriers_with_the_same_event_id_are_two_sources():
    assert dedup_key("scans", scan(carrier="FEDEX", event_id="evt-1")) != dedup_key(
        "scans", scan(carrier="UPS", event_id="evt-1"))


def test_pings_are_keyed_by_vehicle_and_event_id():
    assert dedup_key("pings", ping("VAN001", event_id="evt-1")) == f"VAN001{KEY_SEPARATOR}evt-1"
    assert dedup_key("pings", ping("VAN001", event_id="evt-1")) != dedup_key("pings", ping("VAN002", event_id="evt-1"))


def test_assignments_are_keyed_by_vehicle_and_event_id():
    a = {"event_id": "evt-1", "vehicle_id": "VAN001", "route_id": "R1"}
    assert dedup_key("assignments", a) == f"VAN001{KEY_SEPARATOR}evt-1"
    assert dedup_key("assignments", a) != dedup_key("assignments", {**a, "vehicle_id": "VAN002"})


def test_shipment_states_keep_their_tracking_id_and_version_key():
    record = {"tracking_id": "TRK1", "version": 3, "event_id": "scan-9"}
    view = ShipmentView("TRK1", 3, "IN_TRANSIT", "", T0_MS, "FEDEX", 1, None, "STANDARD", None, False)
    assert dedup_key("shipment_states", record) == dedup_key("shipment_states", view) == view.event_id == "TRK1#3"


def test_record_and_view_give_the_same_key():
    record = scan(carrier="dhl", event_id="evt-1")
    assert dedup_key("scans", Scan.from_record(record)) == dedup_key("scans", record)
    p = ping(event_id="evt-2")
    assert dedup_key("pings", Ping.from_record(p)) == dedup_key("pings", p)


def test_ids_with_pipes_colons_and_hashes_cannot_collide():
    assert dedup_key("scans", scan(carrier="A", event_id="B|C")) != dedup_key("scans", scan(carrier="A|B",
                                                                                             event_id="C"))
    assert dedup_key("pings", ping("V:1", event_id="e")) != dedup_key("pings", ping("V", event_id="1:e"))


def test_the_separator_is_refused_in_every_id_so_the_last_one_splits_the_key():
    assert id_value_problem(f"evt{KEY_SEPARATOR}1", "event_id").reason == BAD_ID
    # A carrier is not id-checked (the shipment job admits any name): the id still splits off.
    key = dedup_key("scans", scan(carrier=f"A{KEY_SEPARATOR}B", event_id="evt-1"))
    assert key.rpartition(KEY_SEPARATOR) == (f"A{KEY_SEPARATOR}B", KEY_SEPARATOR, "evt-1")


def test_a_new_key_never_equals_a_bare_event_id_from_old_state():
    key = dedup_key("scans", scan(event_id="evt-1"))
    assert id_value_problem(key, "event_id") is not None


def test_a_topic_without_a_key_rule_is_refused():
    with pytest.raises(ValueError, match="no dedup key for topic 'plans'"):
        dedup_key("plans", {"order_id": "O1"})


# ------------------------------------------------------------------ content hash

def test_content_hash_is_stable_and_ignores_key_order():
    record = scan(event_id="evt-1", raw_text="Zugestellt \u2713")
    # Not Python's hash(): the same in every process (state outlives the process that wrote it).
    # Pinned: a change of canonical form or digest would turn every in-flight resend into a conflict.
    assert content_hash("scans", {"event_id": "e"}) == "16b5cf46bb5122ad153ee2c7b8932f2b"
    assert content_hash("scans", record) == content_hash("scans", dict(reversed(list(record.items()))))
    assert len(content_hash("scans", record)) == 32


def test_content_hash_of_a_byte_identical_resend_is_the_same():
    raw = encode("scans", scan(event_id="evt-1", lat=52.5, lon=13.4))
    assert content_hash("scans", decode(raw)[1]) == content_hash("scans", decode(bytes(raw))[1])


def test_content_hash_folds_the_carrier_as_the_key_does():
    assert content_hash("scans", scan(event_id="e", carrier="fedex")) == content_hash(
        "scans", scan(event_id="e", carrier="FEDEX"))


def test_content_hash_sees_every_other_field():
    base = scan(event_id="e", raw_code="PU", at_ms=T0_MS)
    for changed in (dict(base, raw_code="AR"), dict(base, event_time_ms=T0_MS + 1), dict(base, source="PARTNER_API"),
                    dict(base, location={"lat": 52.5, "lon": 13.4})):
        assert content_hash("scans", changed) != content_hash("scans", base)
    p = ping(event_id="e")
    assert content_hash("pings", dict(p, lat=p["lat"] + 1e-7)) != content_hash("pings", p)


# ------------------------------------------------------------------ conflicts: same source and id, other content

def arrival(record: dict, topic: str = "scans", offset: int = 0) -> Arrival:
    view = Scan.from_record(record) if topic == "scans" else Ping.from_record(record)
    return Arrival(dedup_key(topic, record), content_hash(topic, record), view, encode(topic, record),
                   f"ff.{topic}", 1, offset)


def feed(arrivals, state=None, now_ms=T0_MS, ttl_ms=TTL_MS):
    """Feed arrivals of one key; return (state, emitted views, conflicts, timers)."""
    passed, conflicts, timers = [], [], []
    for a in arrivals:
        d = step(state, a, now_ms, ttl_ms)
        state = d.state
        assert len(d.emits) <= 1
        for e in d.emits:
            (conflicts if isinstance(e, Conflict) else passed).append(e)
        if d.timer_ms is not None:
            timers.append(d.timer_ms)
    return state, passed, conflicts, timers


def test_first_arrival_wins_and_a_conflicting_twin_is_dead_lettered():
    a = arrival(scan(event_id="e1", raw_code="PU", at_ms=T0_MS), offset=10)
    b = arrival(scan(event_id="e1", raw_code="AR", at_ms=T0_MS + minutes(2)), offset=11)
    state, passed, conflicts, timers = feed([a, b])
    assert passed == [a.event]
    [c] = conflicts
    assert (c.reason, c.arrival, c.first_content_hash) == (EVENT_ID_CONFLICT, b, a.content_hash)
    assert c.arrival.original == encode("scans", scan(event_id="e1", raw_code="AR", at_ms=T0_MS + minutes(2)))
    assert "'e1'" in c.detail and "'FEDEX'" in c.detail
    assert state == DedupState(T0_MS, T0_MS + TTL_MS, a.content_hash)
    assert timers == [T0_MS + TTL_MS]


def test_first_arrival_wins_and_a_conflicting_twin_is_dead_lettered_out_of_order():
    a = arrival(scan(event_id="e1", raw_code="PU", at_ms=T0_MS), offset=10)
    b = arrival(scan(event_id="e1", raw_code="AR", at_ms=T0_MS + minutes(2)), offset=11)
    state, passed, conflicts, _ = feed([b, a])
    assert passed == [b.event]
    assert [c.arrival for c in conflicts] == [a]
    assert state == DedupState(T0_MS + minutes(2), T0_MS + minutes(2) + TTL_MS, b.content_hash)


def test_exact_duplicate_is_dropped_and_not_dead_lettered():
    a = arrival(scan(event_id="e1"), offset=1)
    again = arrival(scan(event_id="e1"), offset=2)  # another offset, same content
    state, passed, conflicts, timers = feed([a, again, again])
    assert (passed, conflicts, timers) == ([a.event], [], [T0_MS + TTL_MS])


def test_exact_duplicate_is_dropped_out_of_order_around_a_conflict():
    a = arrival(scan(event_id="e1", raw_code="PU"))
    b = arrival(scan(event_id="e1", raw_code="AR"))
    _, passed, conflicts, _ = feed([a, b, a, b])
    assert passed == [a.event]
    assert [c.arrival for c in conflicts] == [b, b]


def test_a_conflict_does_not_touch_state_or_timers():
    a = arrival(scan(event_id="e1", raw_code="PU"))
    first = step(None, a, T0_MS)
    d = step(first.state, arrival(scan(event_id="e1", raw_code="AR")), T0_MS + hours(5))
    assert d.state is first.state and d.timer_ms is None and d.cancel_timers_ms == ()


def test_two_carriers_same_event_id_both_pass():
    fedex = arrival(scan("TRK1", event_id="evt-1", carrier="FEDEX"))
    ups = arrival(scan("TRK2", event_id="evt-1", carrier="UPS"))
    assert fedex.key != ups.key
    states = {}
    out = []
    for a in (fedex, ups):
        d = step(states.get(a.key), a, T0_MS)
        states[a.key] = d.state
        out.extend(d.emits)
    assert out == [fedex.event, ups.event]


def test_a_carrier_spelt_two_ways_is_one_source_and_the_same_content():
    upper = arrival(scan(event_id="evt-1", carrier="FEDEX"))
    lower = arrival(scan(event_id="evt-1", carrier="fedex"))
    assert upper.key == lower.key
    _, passed, conflicts, _ = feed([upper, lower])
    assert (passed, conflicts) == ([upper.event], [])


def test_conflicting_pings_of_one_van():
    a = arrival(ping("VAN001", lat=52.52, event_id="p1"), topic="pings")
    b = arrival(ping("VAN001", lat=52.53, event_id="p1"), topic="pings")
    _, passed, conflicts, _ = feed([a, b])
    assert passed == [a.event] and [c.arrival for c in conflicts] == [b]


# ------------------------------------------------------------------ expiry

def test_state_with_a_hash_is_cleared_at_expiry_and_the_twin_is_new_again():
    a = arrival(scan(event_id="e1", raw_code="PU"))
    b = arrival(scan(event_id="e1", raw_code="AR"))
    state, _, _, timers = feed([a])
    assert on_timer(state, timers[0] - 1).state == state
    assert on_timer(state, timers[0]).state is None
    state, passed, conflicts, _ = feed([b], state=None, now_ms=T0_MS + TTL_MS + 1)
    assert (passed, conflicts) == ([b.event], [])
    assert state.content_hash == b.content_hash


# ------------------------------------------------------------------ state written before content hashes

# pickle.dumps(DedupState(T0_MS, T0_MS + hours(24)), protocol=5) from udfs/dedup.py before this
# change (no content_hash field): what a savepoint of the old job holds for a key.
OLD_STATE_PICKLE = (b"\x80\x05\x95[\x00\x00\x00\x00\x00\x00\x00\x8c\nudfs.dedup\x94\x8c\nDedupState\x94\x93\x94)"
                    b"\x81\x94}\x94(\x8c\x13first_event_time_ms\x94\x8a\x06\x00\xac\x8f\xad\x9c\x01\x8c\r"
                    b"expires_at_ms\x94\x8a\x06\x00\x08\xb6\xb2\x9c\x01ub.")


def test_old_state_without_a_hash_still_loads():
    state = pickle.loads(OLD_STATE_PICKLE)
    assert state == DedupState(T0_MS, T0_MS + hours(24))
    assert state.content_hash is None


def test_old_state_treats_any_repeat_as_a_duplicate():
    state = pickle.loads(OLD_STATE_PICKLE)
    for raw_code in ("PU", "AR"):
        d = step(state, arrival(scan(event_id="e1", raw_code=raw_code)), T0_MS + hours(1))
        assert d.emits == () and d.state is state and d.timer_ms is None


def test_old_state_is_cleared_by_its_own_timer():
    state = pickle.loads(OLD_STATE_PICKLE)
    assert on_timer(state, T0_MS + hours(1)).state is state
    assert on_timer(state, T0_MS + hours(24)).state is None


def test_new_state_round_trips_through_pickle():
    d = step(None, arrival(scan(event_id="e1")), T0_MS)
    assert pickle.loads(pickle.dumps(d.state, protocol=pickle.HIGHEST_PROTOCOL)) == d.state
