import json
import math
import random
from pathlib import Path

import pytest

from tests.builders import geofence, offset, square_wkt
from udfs.geofence import (
    Geofence,
    GeofenceError,
    GeofenceIndex,
    distance_m,
    distance_to_polyline_m,
    metres_per_degree,
)

LAT, LON = 52.5200, 13.4050


def fence(geofence_id: str = "FENCE1", *, lat: float = LAT, lon: float = LON, radius_m: float = 100.0,
          wkt: str | None = None, **kw) -> Geofence:
    """A Geofence from the topic-shaped builder record: a circle unless ``wkt`` is given."""
    circle = None if wkt else (lat, lon, radius_m)
    return Geofence.from_dict(geofence(geofence_id, kw.pop("kind", "CUSTOMER_STOP"), circle=circle, polygon_wkt=wkt, **kw))


# A non-convex polygon with a hole: an L-shaped yard with a building in the middle.
L_WITH_HOLE = (
    "POLYGON((13.400 52.510, 13.420 52.510, 13.420 52.515, 13.410 52.515, 13.410 52.525, 13.400 52.525, 13.400 52.510),"
    "(13.402 52.512, 13.406 52.512, 13.406 52.516, 13.402 52.516, 13.402 52.512))"
)


# ------------------------------------------------------------------ geometry helpers

def test_metres_per_degree_matches_wgs84_at_52_degrees():
    m_lat, m_lon = metres_per_degree(52.0)
    assert m_lat == pytest.approx(111_263, abs=5)
    assert m_lon == pytest.approx(68_677, abs=5)


def test_distance_m_is_metric_in_both_axes():
    north = offset(LAT, LON, north_m=1000)
    east = offset(LAT, LON, east_m=1000)
    assert distance_m(LAT, LON, *north) == pytest.approx(1000, rel=0.005)
    assert distance_m(LAT, LON, *east) == pytest.approx(1000, rel=0.005)


def test_distance_to_polyline_measures_to_nearest_segment_not_vertex():
    a = offset(LAT, LON, east_m=-1000)
    b = offset(LAT, LON, east_m=1000)
    p = offset(LAT, LON, north_m=300)
    assert distance_to_polyline_m(*p, [a, b]) == pytest.approx(300, rel=0.01)
    assert distance_to_polyline_m(*p, []) == math.inf


# ------------------------------------------------------------------ fence definitions

def test_from_dict_reads_topic_record_circle():
    f = fence(radius_m=120.0, facility_id="FAC1", dwell_ms=90_000, min_pings=4, exit_buffer_m=45.0)
    assert f.is_circle and f.radius_m == 120.0 and f.facility_id == "FAC1"
    assert (f.dwell_ms, f.min_pings, f.exit_buffer_m) == (90_000, 4, 45.0)


def test_from_dict_defaults_match_topic_schema_defaults():
    schema = json.loads((Path(__file__).resolve().parents[3] / "avro" / "geofences.avsc").read_text())
    defaults = {f["name"]: f.get("default") for f in schema["fields"]}
    f = Geofence.from_dict({"geofence_id": "A", "kind": "HUB", "circle": {"lat": LAT, "lon": LON, "radius_m": 80}})
    assert (f.dwell_ms, f.min_pings, f.exit_buffer_m) == (defaults["dwell_ms"], defaults["min_pings"], defaults["exit_buffer_m"])


def test_from_dict_reads_flat_circle_wkt_and_geojson():
    flat = Geofence.from_dict({"geofence_id": "A", "kind": "HUB", "lat": LAT, "lon": LON, "radius_m": 80})
    assert flat.is_circle and flat.radius_m == 80
    wkt = Geofence.from_dict({"geofence_id": "B", "kind": "DEPOT", "wkt": square_wkt(LAT, LON, 100), "min_pings": 2})
    assert not wkt.is_circle and wkt.min_pings == 2
    gj = {"type": "Feature", "geometry": {"type": "Polygon",
                                          "coordinates": [[[13.40, 52.51], [13.41, 52.51], [13.41, 52.52], [13.40, 52.51]]]}}
    from_geojson = Geofence.from_dict({"geofence_id": "C", "kind": "RESTRICTED", "geojson": gj})
    assert GeofenceIndex([from_geojson]).lookup(52.512, 13.408) == {"C"}


@pytest.mark.parametrize("bad", [
    {"geofence_id": "X", "kind": "PARKING", "lat": LAT, "lon": LON, "radius_m": 10},
    {"geofence_id": "X", "kind": "HUB", "lat": LAT, "lon": LON, "radius_m": 0},
    {"geofence_id": "X", "kind": "HUB"},
    {"geofence_id": "X", "kind": "HUB", "wkt": "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"},  # bow-tie
    {"geofence_id": "X", "kind": "HUB", "wkt": "LINESTRING(0 0, 1 1)"},
    {"geofence_id": "X", "kind": "HUB", "wkt": "not wkt"},
    {"geofence_id": "X", "kind": "HUB", "lat": LAT, "lon": LON, "radius_m": 10, "min_pings": 0},
])
def test_rejects_malformed_fence_definitions(bad):
    with pytest.raises(GeofenceError):
        Geofence.from_dict(bad)


# ------------------------------------------------------------------ point lookup

def test_circle_radius_is_metres_in_both_axes():
    idx = GeofenceIndex([fence(radius_m=100)])
    for north, east in [(95, 0), (0, 95), (-95, 0), (0, -95), (65, 65)]:
        assert idx.lookup(*offset(LAT, LON, north_m=north, east_m=east)) == {"FENCE1"}
    for north, east in [(105, 0), (0, 105), (0, -105), (75, 75)]:
        assert idx.lookup(*offset(LAT, LON, north_m=north, east_m=east)) == frozenset()


def test_polygon_hole_and_notch_are_outside():
    idx = GeofenceIndex([Geofence.polygon("YARD", "DEPOT", wkt=L_WITH_HOLE)])
    assert idx.lookup(52.5110, 13.4010) == {"YARD"}
    assert idx.lookup(52.5140, 13.4040) == frozenset()  # in the building
    assert idx.lookup(52.5200, 13.4150) == frozenset()  # in the notch of the L


def test_overlapping_fences_are_all_returned():
    idx = GeofenceIndex([fence(geofence_id="BIG", radius_m=500), fence(geofence_id="SMALL", radius_m=50)])
    assert idx.lookup(LAT, LON) == {"BIG", "SMALL"}
    assert idx.lookup(*offset(LAT, LON, north_m=200)) == {"BIG"}


def test_point_in_interior_cell_needs_no_exact_test():
    idx = GeofenceIndex([fence(radius_m=1000)])
    assert not idx.needs_exact_test(LAT, LON)
    assert idx.needs_exact_test(*offset(LAT, LON, north_m=1000))


@pytest.mark.parametrize("resolution", [9, 10, 11])
def test_cell_local_exact_test_agrees_with_shapely_oracle(resolution):
    fences = [
        Geofence.polygon("YARD", "DEPOT", wkt=L_WITH_HOLE, exit_buffer_m=40),
        Geofence.polygon("SQ", "HUB", wkt=square_wkt(52.5150, 13.4100, 300)),
        Geofence.circle("C", "CUSTOMER_STOP", 52.5180, 13.4030, 150),
    ]
    fast = GeofenceIndex(fences, resolution=resolution)
    oracle = GeofenceIndex(fences, resolution=resolution, exact="shapely")
    rnd = random.Random(resolution)
    for _ in range(4_000):
        lat, lon = rnd.uniform(52.505, 52.530), rnd.uniform(13.395, 13.425)
        brute_inside = frozenset(f.geofence_id for f in fences if oracle.contains(f.geofence_id, lat, lon))
        brute_buffer = frozenset(f.geofence_id for f in fences if oracle.contains(f.geofence_id, lat, lon, buffered=True))
        assert fast.lookup_both(lat, lon) == oracle.lookup_both(lat, lon) == (brute_inside, brute_buffer), (lat, lon)


# ------------------------------------------------------------------ exit buffer

def test_lookup_with_buffer_reaches_exit_buffer_m_beyond_circle():
    idx = GeofenceIndex([fence(radius_m=100, exit_buffer_m=50)])
    in_buffer = offset(LAT, LON, east_m=140)
    beyond = offset(LAT, LON, east_m=160)
    assert idx.lookup(*in_buffer) == frozenset() and idx.lookup_with_buffer(*in_buffer) == {"FENCE1"}
    assert idx.lookup_with_buffer(*beyond) == frozenset()


def test_polygon_exit_buffer_is_metres_not_degrees():
    idx = GeofenceIndex([fence(wkt=square_wkt(LAT, LON, 100), exit_buffer_m=50)])
    # East is the axis a degree-based buffer gets wrong by cos(lat) ~ 0.61.
    assert idx.lookup_with_buffer(*offset(LAT, LON, east_m=145)) == {"FENCE1"}
    assert idx.lookup_with_buffer(*offset(LAT, LON, east_m=155)) == frozenset()
    assert idx.lookup_with_buffer(*offset(LAT, LON, north_m=145)) == {"FENCE1"}
    assert idx.lookup_with_buffer(*offset(LAT, LON, north_m=155)) == frozenset()


def test_lookup_both_matches_separate_lookups():
    idx = GeofenceIndex([fence(radius_m=100)])
    p = offset(LAT, LON, north_m=120)
    assert idx.lookup_both(*p) == (idx.lookup(*p), idx.lookup_with_buffer(*p)) == (frozenset(), {"FENCE1"})


# ------------------------------------------------------------------ segments (sparse pings)

def test_segment_hits_fence_crossed_between_two_pings_outside_it():
    idx = GeofenceIndex([fence(radius_m=100), fence(geofence_id="ELSEWHERE", lat=52.60, radius_m=100)])
    west = offset(LAT, LON, east_m=-2000)
    east = offset(LAT, LON, east_m=2000)
    assert idx.lookup(*west) == idx.lookup(*east) == frozenset()
    assert idx.segment_hits(*west, *east) == {"FENCE1"}


def test_segment_crossings_give_entry_and_exit_fractions():
    idx = GeofenceIndex([fence(radius_m=100), fence(geofence_id="SQ", wkt=square_wkt(LAT, LON, 100))])
    west = offset(LAT, LON, east_m=-1000)
    east = offset(LAT, LON, east_m=1000)
    spans = idx.segment_crossings(*west, *east)
    assert spans["FENCE1"] == pytest.approx((0.45, 0.55), abs=0.002)
    assert spans["SQ"] == pytest.approx((0.45, 0.55), abs=0.002)


def test_segment_passing_beside_fence_or_grazing_a_vertex_hits_nothing():
    wkt = square_wkt(LAT, LON, 100)
    idx = GeofenceIndex([fence(radius_m=100, geofence_id="C"), fence(geofence_id="SQ", wkt=wkt)])
    a = offset(LAT, LON, north_m=150, east_m=-1000)
    b = offset(LAT, LON, north_m=150, east_m=1000)
    assert idx.segment_hits(*a, *b) == frozenset()
    corner = offset(LAT, LON, north_m=100, east_m=100)
    # A segment ending exactly on a corner touches the square but never runs inside it.
    far = offset(LAT, LON, north_m=1000, east_m=1000)
    assert "SQ" not in idx.segment_hits(*corner, *far)


# ------------------------------------------------------------------ broadcast updates

def test_add_makes_fence_visible_without_rebuilding_others():
    idx = GeofenceIndex([fence(geofence_id="A", radius_m=100)])
    a_test_before = idx._cells[next(iter(idx._fence_cells["A"][0]))]
    idx.add(fence(geofence_id="B", lat=52.53, radius_m=100))
    assert idx.lookup(52.53, LON) == {"B"} and idx.lookup(LAT, LON) == {"A"}
    assert idx._cells[next(iter(idx._fence_cells["A"][0]))] == a_test_before
    assert len(idx) == 2 and "B" in idx


def test_add_with_existing_id_replaces_geometry():
    idx = GeofenceIndex([fence(radius_m=100)])
    idx.add(fence(radius_m=100, lat=52.53))
    assert idx.lookup(LAT, LON) == frozenset()
    assert idx.lookup(52.53, LON) == {"FENCE1"}
    assert len(idx) == 1


def test_apply_record_upserts_and_honours_deleted_tombstone():
    idx = GeofenceIndex()
    idx.apply_record(geofence("GF1", circle=(LAT, LON, 100.0)))
    assert idx.lookup(LAT, LON) == {"GF1"}
    idx.apply_record(geofence("GF1", circle=(LAT, LON, 100.0), deleted=True))
    assert idx.lookup(LAT, LON) == frozenset() and len(idx) == 0


def test_remove_forgets_fence_and_frees_its_cells():
    idx = GeofenceIndex([fence(geofence_id="A", radius_m=100), fence(geofence_id="B", wkt=square_wkt(LAT, LON, 80))])
    assert idx.remove("A") is True
    assert idx.lookup(LAT, LON) == {"B"}
    assert idx.remove("A") is False
    idx.remove("B")
    assert idx.lookup(LAT, LON) == frozenset()
    assert idx._cells == {} and idx._shapes == {} and idx._fence_cells == {}
