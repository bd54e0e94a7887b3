"""Ground truth is consistent with the stream and with itself."""
from collections import defaultdict

from fleetflow.contracts import decode
from fleetflow.simulate import generate
from fleetflow.simulate.geo import latlon_dist_m
from tests.unit.simulate.helpers import sim_config

# Position of each (status, detail) in a forward-only journey; exceptions sit among the middle-mile steps.
RANK = {
    ("INFO_RECEIVED", "LABEL_CREATED"): 0,
    ("IN_TRANSIT", "PICKED_UP"): 1,
    ("IN_TRANSIT", "ARRIVED_AT_FACILITY"): 2,
    ("IN_TRANSIT", "DEPARTED_FACILITY"): 2,
    ("IN_TRANSIT", "IN_TRANSIT"): 2,
    ("IN_TRANSIT", "HANDOFF_TO_CARRIER"): 2,
    ("EXCEPTION", "WEATHER_DELAY"): 2,
    ("OUT_FOR_DELIVERY", "OUT_FOR_DELIVERY"): 3,
    ("DELIVERED", "DELIVERED"): 4,
}
STALL_RADIUS_M = 50.0
STALLED_SPEED_MPS = 1.0


def test_delivered_packages_go_through_the_lifecycle_in_order(small_run):
    delivered = [p for p in small_run.truth["packages"]
                 if any(s["detail"] == "DELIVERED" for s in p["scans"])]
    assert delivered
    for p in delivered:
        scans = sorted(p["scans"], key=lambda s: s["event_time_ms"])
        stages = [(s["status"], s["detail"]) for s in scans]
        assert stages[0] == ("INFO_RECEIVED", "LABEL_CREATED")
        assert stages[-1] == ("DELIVERED", "DELIVERED")
        ranks = [RANK[st] for st in stages]
        assert ranks == sorted(ranks), (p["tracking_id"], stages)
        assert len({s["event_time_ms"] for s in scans}) == len(scans)
        facility_steps = [(s["detail"], s["facility_id"]) for s in scans
                          if s["detail"] in ("ARRIVED_AT_FACILITY", "DEPARTED_FACILITY")]
        for (d1, f1), (d2, f2) in zip(facility_steps, facility_steps[1:]):
            # Arrive before departing from the same facility; depart before arriving at the next.
            assert (d1, d2) in {("ARRIVED_AT_FACILITY", "DEPARTED_FACILITY"), ("DEPARTED_FACILITY",
                                                                                 "ARRIVED_AT_FACILITY")}
            assert (f1 == f2) == (d1 == "ARRIVED_AT_FACILITY")


def test_failed_attempts_go_back_to_the_depot_when_the_van_returns():
    # Every stop fails; a short route so the van is back within the run.
    sim = generate(sim_config(failed_attempt_rate=1.0, stops_per_van=3, duration_s=3 * 3600, vans=2))
    truth = sim.truth
    depots = {v["vehicle_id"]: (v["depot"], v["return_ms"]) for v in truth["vehicles"]}
    failed = [p for p in truth["packages"] if p["fate"] == "ATTEMPT_FAILED"]
    assert failed
    for p in failed:
        assert p["resolution"] in ("RETRY_NEXT_DAY", "AVAILABLE_FOR_PICKUP")
        scans = sorted(p["scans"], key=lambda s: s["event_time_ms"])
        details = [s["detail"] for s in scans]
        assert details[-2] == "ATTEMPT_FAILED_RECIPIENT_ABSENT"
        assert details[-1] == ("AVAILABLE_FOR_PICKUP" if p["resolution"] == "AVAILABLE_FOR_PICKUP"
                               else "ARRIVED_AT_FACILITY")
        depot, return_ms = depots[p["vehicle_id"]]
        assert scans[-1]["facility_id"] == depot and scans[-1]["event_time_ms"] > return_ms
    assignments = [decode(r.value, expected="assignments")[1] for r in sim.records if r.topic == "ff.assignments"]
    unloaded = {a["tracking_id"] for a in assignments if a["action"] == "UNLOADED"}
    assert unloaded == {p["tracking_id"] for p in failed}


def test_exception_packages_never_go_out_for_delivery(small_run):
    exceptional = [p for p in small_run.truth["packages"] if p["fate"] in ("DAMAGED_RETURNED", "CUSTOMS_HOLD")]
    assert exceptional
    for p in exceptional:
        details = {s["detail"] for s in p["scans"]}
        assert "OUT_FOR_DELIVERY" not in details and "DELIVERED" not in details
        assert details & {"DAMAGED", "CUSTOMS_HOLD"}


def test_observed_arrivals_have_a_delivery_scan_at_handover(small_run):
    scans = {p["tracking_id"]: p["scans"] for p in small_run.truth["packages"]}
    observed = [a for a in small_run.truth["arrivals"] if a["handover_ms"] + 60_000 <= small_run.truth["end_ms"]]
    assert observed
    for a in observed:
        for tid in a["tracking_ids"]:
            final = [s for s in scans[tid] if s["status"] in ("DELIVERED", "ATTEMPT_FAIL")]
            assert len(final) == 1
            assert a["arrival_ms"] <= final[0]["event_time_ms"] <= a["departure_ms"]
            assert final[0]["vehicle_id"] == a["vehicle_id"]


def test_stops_are_visited_in_route_order(small_run):
    by_van = defaultdict(dict)
    for a in small_run.truth["arrivals"]:
        by_van[a["vehicle_id"]][a["stop_order"]] = a["arrival_ms"]
    for stops in by_van.values():
        times = [stops[k] for k in sorted(stops)]
        assert times == sorted(times)


def test_injected_stalls_show_as_runs_of_stationary_pings(small_run):
    pings = defaultdict(list)
    for s in small_run.stream:
        if s.record is not None and s.topic == "ff.pings" and s.record["source"] == "GPS":
            pings[s.record["vehicle_id"]].append(s.record)
    stalls = small_run.truth["stalls"]
    assert small_run.summary.stalls == len(stalls) > 0
    checked = 0
    for stall in stalls:
        assert 15 * 60_000 <= stall["end_ms"] - stall["start_ms"] <= 40 * 60_000
        window_end_ms = min(stall["end_ms"], small_run.truth["end_ms"])
        during = [p for p in pings[stall["vehicle_id"]] if stall["start_ms"] < p["event_time_ms"] < window_end_ms]
        if window_end_ms - stall["start_ms"] >= 6 * 60_000:
            # Longer than the longest tracker drop-out, so some fixes must have arrived.
            assert len(during) >= 2
            checked += 1
        for p in during:
            assert latlon_dist_m(p["lat"], p["lon"], stall["lat"], stall["lon"]) < STALL_RADIUS_M
            assert p["speed_mps"] < STALLED_SPEED_MPS
    assert checked > 0


def test_stalls_happen_on_the_road_away_from_customer_stops(small_run):
    stops = {(a["stop"]["lat"], a["stop"]["lon"]) for a in small_run.truth["arrivals"]}
    for stall in small_run.truth["stalls"]:
        assert min(latlon_dist_m(stall["lat"], stall["lon"], lat, lon) for lat, lon in stops) > 100


def test_moving_vans_report_driving_speeds(small_run):
    pings = [s.record for s in small_run.stream
             if s.record is not None and s.topic == "ff.pings" and s.record["source"] == "GPS"]
    moving = [p["speed_mps"] for p in pings if p["heading_deg"] is not None]
    assert moving
    assert max(moving) < 20
    assert sorted(moving)[len(moving) // 2] > 3


def test_drivers_take_one_break_of_15_to_30_minutes_after_two_hours_on_the_road():
    truth = generate(sim_config(vans=2, duration_s=7 * 3600, stops_per_van=40, stall_rate_per_hour=0)).truth
    breaks = {b["vehicle_id"]: b for b in truth["breaks"]}
    assert len(breaks) == len(truth["breaks"])
    for v in truth["vehicles"]:
        # Due 2-3 h after leaving, taken on the next drive long enough to pull over away from stops.
        if v["return_ms"] - v["depart_ms"] > 3.5 * 3_600_000:
            b = breaks[v["vehicle_id"]]
            assert 15 * 60_000 <= b["end_ms"] - b["start_ms"] <= 30 * 60_000
            assert b["start_ms"] - v["depart_ms"] >= 2 * 3_600_000
    assert breaks
    assert truth["stalls"] == []
