"""Geofences and the point-in-fence index every ping goes through.

A :class:`Geofence` is a polygon (WKT or GeoJSON, lon/lat, WGS84) or a circle
(centre + ``radius_m``) plus the hysteresis knobs the membership state machine
reads (``dwell_ms``, ``min_pings``, ``exit_buffer_m``).

:class:`GeofenceIndex` answers "which fences is this point inside?" in a few
microseconds for thousands of fences. Each fence is rasterised onto H3 cells once:

* *interior* cells lie wholly inside the fence, so a point in them is inside with
  no geometry test at all;
* *boundary* cells straddle the fence edge, so a point in them needs an exact test.

A lookup is one ``latlng_to_cell`` plus one dict probe; only boundary cells pay for
an exact test. The same cells also carry each fence's *outer* shape (the fence
grown by ``exit_buffer_m``), so ``lookup_both`` answers "inside?" and "still within
the exit buffer?" with a single H3 call.

Accuracy, stated once for the whole module
------------------------------------------
* Polygon edges are straight lines in lon/lat (the GeoJSON convention). Point tests
  against polygons are exact in that model.
* Circles are true circles in a local equirectangular frame at their centre, with
  WGS84 meridional/prime-vertical radii at that latitude. Relative distance error
  grows as ``tan(lat) * dlat``: under 0.1 % within 5 km of the centre at 60 degrees
  latitude, i.e. centimetres for a 50 m radius.
* Metre buffers around polygons are built in the same kind of local frame, centred
  on the polygon, so ``exit_buffer_m`` is accurate to the same ~0.1 % for fences a
  few km across.
* H3 cell edges are geodesics; we treat them as straight in lon/lat. At resolution
  9-10 the sagitta is below a millimetre, and cells are classified with a
  ``CELL_MARGIN_M`` safety margin, so a misclassified cell can only cost an extra
  exact test, never a wrong answer.
* Fences must not straddle the antimeridian or touch a pole.

Exact tests
-----------
Shapely's scalar predicates cost 6-12 us per call on the benchmark machine
(BENCHMARKS.md), more than the whole 5 us per-ping budget, so the default exact test (``exact="local"``) is a
cell-local crossing-parity test: each (boundary cell, polygon) pair stores a
reference point with known status (the cell centre, classified by shapely at build
time) and only the fence edges near that cell. A point is inside iff the reference
is inside XOR the segment reference->point crosses an odd number of those edges.
Because that segment never leaves the cell, edges elsewhere cannot matter. Circles
use the closed-form distance test. ``exact="shapely"`` uses shapely prepared
geometries instead and is kept as the oracle the tests compare against.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import h3.api.basic_int as h3
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.geometry import shape as geojson_shape

KINDS = ("DEPOT", "HUB", "CUSTOMER_STOP", "RESTRICTED")

# Defaults equal avro/geofences.avsc, so a config dict and a topic record with the
# knobs omitted mean the same fence.
# A van must be seen inside for this long, or for MIN_PINGS consecutive pings, before
# ENTER: one jittery fix at a fence edge is not an arrival.
DEFAULT_DWELL_MS = 120_000
DEFAULT_MIN_PINGS = 2
# EXIT needs the van beyond the fence plus this margin, well over typical urban GPS
# error, so edge jitter cannot produce an EXIT.
DEFAULT_EXIT_BUFFER_M = 30.0
# Resolution 10 cells (~76 m edge) keep boundary cells narrow compared with typical
# customer-stop fences (50-300 m), so most pings land in cells needing no exact test.
DEFAULT_RESOLUTION = 10
CELL_MARGIN_M = 1.0

# WGS84 ellipsoid.
_A_M = 6_378_137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_DEG = math.pi / 180.0

EMPTY: frozenset[str] = frozenset()


class GeofenceError(ValueError):
    """A fence definition is malformed (bad kind, geometry, or radius)."""


# --------------------------------------------------------------------------- geometry helpers

def metres_per_degree(lat: float) -> tuple[float, float]:
    """(metres per degree of latitude, metres per degree of longitude) at ``lat``."""
    s = math.sin(lat * _DEG)
    w = 1.0 - _E2 * s * s
    meridional_m = _A_M * (1.0 - _E2) / (w * math.sqrt(w))
    prime_vertical_m = _A_M / math.sqrt(w)
    return meridional_m * _DEG, prime_vertical_m * math.cos(lat * _DEG) * _DEG


@dataclass(frozen=True)
class LocalFrame:
    """Equirectangular plane tangent at (lat0, lon0); x east, y north, metres."""

    lat0: float
    lon0: float
    m_per_deg_lat: float
    m_per_deg_lon: float

    @staticmethod
    def at(lat0: float, lon0: float) -> "LocalFrame":
        ky, kx = metres_per_degree(lat0)
        return LocalFrame(lat0, lon0, ky, kx)

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * self.m_per_deg_lat

    def to_latlon(self, x_m: float, y_m: float) -> tuple[float, float]:
        return self.lat0 + y_m / self.m_per_deg_lat, self.lon0 + x_m / self.m_per_deg_lon


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Ground distance for the short hops ping logic cares about (< ~50 km).

    Equirectangular at the mid latitude with ellipsoidal radii: within 0.1 % of the
    geodesic for hops of a few km, far better than GPS error.
    """
    ky, kx = metres_per_degree((lat1 + lat2) / 2.0)
    return math.hypot((lon2 - lon1) * kx, (lat2 - lat1) * ky)


def distance_to_polyline_m(lat: float, lon: float, points: Iterable[tuple[float, float]]) -> float:
    """Distance from a point to a polyline of (lat, lon) vertices; inf if empty."""
    frame = LocalFrame.at(lat, lon)
    best = math.inf
    prev = None
    for plat, plon in points:
        cur = frame.to_xy(plat, plon)
        if prev is None:
            best = math.hypot(*cur)
        else:
            best = min(best, _point_segment_distance(0.0, 0.0, prev, cur))
        prev = cur
    return best


def distance_to_leg_boxes_m(lat: float, lon: float, points: Iterable[tuple[float, float]]) -> float:
    """Distance from a point to the nearest *leg box* of a route; inf if empty.

    A leg box is the axis-aligned (east/north) rectangle spanned by two consecutive
    vertices. When a plan carries only its stops, not the road path between them, a van
    on any street path between two stops that does not double back stays inside that
    leg's box on a grid-like street network, while the straight segment between the
    stops can be kilometres from the road actually driven.
    """
    frame = LocalFrame.at(lat, lon)
    best = math.inf
    prev = None
    for plat, plon in points:
        cur = frame.to_xy(plat, plon)
        if prev is None:
            best = math.hypot(*cur)
        else:
            dx = max(min(prev[0], cur[0]), 0.0, -max(prev[0], cur[0]))
            dy = max(min(prev[1], cur[1]), 0.0, -max(prev[1], cur[1]))
            best = min(best, math.hypot(dx, dy))
        prev = cur
    return best


def _point_segment_distance(px: float, py: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    ax, ay = a
    ex, ey = b[0] - ax, b[1] - ay
    length2 = ex * ex + ey * ey
    t = 0.0 if length2 == 0.0 else max(0.0, min(1.0, ((px - ax) * ex + (py - ay) * ey) / length2))
    return math.hypot(ax + t * ex - px, ay + t * ey - py)


def _to_frame(geom: Any, frame: LocalFrame) -> Any:
    return shapely.transform(geom, lambda c: _scale(c, frame, forward=True))


def _from_frame(geom: Any, frame: LocalFrame) -> Any:
    return shapely.transform(geom, lambda c: _scale(c, frame, forward=False))


def _scale(coords: Any, frame: LocalFrame, *, forward: bool) -> Any:
    out = coords.copy()
    if forward:
        out[:, 0] = (coords[:, 0] - frame.lon0) * frame.m_per_deg_lon
        out[:, 1] = (coords[:, 1] - frame.lat0) * frame.m_per_deg_lat
    else:
        out[:, 0] = coords[:, 0] / frame.m_per_deg_lon + frame.lon0
        out[:, 1] = coords[:, 1] / frame.m_per_deg_lat + frame.lat0
    return out


# --------------------------------------------------------------------------- Geofence

@dataclass(frozen=True)
class Geofence:
    """One fence. Exactly one of ``polygon_wkt`` or (``center_lat``, ``center_lon``, ``radius_m``)."""

    geofence_id: str
    kind: str
    polygon_wkt: str | None = None
    center_lat: float | None = None
    center_lon: float | None = None
    radius_m: float | None = None
    dwell_ms: int = DEFAULT_DWELL_MS
    min_pings: int = DEFAULT_MIN_PINGS
    exit_buffer_m: float = DEFAULT_EXIT_BUFFER_M
    facility_id: str | None = None

    def __post_init__(self) -> None:
        if not self.geofence_id:
            raise GeofenceError("geofence_id is required")
        if self.kind not in KINDS:
            raise GeofenceError(f"{self.geofence_id}: kind {self.kind!r} not in {KINDS}")
        if self.dwell_ms < 0 or self.min_pings < 1 or self.exit_buffer_m < 0:
            raise GeofenceError(f"{self.geofence_id}: dwell_ms >= 0, min_pings >= 1, exit_buffer_m >= 0")
        is_circle = self.radius_m is not None
        if is_circle == (self.polygon_wkt is not None):
            raise GeofenceError(f"{self.geofence_id}: give either polygon_wkt or a circle, not both or neither")
        if is_circle:
            if self.center_lat is None or self.center_lon is None or not self.radius_m > 0:
                raise GeofenceError(f"{self.geofence_id}: a circle needs center_lat, center_lon and radius_m > 0")
            _check_latlon(self.geofence_id, self.center_lat, self.center_lon)
        else:
            _parse_polygon(self.geofence_id, self.polygon_wkt)

    @property
    def is_circle(self) -> bool:
        return self.radius_m is not None

    @staticmethod
    def circle(geofence_id: str, kind: str, lat: float, lon: float, radius_m: float, **knobs: Any) -> "Geofence":
        return Geofence(geofence_id, kind, center_lat=float(lat), center_lon=float(lon), radius_m=float(radius_m), **knobs)

    @staticmethod
    def polygon(geofence_id: str, kind: str, *, wkt: str | None = None,
                geojson: Mapping[str, Any] | str | None = None, **knobs: Any) -> "Geofence":
        if (wkt is None) == (geojson is None):
            raise GeofenceError(f"{geofence_id}: give exactly one of wkt or geojson")
        if geojson is not None:
            try:
                obj = json.loads(geojson) if isinstance(geojson, str) else geojson
                if obj.get("type") == "Feature":
                    obj = obj["geometry"]
                wkt = geojson_shape(obj).wkt
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise GeofenceError(f"{geofence_id}: unreadable GeoJSON: {exc}") from exc
        return Geofence(geofence_id, kind, polygon_wkt=wkt, **knobs)

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Geofence":
        """Build from a geofences-topic record (avro/geofences.avsc) or a config dict.

        Geometry keys, first match wins: ``polygon_wkt``/``wkt``; ``geojson``;
        ``circle`` = {lat, lon, radius_m}; flat ``lat``/``lon``/``radius_m``.
        Missing or null knobs take the module defaults. Tombstones (``deleted``) are
        the index's business: see ``GeofenceIndex.apply_record``.
        """
        knobs: dict[str, Any] = {}
        for key, cast in (("dwell_ms", int), ("min_pings", int), ("exit_buffer_m", float)):
            if d.get(key) is not None:
                knobs[key] = cast(d[key])
        knobs["facility_id"] = d.get("facility_id")
        fid, kind = d.get("geofence_id"), d.get("kind")
        wkt = d.get("polygon_wkt") or d.get("wkt")
        if wkt:
            return Geofence.polygon(fid, kind, wkt=wkt, **knobs)
        if d.get("geojson"):
            return Geofence.polygon(fid, kind, geojson=d["geojson"], **knobs)
        circ = d.get("circle") or d
        if circ.get("radius_m") is not None:
            return Geofence.circle(fid, kind, circ["lat"], circ["lon"], circ["radius_m"], **knobs)
        raise GeofenceError(f"{fid}: no geometry (wkt, geojson or circle)")


def _check_latlon(fid: str, lat: float, lon: float) -> None:
    if not (-85.0 <= lat <= 85.0 and -180.0 < lon < 180.0):
        raise GeofenceError(f"{fid}: ({lat}, {lon}) outside the supported lat/lon range")


def _parse_polygon(fid: str, wkt: str | None) -> Any:
    try:
        geom = shapely.from_wkt(wkt)
    except shapely.errors.GEOSException as exc:
        raise GeofenceError(f"{fid}: unreadable WKT: {exc}") from exc
    if not isinstance(geom, (Polygon, MultiPolygon)) or geom.is_empty:
        raise GeofenceError(f"{fid}: geometry must be a non-empty Polygon or MultiPolygon")
    if not geom.is_valid:
        raise GeofenceError(f"{fid}: invalid polygon ({shapely.is_valid_reason(geom)})")
    minx, miny, maxx, maxy = geom.bounds
    _check_latlon(fid, miny, minx)
    _check_latlon(fid, maxy, maxx)
    if maxx - minx > 90.0:
        raise GeofenceError(f"{fid}: fences may not straddle the antimeridian")
    return geom


# --------------------------------------------------------------------------- compiled shapes

Test = Callable[[float, float], bool]

# Cell classification results (cells outside a shape are simply not listed).
_BOUNDARY, _INTERIOR = 1, 2


class _CircleShape:
    """A true circle in the local frame at its centre."""

    def __init__(self, lat: float, lon: float, radius_m: float):
        self.lat0, self.lon0, self.radius_m = lat, lon, radius_m
        self.frame = LocalFrame.at(lat, lon)
        # The hot test works in latitude-degree units so it needs one multiply fewer.
        self._k = self.frame.m_per_deg_lon / self.frame.m_per_deg_lat
        self._r_deg2 = (radius_m / self.frame.m_per_deg_lat) ** 2
        self._test = self._make_test()

    def _make_test(self) -> Test:
        lat0, lon0, k, r2 = self.lat0, self.lon0, self._k, self._r_deg2

        def test(lat: float, lon: float) -> bool:
            dx = (lon - lon0) * k
            dy = lat - lat0
            return dx * dx + dy * dy <= r2
        return test

    def contains(self, lat: float, lon: float) -> bool:
        return self._test(lat, lon)

    def bounds(self) -> tuple[float, float, float, float]:
        dlat = self.radius_m / self.frame.m_per_deg_lat
        dlon = self.radius_m / self.frame.m_per_deg_lon
        return self.lon0 - dlon, self.lat0 - dlat, self.lon0 + dlon, self.lat0 + dlat

    def classify(self, cells: list[int], reach_m: float) -> list[tuple[int, int, Test | None]]:
        out = []
        r, margin = self.radius_m, CELL_MARGIN_M
        for cell in cells:
            # Every point of a cell lies within reach_m of its centre, so most cells are
            # settled by the centre alone and only the rim pays for vertex maths.
            centre_m = math.hypot(*self.frame.to_xy(*h3.cell_to_latlng(cell)))
            if centre_m - reach_m > r + margin:
                continue
            if centre_m + reach_m < r - margin:
                out.append((cell, _INTERIOR, None))
                continue
            verts = [self.frame.to_xy(la, lo) for la, lo in h3.cell_to_boundary(cell)]
            if all(math.hypot(x, y) <= r - margin for x, y in verts):
                out.append((cell, _INTERIOR, None))
            elif _convex_contains(verts, 0.0, 0.0) or any(
                _point_segment_distance(0.0, 0.0, verts[i - 1], verts[i]) <= r + margin for i in range(len(verts))
            ):
                # The circle test is already a handful of flops; one closure serves every cell.
                out.append((cell, _BOUNDARY, self._test))
        return out

    def segment_span(self, lat1: float, lon1: float, lat2: float, lon2: float) -> tuple[float, float] | None:
        ax, ay = self.frame.to_xy(lat1, lon1)
        bx, by = self.frame.to_xy(lat2, lon2)
        ex, ey = bx - ax, by - ay
        a = ex * ex + ey * ey
        b = 2 * (ax * ex + ay * ey)
        c = ax * ax + ay * ay - self.radius_m ** 2
        if a == 0.0:
            return (0.0, 1.0) if c <= 0 else None
        disc = b * b - 4 * a * c
        if disc < 0:
            return None
        sq = math.sqrt(disc)
        t0, t1 = (-b - sq) / (2 * a), (-b + sq) / (2 * a)
        if t1 <= 0.0 or t0 >= 1.0 or t0 == t1:
            return None
        return max(0.0, t0), min(1.0, t1)


def _convex_contains(verts: list[tuple[float, float]], px: float, py: float) -> bool:
    sign = 0
    for i in range(len(verts)):
        (ax, ay), (bx, by) = verts[i - 1], verts[i]
        cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
        if cross != 0:
            s = 1 if cross > 0 else -1
            if sign and s != sign:
                return False
            sign = s
    return True


class _PolygonShape:
    """A lon/lat polygon (x = lon, y = lat) with shapely for build-time work."""

    def __init__(self, geom: Any, exact: str):
        self.geom = geom
        shapely.prepare(geom)
        self.exact = exact
        lat_mid = (geom.bounds[1] + geom.bounds[3]) / 2.0
        m_lat, m_lon = metres_per_degree(lat_mid)
        # Longitude degrees are the shorter ones, so this is conservative in both axes.
        self._margin_deg = CELL_MARGIN_M / min(m_lat, m_lon)
        # Cells must clear the edge by the margin to count as interior.
        self._shrunk = geom.buffer(-self._margin_deg, quad_segs=2)
        shapely.prepare(self._shrunk)
        self._edges = _ring_edges(geom)

    def contains(self, lat: float, lon: float) -> bool:
        return bool(shapely.contains_xy(self.geom, lon, lat))

    def bounds(self) -> tuple[float, float, float, float]:
        return self.geom.bounds

    def classify(self, cells: list[int], reach_m: float) -> list[tuple[int, int, Test | None]]:
        if not cells:
            return []
        # Shapely is fast per array and slow per call, so every predicate here is batched.
        rings = [[(lo, la) for la, lo in h3.cell_to_boundary(c)] for c in cells]
        hexes = shapely.polygons(rings)
        touching = shapely.dwithin(self.geom, hexes, self._margin_deg)
        interior = shapely.contains(self._shrunk, hexes)
        boundary = [i for i in range(len(cells)) if touching[i] and not interior[i]]
        refs = self._reference_points([cells[i] for i in boundary], [rings[i] for i in boundary])
        out = [(cells[i], _INTERIOR, None) for i in range(len(cells)) if interior[i]]
        for i, ref in zip(boundary, refs):
            out.append((cells[i], _BOUNDARY, self._cell_test(rings[i], ref)))
        return out

    def _reference_points(self, cells: list[int], rings: list[list[tuple[float, float]]]) -> list[tuple[float, float, bool]]:
        """Per cell, a point strictly off the fence boundary and whether it is inside.

        The cell centre almost always qualifies; otherwise midpoints towards the
        vertices are tried, because the parity test is undefined on the boundary.
        """
        if not cells:
            return []
        centres = [h3.cell_to_latlng(c) for c in cells]
        xs = [lon for _, lon in centres]
        ys = [lat for lat, _ in centres]
        clear = shapely.distance(self.geom.boundary, shapely.points(xs, ys)) > 1e-9
        for i in range(len(cells)):
            if not clear[i]:
                for vx, vy in rings[i]:
                    x, y = (xs[i] + vx) / 2, (ys[i] + vy) / 2
                    if shapely.distance(self.geom.boundary, shapely.points(x, y)) > 1e-9:
                        xs[i], ys[i] = x, y
                        break
        inside = shapely.contains_xy(self.geom, xs, ys)
        return [(x, y, bool(v)) for x, y, v in zip(xs, ys, inside)]

    def _cell_test(self, ring: list[tuple[float, float]], ref: tuple[float, float, bool]) -> Test:
        if self.exact == "shapely":
            geom = self.geom
            contains_xy = shapely.contains_xy
            return lambda lat, lon: bool(contains_xy(geom, lon, lat))
        rx, ry, ref_inside = ref
        m = self._margin_deg
        xs = [p[0] for p in ring]
        ys = [p[1] for p in ring]
        minx, maxx, miny, maxy = min(xs) - m, max(xs) + m, min(ys) - m, max(ys) + m
        edges = []
        for ax, ay, bx, by in self._edges:
            if max(ax, bx) < minx or min(ax, bx) > maxx or max(ay, by) < miny or min(ay, by) > maxy:
                continue
            ax, ay, bx, by = ax - rx, ay - ry, bx - rx, by - ry
            # Side of the reference point relative to the edge line; fixed per edge.
            ref_side = ((by - ay) * ax - (bx - ax) * ay) > 0
            edges.append((ax, ay, bx, by, ref_side))
        return _make_parity_test(rx, ry, ref_inside, tuple(edges))

    def segment_span(self, lat1: float, lon1: float, lat2: float, lon2: float) -> tuple[float, float] | None:
        line = LineString([(lon1, lat1), (lon2, lat2)])
        if line.length == 0.0:
            return (0.0, 1.0) if self.geom.intersects(line) else None
        hit = self.geom.intersection(line)
        # Grazing a vertex or running along an edge for zero length is not a visit.
        if hit.is_empty or hit.length == 0.0:
            return None
        pieces = [g for g in shapely.get_parts(hit) if g.length > 0.0]
        ts = [line.project(shapely.points(x, y), normalized=True) for x, y in shapely.get_coordinates(pieces)]
        return min(ts), max(ts)


def _make_parity_test(rx: float, ry: float, ref_inside: bool, edges: tuple) -> Test:
    if not edges:
        return lambda lat, lon: ref_inside

    def test(lat: float, lon: float) -> bool:
        dx = lon - rx
        dy = lat - ry
        inside = ref_inside
        for ax, ay, bx, by, ref_side in edges:
            # Half-open rule (> 0 on both ends) counts a vertex on the line exactly once.
            if (dx * ay - dy * ax > 0) != (dx * by - dy * bx > 0):
                if (((bx - ax) * (dy - ay) - (by - ay) * (dx - ax)) > 0) != ref_side:
                    inside = not inside
        return inside
    return test


def _ring_edges(geom: Any) -> list[tuple[float, float, float, float]]:
    edges = []
    polys = geom.geoms if isinstance(geom, MultiPolygon) else [geom]
    for poly in polys:
        for ring in [poly.exterior, *poly.interiors]:
            coords = list(ring.coords)
            for (ax, ay), (bx, by) in zip(coords, coords[1:]):
                edges.append((ax, ay, bx, by))
    return edges


def _compile(fence: Geofence, exact: str) -> tuple[Any, Any]:
    """(inner shape, outer shape = fence grown by exit_buffer_m)."""
    if fence.is_circle:
        inner = _CircleShape(fence.center_lat, fence.center_lon, fence.radius_m)
        outer = _CircleShape(fence.center_lat, fence.center_lon, fence.radius_m + fence.exit_buffer_m)
        return inner, outer
    geom = _parse_polygon(fence.geofence_id, fence.polygon_wkt)
    inner = _PolygonShape(geom, exact)
    if fence.exit_buffer_m == 0:
        return inner, _PolygonShape(geom, exact)
    c = geom.centroid
    frame = LocalFrame.at(c.y, c.x)
    # Four segments per quarter circle keep the rounded corners within 2 % of the buffer
    # (0.6 m at 30 m) while halving the edges each boundary cell has to test.
    grown = _from_frame(_to_frame(geom, frame).buffer(fence.exit_buffer_m, quad_segs=4), frame)
    return inner, _PolygonShape(grown, exact)


# --------------------------------------------------------------------------- the index

# Per cell: (inner interior ids, inner boundary tests, outer interior ids, outer boundary tests).
_CellEntry = tuple[frozenset, tuple, frozenset, tuple]
_EMPTY_ENTRY: _CellEntry = (EMPTY, (), EMPTY, ())


class GeofenceIndex:
    """H3-bucketed point-in-fence index with incremental add/remove.

    Not thread-safe; a Flink subtask owns one instance, fed by the geofence
    broadcast stream.
    """

    def __init__(self, fences: Iterable[Geofence] = (), *, resolution: int = DEFAULT_RESOLUTION,
                 exact: str = "local"):
        if exact not in ("local", "shapely"):
            raise ValueError("exact must be 'local' or 'shapely'")
        self.resolution = resolution
        self.exact = exact
        # Cells whose centre lies within this distance of a shape are the candidates; a
        # cell's circumradius equals its edge length, and edges vary ~±30 % across the globe.
        self._cell_reach_m = 1.5 * h3.average_hexagon_edge_length(resolution, unit="m")
        self._fences: dict[str, Geofence] = {}
        self._shapes: dict[str, tuple[Any, Any]] = {}
        self._fence_cells: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self._cells: dict[int, _CellEntry] = {}
        for fence in fences:
            self.add(fence)

    # ------------------------------------------------------------ maintenance

    def add(self, fence: Geofence) -> None:
        """Insert ``fence``, replacing any fence with the same id."""
        fid = fence.geofence_id
        # Compile before removing the old version, so a failure leaves the index as it was.
        inner, outer = _compile(fence, self.exact)
        if fid in self._fences:
            self.remove(fid)
        inner_cells = self._rasterise(fid, inner, slot=0)
        outer_cells = self._rasterise(fid, outer, slot=2)
        self._fences[fid] = fence
        self._shapes[fid] = (inner, outer)
        self._fence_cells[fid] = (inner_cells, outer_cells)

    def apply_record(self, record: Mapping[str, Any]) -> None:
        """Apply one geofences-topic record: upsert, or remove when ``deleted`` is true."""
        if record.get("deleted"):
            self.remove(record["geofence_id"])
        else:
            self.add(Geofence.from_dict(record))

    def remove(self, geofence_id: str) -> bool:
        """Drop a fence; returns False when it was not indexed. Touches only its own cells."""
        if geofence_id not in self._fences:
            return False
        inner_cells, outer_cells = self._fence_cells.pop(geofence_id)
        for cells, slot in ((inner_cells, 0), (outer_cells, 2)):
            for cell in cells:
                entry = list(self._cells[cell])
                entry[slot] = entry[slot] - {geofence_id}
                entry[slot + 1] = tuple(p for p in entry[slot + 1] if p[0] != geofence_id)
                if entry[0] or entry[1] or entry[2] or entry[3]:
                    self._cells[cell] = tuple(entry)  # type: ignore[assignment]
                else:
                    del self._cells[cell]
        del self._fences[geofence_id]
        del self._shapes[geofence_id]
        return True

    def _rasterise(self, fid: str, shape: Any, *, slot: int) -> tuple[int, ...]:
        cells = self._candidate_cells(shape.bounds())
        touched = []
        for cell, status, test in shape.classify(cells, self._cell_reach_m):
            entry = list(self._cells.get(cell, _EMPTY_ENTRY))
            if status == _INTERIOR:
                entry[slot] = entry[slot] | {fid}
            else:
                entry[slot + 1] = entry[slot + 1] + ((fid, test),)
            self._cells[cell] = tuple(entry)  # type: ignore[assignment]
            touched.append(cell)
        return tuple(touched)

    def _candidate_cells(self, bounds: tuple[float, float, float, float]) -> list[int]:
        minx, miny, maxx, maxy = bounds
        m_lat, m_lon = metres_per_degree(max(abs(miny), abs(maxy)))
        dlat, dlon = self._cell_reach_m / m_lat, self._cell_reach_m / m_lon
        box = h3.LatLngPoly([(miny - dlat, minx - dlon), (miny - dlat, maxx + dlon),
                             (maxy + dlat, maxx + dlon), (maxy + dlat, minx - dlon)])
        return list(h3.h3shape_to_cells(box, self.resolution))

    # ------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._fences)

    def __contains__(self, geofence_id: object) -> bool:
        return geofence_id in self._fences

    def get(self, geofence_id: str) -> Geofence | None:
        return self._fences.get(geofence_id)

    def fences(self) -> list[Geofence]:
        return list(self._fences.values())

    def lookup(self, lat: float, lon: float) -> frozenset[str]:
        """Ids of the fences containing the point."""
        entry = self._cells.get(h3.latlng_to_cell(lat, lon, self.resolution))
        if entry is None:
            return EMPTY
        interior, boundary = entry[0], entry[1]
        if not boundary:
            return interior
        hits = [fid for fid, test in boundary if test(lat, lon)]
        return interior.union(hits) if hits else interior

    def lookup_with_buffer(self, lat: float, lon: float) -> frozenset[str]:
        """Ids of the fences whose outer shape (fence + exit_buffer_m) contains the point."""
        return self.lookup_both(lat, lon)[1]

    def lookup_both(self, lat: float, lon: float) -> tuple[frozenset[str], frozenset[str]]:
        """(inside, inside-or-within-exit-buffer) from a single H3 cell computation."""
        entry = self._cells.get(h3.latlng_to_cell(lat, lon, self.resolution))
        if entry is None:
            return EMPTY, EMPTY
        return _resolve(entry[0], entry[1], lat, lon), _resolve(entry[2], entry[3], lat, lon)

    def needs_exact_test(self, lat: float, lon: float) -> bool:
        """Whether ``lookup`` at this point runs any exact geometry test (for benchmarks)."""
        entry = self._cells.get(h3.latlng_to_cell(lat, lon, self.resolution))
        return bool(entry and entry[1])

    def contains(self, geofence_id: str, lat: float, lon: float, *, buffered: bool = False) -> bool:
        """Exact test against one fence, bypassing the cell index."""
        shapes = self._shapes.get(geofence_id)
        return bool(shapes) and shapes[1 if buffered else 0].contains(lat, lon)

    def segment_crossings(self, lat1: float, lon1: float, lat2: float, lon2: float) -> dict[str, tuple[float, float]]:
        """Fences the straight segment (lat/lon-linear) touches, with the fractions
        ``(t_in, t_out)`` in [0, 1] of where it is first and last inside.

        For sparse pings: a van that crossed a fence between two fixes shows up here
        even though neither fix was inside.
        """
        candidates: set[str] = set()
        for cell in self._segment_cells(lat1, lon1, lat2, lon2):
            entry = self._cells.get(cell)
            if entry is not None:
                candidates.update(entry[0])
                candidates.update(fid for fid, _ in entry[1])
        out = {}
        for fid in sorted(candidates):
            span = self._shapes[fid][0].segment_span(lat1, lon1, lat2, lon2)
            if span is not None:
                out[fid] = span
        return out

    def segment_hits(self, lat1: float, lon1: float, lat2: float, lon2: float) -> frozenset[str]:
        """Ids of the fences the straight segment between two points crosses or touches."""
        return frozenset(self.segment_crossings(lat1, lon1, lat2, lon2))

    def _segment_cells(self, lat1: float, lon1: float, lat2: float, lon2: float) -> set[int]:
        # Samples closer than half an edge apart: any cell the segment clips is then the
        # sample's own cell or one of its neighbours.
        step_m = self._cell_reach_m / 3.0
        n = max(1, math.ceil(distance_m(lat1, lon1, lat2, lon2) / step_m))
        sampled = {h3.latlng_to_cell(lat1 + (lat2 - lat1) * i / n, lon1 + (lon2 - lon1) * i / n, self.resolution)
                   for i in range(n + 1)}
        cells: set[int] = set()
        for cell in sampled:
            cells.update(h3.grid_disk(cell, 1))
        return cells


def _resolve(interior: frozenset[str], boundary: tuple, lat: float, lon: float) -> frozenset[str]:
    if not boundary:
        return interior
    hits = [fid for fid, test in boundary if test(lat, lon)]
    return interior.union(hits) if hits else interior
