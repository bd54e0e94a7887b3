"""What the recording carries: decodable records, plausible geography, carrier dialects, plans and routes."""
from collections import defaultdict

from shapely import wkt
from shapely.geometry import Point

from fleetflow.carrier_mappings import load_all
from fleetflow.simulate.geo import METRO_BBOX, latlon_dist_m
from fleetflow.simulate.sinks import read_recording
from tests.unit.simulate.helpers import SCHEMA_OF_TOPIC, identity, strict_decode


def _valid(run, topic):
    """Accepted records of ``topic``, first arrival only (resends are the duplicates tests' business)."""
    seen, out = set(), []
    for s in run.stream:
        if s.record is not None and s.topic == topic and identity(s) not in seen:
            seen.add(identity(s))
            out.append(s.record)
    return out


def test_every_accepted_record_decodes_with_its_topic_schema(small_run):
    accepted = [s for s in small_run.stream if s.record is not None]
    assert {s.topic for s in accepted} == {"ff.pings", "ff.scans", "ff.plans", "ff.assignments", "ff.geofences"}
    for s in accepted:
        assert strict_decode(s) == s.record


def test_records_are_keyed_by_their_entity(small_run):
    key_field = {"ff.pings": "vehicle_id", "ff.scans": "tracking_id", "ff.plans": "order_id",
                 "ff.assignments": "vehicle_id", "ff.geofences": "geofence_id"}
    for s in small_run.stream:
        if s.record is not None:
            assert s.key == s.record[key_field[s.topic]]


def test_recording_is_in_produce_order_from_offset_zero(small_run):
    offsets = [r.offset_ms for r in read_recording(small_run.recording)]
    assert offsets[0] == 0
    assert offsets == sorted(offsets)
    assert {r.topic for r in read_recording(small_run.recording)} <= set(SCHEMA_OF_TOPIC)


def test_pings_stay_inside_the_metro_bbox(small_run):
    lat_min, lon_min, lat_max, lon_max = METRO_BBOX
    pings = _valid(small_run, "ff.pings")
    assert pings
    for p in pings:
        assert lat_min <= p["lat"] <= lat_max and lon_min <= p["lon"] <= lon_max


def test_pings_come_every_ten_to_thirty_seconds_unless_the_tracker_drops_out(small_run):
    by_van = defaultdict(list)
    for p in _valid(small_run, "ff.pings"):
        by_van[p["vehicle_id"]].append(p["event_time_ms"])
    for times in by_van.values():
        gaps = [b - a for a, b in zip(sorted(times), sorted(times)[1:])]
        assert min(gaps) >= 10_000
        assert sorted(gaps)[len(gaps) // 2] <= 30_000


def test_gps_pings_are_accurate_and_cell_pings_coarse(small_run):
    pings = _valid(small_run, "ff.pings")
    gps = [p for p in pings if p["source"] == "GPS"]
    cell = [p for p in pings if p["source"] == "CELL"]
    assert gps and cell
    assert all(5 <= p["accuracy_m"] <= 15 for p in gps)
    assert all(300 <= p["accuracy_m"] <= 1500 and p["speed_mps"] is None for p in cell)
    assert all(p["driver_pseudonym"].startswith("drv_") for p in pings)


def test_scans_use_each_carriers_own_raw_codes(small_run):
    mappings = load_all()
    meaning = {(p["tracking_id"], s["event_id"]): (s["status"], s["detail"])
               for p in small_run.truth["packages"] for s in p["scans"]}
    scans = _valid(small_run, "ff.scans")
    assert {s["carrier"] for s in scans} == {"DHL", "UPS", "FEDEX", "USPS"}
    for s in scans:
        code = mappings[s["carrier"]].codes[s["raw_code"]]
        assert (code.status.value, code.detail.value) == meaning[(s["tracking_id"], s["event_id"])]


def test_van_stage_scans_carry_vehicle_and_location_and_hub_scans_a_facility(small_run):
    by_event = {s["event_id"]: s for p in small_run.truth["packages"] for s in p["scans"]}
    scans = _valid(small_run, "ff.scans")
    van_stages = [s for s in scans if by_event[s["event_id"]]["status"] in ("OUT_FOR_DELIVERY", "DELIVERED",
                                                                             "ATTEMPT_FAIL")]
    assert van_stages
    assert all(s["vehicle_id"] and s["location"] for s in van_stages)
    arrivals = [s for s in scans if by_event[s["event_id"]]["detail"] in ("ARRIVED_AT_FACILITY", "DEPARTED_FACILITY")]
    assert arrivals and all(s["facility_id"] for s in arrivals)


def test_multi_leg_packages_are_handed_to_a_second_carrier_on_leg_two(small_run):
    multi = [p for p in small_run.truth["packages"] if len(p["legs"]) == 2]
    assert multi
    for p in multi:
        handoff = [s for s in p["scans"] if s["detail"] == "HANDOFF_TO_CARRIER"]
        assert len(handoff) == 1
        assert handoff[0]["leg"] == 2 and handoff[0]["carrier"] == p["legs"][1]["carrier"]
        assert p["legs"][0]["carrier"] != p["legs"][1]["carrier"]
        assert all(s["leg"] == 1 for s in p["scans"] if s["event_time_ms"] < handoff[0]["event_time_ms"])


def test_every_scanned_package_has_a_plan_with_its_legs(small_run):
    planned = {}
    for plan in _valid(small_run, "ff.plans"):
        for sh in plan["shipments"]:
            assert sh["promised_window_start_ms"] < sh["promised_window_end_ms"]
            for pkg in sh["packages"]:
                planned[pkg["tracking_id"]] = sh
    for s in _valid(small_run, "ff.scans"):
        legs = {leg["leg"]: leg["carrier"] for leg in planned[s["tracking_id"]]["legs"]}
        assert legs[s["leg"]] == s["carrier"]


def test_plans_arrive_before_the_first_scan_of_their_packages(small_run):
    plan_time = {}
    for plan in _valid(small_run, "ff.plans"):
        for sh in plan["shipments"]:
            for pkg in sh["packages"]:
                plan_time[pkg["tracking_id"]] = plan["order_time_ms"]
    for s in _valid(small_run, "ff.scans"):
        assert plan_time[s["tracking_id"]] < s["event_time_ms"]


def test_each_routed_package_is_loaded_once_with_its_stop_order(small_run):
    loaded = [a for a in _valid(small_run, "ff.assignments") if a["action"] == "LOADED"]
    by_tracking = {a["tracking_id"]: a for a in loaded}
    assert len(by_tracking) == len(loaded)
    for arrival in small_run.truth["arrivals"]:
        for tid in arrival["tracking_ids"]:
            a = by_tracking[tid]
            assert (a["vehicle_id"], a["stop_order"], a["stop_id"]) == (arrival["vehicle_id"], arrival["stop_order"],
                                                                         arrival["stop_id"])
            assert a["event_time_ms"] < next(v["depart_ms"] for v in small_run.truth["vehicles"]
                                             if v["vehicle_id"] == a["vehicle_id"])
    assert loaded


def test_facility_geofences_are_polygons_around_the_facility_and_stops_are_60m_circles(small_run):
    fences = _valid(small_run, "ff.geofences")
    facilities = {f["facility_id"]: f for f in small_run.truth["facilities"]}
    polys = [g for g in fences if g["kind"] in ("DEPOT", "HUB")]
    assert {g["facility_id"] for g in polys} == set(facilities)
    for g in polys:
        f = facilities[g["facility_id"]]
        assert wkt.loads(g["polygon_wkt"]).contains(Point(f["lon"], f["lat"]))
        assert g["circle"] is None
    stops = [g for g in fences if g["kind"] == "CUSTOMER_STOP"]
    assert {g["geofence_id"] for g in stops} == {f"GF-{a['stop_id']}" for a in small_run.truth["arrivals"]}
    assert all(g["circle"]["radius_m"] == 60.0 and g["polygon_wkt"] is None for g in stops)


def test_vans_park_inside_the_customer_stop_geofence_while_delivering(small_run):
    pings = defaultdict(list)
    for p in _valid(small_run, "ff.pings"):
        if p["source"] == "GPS":
            pings[p["vehicle_id"]].append(p)
    observed = [a for a in small_run.truth["arrivals"] if a["departure_ms"] <= small_run.truth["end_ms"]]
    assert observed
    for a in observed:
        during = [p for p in pings[a["vehicle_id"]] if a["arrival_ms"] < p["event_time_ms"] < a["departure_ms"]]
        for p in during:
            # Parked up to 35 m from the door plus GPS error.
            assert latlon_dist_m(p["lat"], p["lon"], a["stop"]["lat"], a["stop"]["lon"]) < 90
