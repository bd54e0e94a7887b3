"""The van rule: route state from assignments and outcomes, arrival detection, ETAs."""
import pytest

from tests.builders import T0_MS, assignment, hours, minutes, offset, ping, seconds
from udfs.eta import (Assignment, EtaConfig, ParcelDone, Stop, assignment_problem, route_eta, van_on_timer,
                      van_step)
from udfs.events import Ping

CFG = EtaConfig()
DEPOT = (52.5000, 13.4000)
SPEED = 8.0


def const_speed(lat, lon, at_ms):
    return (SPEED, 1.0)


def stop_at(north_m):
    return offset(*DEPOT, north_m=north_m)


def loaded(tid, order, north_m, *, at_ms=T0_MS, route_id="RT1", action="LOADED", vehicle_id="VAN1"):
    lat, lon = stop_at(north_m)
    return Assignment.from_record(assignment(vehicle_id, tid, action, at_ms=at_ms, route_id=route_id,
                                             stop_order=order, stop_id=f"S{order}", stop_lat=lat, stop_lon=lon))


def fix(north_m, at_ms, speed_mps=SPEED, vehicle_id="VAN1"):
    lat, lon = stop_at(north_m)
    return Ping.from_record(ping(vehicle_id, lat, lon, at_ms=at_ms, speed_mps=speed_mps))


def run(events, state=None, cfg=CFG):
    emits, timers = [], []
    for ev in events:
        d = van_step(state, ev, getattr(ev, "event_time_ms"), const_speed, cfg)
        state = d.state
        emits += d.emits
        if d.timer_ms is not None:
            timers.append(d.timer_ms)
    return state, emits, timers


ROUTE = [loaded("P1", 1, 1000), loaded("P2", 2, 2000), loaded("P3", 3, 3000)]


def test_first_ping_after_loading_estimates_every_parcel_in_stop_order():
    _, emits, _ = run(ROUTE + [fix(0, T0_MS + minutes(1), speed_mps=0.0)])
    by_tid = {e.tracking_id: e for e in emits}
    assert sorted(by_tid) == ["P1", "P2", "P3"]
    assert by_tid["P1"].eta_ms < by_tid["P2"].eta_ms < by_tid["P3"].eta_ms
    assert all(e.earliest_ms <= e.eta_ms <= e.latest_ms for e in emits)


def test_assignments_alone_emit_nothing_and_arm_one_idle_timer():
    state, emits, timers = run(ROUTE)
    assert emits == [] and timers == [T0_MS + CFG.idle_ttl_ms]
    assert state["route_id"] == "RT1"


def test_unloaded_parcel_leaves_the_route():
    _, emits, _ = run(ROUTE + [loaded("P2", 2, 2000, at_ms=T0_MS + 1, action="UNLOADED"), fix(0, T0_MS + minutes(1))])
    assert sorted(e.tracking_id for e in emits) == ["P1", "P3"]


def test_out_of_order_twin_older_loaded_after_unloaded_does_not_put_the_parcel_back():
    events = [loaded("P1", 1, 1000), loaded("P2", 2, 2000, at_ms=T0_MS + 5, action="UNLOADED"),
              loaded("P2", 2, 2000, at_ms=T0_MS + 1), fix(0, T0_MS + minutes(1))]
    _, emits, _ = run(events)
    assert sorted(e.tracking_id for e in emits) == ["P1"]


def test_delivered_parcel_leaves_the_route_and_a_straggling_older_loaded_does_not_revive_it():
    done = ParcelDone("VAN1", "P1", T0_MS + minutes(5), "DELIVERED")
    state, emits, _ = run(ROUTE + [done, loaded("P1", 1, 1000, at_ms=T0_MS + minutes(1)),
                                   fix(1100, T0_MS + minutes(6))])
    assert sorted(e.tracking_id for e in emits) == ["P2", "P3"]
    assert "S1" in state["reached"]


def test_outcome_before_loaded_is_kept_and_applied_when_the_loaded_arrives():
    done = ParcelDone("VAN1", "P1", T0_MS + minutes(5), "DELIVERED")
    _, emits, _ = run([done] + ROUTE + [fix(1100, T0_MS + minutes(6))])
    assert sorted(e.tracking_id for e in emits) == ["P2", "P3"]


def test_slow_fix_at_a_stop_marks_it_reached_but_a_drive_by_does_not():
    base, _, _ = run(ROUTE + [fix(0, T0_MS + minutes(1))])
    passing, _, _ = run([fix(1010, T0_MS + minutes(3), speed_mps=SPEED)], base)
    assert passing["reached"] == {}
    parked, emits, _ = run([fix(1010, T0_MS + minutes(3), speed_mps=0.3)], base)
    assert set(parked["reached"]) == {"S1"}
    assert "P1" not in {e.tracking_id for e in emits}


def test_van_dwelling_at_a_stop_leaves_for_the_next_after_the_dwell():
    arrived_ms = T0_MS + minutes(3)
    state, emits, _ = run(ROUTE + [fix(1000, arrived_ms, speed_mps=0.0)])
    assert "P1" not in {e.tracking_id for e in emits}
    p2 = next(e for e in emits if e.tracking_id == "P2")
    drive_ms = 1000 * CFG.circuity / SPEED * 1000
    assert p2.eta_ms == pytest.approx(arrived_ms + CFG.dwell_ms + drive_ms, abs=seconds(5))
    # Once the dwell is over the van is taken to leave now.
    _, later, _ = run([fix(1005, arrived_ms + CFG.dwell_ms + minutes(3), speed_mps=0.0)], state)
    p2_late = next(e for e in later if e.tracking_id == "P2")
    assert p2_late.eta_ms == pytest.approx(arrived_ms + CFG.dwell_ms + minutes(3) + drive_ms, abs=seconds(10))


def test_stop_orders_not_seen_yet_are_budgeted_while_the_van_loads():
    # Loading goes last stop first: only stop 3 is known so far.
    _, emits, _ = run([loaded("P3", 3, 3000), fix(0, T0_MS + minutes(1), speed_mps=0.0)])
    drive_ms = 3000 * CFG.circuity / SPEED * 1000
    assert emits[0].eta_ms == pytest.approx(T0_MS + minutes(1) + 2 * CFG.unknown_stop_ms + drive_ms, abs=seconds(5))


def test_route_eta_adds_the_expected_share_of_a_pending_break_and_covers_it_on_the_late_side():
    stop = [Stop("S1", *stop_at(8000), ("P1",))]
    now = T0_MS
    plain = route_eta(now, *DEPOT, stop, const_speed, CFG)[0]
    drive_ms = plain.eta_ms - now
    # The break falls uniformly in [now, now + 2 * drive]: half a chance it comes first.
    half = route_eta(now, *DEPOT, stop, const_speed, CFG, pending_break=(now, now + 2 * drive_ms))[0]
    assert half.eta_ms == pytest.approx(plain.eta_ms + CFG.break_ms / 2, abs=1000)
    assert half.latest_ms >= plain.latest_ms + CFG.break_ms
    assert half.earliest_ms <= plain.eta_ms
    certain = route_eta(now, *DEPOT, stop, const_speed, CFG, pending_break=(now, now))[0]
    assert certain.eta_ms == pytest.approx(plain.eta_ms + CFG.break_ms, abs=1000)


def test_long_halt_away_from_stops_is_the_break_and_the_van_leaves_when_it_is_up():
    route = [loaded("P1", 1, 20_000)]
    state, _, _ = run(route + [fix(0, T0_MS), fix(2000, T0_MS + minutes(5))])
    assert state["departed_ms"] == T0_MS + minutes(5)
    halt_start = T0_MS + minutes(10)
    state, emits, _ = run([fix(4000, halt_start, 0.0), fix(4005, halt_start + minutes(9), 0.0)], state)
    assert state["break_since_ms"] == halt_start
    drive_ms = 16_000 * CFG.circuity / SPEED * 1000
    last = [e for e in emits if e.tracking_id == "P1"][-1]
    assert last.eta_ms == pytest.approx(halt_start + CFG.break_ms + drive_ms, abs=seconds(10))


def test_assignment_of_a_newer_route_starts_the_next_shift_and_an_older_one_is_ignored():
    state, _, _ = run(ROUTE)
    state, _, _ = run([loaded("Q1", 1, 500, at_ms=T0_MS + hours(20), route_id="RT2")], state)
    assert set(state["parcels"]) == {"Q1"}
    state, _, _ = run([loaded("P9", 4, 500, at_ms=T0_MS + minutes(1), route_id="RT1")], state)
    assert set(state["parcels"]) == {"Q1"}


def test_older_ping_does_not_move_the_van_backwards():
    state, _, _ = run(ROUTE + [fix(500, T0_MS + minutes(2))])
    after, emits, _ = run([fix(0, T0_MS + minutes(1))], state)
    assert emits == [] and after is state


def test_one_idle_timer_that_rearms_while_events_come_and_clears_after_silence():
    state, _, timers = run(ROUTE + [fix(0, T0_MS + minutes(1)), fix(300, T0_MS + minutes(2))])
    assert timers == [T0_MS + CFG.idle_ttl_ms]
    d = van_on_timer(state, timers[0], CFG)
    assert d.state is not None and d.timer_ms == T0_MS + minutes(2) + CFG.idle_ttl_ms
    assert van_on_timer(d.state, d.timer_ms, CFG).state is None


@pytest.mark.parametrize("field,value,reason", [
    ("vehicle_id", "", "MISSING_ID"), ("tracking_id", " ", "MISSING_ID"), ("stop_id", "", "MISSING_ID"),
    ("stop_lat", float("nan"), "BAD_COORDINATES"), ("stop_lon", 200.0, "BAD_COORDINATES"),
    ("stop_order", 0, "BAD_STOP_ORDER"),
])
def test_unusable_assignments_have_a_dead_letter_reason(field, value, reason):
    assert assignment_problem(assignment()) is None
    assert assignment_problem({**assignment(), field: value}) == reason


def test_delivery_received_ahead_of_the_pings_takes_effect_at_its_own_time():
    # Replay twin of test_delivered_parcel_leaves_the_route...: the outcome arrives first.
    done = ParcelDone("VAN1", "P1", T0_MS + minutes(5), "DELIVERED")
    _, before, _ = run(ROUTE + [done, fix(0, T0_MS + minutes(1))])
    assert sorted(e.tracking_id for e in before) == ["P1", "P2", "P3"]
    _, after, _ = run(ROUTE + [done, fix(1100, T0_MS + minutes(6))])
    assert sorted(e.tracking_id for e in after) == ["P2", "P3"]


def test_held_pings_are_applied_in_event_time_order_when_their_timers_fire():
    from udfs.eta import hold_ping
    late_ping, early_ping = fix(500, T0_MS + minutes(2)), fix(0, T0_MS + minutes(1))
    state = None
    timers = []
    for ev in ROUTE[:1]:
        state = van_step(state, ev, ev.event_time_ms, const_speed, CFG).state
    for p in (late_ping, early_ping):  # received out of order
        d = hold_ping(state, p, CFG)
        state = d.state
        timers.append(d.timer_ms)
    assert sorted(timers) == [early_ping.event_time_ms, late_ping.event_time_ms]
    # LOADED for P2 arrives after the pings were received but happened before them.
    state = van_step(state, ROUTE[1], ROUTE[1].event_time_ms, const_speed, CFG).state
    d = van_on_timer(state, late_ping.event_time_ms, CFG, const_speed)
    assert d.state["last_ping_ms"] == late_ping.event_time_ms and d.state["held"] == []
    assert {e.tracking_id for e in d.emits} == {"P1", "P2"}
    assert all(e.as_of_ms == early_ping.event_time_ms for e in d.emits)  # first recompute; second is throttled
    # A ping older than one applied is dropped at once.
    assert hold_ping(d.state, fix(0, T0_MS), CFG).state is d.state
