import pickle
import random

import pytest

from tests.builders import T0_MS, hours, minutes, offset, ping, seconds
from udfs.events import Ping
from udfs.vehicle_watch import (
    DEFAULT_CONFIG,
    EVENT_TIME,
    OPEN,
    PLAN_CHANGED,
    PROCESSING_TIME,
    RESOLVED,
    ROUTE_DEVIATION,
    ROUTE_RECOVERED,
    SIGNAL_LOST,
    SIGNAL_RESTORED,
    STATE_EXPIRED,
    VEHICLE_RESUMED,
    VEHICLE_STALLED,
    WATCH_EXPIRED,
    RoutePlan,
    WatchState,
    on_processing_timer,
    on_timer,
    processing_deadline_ms,
    set_plan,
    set_shift,
    step,
)

LAT, LON = 52.5200, 13.4050
WALL0_MS = T0_MS + seconds(2)  # pings reach the operator two seconds after they were taken


def at(north_m=0.0, east_m=0.0):
    return offset(LAT, LON, north_m=north_m, east_m=east_m)


# East-west road through the origin, 10 km long.
ROAD = RoutePlan("RT1", (at(east_m=-5000), at(east_m=5000)))


class Van:
    """A stand-in for the keyed operator: applies Decisions, keeps event-time timers,
    fires them as the watermark advances."""

    def __init__(self, cfg=DEFAULT_CONFIG):
        self.cfg = cfg
        self.state = None
        self.timers: set[int] = set()
        self.events = []
        self.registrations = 0
        self.max_pending = 0

    def apply(self, d):
        self.state = d.state
        self.events.extend(d.emits)
        for t in d.cancel_timers_ms:
            self.timers.discard(t)
        if d.timer_ms is not None:
            self.timers.add(d.timer_ms)
            self.registrations += 1
        if d.state is None:
            self.timers.clear()
        self.max_pending = max(self.max_pending, len(self.timers))
        return d

    def ping(self, where, t_ms, *, kinds=frozenset(), stops=frozenset(), wall_ms=None, **kw):
        """``kinds``: kinds of the fences the van is in; ``stops``: facility ids of its CUSTOMER_STOP fences."""
        lat, lon = where
        pg = Ping.from_record(ping("VAN001", lat, lon, at_ms=t_ms, **kw))
        wall = t_ms + seconds(2) if wall_ms is None else wall_ms
        return self.apply(step(self.state, pg, wall, self.cfg, fence_kinds=frozenset(kinds),
                               customer_stop_ids=frozenset(stops)))

    def advance(self, watermark_ms):
        while self.timers and min(self.timers) <= watermark_ms:
            t = min(self.timers)
            self.timers.remove(t)
            self.apply(on_timer(self.state, t, self.cfg))

    def types(self):
        return [e.event_type for e in self.events]


def parked(van, start_ms, n_minutes, *, drift_m=20.0, seed=1, **kw):
    rnd = random.Random(seed)
    for i in range(n_minutes):
        van.ping(at(rnd.uniform(-drift_m, drift_m), rnd.uniform(-drift_m, drift_m)), start_ms + minutes(i), **kw)


# ------------------------------------------------------------------ stall

def test_emits_stalled_when_en_route_van_stays_within_radius_for_10_min():
    van = Van()
    parked(van, T0_MS, 10)  # pings at 0..9 min
    assert van.types() == []  # no alert yet at 9 min
    van.ping(at(5, 5), T0_MS + minutes(10))
    (e,) = van.events
    assert (e.event_type, e.condition, e.transition) == (VEHICLE_STALLED, VEHICLE_STALLED, OPEN)
    assert (e.event_time_ms, e.condition_start_ms) == (T0_MS + minutes(10), T0_MS)


def test_parked_gps_drift_within_radius_is_not_motion():
    van = Van()
    parked(van, T0_MS, 60, drift_m=30.0, seed=3)  # up to ~42 m from the first fix
    assert van.types() == [VEHICLE_STALLED]


def test_cell_fix_far_away_is_not_motion():
    van = Van()
    parked(van, T0_MS, 12)
    van.ping(at(east_m=700), T0_MS + minutes(13), source="CELL", accuracy_m=900.0)
    van.ping(at(east_m=-400), T0_MS + minutes(14), accuracy_m=300.0)
    assert van.types() == [VEHICLE_STALLED]


def test_resumed_once_when_van_leaves_radius_with_same_condition_start():
    van = Van()
    parked(van, T0_MS, 12)
    for i in range(5):
        van.ping(at(east_m=200 * (i + 1)), T0_MS + minutes(13 + i))
    assert van.types() == [VEHICLE_STALLED, VEHICLE_RESUMED]
    stalled, resumed = van.events
    assert resumed.transition == RESOLVED and resumed.event_time_ms == T0_MS + minutes(13)
    assert resumed.condition_start_ms == stalled.condition_start_ms == T0_MS


def test_late_ping_from_elsewhere_does_not_resume_stalled_van():
    # Out-of-order twin of the resume test: the far-away fix is older than the standstill.
    van = Van()
    parked(van, T0_MS + minutes(5), 12)
    van.ping(at(east_m=2000), T0_MS + minutes(1))
    assert van.types() == [VEHICLE_STALLED]
    assert van.state.out_of_order_pings == 1 and van.state.stalled_since_ms == T0_MS + minutes(5)


def test_stall_raised_by_timer_when_van_was_seen_at_anchor_within_2_min_of_deadline():
    van = Van()
    parked(van, T0_MS, 9)  # pings at 0..8 min, then nothing
    van.advance(T0_MS + minutes(10) - 1)
    assert van.types() == []
    van.advance(T0_MS + minutes(10))
    (e,) = van.events
    assert (e.event_type, e.event_time_ms, e.condition_start_ms) == (VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)


def test_late_ping_does_not_change_timer_raised_stall():
    # Out-of-order twin: a fix from earlier in the standstill, uploaded late, changes nothing.
    van = Van()
    parked(van, T0_MS, 9)
    van.ping(at(east_m=900), T0_MS + seconds(90))
    van.advance(T0_MS + minutes(10))
    assert [(e.event_type, e.event_time_ms, e.condition_start_ms) for e in van.events] == \
        [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)]
    assert van.state.out_of_order_pings == 1


def test_no_stall_while_at_customer_stop_and_clock_restarts_on_leaving():
    van = Van()
    parked(van, T0_MS, 30, kinds={"CUSTOMER_STOP"})
    assert van.types() == []
    # Outside the fence now but not yet 50 m from the anchor: the stall clock starts at the last stop ping.
    parked(van, T0_MS + minutes(30), 9)
    van.advance(T0_MS + minutes(38))
    assert van.types() == []
    van.advance(T0_MS + minutes(39))
    assert van.types() == [VEHICLE_STALLED]
    assert van.events[0].condition_start_ms == T0_MS + minutes(29)


def test_no_stall_after_shift_end():
    van = Van()
    van.ping(at(), T0_MS)
    van.apply(set_shift(van.state, "VAN001", True))
    parked(van, T0_MS + minutes(1), 30)
    van.advance(T0_MS + hours(2))
    assert VEHICLE_STALLED not in van.types()


# ------------------------------------------------------------------ route deviation

def with_plan(van, plan=ROAD, at_ms=T0_MS - minutes(1)):
    van.apply(set_plan(van.state, "VAN001", plan, at_ms))
    return van


def test_route_deviation_after_5_min_beyond_500_m_then_recovery():
    van = with_plan(Van())
    for i in range(6):
        van.ping(at(north_m=600, east_m=300 * i), T0_MS + minutes(i))
    assert van.types() == [ROUTE_DEVIATION]
    dev = van.events[0]
    assert (dev.event_time_ms, dev.condition_start_ms, dev.details["route_id"]) == (T0_MS + minutes(5), T0_MS, "RT1")
    van.ping(at(north_m=300, east_m=2000), T0_MS + minutes(7))
    assert van.types() == [ROUTE_DEVIATION, ROUTE_RECOVERED]
    assert van.events[1].condition_start_ms == T0_MS and van.events[1].transition == RESOLVED


def test_back_on_route_before_5_min_stops_the_clock():
    van = with_plan(Van())
    for i in range(4):
        van.ping(at(north_m=600, east_m=300 * i), T0_MS + minutes(i))
    van.ping(at(north_m=100, east_m=1200), T0_MS + minutes(4))
    for i in range(4):
        van.ping(at(north_m=600, east_m=1500 + 300 * i), T0_MS + minutes(5 + i))
    van.advance(T0_MS + minutes(9))
    assert van.types() == []
    assert van.state.off_route_since_ms == T0_MS + minutes(5)


def test_late_on_route_ping_does_not_stop_the_deviation_clock():
    # Out-of-order twin of the test above: the on-route fix is older than the off-route ones.
    van = with_plan(Van())
    for i in range(1, 4):
        van.ping(at(north_m=600, east_m=300 * i), T0_MS + minutes(i))
    van.ping(at(north_m=10), T0_MS)
    van.advance(T0_MS + minutes(6))
    assert van.types() == [ROUTE_DEVIATION]
    assert van.events[0].condition_start_ms == T0_MS + minutes(1)


def test_van_hovering_between_thresholds_does_not_flap():
    van = with_plan(Van())
    for i in range(6):
        van.ping(at(north_m=600), T0_MS + minutes(i))
    for i in range(20):
        van.ping(at(north_m=450 if i % 2 else 560, east_m=50 * i), T0_MS + minutes(6 + i))
    assert van.types() == [ROUTE_DEVIATION]


def test_deviation_raised_by_timer_when_pings_stop_off_route():
    van = with_plan(Van())
    van.ping(at(north_m=800), T0_MS)
    van.advance(T0_MS + minutes(5))
    assert van.types() == [ROUTE_DEVIATION]


def test_cell_fixes_can_neither_start_nor_recover_a_deviation():
    van = with_plan(Van())
    for i in range(8):
        van.ping(at(north_m=900), T0_MS + minutes(i), source="CELL")
    assert van.types() == []
    for i in range(6):
        van.ping(at(north_m=700), T0_MS + minutes(10 + i))
    van.ping(at(), T0_MS + minutes(17), source="CELL")
    assert van.types() == [ROUTE_DEVIATION]


def test_new_plan_resolves_open_deviation():
    van = with_plan(Van())
    for i in range(6):
        van.ping(at(north_m=700), T0_MS + minutes(i))
    new_road = RoutePlan("RT2", (at(north_m=700, east_m=-5000), at(north_m=700, east_m=5000)))
    van.apply(set_plan(van.state, "VAN001", new_road, T0_MS + minutes(6)))
    assert van.types() == [ROUTE_DEVIATION, ROUTE_RECOVERED]
    assert van.events[1].details["reason"] == PLAN_CHANGED
    van.ping(at(north_m=700), T0_MS + minutes(20))
    assert [e.event_type for e in van.events if e.condition == ROUTE_DEVIATION] == [ROUTE_DEVIATION, ROUTE_RECOVERED]


def test_no_deviation_without_plan():
    van = Van()
    for i in range(10):
        van.ping(at(north_m=5000, east_m=300 * i), T0_MS + minutes(i))
    assert ROUTE_DEVIATION not in van.types()


# ------------------------------------------------------------------ silence

def test_signal_lost_15_min_after_last_ping_in_event_time_then_restored():
    van = Van()
    van.ping(at(), T0_MS, kinds={"CUSTOMER_STOP"})
    van.advance(T0_MS + minutes(15) - 1)
    assert van.types() == []
    van.advance(T0_MS + minutes(15))
    (lost,) = van.events
    assert (lost.event_type, lost.event_time_ms, lost.condition_start_ms, lost.details["detected_by"]) == \
        (SIGNAL_LOST, T0_MS + minutes(15), T0_MS, EVENT_TIME)
    van.ping(at(), T0_MS + minutes(40), kinds={"CUSTOMER_STOP"})
    van.ping(at(), T0_MS + minutes(41), kinds={"CUSTOMER_STOP"})
    assert van.types() == [SIGNAL_LOST, SIGNAL_RESTORED]
    assert van.events[1].condition_start_ms == T0_MS and van.events[1].event_time_ms == T0_MS + minutes(40)


def test_late_ping_does_not_restore_signal():
    # Out-of-order twin: a fix from before the silence arriving late proves nothing about now.
    van = Van()
    van.ping(at(), T0_MS + minutes(5), kinds={"CUSTOMER_STOP"})
    van.advance(T0_MS + minutes(20))
    van.ping(at(), T0_MS + minutes(1), kinds={"CUSTOMER_STOP"})
    assert van.types() == [SIGNAL_LOST]


def test_no_signal_lost_for_van_whose_shift_ended():
    van = Van()
    van.ping(at(), T0_MS)
    van.apply(set_shift(van.state, "VAN001", True))
    van.advance(T0_MS + hours(12))
    assert SIGNAL_LOST not in van.types()
    assert processing_deadline_ms(van.state) is None


def test_no_signal_lost_for_van_parked_inside_depot():
    van = Van()
    van.ping(at(), T0_MS, kinds={"DEPOT"})
    van.advance(T0_MS + hours(12))
    assert van.types() == []
    assert on_processing_timer(van.state, WALL0_MS + hours(12)).emits == ()


def test_processing_time_fallback_fires_when_watermark_stalls_and_event_timer_does_not_duplicate():
    van = Van()
    van.ping(at(), T0_MS, kinds={"HUB"}, wall_ms=WALL0_MS)
    assert processing_deadline_ms(van.state) == WALL0_MS + minutes(15)
    assert on_processing_timer(van.state, WALL0_MS + minutes(15) - 1).emits == ()
    d = van.apply(on_processing_timer(van.state, WALL0_MS + minutes(16)))
    (lost,) = d.emits
    assert (lost.event_type, lost.condition_start_ms, lost.event_time_ms) == (SIGNAL_LOST, T0_MS, T0_MS + minutes(15))
    assert lost.details["detected_by"] == PROCESSING_TIME and lost.details["silent_for_wall_ms"] == str(minutes(16))
    assert processing_deadline_ms(van.state) is None
    # The watermark recovers later: the event-time path finds the signal already lost.
    van.advance(T0_MS + minutes(30))
    assert van.types() == [SIGNAL_LOST]


def test_processing_fallback_measures_silence_from_operator_restart():
    van = Van()
    van.ping(at(), T0_MS, kinds={"HUB"}, wall_ms=WALL0_MS)
    restarted_ms = WALL0_MS + hours(1)
    assert on_processing_timer(van.state, restarted_ms + minutes(1), operator_started_ms=restarted_ms).emits == ()
    assert processing_deadline_ms(van.state, operator_started_ms=restarted_ms) == restarted_ms + minutes(15)
    assert len(on_processing_timer(van.state, restarted_ms + minutes(15), operator_started_ms=restarted_ms).emits) == 1


# ------------------------------------------------------------------ timers and state expiry

def test_state_cleared_after_ttl_and_open_conditions_closed():
    van = Van()
    parked(van, T0_MS, 11)
    van.advance(T0_MS + hours(80))
    assert van.state is None and van.timers == set()
    assert van.types() == [VEHICLE_STALLED, SIGNAL_LOST, WATCH_EXPIRED, WATCH_EXPIRED]
    closes = {(e.condition, e.transition, e.details["reason"]) for e in van.events[2:]}
    assert closes == {(VEHICLE_STALLED, RESOLVED, STATE_EXPIRED), (SIGNAL_LOST, RESOLVED, STATE_EXPIRED)}
    assert all(e.event_time_ms == T0_MS + minutes(10) + DEFAULT_CONFIG.vehicle_state_ttl_ms for e in van.events[2:])


def test_shift_ended_van_is_still_forgotten_after_ttl():
    van = Van()
    van.ping(at(), T0_MS, kinds={"DEPOT"})
    van.apply(set_shift(van.state, "VAN001", True))
    van.advance(T0_MS + DEFAULT_CONFIG.vehicle_state_ttl_ms)
    assert van.state is None and van.events == []


def test_one_timer_pending_and_not_moved_on_every_ping():
    van = with_plan(Van())
    for i in range(60):
        van.ping(at(east_m=100 * i), T0_MS + seconds(30 * i))
        van.advance(T0_MS + seconds(30 * i))
    assert van.max_pending == 1
    assert van.registrations <= 6
    assert van.types() == []


def test_stale_or_unknown_timer_is_ignored():
    van = Van()
    van.ping(at(), T0_MS)
    d = on_timer(van.state, T0_MS + 1)
    assert d.state == van.state and d.emits == () and d.timer_ms is None
    assert on_timer(None, T0_MS).state is None
    assert on_processing_timer(None, T0_MS).state is None


def test_first_ping_arms_earliest_deadline():
    van = Van()
    van.ping(at(), T0_MS)
    # One fix cannot become a stall without another good ping near the anchor (the ping-gap
    # rule), so the earliest deadline is the silence check.
    assert van.timers == {T0_MS + minutes(15)}
    parked(van, T0_MS + minutes(1), 8)  # seen at the anchor up to 8 min: the stall deadline is armed
    assert van.timers == {T0_MS + minutes(10)}
    van2 = Van()
    van2.ping(at(), T0_MS, kinds={"CUSTOMER_STOP"})
    assert van2.timers == {T0_MS + minutes(15)}


# ------------------------------------------------------------------ whose customer stop

MINE, OTHERS = "STP-MINE", "STP-OTHER"
ROUTE_WITH_STOPS = RoutePlan("RT1", ROAD.points, frozenset({MINE, "STP-MINE-2"}))


def stall_events(van):
    return [(e.event_type, e.event_time_ms, e.condition_start_ms) for e in van.events]


def test_stall_reported_next_to_another_routes_customer_stop():
    van = with_plan(Van(), ROUTE_WITH_STOPS)
    parked(van, T0_MS, 11, kinds={"CUSTOMER_STOP"}, stops={OTHERS})
    assert stall_events(van) == [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)]
    assert van.state.en_route


def test_late_ping_from_own_stop_does_not_hide_stall_next_to_another_routes_stop():
    # Out-of-order twin: a late upload from inside the van's own stop fence, dated in
    # the middle of the standstill, neither pauses nor restarts the stall clock.
    van = with_plan(Van(), ROUTE_WITH_STOPS)
    parked(van, T0_MS, 6, kinds={"CUSTOMER_STOP"}, stops={OTHERS})
    van.ping(at(), T0_MS + seconds(150), kinds={"CUSTOMER_STOP"}, stops={MINE})
    parked(van, T0_MS + minutes(6), 5, kinds={"CUSTOMER_STOP"}, stops={OTHERS})
    assert stall_events(van) == [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)]
    assert van.state.out_of_order_pings == 1


def test_no_stall_at_own_customer_stop_even_when_another_stop_fence_overlaps_it():
    van = with_plan(Van(), ROUTE_WITH_STOPS)
    parked(van, T0_MS, 30, kinds={"CUSTOMER_STOP"}, stops={MINE, OTHERS})
    van.advance(T0_MS + minutes(45))
    assert VEHICLE_STALLED not in van.types()


def test_late_ping_from_another_stop_does_not_start_stall_at_own_stop():
    # Out-of-order twin: a late fix that placed the van only in another route's stop fence.
    van = with_plan(Van(), ROUTE_WITH_STOPS)
    parked(van, T0_MS, 15, kinds={"CUSTOMER_STOP"}, stops={MINE})
    van.ping(at(), T0_MS + minutes(3), kinds={"CUSTOMER_STOP"}, stops={OTHERS})
    parked(van, T0_MS + minutes(15), 15, kinds={"CUSTOMER_STOP"}, stops={MINE})
    van.advance(T0_MS + minutes(45))
    assert VEHICLE_STALLED not in van.types() and van.state.out_of_order_pings == 1


def test_customer_stop_fence_without_facility_id_is_not_the_van_with_a_plans_own():
    van = with_plan(Van(), ROUTE_WITH_STOPS)
    parked(van, T0_MS, 11, kinds={"CUSTOMER_STOP"})
    assert stall_events(van) == [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)]


def test_depots_and_hubs_pause_the_stall_clock_for_a_van_with_a_plan():
    for kind in ("DEPOT", "HUB"):
        van = with_plan(Van(), ROUTE_WITH_STOPS)
        parked(van, T0_MS, 30, kinds={kind})
        assert van.types() == [], kind


def test_late_ping_outside_the_hub_does_not_start_a_stall_there():
    # Out-of-order twin of the depot/hub test.
    van = with_plan(Van(), ROUTE_WITH_STOPS)
    parked(van, T0_MS, 15, kinds={"HUB"})
    van.ping(at(), T0_MS + minutes(2))
    parked(van, T0_MS + minutes(15), 15, kinds={"HUB"})
    assert van.types() == [] and van.state.out_of_order_pings == 1


def test_without_a_plan_naming_its_stops_any_customer_stop_pauses_the_stall_clock():
    # Today's rule is kept when the van cannot tell its stops from others': no plan at
    # all, or a plan (a bare polyline) that names no stops.
    for plan in (None, ROAD):
        van = with_plan(Van(), plan) if plan is not None else Van()
        parked(van, T0_MS, 30, kinds={"CUSTOMER_STOP"}, stops={OTHERS})
        van.advance(T0_MS + minutes(45))
        assert VEHICLE_STALLED not in van.types(), plan


def test_late_ping_does_not_stall_a_van_without_plan_at_a_customer_stop():
    # Out-of-order twin: a late fix from outside every fence during the stop.
    van = Van()
    parked(van, T0_MS, 15, kinds={"CUSTOMER_STOP"}, stops={OTHERS})
    van.ping(at(), T0_MS + minutes(1))
    parked(van, T0_MS + minutes(15), 15, kinds={"CUSTOMER_STOP"}, stops={OTHERS})
    van.advance(T0_MS + minutes(45))
    assert VEHICLE_STALLED not in van.types() and van.state.out_of_order_pings == 1


def test_new_plan_with_this_stop_pauses_the_clock_from_the_next_ping():
    van = with_plan(Van(), ROUTE_WITH_STOPS)
    parked(van, T0_MS, 5, kinds={"CUSTOMER_STOP"}, stops={"STP-NEW"})
    van.apply(set_plan(van.state, "VAN001", RoutePlan("RT1", ROAD.points, frozenset({"STP-NEW"})),
                       T0_MS + minutes(5)))
    parked(van, T0_MS + minutes(5), 25, kinds={"CUSTOMER_STOP"}, stops={"STP-NEW"})
    van.advance(T0_MS + minutes(29))
    assert VEHICLE_STALLED not in van.types()


# ------------------------------------------------------------------ gaps in the pings

def drive_east(van, start_ms, n, *, from_m=0.0, step_m=250.0, every_ms=seconds(30)):
    """n good pings of a van driving east; returns the position of the last one."""
    for i in range(n):
        van.ping(at(east_m=from_m + step_m * i), start_ms + i * every_ms)
    return from_m + step_m * (n - 1)


def test_van_that_drove_off_during_a_dropout_is_not_stalled_for_the_gap():
    van = Van()
    last_m = drive_east(van, T0_MS, 11)  # last fix at 5 min
    van.advance(T0_MS + minutes(17))     # other vans move the watermark; this tracker is silent
    assert van.types() == []
    van.ping(at(east_m=last_m + 4000), T0_MS + minutes(17))  # 12 min later, 4 km on
    van.advance(T0_MS + minutes(19))
    assert van.types() == []
    assert van.state.anchor[2] == T0_MS + minutes(17) and van.state.stalled_since_ms is None


def test_late_ping_from_the_dropout_start_does_not_stall_a_van_that_drove_off():
    # Out-of-order twin: a buffered fix from the drop-out, where the van was last seen,
    # uploaded after the far-away ping.
    van = Van()
    last_m = drive_east(van, T0_MS, 11)
    van.advance(T0_MS + minutes(17))
    van.ping(at(east_m=last_m + 4000), T0_MS + minutes(17))
    van.ping(at(east_m=last_m), T0_MS + minutes(12))
    van.advance(T0_MS + minutes(19))
    assert van.types() == [] and van.state.out_of_order_pings == 1


def test_cell_fixes_during_a_gps_dropout_do_not_stall_a_van_that_drove_off():
    # Only cell fixes arrive after the deadline: no evidence the van stood still.
    van = Van()
    last_m = drive_east(van, T0_MS, 11)
    for i, t_min in enumerate((8, 11, 14)):
        van.ping(at(east_m=last_m + 1000 * (i + 1)), T0_MS + minutes(t_min), source="CELL", accuracy_m=900.0)
    van.advance(T0_MS + minutes(15))
    assert van.types() == []
    van.ping(at(east_m=last_m + 5000), T0_MS + minutes(16))
    assert van.types() == []


def test_late_cell_fix_does_not_stall_a_van_after_a_gps_dropout():
    # Out-of-order twin of the cell drop-out test.
    van = Van()
    last_m = drive_east(van, T0_MS, 11)
    for i, t_min in enumerate((8, 14)):
        van.ping(at(east_m=last_m + 1000 * (i + 1)), T0_MS + minutes(t_min), source="CELL", accuracy_m=900.0)
    van.ping(at(east_m=last_m + 2000), T0_MS + minutes(11), source="CELL", accuracy_m=900.0)
    van.advance(T0_MS + minutes(15))
    van.ping(at(east_m=last_m + 5000), T0_MS + minutes(16))
    assert van.types() == [] and van.state.out_of_order_pings == 1


def test_van_whose_pings_stop_is_signal_lost_not_stalled():
    for stood_min in (0, 1, 7):  # driving, just stopped, or stopped but last seen 3 min before the deadline
        van = Van()
        last_m = drive_east(van, T0_MS, 5)
        t_last = T0_MS + minutes(2)
        parked_from = t_last + seconds(30)
        for i in range(stood_min + 1):
            van.ping(at(east_m=last_m + 300), parked_from + minutes(i))
        last_ms = parked_from + minutes(stood_min)
        van.advance(last_ms + hours(1))
        assert van.types() == [SIGNAL_LOST], stood_min
        assert van.events[0].condition_start_ms == last_ms


def test_late_ping_does_not_turn_lost_signal_into_a_stall():
    # Out-of-order twin: a late fix from the standstill, uploaded during the silence.
    van = Van()
    last_m = drive_east(van, T0_MS, 5)
    van.ping(at(east_m=last_m + 300), T0_MS + minutes(3))
    van.ping(at(east_m=last_m + 300), T0_MS + minutes(4))
    van.advance(T0_MS + minutes(13))
    van.ping(at(east_m=last_m + 300), T0_MS + minutes(3) + seconds(30))
    van.advance(T0_MS + hours(1))
    assert van.types() == [SIGNAL_LOST] and van.state.out_of_order_pings == 1


def test_sparse_tracker_stall_raised_by_next_good_ping_at_the_anchor():
    # Pings every 5.5 min: none within 2 min before the deadline, so no timer raises the
    # stall; the first good ping at the anchor after it does, dated at the deadline.
    van = Van()
    for i in range(2):
        van.ping(at(i * 5.0, 0.0), T0_MS + i * seconds(330))
    van.advance(T0_MS + seconds(660) - 1)
    assert van.types() == []
    van.ping(at(10, 10), T0_MS + seconds(660))
    assert stall_events(van) == [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)]


def test_late_ping_does_not_change_a_sparse_trackers_stall():
    # Out-of-order twin: a buffered fix dated between the sparse pings arrives late.
    van = Van()
    for i in range(2):
        van.ping(at(i * 5.0, 0.0), T0_MS + i * seconds(330))
    van.ping(at(), T0_MS + minutes(4))
    van.advance(T0_MS + seconds(660) - 1)
    assert van.types() == []
    van.ping(at(10, 10), T0_MS + seconds(660))
    assert stall_events(van) == [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)]
    assert van.state.out_of_order_pings == 1


def test_state_from_before_last_good_ms_and_stop_ids_still_loads_and_stalls():
    # Savepoint compatibility: the state is pickled; fields added later read their defaults.
    van = with_plan(Van(), ROAD)
    parked(van, T0_MS, 9)
    old = van.state
    object.__delattr__(old, "last_good_ms")
    object.__delattr__(old.plan, "stop_ids")
    restored = pickle.loads(pickle.dumps(old))
    assert restored.last_good_ms is None and restored.plan.stop_ids == frozenset()
    assert isinstance(restored, WatchState)
    d = on_timer(restored, restored.timer_ms)
    assert [(e.event_type, e.condition_start_ms) for e in d.emits] == [(VEHICLE_STALLED, T0_MS)]


# ------------------------------------------------------------------ resume hysteresis

def stalled_at_origin(van=None, *, n_minutes=12, drift_m=10.0):
    """A van parked at the origin from T0 (fixes every minute, GPS drift up to
    ``drift_m`` a side), stalled at T0 + 10 min."""
    van = van or Van()
    parked(van, T0_MS, n_minutes, drift_m=drift_m)
    assert stall_events(van) == [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)]
    return van


def resumes(van):
    return [(e.event_time_ms, e.condition_start_ms, e.details["resume_rule"]) for e in van.events
            if e.event_type == VEHICLE_RESUMED]


def test_one_noisy_fix_beyond_the_radius_does_not_resume_a_stalled_van():
    van = stalled_at_origin()
    van.ping(at(east_m=60), T0_MS + minutes(12), accuracy_m=15.0)  # 60 m out, within radius + its accuracy
    assert van.types() == [VEHICLE_STALLED] and van.state.resume_pending_ms == T0_MS + minutes(12)
    parked(van, T0_MS + minutes(13), 10, drift_m=10.0, seed=2)
    assert van.types() == [VEHICLE_STALLED]
    assert van.state.stalled_since_ms == T0_MS and van.state.resume_pending_ms is None


def test_late_fix_beyond_the_radius_does_not_confirm_a_noisy_fix():
    # Out-of-order twin: a buffered fix from 80 m out, dated before the noisy one, arrives
    # right after it. It is ignored, so it cannot be the second fix that resumes.
    van = stalled_at_origin()
    van.ping(at(east_m=60), T0_MS + minutes(12), accuracy_m=15.0)
    van.ping(at(east_m=-80), T0_MS + minutes(11) + seconds(30), accuracy_m=15.0)
    parked(van, T0_MS + minutes(13), 10, drift_m=10.0, seed=2)
    assert van.types() == [VEHICLE_STALLED] and van.state.out_of_order_pings == 1
    assert van.state.stalled_since_ms == T0_MS and van.state.resume_pending_ms is None


def approach_and_park(van, *, short_m=40.0, n_minutes=20):
    """Drives in from the west; the last moving fix, ``short_m`` before the spot, is the
    anchor (at T0); then parked fixes at the spot (the origin) from T0 + 30 s."""
    van.ping(at(east_m=-1000), T0_MS - seconds(60))
    van.ping(at(east_m=-500), T0_MS - seconds(30))
    van.ping(at(east_m=-short_m), T0_MS, speed_mps=2.0)
    parked(van, T0_MS + seconds(30), n_minutes, drift_m=5.0)
    return van


def test_drift_on_the_far_side_of_a_stall_anchored_short_of_the_van_is_not_motion():
    # geofence_accuracy, edge-jitter seed 42: the anchor was the approach fix 38 m short of
    # the van; a 15 m error on the far side put a fix 52 m from it, which resumed the van
    # and raised a second VEHICLE_STALLED. Measured from the mean of the parked fixes it is
    # 15 m: drift, not motion.
    van = approach_and_park(Van())
    assert stall_events(van) == [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)]
    van.ping(at(east_m=15), T0_MS + minutes(21), accuracy_m=14.0)  # 55 m from the anchor
    parked(van, T0_MS + minutes(22), 20, drift_m=5.0, seed=4)
    assert van.types() == [VEHICLE_STALLED] and van.state.resume_pending_ms is None
    van.ping(at(east_m=400), T0_MS + minutes(43))
    assert stall_events(van) == [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS),
                                 (VEHICLE_RESUMED, T0_MS + minutes(43), T0_MS)]


def test_late_approach_fix_does_not_change_a_stall_anchored_short_of_the_van():
    # Out-of-order twin: a buffered approach fix, 45 m short, arrives after the far-side fix.
    van = approach_and_park(Van())
    van.ping(at(east_m=15), T0_MS + minutes(21), accuracy_m=14.0)
    van.ping(at(east_m=-45), T0_MS + seconds(10), speed_mps=1.0)
    parked(van, T0_MS + minutes(22), 20, drift_m=5.0, seed=4)
    van.ping(at(east_m=400), T0_MS + minutes(43))
    assert stall_events(van) == [(VEHICLE_STALLED, T0_MS + minutes(10), T0_MS),
                                 (VEHICLE_RESUMED, T0_MS + minutes(43), T0_MS)]
    assert van.state.out_of_order_pings == 1


def test_van_that_drives_off_is_resumed_by_its_first_fix_beyond_radius_plus_accuracy():
    van = stalled_at_origin()
    van.ping(at(east_m=300), T0_MS + minutes(12) + seconds(20))
    van.ping(at(east_m=600), T0_MS + minutes(12) + seconds(40))
    assert resumes(van) == [(T0_MS + minutes(12) + seconds(20), T0_MS, "BEYOND_ACCURACY")]
    s = van.state
    assert s.stalled_since_ms is None and s.resume_pending_ms is None
    assert s.anchor == (*at(east_m=600), T0_MS + minutes(12) + seconds(40)) and s.anchor_mean[2] == 1


def test_late_parked_fix_does_not_undo_a_drive_off():
    # Out-of-order twin: a buffered fix from the parking spot, dated before the drive-off,
    # arrives after the first fix away from it.
    van = stalled_at_origin()
    van.ping(at(east_m=300), T0_MS + minutes(12) + seconds(20))
    van.ping(at(east_m=3), T0_MS + minutes(12) + seconds(10))
    van.ping(at(east_m=600), T0_MS + minutes(12) + seconds(40))
    assert resumes(van) == [(T0_MS + minutes(12) + seconds(20), T0_MS, "BEYOND_ACCURACY")]
    assert van.types().count(VEHICLE_STALLED) == 1 and van.state.out_of_order_pings == 1


def test_slow_drive_off_is_resumed_by_the_second_fix_beyond_the_radius():
    # Creeping away: the first fix past 50 m (within its accuracy of the radius) used to
    # resume the van; now the next good fix past 50 m does, one ping later. A cell fix in
    # between is no evidence either way and does not break the pair.
    van = stalled_at_origin()
    van.ping(at(east_m=30), T0_MS + minutes(12))
    van.ping(at(east_m=56), T0_MS + minutes(12) + seconds(20), accuracy_m=15.0)
    assert resumes(van) == [] and van.state.resume_pending_ms == T0_MS + minutes(12) + seconds(20)
    van.ping(at(east_m=900), T0_MS + minutes(12) + seconds(30), source="CELL", accuracy_m=900.0)
    van.ping(at(east_m=64), T0_MS + minutes(12) + seconds(40), accuracy_m=15.0)
    assert resumes(van) == [(T0_MS + minutes(12) + seconds(40), T0_MS, "SECOND_FIX")]
    assert van.state.stalled_since_ms is None and van.state.resume_pending_ms is None


def test_late_fix_within_the_radius_does_not_cancel_the_second_fix_rule():
    # Out-of-order twin: a buffered parked fix, dated before the first fix past 50 m,
    # arrives between the two. It is ignored, so the second fix still resumes the van.
    van = stalled_at_origin()
    van.ping(at(east_m=30), T0_MS + minutes(12))
    van.ping(at(east_m=56), T0_MS + minutes(12) + seconds(20), accuracy_m=15.0)
    van.ping(at(east_m=2), T0_MS + minutes(12) + seconds(10))
    van.ping(at(east_m=64), T0_MS + minutes(12) + seconds(40), accuracy_m=15.0)
    assert resumes(van) == [(T0_MS + minutes(12) + seconds(40), T0_MS, "SECOND_FIX")]
    assert van.state.out_of_order_pings == 1


def test_a_good_fix_back_within_the_radius_drops_a_pending_resume():
    van = stalled_at_origin()
    van.ping(at(east_m=56), T0_MS + minutes(12), accuracy_m=15.0)
    van.ping(at(east_m=5), T0_MS + minutes(12) + seconds(20))
    van.ping(at(east_m=-56), T0_MS + minutes(12) + seconds(40), accuracy_m=15.0)
    assert resumes(van) == [] and van.state.resume_pending_ms == T0_MS + minutes(12) + seconds(40)


def test_accuracy_margin_is_capped_and_unknown_accuracy_counts_as_the_cap():
    # Cap 50 m: a 60 m-accuracy fix needs to be beyond 100 m to resume on its own.
    van = stalled_at_origin()
    van.ping(at(east_m=95), T0_MS + minutes(12), accuracy_m=60.0)
    van.ping(at(), T0_MS + minutes(12) + seconds(20))
    van.ping(at(east_m=95), T0_MS + minutes(12) + seconds(40), accuracy_m=None)
    van.ping(at(), T0_MS + minutes(13))
    assert resumes(van) == []
    van.ping(at(east_m=110), T0_MS + minutes(13) + seconds(20), accuracy_m=None)
    assert resumes(van) == [(T0_MS + minutes(13) + seconds(20), T0_MS, "BEYOND_ACCURACY")]


def test_stall_position_is_the_mean_of_the_kept_fixes():
    van = Van()
    for i, east_m in enumerate((0.0, 10.0, 20.0, 30.0)):
        van.ping(at(east_m=east_m), T0_MS + minutes(i))
    lat, lon, n = van.state.anchor_mean
    assert n == 4 and (lat, lon) == pytest.approx(at(east_m=15.0), abs=1e-9)
    assert van.state.anchor[:2] == at()  # the anchor itself, and so the condition start, stay


def test_state_from_before_the_resume_hysteresis_still_loads_and_resumes():
    # Savepoint compatibility: a stalled van's state pickled before anchor_mean and
    # resume_pending_ms existed. The anchor stands in for the mean.
    van = stalled_at_origin(drift_m=0.0)
    old = van.state
    object.__delattr__(old, "anchor_mean")
    object.__delattr__(old, "resume_pending_ms")
    restored = pickle.loads(pickle.dumps(old))
    assert restored.anchor_mean is None and restored.resume_pending_ms is None
    van.state = restored
    van.ping(at(east_m=56), T0_MS + minutes(12), accuracy_m=15.0)
    assert resumes(van) == [] and van.state.resume_pending_ms == T0_MS + minutes(12)
    van.ping(at(east_m=300), T0_MS + minutes(12) + seconds(20))
    assert resumes(van) == [(T0_MS + minutes(12) + seconds(20), T0_MS, "BEYOND_ACCURACY")]


# ------------------------------------------------------------------ driver breaks

# Each test has an out-of-order twin: ``late=True`` delivers, mid-halt, a ping from 3 km
# away dated before the newest one; it is ignored, so the outcome must be the same.
LATE = pytest.mark.parametrize("late", [False, True], ids=["in_order", "late_ping"])
DEPART_MS = T0_MS + minutes(1)  # first ping outside the depot fence


def start_shift(van, at_ms=T0_MS):
    """In the depot at ``at_ms``, first ping outside it a minute later."""
    van.ping(at(north_m=-3000), at_ms, kinds={"DEPOT"})
    van.ping(at(north_m=-2900), at_ms + minutes(1))


def drive(van, start_ms, end_ms, *, every_min=5):
    """Moving pings 1 km apart (every one a new anchor), far from the halts at the origin."""
    for i, t in enumerate(range(start_ms, end_ms, minutes(every_min))):
        van.ping(at(north_m=-2000 + 300 * (i % 5), east_m=1000 * (i + 1)), t)


def halt(van, start_ms, n_minutes, *, late=False, seed=1):
    parked(van, start_ms, n_minutes, seed=seed, drift_m=15.0)  # at most 42 m apart
    if late:
        van.ping(at(east_m=3000), start_ms + minutes(n_minutes // 2) - seconds(90))


def stalls(van):
    return [(e.event_type, e.event_time_ms, e.condition_start_ms) for e in van.events
            if e.condition == VEHICLE_STALLED]


@LATE
def test_halt_in_break_window_shorter_than_allowance_plus_stall_after_raises_nothing(late):
    van = Van()
    start_shift(van)
    drive(van, DEPART_MS + minutes(5), DEPART_MS + hours(2.5))
    halt_ms = DEPART_MS + hours(2.5)
    halt(van, halt_ms, 29, late=late)  # pings 0..28 min: under 20 + 10 min
    drive(van, halt_ms + minutes(29), halt_ms + minutes(45))
    van.advance(halt_ms + hours(1))
    assert stalls(van) == []
    assert van.state.break_halt_ms == halt_ms and van.state.departed_ms == DEPART_MS
    assert van.state.out_of_order_pings == (1 if late else 0)


@LATE
def test_halt_in_break_window_longer_than_allowance_raises_with_halt_start(late):
    van = Van()
    start_shift(van)
    drive(van, DEPART_MS + minutes(5), DEPART_MS + hours(2.5))
    halt_ms = DEPART_MS + hours(2.5)
    halt(van, halt_ms, 29, late=late)
    assert stalls(van) == []  # not yet at 28 min
    van.ping(at(5, 5), halt_ms + minutes(29) + seconds(30))
    van.advance(halt_ms + minutes(30))  # the timer raises it at the extended deadline
    assert stalls(van) == [(VEHICLE_STALLED, halt_ms + minutes(30), halt_ms)]
    assert van.events[-1].details["break_allowance_ms"] == str(minutes(20))
    drive(van, halt_ms + minutes(35), halt_ms + minutes(45))
    assert [e for e, *_ in stalls(van)] == [VEHICLE_STALLED, VEHICLE_RESUMED]


@LATE
def test_second_halt_in_same_shift_is_a_normal_stall(late):
    van = Van()
    start_shift(van)
    drive(van, DEPART_MS + minutes(5), DEPART_MS + hours(2.2))
    first_ms = DEPART_MS + hours(2.2)
    halt(van, first_ms, 25, late=late)  # the break: nothing
    drive(van, first_ms + minutes(25), first_ms + minutes(40))
    second_ms = first_ms + minutes(40)  # still inside the window
    halt(van, second_ms, 12, late=late, seed=2)
    van.advance(second_ms + hours(1))
    assert stalls(van) == [(VEHICLE_STALLED, second_ms + minutes(10), second_ms)]
    assert "break_allowance_ms" not in van.events[-1].details


@LATE
def test_halt_before_break_window_is_a_normal_stall(late):
    van = Van()
    start_shift(van)
    drive(van, DEPART_MS + minutes(5), DEPART_MS + hours(1))
    halt_ms = DEPART_MS + hours(1)
    halt(van, halt_ms, 12, late=late)
    assert stalls(van) == [(VEHICLE_STALLED, halt_ms + minutes(10), halt_ms)]
    assert van.state.break_halt_ms is None  # the break is still to come


@LATE
def test_new_shift_resets_the_break(late):
    van = Van()
    start_shift(van)
    drive(van, DEPART_MS + minutes(5), DEPART_MS + hours(2.5))
    halt(van, DEPART_MS + hours(2.5), 25, late=late)  # shift 1's break
    back_ms = DEPART_MS + hours(4)
    van.ping(at(north_m=-3000), back_ms, kinds={"DEPOT"})
    van.apply(set_shift(van.state, "VAN001", True))
    assert (van.state.departed_ms, van.state.break_halt_ms) == (None, None)
    shift2_ms = back_ms + hours(12)
    van.apply(set_shift(van.state, "VAN001", False))
    start_shift(van, shift2_ms)
    assert van.state.departed_ms == shift2_ms + minutes(1)
    drive(van, shift2_ms + minutes(5), shift2_ms + hours(2.5))
    halt2_ms = shift2_ms + hours(2.5)
    halt(van, halt2_ms, 25, late=late, seed=3)  # shift 2's break: nothing either
    drive(van, halt2_ms + minutes(25), halt2_ms + minutes(35))
    van.advance(halt2_ms + hours(1))
    assert stalls(van) == []
    assert van.state.break_halt_ms == halt2_ms


@LATE
def test_allowance_0_restores_the_plain_stall_rule(late):
    from udfs.vehicle_watch import WatchConfig
    van = Van(WatchConfig(break_allowance_ms=0))
    start_shift(van)
    drive(van, DEPART_MS + minutes(5), DEPART_MS + hours(2.5))
    halt_ms = DEPART_MS + hours(2.5)
    halt(van, halt_ms, 25, late=late)
    assert stalls(van) == [(VEHICLE_STALLED, halt_ms + minutes(10), halt_ms)]
    assert "break_allowance_ms" not in van.events[-1].details and van.state.break_halt_ms is None


def test_van_never_seen_leaving_a_depot_gets_no_break_allowance():
    van = Van()
    drive(van, T0_MS, T0_MS + hours(2.5))
    halt(van, T0_MS + hours(2.5), 12)
    assert stalls(van) == [(VEHICLE_STALLED, T0_MS + hours(2.5) + minutes(10), T0_MS + hours(2.5))]


def test_state_from_before_break_fields_still_loads_and_stalls():
    van = with_plan(Van(), ROAD)
    parked(van, T0_MS, 9)
    old = van.state
    object.__delattr__(old, "departed_ms")
    object.__delattr__(old, "break_halt_ms")
    restored = pickle.loads(pickle.dumps(old))
    assert (restored.departed_ms, restored.break_halt_ms) == (None, None)
    d = on_timer(restored, restored.timer_ms)
    assert [(e.event_type, e.condition_start_ms) for e in d.emits] == [(VEHICLE_STALLED, T0_MS)]
