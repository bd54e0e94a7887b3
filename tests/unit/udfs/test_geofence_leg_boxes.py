"""Off-route distance against leg boxes (plans that carry only stops)."""
import math

import pytest

from tests.builders import offset
from udfs.geofence import distance_to_leg_boxes_m, distance_to_polyline_m
from udfs.vehicle_watch import WatchConfig

O = (52.52, 13.40)


def at(n=0.0, e=0.0):
    return offset(*O, north_m=n, east_m=e)


LEG = (at(), at(2000, 2000))


def test_grid_path_between_two_stops_is_on_route_though_far_from_the_segment():
    corner = at(0, 2000)  # drive east, then north: an L-shaped street path
    assert distance_to_polyline_m(*corner, LEG) > 1300
    assert distance_to_leg_boxes_m(*corner, LEG) < 1.0


def test_outside_the_box_is_measured_to_its_edge_or_corner():
    assert distance_to_leg_boxes_m(*at(1000, 2600), LEG) == pytest.approx(600, rel=0.01)
    assert distance_to_leg_boxes_m(*at(-300, -400), LEG) == pytest.approx(500, rel=0.01)
    assert distance_to_leg_boxes_m(*at(), ()) == math.inf


def test_route_corridor_is_validated():
    with pytest.raises(ValueError, match="route_corridor"):
        WatchConfig(route_corridor="roads")
