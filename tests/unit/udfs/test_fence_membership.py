import random

import pytest

from tests.builders import T0_MS, geofence, minutes, offset, ping, seconds
from udfs.events import Ping
from udfs.fence_membership import (
    DEFAULT_CONFIG,
    ENTER,
    EXIT,
    FENCE_REMOVED,
    OBSERVED,
    SEGMENT_CROSSING,
    STATE_EXPIRED,
    MembershipState,
    on_timer,
    step,
)
from udfs.geofence import Geofence, GeofenceIndex

LAT, LON = 52.5200, 13.4050
TTL_MS = DEFAULT_CONFIG.state_ttl_ms


def stop_fence(fid="STOP1", *, lat=LAT, lon=LON, radius_m=100.0, min_pings=3, dwell_ms=minutes(2),
               exit_buffer_m=50.0, kind="CUSTOMER_STOP"):
    return Geofence.from_dict(geofence(fid, kind, circle=(lat, lon, radius_m), min_pings=min_pings,
                                       dwell_ms=dwell_ms, exit_buffer_m=exit_buffer_m, facility_id=f"FAC-{fid}"))


def at(north_m=0.0, east_m=0.0):
    return offset(LAT, LON, north_m=north_m, east_m=east_m)


def p(where, t_ms, **kw):
    lat, lon = where
    return Ping.from_record(ping("VAN001", lat, lon, at_ms=t_ms, **kw))


def run(pings, index, state=None, cfg=DEFAULT_CONFIG):
    events, timers = [], []
    for pg in pings:
        d = step(state, pg, pg.event_time_ms, index, cfg)
        state = d.state
        events.extend(d.emits)
        if d.timer_ms is not None:
            timers.append(d.timer_ms)
    return state, events, timers


def kinds(events):
    return [(e.event_type, e.geofence_id) for e in events]


INSIDE = at()
EDGE_IN = at(east_m=92)
EDGE_OUT = at(east_m=108)
IN_BUFFER = at(east_m=140)
CLEAR = at(east_m=300)


# ------------------------------------------------------------------ ENTER needs evidence

def test_enter_after_min_pings_inside_carries_arrival_time():
    idx = GeofenceIndex([stop_fence(min_pings=3)])
    state, events, _ = run([p(INSIDE, T0_MS), p(INSIDE, T0_MS + seconds(10))], idx)
    assert events == [] and [c.pings for c in state.candidates] == [2]
    d = step(state, p(INSIDE, T0_MS + seconds(20)), 0, idx)
    (e,) = d.emits
    assert (e.event_type, e.geofence_id, e.event_time_ms, e.facility_id, e.interpolated) == \
        (ENTER, "STOP1", T0_MS, "FAC-STOP1", False)
    assert d.state.candidates == () and [m.geofence_id for m in d.state.members] == ["STOP1"]


def test_late_ping_does_not_count_towards_min_pings():
    # Out-of-order twin of the test above: the 10 s ping arrives after the 20 s one.
    idx = GeofenceIndex([stop_fence(min_pings=3)])
    state, events, _ = run([p(INSIDE, T0_MS), p(INSIDE, T0_MS + seconds(20)), p(INSIDE, T0_MS + seconds(10))], idx)
    assert events == [] and state.out_of_order_pings == 1
    state, events, _ = run([p(INSIDE, T0_MS + seconds(30))], idx, state)
    assert [(e.event_type, e.event_time_ms) for e in events] == [(ENTER, T0_MS)]


def test_redelivered_ping_does_not_count_twice():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    first = p(INSIDE, T0_MS)
    state, events, _ = run([first, first], idx)
    assert events == [] and state.duplicate_pings == 1


def test_enter_after_dwell_with_fewer_than_min_pings():
    idx = GeofenceIndex([stop_fence(min_pings=10, dwell_ms=minutes(2))])
    state, events, _ = run([p(INSIDE, T0_MS), p(INSIDE, T0_MS + minutes(1))], idx)
    assert events == []
    _, events, _ = run([p(INSIDE, T0_MS + minutes(2))], idx, state)
    assert [(e.event_type, e.event_time_ms) for e in events] == [(ENTER, T0_MS)]


def test_one_fix_inside_then_outside_enters_nothing():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    state, events, _ = run([p(EDGE_IN, T0_MS), p(EDGE_OUT, T0_MS + seconds(10))], idx)
    assert events == [] and state.candidates == () and state.members == ()


# ------------------------------------------------------------------ drive-past and edge jitter (Traccar flapping)

def test_driving_past_along_fence_edge_does_not_flap():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    # A road tangent to the fence: GPS puts the van alternately just inside and just outside.
    track = [p(at(north_m=n, east_m=92 if i % 2 == 0 else 112), T0_MS + seconds(5 * i))
             for i, n in enumerate(range(-150, 151, 15))]
    state, events, _ = run(track, idx)
    assert events == []
    assert state.members == ()


def test_edge_jitter_after_entering_never_exits_until_clear_of_buffer():
    idx = GeofenceIndex([stop_fence(min_pings=2, exit_buffer_m=50)])
    arrive = [p(INSIDE, T0_MS), p(INSIDE, T0_MS + seconds(10))]
    jitter = [p(pos, T0_MS + seconds(20 + 10 * i)) for i, pos in
              enumerate([EDGE_OUT, EDGE_IN, IN_BUFFER, EDGE_OUT, EDGE_IN, IN_BUFFER, EDGE_OUT])]
    state, events, _ = run(arrive + jitter, idx)
    assert kinds(events) == [(ENTER, "STOP1")]
    # Left for good: the last fix inside was at 60 s, so the van left the fence at 70 s.
    state, events, _ = run([p(CLEAR, T0_MS + seconds(90))], idx, state)
    (e,) = events
    assert (e.event_type, e.event_time_ms, e.visit_start_ms) == (EXIT, T0_MS + seconds(70), T0_MS)
    assert state.members == ()


def test_exit_when_van_jumps_straight_past_buffer_uses_that_ping_time():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    _, events, _ = run([p(INSIDE, T0_MS), p(INSIDE, T0_MS + seconds(10)), p(CLEAR, T0_MS + seconds(20))], idx)
    assert [(e.event_type, e.event_time_ms) for e in events] == [(ENTER, T0_MS), (EXIT, T0_MS + seconds(20))]


# ------------------------------------------------------------------ low-quality pings confirm but never initiate

@pytest.mark.parametrize("poor", [{"source": "CELL", "accuracy_m": 800.0}, {"accuracy_m": 250.0}])
def test_low_quality_pings_inside_cannot_start_an_enter(poor):
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    state, events, _ = run([p(INSIDE, T0_MS + seconds(10 * i), **poor) for i in range(6)], idx)
    assert events == [] and state.candidates == ()


def test_low_quality_ping_inside_confirms_a_candidate_a_good_ping_started():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    _, events, _ = run([p(INSIDE, T0_MS), p(INSIDE, T0_MS + seconds(10), source="CELL", accuracy_m=600.0)], idx)
    assert [(e.event_type, e.event_time_ms) for e in events] == [(ENTER, T0_MS)]


def test_low_quality_ping_outside_neither_cancels_candidate_nor_exits_member():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    far_cell_fix = at(east_m=2000)
    state, events, _ = run([p(INSIDE, T0_MS), p(far_cell_fix, T0_MS + seconds(10), source="CELL"),
                            p(INSIDE, T0_MS + seconds(20))], idx)
    assert kinds(events) == [(ENTER, "STOP1")]
    state, events, _ = run([p(far_cell_fix, T0_MS + seconds(30), source="CELL"),
                            p(far_cell_fix, T0_MS + seconds(40), accuracy_m=900.0)], idx, state)
    assert events == [] and len(state.members) == 1
    _, events, _ = run([p(CLEAR, T0_MS + seconds(50))], idx, state)
    assert [(e.event_type, e.event_time_ms) for e in events] == [(EXIT, T0_MS + seconds(50))]


# ------------------------------------------------------------------ out-of-order uploads (Traccar corruption)

def test_late_upload_from_before_arrival_does_not_exit_or_reenter():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    state, events, _ = run([p(INSIDE, T0_MS + minutes(10)), p(INSIDE, T0_MS + minutes(11))], idx)
    assert kinds(events) == [(ENTER, "STOP1")]
    # The device's offline buffer: the drive towards the stop, uploaded after arrival.
    backlog = [p(at(east_m=2000 - 200 * i), T0_MS + minutes(i)) for i in range(10)]
    state, events, _ = run(backlog, idx, state)
    assert events == []
    assert state.out_of_order_pings == 10 and len(state.members) == 1
    assert state.members[0].entered_ms == T0_MS + minutes(10)


def test_in_order_upload_of_same_track_enters_once():
    # In-order twin: the same drive arriving in time produces exactly one ENTER, at arrival.
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    track = [p(at(east_m=2000 - 200 * i), T0_MS + minutes(i)) for i in range(10)]
    track += [p(INSIDE, T0_MS + minutes(10)), p(INSIDE, T0_MS + minutes(11))]
    _, events, _ = run(track, idx)
    assert [(e.event_type, e.event_time_ms) for e in events] == [(ENTER, T0_MS + minutes(10))]


# ------------------------------------------------------------------ sparse pings (Traccar missed enter/exit)

def test_fence_crossed_between_sparse_pings_gets_interpolated_enter_and_exit():
    idx = GeofenceIndex([stop_fence(radius_m=100)])
    west, east = at(east_m=-1000), at(east_m=1000)
    state, events, _ = run([p(west, T0_MS), p(east, T0_MS + minutes(10))], idx)
    assert kinds(events) == [(ENTER, "STOP1"), (EXIT, "STOP1")]
    enter, exit_ = events
    assert enter.interpolated and exit_.interpolated and enter.reason == exit_.reason == SEGMENT_CROSSING
    assert enter.event_time_ms == pytest.approx(T0_MS + 0.45 * minutes(10), abs=seconds(2))
    assert exit_.event_time_ms == pytest.approx(T0_MS + 0.55 * minutes(10), abs=seconds(2))
    assert exit_.visit_start_ms == enter.event_time_ms
    assert state.members == () and state.candidates == ()


def test_sparse_pings_delivered_backwards_invent_no_crossing():
    # Out-of-order twin: the older end arrives last and is ignored, so no segment exists.
    idx = GeofenceIndex([stop_fence(radius_m=100)])
    west, east = at(east_m=-1000), at(east_m=1000)
    state, events, _ = run([p(east, T0_MS + minutes(10)), p(west, T0_MS)], idx)
    assert events == [] and state.out_of_order_pings == 1
    assert state.last_good[2] == T0_MS + minutes(10)


def test_dense_pings_clipping_a_fence_are_a_drive_past():
    idx = GeofenceIndex([stop_fence(radius_m=100)])
    a, b = at(north_m=80, east_m=-150), at(north_m=80, east_m=150)
    _, events, _ = run([p(a, T0_MS), p(b, T0_MS + seconds(20))], idx)
    assert events == []


def test_sparse_segment_from_a_cell_fix_is_not_used():
    idx = GeofenceIndex([stop_fence(radius_m=100)])
    west, east = at(east_m=-1000), at(east_m=1000)
    _, events, _ = run([p(west, T0_MS, source="CELL"), p(east, T0_MS + minutes(10))], idx)
    assert events == []


def test_sparse_segment_ending_inside_a_fence_leaves_it_to_the_dwell_rule():
    idx = GeofenceIndex([stop_fence(radius_m=100, min_pings=2)])
    west = at(east_m=-1000)
    state, events, _ = run([p(west, T0_MS), p(INSIDE, T0_MS + minutes(10))], idx)
    assert events == [] and [c.geofence_id for c in state.candidates] == ["STOP1"]


def _chord_then_arrival():
    # After a 5 min gap the next fix is 20 m past the edge (inside the 50 m exit buffer); the
    # straight chord to it cuts through the fence, but the road went round it and the van
    # drives in now.
    start, edge = at(north_m=-300, east_m=-600), at(east_m=120)
    return [p(start, T0_MS), p(edge, T0_MS + minutes(5)), p(INSIDE, T0_MS + minutes(5) + seconds(20)),
            p(INSIDE, T0_MS + minutes(5) + seconds(40))]


def test_sparse_segment_ending_in_the_exit_buffer_is_no_visit_so_arriving_does_not_flap():
    idx = GeofenceIndex([stop_fence(radius_m=100, min_pings=2, exit_buffer_m=50)])
    state, events, _ = run(_chord_then_arrival(), idx)
    assert [(e.event_type, e.reason, e.event_time_ms - T0_MS) for e in events] == [
        (ENTER, OBSERVED, minutes(5) + seconds(20))]
    assert [m.geofence_id for m in state.members] == ["STOP1"]


def test_sparse_segment_ending_in_the_exit_buffer_delivered_backwards_enters_once():
    # Out-of-order twin: the chord's start arrives after the fix at the edge, is ignored, and
    # the van still enters exactly once.
    idx = GeofenceIndex([stop_fence(radius_m=100, min_pings=2, exit_buffer_m=50)])
    start, edge, in1, in2 = _chord_then_arrival()
    state, events, _ = run([edge, start, in1, in2], idx)
    assert [(e.event_type, e.reason, e.event_time_ms - T0_MS) for e in events] == [
        (ENTER, OBSERVED, minutes(5) + seconds(20))]
    assert state.out_of_order_pings == 1


# ------------------------------------------------------------------ duplicate notifications

def test_van_parked_inside_for_hours_enters_once():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    rnd = random.Random(7)
    pings = [p(at(north_m=rnd.uniform(-20, 20), east_m=rnd.uniform(-20, 20)), T0_MS + minutes(i)) for i in range(240)]
    _, events, _ = run(pings, idx)
    assert kinds(events) == [(ENTER, "STOP1")]


def test_replay_produces_identical_event_ids():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    pings = [p(INSIDE, T0_MS), p(INSIDE, T0_MS + seconds(10)), p(CLEAR, T0_MS + seconds(20))]
    assert run(pings, idx)[1] == run(pings, idx)[1]


@pytest.mark.parametrize("seed", range(5))
def test_events_alternate_enter_exit_per_fence_under_jitter_reordering_and_cell_fixes(seed):
    fences = [stop_fence("A", radius_m=80, min_pings=2), stop_fence("B", lat=LAT + 0.001, radius_m=120, min_pings=3),
              stop_fence("C", lon=LON + 0.004, radius_m=60, min_pings=1)]
    idx = GeofenceIndex(fences)
    rnd = random.Random(seed)
    pings, t = [], T0_MS
    for _ in range(400):
        t += rnd.choice([seconds(5), seconds(10), seconds(30), minutes(3)])
        kw = {"source": "CELL", "accuracy_m": 900.0} if rnd.random() < 0.1 else {}
        pings.append(p(at(north_m=rnd.uniform(-200, 300), east_m=rnd.uniform(-200, 500)), t, **kw))
    # A tenth of the pings arrive late, after a later one.
    for i in range(0, len(pings) - 1, 10):
        pings[i], pings[i + 1] = pings[i + 1], pings[i]
    state, events, _ = run(pings, idx)
    assert {e.reason for e in events} == {OBSERVED, SEGMENT_CROSSING}
    for fid in "ABC":
        seq = [e.event_type for e in events if e.geofence_id == fid]
        assert seq == [ENTER, EXIT] * (len(seq) // 2) + ([ENTER] if len(seq) % 2 else [])
        assert (fid in {m.geofence_id for m in state.members}) == (len(seq) % 2 == 1)
    assert state.out_of_order_pings > 0


# ------------------------------------------------------------------ fence updates

def test_fence_removed_while_inside_exits_on_next_ping():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    state, _, _ = run([p(INSIDE, T0_MS), p(INSIDE, T0_MS + seconds(10))], idx)
    idx.remove("STOP1")
    state, events, _ = run([p(INSIDE, T0_MS + seconds(20))], idx, state)
    (e,) = events
    assert (e.event_type, e.reason, e.event_time_ms) == (EXIT, FENCE_REMOVED, T0_MS + seconds(20))
    assert state.members == ()


def test_fence_added_later_is_entered_from_then_on():
    idx = GeofenceIndex()
    state, events, _ = run([p(INSIDE, T0_MS), p(INSIDE, T0_MS + seconds(10))], idx)
    assert events == []
    idx.add(stop_fence(min_pings=2))
    _, events, _ = run([p(INSIDE, T0_MS + seconds(20)), p(INSIDE, T0_MS + seconds(30))], idx, state)
    assert [(e.event_type, e.event_time_ms) for e in events] == [(ENTER, T0_MS + seconds(20))]


# ------------------------------------------------------------------ timers and state expiry

def test_expiry_timer_is_armed_once_not_on_every_ping():
    idx = GeofenceIndex([stop_fence()])
    state, _, timers = run([p(CLEAR, T0_MS + seconds(10 * i)) for i in range(5)], idx)
    assert timers == [T0_MS + TTL_MS]
    assert state.expiry_timer_ms == T0_MS + TTL_MS


def test_expiry_timer_rearms_when_van_pinged_since():
    idx = GeofenceIndex([stop_fence()])
    state, _, _ = run([p(CLEAR, T0_MS), p(CLEAR, T0_MS + minutes(5))], idx)
    d = on_timer(state, T0_MS + TTL_MS)
    assert d.state is not None and d.emits == ()
    assert d.timer_ms == d.state.expiry_timer_ms == T0_MS + minutes(5) + TTL_MS


def test_silent_van_state_is_cleared_and_open_visit_closed_at_last_ping():
    idx = GeofenceIndex([stop_fence(min_pings=2)])
    state, _, _ = run([p(INSIDE, T0_MS), p(INSIDE, T0_MS + seconds(10))], idx)
    rearmed = on_timer(state, T0_MS + TTL_MS)
    assert rearmed.timer_ms == T0_MS + seconds(10) + TTL_MS
    d = on_timer(rearmed.state, rearmed.timer_ms)
    assert d.state is None
    (e,) = d.emits
    assert (e.event_type, e.reason, e.event_time_ms) == (EXIT, STATE_EXPIRED, T0_MS + seconds(10))


def test_stale_timer_is_ignored():
    idx = GeofenceIndex([stop_fence()])
    state, _, _ = run([p(CLEAR, T0_MS)], idx)
    d = on_timer(state, T0_MS + 123)
    assert d.state == state and d.emits == () and d.timer_ms is None
    assert on_timer(None, T0_MS).state is None


def test_out_of_order_ping_sets_no_timer_and_changes_nothing_else():
    idx = GeofenceIndex([stop_fence()])
    state, _, _ = run([p(INSIDE, T0_MS + minutes(1))], idx)
    d = step(state, p(CLEAR, T0_MS), 0, idx)
    assert d.timer_ms is None and d.cancel_timers_ms == () and d.emits == ()
    assert d.state == MembershipState(**{**state.__dict__, "out_of_order_pings": 1})
