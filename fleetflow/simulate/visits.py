"""True fence visits: when each van's noise-free path was inside each geofence the run defines.

The fences are the ones the run publishes (facility rectangles, customer-stop circles),
taken from the same geometry in the local metre frame. The path is the van's planned
piecewise-linear motion, so entry and exit instants are exact (solved per phase, not
sampled). A benchmark scores the vehicle job's ENTER/EXIT events against these.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from fleetflow.simulate.fleet import Phase, VanPlan
from fleetflow.simulate.geo import Point
from fleetflow.simulate.world import Facility

CIRCLE, RECT = "CIRCLE", "RECT"
# Grid cell for matching phases to fences; drive phases are at most fleet.PIECE_MAX_M long.
CELL_M = 250.0
# Pieces of one visit closer than this are one visit (phase boundaries, rounding).
JOIN_MS = 1


@dataclass(frozen=True)
class FenceShape:
    geofence_id: str
    kind: str
    shape: str  # CIRCLE or RECT
    centre: Point
    radius_m: float = 0.0
    half_width_m: float = 0.0
    half_depth_m: float = 0.0
    rotation_deg: float = 0.0

    @property
    def reach_m(self) -> float:
        return self.radius_m if self.shape == CIRCLE else math.hypot(self.half_width_m, self.half_depth_m)

    def segment_inside(self, a: Point, b: Point) -> tuple[float, float] | None:
        """The [s0, s1] part of a + s (b - a), s in [0, 1], inside the fence (fences are convex)."""
        if self.shape == CIRCLE:
            return _circle_clip(a, b, self.centre, self.radius_m)
        return _rect_clip(a, b, self.centre, self.half_width_m, self.half_depth_m, self.rotation_deg)


def facility_shape(f: Facility) -> FenceShape:
    return FenceShape(f"GF-{f.facility_id}", f.kind, RECT, f.xy, half_width_m=f.width_m / 2,
                      half_depth_m=f.depth_m / 2, rotation_deg=f.rotation_deg)


def stop_shape(stop_id: str, xy: Point, radius_m: float) -> FenceShape:
    return FenceShape(f"GF-{stop_id}", "CUSTOMER_STOP", CIRCLE, xy, radius_m=radius_m)


def _circle_clip(a: Point, b: Point, c: Point, r: float) -> tuple[float, float] | None:
    dx, dy = b[0] - a[0], b[1] - a[1]
    fx, fy = a[0] - c[0], a[1] - c[1]
    qa = dx * dx + dy * dy
    qc = fx * fx + fy * fy - r * r
    if qa == 0.0:
        return (0.0, 1.0) if qc <= 0 else None
    qb = 2 * (fx * dx + fy * dy)
    disc = qb * qb - 4 * qa * qc
    if disc < 0:
        return None
    root = math.sqrt(disc)
    s0, s1 = max(0.0, (-qb - root) / (2 * qa)), min(1.0, (-qb + root) / (2 * qa))
    return (s0, s1) if s0 <= s1 else None


def _rect_clip(a: Point, b: Point, c: Point, hw: float, hd: float, rotation_deg: float) -> tuple[float, float] | None:
    """Liang-Barsky in the rectangle's own axes (world.Facility.polygon_wkt's rotation)."""
    rad = math.radians(rotation_deg)
    cos, sin = math.cos(rad), math.sin(rad)

    def local(p: Point) -> Point:
        x, y = p[0] - c[0], p[1] - c[1]
        return x * cos + y * sin, -x * sin + y * cos

    (u0, v0), (u1, v1) = local(a), local(b)
    du, dv = u1 - u0, v1 - v0
    s0, s1 = 0.0, 1.0
    for p, q in ((-du, u0 + hw), (du, hw - u0), (-dv, v0 + hd), (dv, hd - v0)):
        if p == 0.0:
            if q < 0:
                return None
            continue
        s = q / p
        if p < 0:
            s0 = max(s0, s)
        else:
            s1 = min(s1, s)
        if s0 > s1:
            return None
    return s0, s1


def _cells(lo: Point, hi: Point):
    for i in range(math.floor(lo[0] / CELL_M), math.floor(hi[0] / CELL_M) + 1):
        for j in range(math.floor(lo[1] / CELL_M), math.floor(hi[1] / CELL_M) + 1):
            yield i, j


def van_visits(phases: list[Phase], fences: list[FenceShape], until_ms: int) -> list[tuple[str, int, int | None]]:
    """(geofence_id, enter_ms, exit_ms) of every visit of one van's path up to ``until_ms``.

    ``exit_ms`` is None when the van is still inside at ``until_ms``. The path starts at
    the first phase; a van that starts inside a fence enters it then."""
    grid: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k, ph in enumerate(phases):
        if ph.t0_ms > until_ms:
            break
        lo = (min(ph.a[0], ph.b[0]), min(ph.a[1], ph.b[1]))
        hi = (max(ph.a[0], ph.b[0]), max(ph.a[1], ph.b[1]))
        for cell in _cells(lo, hi):
            grid[cell].append(k)
    out = []
    for fence in fences:
        r = fence.reach_m
        cands: set[int] = set()
        for cell in _cells((fence.centre[0] - r, fence.centre[1] - r), (fence.centre[0] + r, fence.centre[1] + r)):
            cands.update(grid.get(cell, ()))
        pieces: list[list[int]] = []
        for k in sorted(cands):
            ph = phases[k]
            clip = fence.segment_inside(ph.a, ph.b)
            if clip is None:
                continue
            span = ph.t1_ms - ph.t0_ms
            t_in = ph.t0_ms + round(clip[0] * span)
            t_out = ph.t0_ms + round(clip[1] * span)
            if ph.a == ph.b:
                t_in, t_out = ph.t0_ms, ph.t1_ms
            if t_in > until_ms:
                continue
            if pieces and t_in - pieces[-1][1] <= JOIN_MS:
                pieces[-1][1] = max(pieces[-1][1], t_out)
            else:
                pieces.append([t_in, t_out])
        for t_in, t_out in pieces:
            out.append((fence.geofence_id, t_in, None if t_out >= until_ms else t_out))
    out.sort(key=lambda v: (v[1], v[0]))
    return out


def true_fence_visits(vans: list[VanPlan], facilities, end_ms: int) -> list[dict]:
    """Every visit of every van to every fence of the run (facilities and all vans' stops),
    while its tracker is on and before ``end_ms``."""
    fences = [facility_shape(f) for f in facilities]
    fences += [stop_shape(v.stop.stop_id, v.stop.xy, v.stop.radius_m) for van in vans for v in van.visits]
    kinds = {f.geofence_id: f.kind for f in fences}
    out = []
    for van in vans:
        until_ms = min(end_ms, van.off_ms)
        for geofence_id, enter_ms, exit_ms in van_visits(van.phases, fences, until_ms):
            out.append({"vehicle_id": van.vehicle_id, "geofence_id": geofence_id, "kind": kinds[geofence_id],
                        "enter_ms": enter_ms, "exit_ms": exit_ms})
    return out
