"""A flat local frame around the metro centre.

At 30 km across, an equirectangular projection is off by well under a metre, and
working in metres keeps speeds, noise and distances readable.
"""
from __future__ import annotations

import math

CENTER_LAT = 52.52
CENTER_LON = 13.40
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(CENTER_LAT))

METRO_HALF_SIZE_M = 15_000.0
# Everything placed in the world stays this far inside the metro edge, so noisy cell fixes
# (up to 1.5 km off) still land inside METRO_BBOX.
PLACEMENT_HALF_SIZE_M = 13_000.0

Point = tuple[float, float]  # (x_m east, y_m north)


def to_latlon(x_m: float, y_m: float) -> tuple[float, float]:
    return CENTER_LAT + y_m / M_PER_DEG_LAT, CENTER_LON + x_m / M_PER_DEG_LON


def to_xy(lat: float, lon: float) -> Point:
    return (lon - CENTER_LON) * M_PER_DEG_LON, (lat - CENTER_LAT) * M_PER_DEG_LAT


def _bbox() -> tuple[float, float, float, float]:
    lat_min, lon_min = to_latlon(-METRO_HALF_SIZE_M, -METRO_HALF_SIZE_M)
    lat_max, lon_max = to_latlon(METRO_HALF_SIZE_M, METRO_HALF_SIZE_M)
    return lat_min, lon_min, lat_max, lon_max


# (lat_min, lon_min, lat_max, lon_max)
METRO_BBOX = _bbox()


def in_metro(lat: float, lon: float) -> bool:
    lat_min, lon_min, lat_max, lon_max = METRO_BBOX
    return lat_min <= lat <= lat_max and lon_min <= lon <= lon_max


def dist_m(a: Point, b: Point) -> float:
    return math.hypot(b[0] - a[0], b[1] - a[1])


def clamp_placement(p: Point) -> Point:
    h = PLACEMENT_HALF_SIZE_M
    return max(-h, min(h, p[0])), max(-h, min(h, p[1]))


def heading_deg(a: Point, b: Point) -> float:
    """Compass heading from a to b: 0 north, 90 east."""
    return math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0


def latlon_dist_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return dist_m(to_xy(lat1, lon1), to_xy(lat2, lon2))
