"""The metro: two regions, each with a sort hub and a delivery depot, customer stops and roads.

Packages always cross regions (origin hub -> linehaul -> destination hub), so every
shipment has a real middle mile even inside one city.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from fleetflow.simulate.geo import Point, clamp_placement, dist_m, to_latlon

REGIONS = ("W", "E")
# Street spacing of the grid the roads snap their turns to, like city blocks.
BLOCK_M = 220.0
TURN_JITTER_M = 12.0
# Roads are not ruler-straight between turns; a gentle wobble every so often.
CURVE_STEP_M = 250.0
CURVE_WOBBLE_M = 8.0
CUSTOMER_STOP_RADIUS_M = 60.0
DISTRICT_RADIUS_M = 2_500.0


@dataclass(frozen=True)
class Facility:
    facility_id: str
    name: str
    kind: str  # HUB or DEPOT, as in the geofences GeofenceKind enum
    region: str
    xy: Point
    width_m: float
    depth_m: float
    rotation_deg: float

    @property
    def latlon(self) -> tuple[float, float]:
        return to_latlon(*self.xy)

    def polygon_wkt(self) -> str:
        """Rotated rectangle, WGS84, lon lat order, closed ring."""
        a = math.radians(self.rotation_deg)
        hw, hd = self.width_m / 2, self.depth_m / 2
        ring = []
        for cx, cy in ((-hw, -hd), (hw, -hd), (hw, hd), (-hw, hd), (-hw, -hd)):
            x = self.xy[0] + cx * math.cos(a) - cy * math.sin(a)
            y = self.xy[1] + cx * math.sin(a) + cy * math.cos(a)
            lat, lon = to_latlon(x, y)
            ring.append(f"{lon:.7f} {lat:.7f}")
        return f"POLYGON(({', '.join(ring)}))"


@dataclass(frozen=True)
class CustomerStop:
    stop_id: str
    region: str
    xy: Point
    postcode: str
    radius_m: float = CUSTOMER_STOP_RADIUS_M

    @property
    def latlon(self) -> tuple[float, float]:
        return to_latlon(*self.xy)


@dataclass(frozen=True)
class World:
    facilities: tuple[Facility, ...]

    def hub(self, region: str) -> Facility:
        return self._get("HUB", region)

    def depot(self, region: str) -> Facility:
        return self._get("DEPOT", region)

    def _get(self, kind: str, region: str) -> Facility:
        for f in self.facilities:
            if f.kind == kind and f.region == region:
                return f
        raise KeyError((kind, region))


def other_region(region: str) -> str:
    return "E" if region == "W" else "W"


def _sign(region: str) -> float:
    return -1.0 if region == "W" else 1.0


def build_world(rng: random.Random) -> World:
    facilities = []
    for region in REGIONS:
        s = _sign(region)
        # Hubs sit on the outskirts (cheap land, motorway access); depots closer in.
        hub_xy = clamp_placement((s * 10_500 + rng.uniform(-800, 800), s * 4_000 + rng.uniform(-1_500, 1_500)))
        depot_xy = clamp_placement((s * 5_000 + rng.uniform(-800, 800), -s * 3_000 + rng.uniform(-1_500, 1_500)))
        side = "West" if region == "W" else "East"
        facilities.append(Facility(f"HUB-BER-{region}", f"Berlin {side} sort hub", "HUB", region, hub_xy,
                                   rng.uniform(260, 340), rng.uniform(160, 220), rng.uniform(0, 90)))
        facilities.append(Facility(f"DEPOT-BER-{region}", f"Berlin {side} delivery depot", "DEPOT", region, depot_xy,
                                   rng.uniform(130, 180), rng.uniform(80, 110), rng.uniform(0, 90)))
    return World(tuple(facilities))


def postcode_for(xy: Point) -> str:
    """A Berlin-looking postcode (10115..14105) that is stable for a 1.5 km cell."""
    col = int((xy[0] + 15_000) // 1_500)
    row = int((xy[1] + 15_000) // 1_500)
    cell = max(0, min(399, row * 20 + col))
    return str(10115 + cell * 10)


def random_point_in_region(rng: random.Random, region: str) -> Point:
    s = _sign(region)
    return clamp_placement((s * rng.uniform(1_000, 12_500), rng.uniform(-12_500, 12_500)))


def customer_stops(rng: random.Random, depot: Facility, count: int, id_prefix: str) -> list[CustomerStop]:
    """``count`` stops clustered in one district near ``depot``, in nearest-neighbour route order."""
    s = _sign(depot.region)
    ang = rng.uniform(0, 2 * math.pi)
    reach = rng.uniform(1_000, 4_500)
    centre = clamp_placement((depot.xy[0] + reach * math.cos(ang), depot.xy[1] + reach * math.sin(ang)))
    # Keep the district on its own side of the city so regions stay meaningful.
    centre = (s * max(DISTRICT_RADIUS_M + 500, s * centre[0]), centre[1])
    points = []
    for _ in range(count):
        r = DISTRICT_RADIUS_M * math.sqrt(rng.random())
        a = rng.uniform(0, 2 * math.pi)
        points.append(clamp_placement((centre[0] + r * math.cos(a), centre[1] + r * math.sin(a))))
    ordered, here = [], depot.xy
    while points:
        nxt = min(points, key=lambda p: dist_m(here, p))
        points.remove(nxt)
        ordered.append(nxt)
        here = nxt
    return [CustomerStop(f"{id_prefix}-{i:02d}", depot.region, p, postcode_for(p))
            for i, p in enumerate(ordered, start=1)]


def road_polyline(rng: random.Random, a: Point, b: Point) -> list[Point]:
    """A street-like path from a to b: axis-aligned runs that turn on a block grid, with jitter.

    Not a shortest path on a real network; it only has to look and move like one, so
    that heading changes, corners and route length are realistic for the stream jobs.
    """
    dx, dy = b[0] - a[0], b[1] - a[1]
    d = math.hypot(dx, dy)
    if d < 1.0:
        return [a, b]
    turns = 1 if d < 400 else rng.randint(1, 3)
    x_first = rng.random() < 0.5
    # Split each axis into `turns` runs at block-grid positions between the ends.
    xs = _grid_cuts(rng, a[0], b[0], turns)
    ys = _grid_cuts(rng, a[1], b[1], turns)
    corners = [a]
    x, y = a
    for i in range(turns):
        if x_first:
            x = xs[i]
            corners.append((x, y))
            y = ys[i]
            corners.append((x, y))
        else:
            y = ys[i]
            corners.append((x, y))
            x = xs[i]
            corners.append((x, y))
    corners[-1] = b
    jittered = [a] + [(px + rng.gauss(0, TURN_JITTER_M), py + rng.gauss(0, TURN_JITTER_M))
                      for px, py in corners[1:-1]] + [b]
    path = [jittered[0]]
    for p, q in zip(jittered, jittered[1:]):
        seg = dist_m(p, q)
        if seg < 0.5:
            continue
        steps = int(seg // CURVE_STEP_M)
        ux, uy = (q[0] - p[0]) / seg, (q[1] - p[1]) / seg
        for k in range(1, steps):
            f = k / steps
            w = rng.gauss(0, CURVE_WOBBLE_M)
            path.append((p[0] + f * (q[0] - p[0]) - uy * w, p[1] + f * (q[1] - p[1]) + ux * w))
        path.append(q)
    if len(path) == 1:
        path.append(b)
    return path


def _grid_cuts(rng: random.Random, start: float, end: float, n: int) -> list[float]:
    """n increasing (towards end) coordinates, the last one exactly ``end``, the others on grid streets."""
    cuts = sorted(rng.random() for _ in range(n - 1))
    out = []
    for f in cuts:
        c = start + f * (end - start)
        snapped = round(c / BLOCK_M) * BLOCK_M
        lo, hi = min(start, end), max(start, end)
        out.append(min(hi, max(lo, snapped)))
    if end < start:
        out.sort(reverse=True)
    else:
        out.sort()
    out.append(end)
    return out

