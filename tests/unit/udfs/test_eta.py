import math
import random

import pytest

from tests.builders import T0_MS, hours, minutes, ping, seconds
from udfs.eta import (
    BASIS_ROUTE,
    EtaConfig,
    EtaUpdate,
    Stop,
    eta_on_timer,
    eta_step,
    haversine_m,
    midpoint,
    naive_eta,
    route_eta,
    window_half_width_ms,
)
from udfs.events import Ping

CFG = EtaConfig()
LAT0, LON0 = 52.5200, 13.4050
M_PER_DEG_LAT = 111_195.0


def north(lat, metres):
    return lat + metres / M_PER_DEG_LAT


def const_speed(speed_mps=8.0, confidence=1.0):
    return lambda lat, lon, at_ms: (speed_mps, confidence)


class RecordingLookup:
    """A speed model stand-in whose answer can change, and which counts its calls."""

    def __init__(self, speed_mps=8.0, confidence=1.0):
        self.speed_mps = speed_mps
        self.confidence = confidence
        self.calls = []

    def __call__(self, lat, lon, at_ms):
        self.calls.append((lat, lon, at_ms))
        return self.speed_mps, self.confidence


def van_ping(lat=LAT0, lon=LON0, at_ms=T0_MS, **kw):
    return Ping.from_record(ping("VAN001", lat, lon, at_ms=at_ms, **kw))


def straight_route(n_stops=3, spacing_m=2000.0, parcels_per_stop=1):
    return [
        Stop(f"S{i}", north(LAT0, spacing_m * (i + 1)), LON0,
             tuple(f"TRK{i}{j}" for j in range(parcels_per_stop)))
        for i in range(n_stops)
    ]


# ---- geometry and the naive baseline ----------------------------------------

def test_haversine_one_degree_of_latitude_is_about_111_km():
    assert haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(111_195, rel=1e-3)
    assert haversine_m(LAT0, LON0, LAT0, LON0) == 0.0


def test_midpoint_across_the_antimeridian_stays_on_the_short_side():
    lat, lon = midpoint(0.0, 179.0, 0.0, -179.0)
    assert lat == pytest.approx(0.0, abs=1e-9)
    assert abs(lon) == pytest.approx(180.0)


def test_naive_eta_is_straight_line_at_constant_speed():
    stop_lat = north(LAT0, 8500)
    assert naive_eta(T0_MS, LAT0, LON0, stop_lat, LON0) == pytest.approx(T0_MS + seconds(1000), abs=1500)
    assert naive_eta(T0_MS, LAT0, LON0, stop_lat, LON0, speed_mps=17.0) == pytest.approx(T0_MS + seconds(500), abs=1000)


# ---- route_eta ----------------------------------------------------------------

def test_first_stop_eta_is_road_distance_over_expected_speed():
    stop = Stop("S0", north(LAT0, 4000), LON0, ("TRK0",))
    [est] = route_eta(T0_MS, LAT0, LON0, [stop], const_speed(8.0), CFG)
    road_m = haversine_m(LAT0, LON0, stop.lat, stop.lon) * CFG.circuity
    assert est.eta_ms == round(T0_MS + road_m / 8.0 * 1000)
    assert est.stop_id == "S0"


def test_later_stops_add_previous_dwell_and_their_own_leg_in_route_order():
    route = straight_route(3, spacing_m=2000)
    etas = route_eta(T0_MS, LAT0, LON0, route, const_speed(8.0), CFG)
    leg_ms = 2000 * CFG.circuity / 8.0 * 1000
    assert etas[1].eta_ms - etas[0].eta_ms == pytest.approx(leg_ms + CFG.dwell_ms, abs=50)
    assert etas[2].eta_ms - etas[1].eta_ms == pytest.approx(leg_ms + CFG.dwell_ms, abs=50)


def test_circuity_applies_per_leg_so_a_zigzag_route_costs_more_than_the_crow_flies():
    far = Stop("FAR", north(LAT0, 4000), LON0, ("A",))
    near = Stop("NEAR", north(LAT0, 2000), LON0, ("B",))
    out_and_back = route_eta(T0_MS, LAT0, LON0, [far, near], const_speed(8.0), CFG)
    in_order = route_eta(T0_MS, LAT0, LON0, [near, far], const_speed(8.0), CFG)
    # Visiting FAR first means NEAR is 4 km + 2 km of legs away, not 2 km.
    assert out_and_back[1].eta_ms > in_order[0].eta_ms + minutes(10)


def test_learned_stop_dwell_overrides_the_default():
    slow_dock = Stop("S0", north(LAT0, 2000), LON0, ("A",), dwell_ms=minutes(15))
    nxt = Stop("S1", north(LAT0, 4000), LON0, ("B",))
    default = route_eta(T0_MS, LAT0, LON0, [Stop("S0", slow_dock.lat, slow_dock.lon, ("A",)), nxt], const_speed(), CFG)
    learned = route_eta(T0_MS, LAT0, LON0, [slow_dock, nxt], const_speed(), CFG)
    assert learned[1].eta_ms - default[1].eta_ms == minutes(15) - CFG.dwell_ms
    assert learned[0].eta_ms == default[0].eta_ms


def test_speed_is_looked_up_at_each_leg_midpoint_when_the_leg_starts():
    route = straight_route(2, spacing_m=2000)
    lookup = RecordingLookup(8.0)
    etas = route_eta(T0_MS, LAT0, LON0, route, lookup, CFG)
    (lat_a, _, at_a), (lat_b, _, at_b) = lookup.calls
    assert lat_a == pytest.approx(north(LAT0, 1000), abs=1e-6)
    assert lat_b == pytest.approx(north(LAT0, 3000), abs=1e-6)
    assert at_a == T0_MS
    assert at_b == pytest.approx(etas[0].eta_ms + CFG.dwell_ms, abs=1)


def test_slower_expected_speed_gives_later_eta():
    route = straight_route(1)
    fast = route_eta(T0_MS, LAT0, LON0, route, const_speed(10.0), CFG)[0]
    slow = route_eta(T0_MS, LAT0, LON0, route, const_speed(5.0), CFG)[0]
    assert slow.eta_ms > fast.eta_ms


def test_implausibly_slow_lookup_is_floored():
    route = straight_route(1)
    crawling = route_eta(T0_MS, LAT0, LON0, route, const_speed(0.01), CFG)[0]
    floored = route_eta(T0_MS, LAT0, LON0, route, const_speed(CFG.min_speed_mps), CFG)[0]
    assert crawling.eta_ms == floored.eta_ms


def test_window_is_wider_for_later_stops():
    etas = route_eta(T0_MS, LAT0, LON0, straight_route(4), const_speed(), CFG)
    widths = [e.latest_ms - e.earliest_ms for e in etas]
    assert widths == sorted(widths) and len(set(widths)) == 4


def test_window_is_wider_when_the_speed_model_is_less_confident():
    route = straight_route(1)
    sure = route_eta(T0_MS, LAT0, LON0, route, const_speed(8.0, 1.0), CFG)[0]
    unsure = route_eta(T0_MS, LAT0, LON0, route, const_speed(8.0, 0.1), CFG)[0]
    assert unsure.latest_ms - unsure.earliest_ms > sure.latest_ms - sure.earliest_ms
    assert unsure.confidence < sure.confidence


def test_window_half_width_matches_documented_calibration_points():
    assert window_half_width_ms(0, 1.0) == minutes(3)
    assert window_half_width_ms(minutes(10), 1.0) == pytest.approx(minutes(4.7), abs=seconds(10))
    assert window_half_width_ms(hours(1), 1.0) == pytest.approx(minutes(9.5), abs=seconds(10))
    assert window_half_width_ms(hours(1), 0.0) == 2 * window_half_width_ms(hours(1), 1.0)


def test_earliest_is_never_before_now_when_van_is_at_the_stop():
    [est] = route_eta(T0_MS, LAT0, LON0, [Stop("HERE", LAT0, LON0, ("A",))], const_speed(), CFG)
    assert est.eta_ms == T0_MS
    assert est.earliest_ms == T0_MS
    assert est.latest_ms == T0_MS + minutes(3)


def test_stop_confidence_is_driving_time_weighted_across_legs():
    route = straight_route(2, spacing_m=2000)
    answers = iter([(8.0, 1.0), (8.0, 0.5)])
    etas = route_eta(T0_MS, LAT0, LON0, route, lambda *_: next(answers), CFG)
    assert etas[0].confidence == pytest.approx(1.0)
    assert etas[1].confidence == pytest.approx(0.75, abs=1e-3)


def test_eta_converges_as_the_van_drives_straight_at_model_speed():
    speed_mps = 8.0
    stop = Stop("S0", north(LAT0, 6000), LON0, ("A",))
    cfg = EtaConfig(circuity=1.0)
    previous = None
    for step in range(0, 12):
        t_ms = T0_MS + minutes(step)
        lat = north(LAT0, speed_mps * 60 * step)
        [est] = route_eta(t_ms, lat, LON0, [stop], const_speed(speed_mps), cfg)
        assert est.eta_ms == pytest.approx(T0_MS + seconds(6000 / speed_mps), abs=seconds(1))
        if previous is not None:
            assert est.latest_ms - est.earliest_ms < previous.latest_ms - previous.earliest_ms
            assert est.earliest_ms >= previous.earliest_ms
            assert est.latest_ms <= previous.latest_ms
        previous = est


def test_window_covers_80_to_90_percent_of_simulated_arrivals():
    # Simulates the world the calibration assumes (see udfs/eta.py): driving time cv
    # 25 %, dwell 4 +/- 2 min, door-side noise sd ~2 min, model speed unbiased.
    rng = random.Random(20260302)
    speed_mps = 8.0
    hits = total = 0
    for _ in range(300):
        lat, lon = LAT0, LON0
        stops = []
        for i in range(10):
            angle = rng.uniform(0, 2 * math.pi)
            d_m = 1700 * rng.uniform(0.5, 1.5)
            lat += d_m * math.cos(angle) / M_PER_DEG_LAT
            lon += d_m * math.sin(angle) / (M_PER_DEG_LAT * math.cos(math.radians(lat)))
            stops.append(Stop(f"S{i}", lat, lon, (f"T{i}",)))
        estimates = route_eta(0, LAT0, LON0, stops, const_speed(speed_mps), CFG)
        t_ms, prev = 0.0, (LAT0, LON0)
        sigma = math.sqrt(math.log(1 + 0.25 ** 2))
        for stop, est in zip(stops, estimates):
            drive_ms = haversine_m(*prev, stop.lat, stop.lon) * CFG.circuity / speed_mps * 1000
            t_ms += drive_ms * rng.lognormvariate(-sigma * sigma / 2, sigma)
            arrival_ms = t_ms + rng.gauss(0, 125_000)
            hits += est.earliest_ms <= arrival_ms <= est.latest_ms
            total += 1
            t_ms += max(30_000, rng.gauss(240_000, 120_000))
            prev = (stop.lat, stop.lon)
    assert 0.80 <= hits / total <= 0.92


# ---- eta_step: throttled per-van rule ---------------------------------------------

def test_first_ping_emits_an_eta_for_every_parcel_on_the_route():
    route = straight_route(2, parcels_per_stop=2)
    d = eta_step(None, van_ping(), T0_MS, route, const_speed(), CFG)
    assert [u.tracking_id for u in d.emits] == ["TRK00", "TRK01", "TRK10", "TRK11"]
    expected = route_eta(T0_MS, LAT0, LON0, route, const_speed(), CFG)
    first = d.emits[0]
    assert first == EtaUpdate("TRK00", expected[0].eta_ms, expected[0].earliest_ms, expected[0].latest_ms,
                              expected[0].confidence, BASIS_ROUTE, T0_MS)
    assert d.state["emitted"] == {u.tracking_id: u.eta_ms for u in d.emits}


def test_no_recompute_while_van_stays_in_its_cell_within_the_interval():
    route = straight_route(1)
    lookup = RecordingLookup()
    d1 = eta_step(None, van_ping(), T0_MS, route, lookup, CFG)
    lookup.speed_mps = 4.0  # the model changed; the rule must not even ask
    calls = len(lookup.calls)
    d2 = eta_step(d1.state, van_ping(lat=north(LAT0, 5), at_ms=T0_MS + seconds(20)), T0_MS + seconds(20), route, lookup, CFG)
    assert d2.emits == ()
    assert len(lookup.calls) == calls
    assert d2.state["last_ping_ms"] == T0_MS + seconds(20)


def test_recomputes_after_interval_but_stays_quiet_when_eta_moved_less_than_threshold():
    route = straight_route(1)
    lookup = RecordingLookup()
    d1 = eta_step(None, van_ping(), T0_MS, route, lookup, CFG)
    calls = len(lookup.calls)
    # Van stood still for a minute: its ETA slips by one minute, under the 2 min threshold.
    d2 = eta_step(d1.state, van_ping(speed_mps=0.0, at_ms=T0_MS + minutes(1)), T0_MS + minutes(1), route, lookup, CFG)
    assert len(lookup.calls) > calls
    assert d2.emits == ()
    assert d2.state["computed_ms"] == T0_MS + minutes(1)
    assert d2.state["emitted"] == d1.state["emitted"]


def test_emits_when_eta_moves_more_than_two_minutes():
    route = straight_route(1, spacing_m=4000)
    lookup = RecordingLookup(8.0)
    d1 = eta_step(None, van_ping(), T0_MS, route, lookup, CFG)
    lookup.speed_mps = 4.0  # congestion doubles the remaining drive (~11 min -> ~22 min)
    p2 = van_ping(lat=north(LAT0, 300), at_ms=T0_MS + seconds(30))
    d2 = eta_step(d1.state, p2, p2.event_time_ms, route, lookup, CFG)
    [update] = d2.emits
    assert update.eta_ms - d1.emits[0].eta_ms > CFG.emit_threshold_ms
    assert d2.state["emitted"]["TRK00"] == update.eta_ms


def test_slow_drift_is_emitted_once_it_adds_up_past_the_threshold():
    route = straight_route(1)
    state = eta_step(None, van_ping(), T0_MS, route, const_speed(), CFG).state
    emitted_at = []
    # The van is stuck; every minute the ETA slips a minute, each step under threshold.
    for m in range(1, 6):
        d = eta_step(state, van_ping(speed_mps=0.0, at_ms=T0_MS + minutes(m)), T0_MS + minutes(m), route, const_speed(), CFG)
        state = d.state
        if d.emits:
            emitted_at.append(m)
    assert emitted_at == [3]


def test_late_ping_older_than_the_last_does_not_recompute_or_move_eta():
    route = straight_route(1, spacing_m=4000)
    lookup = RecordingLookup()
    first = eta_step(None, van_ping(at_ms=T0_MS), T0_MS, route, lookup, CFG)
    newer = eta_step(first.state, van_ping(lat=north(LAT0, 2000), at_ms=T0_MS + minutes(4)), T0_MS + minutes(4), route, lookup, CFG)
    calls = len(lookup.calls)
    # The fix from minute 2, delivered late, places the van back 1 km.
    late = eta_step(newer.state, van_ping(lat=north(LAT0, 1000), at_ms=T0_MS + minutes(2)), T0_MS + minutes(4), route, lookup, CFG)
    assert late.emits == ()
    assert late.state == newer.state
    assert len(lookup.calls) == calls


def test_in_order_twin_of_the_late_ping_does_recompute():
    route = straight_route(1, spacing_m=4000)
    lookup = RecordingLookup()
    first = eta_step(None, van_ping(at_ms=T0_MS), T0_MS, route, lookup, CFG)
    calls = len(lookup.calls)
    mid = eta_step(first.state, van_ping(lat=north(LAT0, 1000), at_ms=T0_MS + minutes(2)), T0_MS + minutes(2), route, lookup, CFG)
    assert len(lookup.calls) > calls
    assert mid.state["computed_ms"] == T0_MS + minutes(2)


def test_duplicate_ping_is_a_no_op():
    route = straight_route(1)
    p = van_ping()
    d1 = eta_step(None, p, T0_MS, route, const_speed(), CFG)
    d2 = eta_step(d1.state, p, T0_MS, route, const_speed(), CFG)
    assert d2.emits == () and d2.state == d1.state and d2.timer_ms is None


def test_cell_tower_fix_does_not_recompute():
    route = straight_route(1)
    lookup = RecordingLookup()
    d1 = eta_step(None, van_ping(), T0_MS, route, lookup, CFG)
    calls = len(lookup.calls)
    tower = van_ping(lat=north(LAT0, 1500), at_ms=T0_MS + minutes(2), source="CELL", accuracy_m=1200.0)
    d2 = eta_step(d1.state, tower, tower.event_time_ms, route, lookup, CFG)
    assert d2.emits == () and d2.state == d1.state and len(lookup.calls) == calls


def test_route_change_recomputes_and_forgets_parcels_no_longer_on_board():
    route = straight_route(2)
    d1 = eta_step(None, van_ping(), T0_MS, route, const_speed(), CFG)
    lookup = RecordingLookup()
    later = van_ping(lat=north(LAT0, 2), at_ms=T0_MS + seconds(10))
    d2 = eta_step(d1.state, later, later.event_time_ms, route[1:], lookup, CFG)
    assert lookup.calls
    assert set(d2.state["emitted"]) == {"TRK10"}
    assert d2.state["route"] == ["S1"]


def test_stale_ping_never_places_the_eta_in_the_past():
    stop = Stop("S0", north(LAT0, 500), LON0, ("A",))
    now_ms = T0_MS + minutes(10)
    [u] = eta_step(None, van_ping(at_ms=T0_MS), now_ms, [stop], const_speed(), CFG).emits
    assert u.eta_ms >= now_ms and u.earliest_ms >= now_ms and u.latest_ms >= u.eta_ms
    assert u.as_of_ms == T0_MS


def test_finished_route_clears_state_and_cancels_the_idle_timer():
    d1 = eta_step(None, van_ping(), T0_MS, straight_route(1), const_speed(), CFG)
    d2 = eta_step(d1.state, van_ping(at_ms=T0_MS + minutes(1)), T0_MS + minutes(1), [], const_speed(), CFG)
    assert d2.state is None
    assert d2.cancel_timers_ms == (T0_MS + CFG.idle_ttl_ms,)


def test_registers_one_idle_timer_not_one_per_ping():
    route = straight_route(1)
    d1 = eta_step(None, van_ping(), T0_MS, route, const_speed(), CFG)
    assert d1.timer_ms == T0_MS + CFG.idle_ttl_ms
    d2 = eta_step(d1.state, van_ping(at_ms=T0_MS + minutes(5)), T0_MS + minutes(5), route, const_speed(), CFG)
    assert d2.timer_ms is None


def test_idle_timer_rearms_while_van_still_pings_and_clears_once_silent():
    route = straight_route(1)
    d1 = eta_step(None, van_ping(), T0_MS, route, const_speed(), CFG)
    d2 = eta_step(d1.state, van_ping(at_ms=T0_MS + hours(1)), T0_MS + hours(1), route, const_speed(), CFG)
    rearmed = eta_on_timer(d2.state, d1.timer_ms, CFG)
    assert rearmed.state is not None
    assert rearmed.timer_ms == T0_MS + hours(1) + CFG.idle_ttl_ms
    cleared = eta_on_timer(rearmed.state, rearmed.timer_ms, CFG)
    assert cleared.state is None and cleared.emits == ()
