import random

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

    def ping(self, where, t_ms, *, kinds=frozenset(), wall_ms=None, **kw):
        lat, lon = where
        pg = Ping.from_record(ping("VAN001", lat, lon, at_ms=t_ms, **kw))
        wall = t_ms + seconds(2) if wall_ms is None else wall_ms
        return self.apply(step(self.state, pg, wall, self.cfg, fence_kinds=frozenset(kinds)))

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


def test_stall_raised_by_timer_when_pings_stop():
    van = Van()
    van.ping(at(), T0_MS)
    van.ping(at(3, 3), T0_MS + minutes(1))
    van.advance(T0_MS + minutes(9))
    assert van.types() == []
    van.advance(T0_MS + minutes(10))
    (e,) = van.events
    assert (e.event_type, e.event_time_ms, e.condition_start_ms) == (VEHICLE_STALLED, T0_MS + minutes(10), T0_MS)


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
    assert van.timers == {T0_MS + minutes(10)}  # stall check comes before the silence check
    van2 = Van()
    van2.ping(at(), T0_MS, kinds={"CUSTOMER_STOP"})
    assert van2.timers == {T0_MS + minutes(15)}
