"""True fence visits in the truth, edge parking and the ping interval options."""
import dataclasses

import pytest
from fleetflow.simulate import generate
from fleetflow.simulate.config import rng_for
from fleetflow.simulate.fleet import EDGE_PARK_BAND_M, EDGE_PARK_MIN_INSIDE_M, PARK_OFFSET_MAX_M, Phase, VanPlan, plan_van
from fleetflow.simulate.geo import dist_m
from fleetflow.simulate.visits import CIRCLE, RECT, FenceShape, van_visits
from fleetflow.simulate.world import build_world, customer_stops
from tests.builders import T0_MS
from tests.unit.simulate.helpers import sim_config

CIRCLE_FENCE = FenceShape("GF-C", "CUSTOMER_STOP", CIRCLE, (0.0, 0.0), radius_m=60.0)
# 100 x 40 m, turned 90 degrees: 40 m wide along x, 100 m along y.
RECT_FENCE = FenceShape("GF-R", "DEPOT", RECT, (1000.0, 0.0), half_width_m=50.0, half_depth_m=20.0,
                        rotation_deg=90.0)


def test_straight_drive_through_a_circle_enters_and_exits_at_the_exact_instants():
    # 10 m/s along x from -100 to +100: inside from x = -60 (4 s) to x = +60 (16 s).
    phases = [Phase(0, 20_000, (-100.0, 0.0), (100.0, 0.0), "DRIVE")]
    assert van_visits(phases, [CIRCLE_FENCE], until_ms=60_000) == [("GF-C", 4_000, 16_000)]


def test_a_rotated_rectangle_is_clipped_in_its_own_axes():
    # Along x at y = 0 through a rectangle 40 m wide in x: inside from x = 980 to 1020.
    phases = [Phase(0, 100_000, (950.0, 0.0), (1050.0, 0.0), "DRIVE")]
    assert van_visits(phases, [RECT_FENCE], until_ms=200_000) == [("GF-R", 30_000, 70_000)]


def test_pieces_across_phases_join_into_one_visit_and_an_open_visit_has_no_exit():
    phases = [Phase(0, 10_000, (-100.0, 0.0), (0.0, 0.0), "DRIVE"),
              Phase(10_000, 70_000, (0.0, 0.0), (0.0, 0.0), "DWELL"),
              Phase(70_000, 80_000, (0.0, 0.0), (100.0, 0.0), "DRIVE")]
    assert van_visits(phases, [CIRCLE_FENCE], until_ms=200_000) == [("GF-C", 4_000, 76_000)]
    assert van_visits(phases, [CIRCLE_FENCE], until_ms=50_000) == [("GF-C", 4_000, None)]


def test_a_path_that_misses_the_fence_has_no_visit():
    phases = [Phase(0, 20_000, (-100.0, 61.0), (100.0, 61.0), "DRIVE")]
    assert van_visits(phases, [CIRCLE_FENCE], until_ms=60_000) == []


@pytest.fixture(scope="module")
def run():
    return generate(sim_config(duration_s=3 * 3600, vans=3, stops_per_van=6))


def test_every_van_is_in_its_depot_from_the_start_and_in_its_stop_fence_while_parked(run):
    visits = run.truth["fence_visits"]
    for a in run.truth["arrivals"]:
        own = [v for v in visits if v["vehicle_id"] == a["vehicle_id"] and v["geofence_id"] == f"GF-{a['stop_id']}"]
        # The van is inside its stop's fence while parked there (it parks 5-35 m from a 60 m circle's centre).
        assert any(v["enter_ms"] <= a["arrival_ms"] and (v["exit_ms"] is None or v["exit_ms"] >= a["departure_ms"])
                   for v in own), a["stop_id"]
    for van in run.truth["vehicles"]:
        depot = [v for v in visits if v["vehicle_id"] == van["vehicle_id"] and v["geofence_id"] == f"GF-{van['depot']}"]
        # Loading in the yard from the shift start; the exit comes as it drives out after departing.
        assert depot[0]["enter_ms"] == run.truth["start_ms"] and depot[0]["exit_ms"] >= van["depart_ms"]


def test_truth_visits_are_deterministic_and_independent_of_the_edge_park_stream(run):
    again = generate(run.cfg)
    assert again.truth["fence_visits"] == run.truth["fence_visits"]
    # Turning edge parking off explicitly changes nothing.
    assert generate(dataclasses.replace(run.cfg, edge_park_rate=0.0)).records == run.records


def test_edge_parking_puts_the_van_just_inside_its_stop_fence():
    world = build_world(rng_for(7, "world"))
    depot = world.depot("W")
    for rate, expect_edge in ((1.0, True), (0.0, False)):
        van = VanPlan("VAN-W-001", "RT-1", "DRV-1", "p", depot,
                      customer_stops(rng_for(7, "van", 0), depot, 8, "STP-1"))
        plan_van(rng_for(7, "van", 0, "plan"), van, T0_MS, 0.0, rate, rng_for(7, "edge-park", 0))
        for v in van.visits:
            inside_m = v.stop.radius_m - dist_m(v.park_xy, v.stop.xy)
            if expect_edge:
                assert EDGE_PARK_MIN_INSIDE_M - 1e-6 <= inside_m <= EDGE_PARK_BAND_M + 1e-6
            else:
                assert v.stop.radius_m - PARK_OFFSET_MAX_M - 1e-6 <= inside_m


def test_edge_parked_runs_still_have_every_dwell_inside_its_stop_fence(run):
    edge = generate(dataclasses.replace(run.cfg, edge_park_rate=1.0))
    assert edge.records != run.records
    for a in edge.truth["arrivals"]:
        own = [v for v in edge.truth["fence_visits"]
               if v["vehicle_id"] == a["vehicle_id"] and v["geofence_id"] == f"GF-{a['stop_id']}"]
        assert any(v["enter_ms"] <= a["arrival_ms"] and (v["exit_ms"] is None or v["exit_ms"] >= a["departure_ms"])
                   for v in own)


def test_ping_interval_option_spaces_pings(run):
    slow = generate(dataclasses.replace(run.cfg, ping_interval_min_s=60, ping_interval_max_s=120,
                                        dropout_rate=0.0, cell_fallback_rate=0.0, out_of_order_rate=0.0,
                                        late_rate=0.0, duplicate_rate=0.0, malformed_rate=0.0))
    from fleetflow.contracts import decode
    times = {}
    for r in slow.records:
        if r.topic == "ff.pings":
            rec = decode(r.value)[1]
            times.setdefault(rec["vehicle_id"], []).append(rec["event_time_ms"])
    gaps = [b - a for ts in times.values() for a, b in zip(sorted(ts), sorted(ts)[1:])]
    assert gaps and min(gaps) >= 60_000 and max(gaps) <= 120_000


def test_bad_ping_interval_is_refused():
    with pytest.raises(ValueError):
        sim_config(ping_interval_min_s=30, ping_interval_max_s=10)
    with pytest.raises(ValueError):
        sim_config(edge_park_rate=1.5)


def test_cli_passes_edge_parking_and_ping_interval():
    import argparse

    from fleetflow.simulate.cli import add_simulate_args, config_from_args
    args = add_simulate_args(argparse.ArgumentParser()).parse_args(
        ["--edge-park-rate", "0.5", "--ping-interval", "60", "120", "--no-progress"])
    cfg = config_from_args(args)
    assert (cfg.edge_park_rate, cfg.ping_interval_min_s, cfg.ping_interval_max_s) == (0.5, 60.0, 120.0)
