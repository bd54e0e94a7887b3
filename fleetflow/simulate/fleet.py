"""Vans: a timeline of drive/dwell/stall/break phases per van, and the GPS pings sampled from it.

The whole shift is planned up front as piecewise-linear motion, so a position at any
instant is one interpolation, and the ground truth (arrivals, stalls) is exact rather
than reconstructed from noisy pings.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from fleetflow.simulate.geo import Point, dist_m, heading_deg, to_latlon
from fleetflow.simulate.world import CustomerStop, Facility, road_polyline

DRIVE = "DRIVE"
DWELL = "DWELL"
STALL = "STALL"
BREAK = "BREAK"
DEPOT = "DEPOT"

PIECE_MAX_M = 200.0
DWELL_MIN_MS = 2 * 60_000
DWELL_MAX_MS = 6 * 60_000
STALL_MIN_MS = 15 * 60_000
STALL_MAX_MS = 40 * 60_000
BREAK_MIN_MS = 15 * 60_000
BREAK_MAX_MS = 30 * 60_000
BREAK_DUE_MIN_MS = 2 * 3_600_000
BREAK_DUE_MAX_MS = 3 * 3_600_000
# Stalls and breaks happen on the road, not at a doorstep, so a stall detector cannot
# mistake them for a long dwell at a stop.
STOP_CLEARANCE_M = 200.0
# Vans leave the depot in a staggered wave after loading.
DEPART_MIN_MS = 8 * 60_000
DEPART_MAX_MS = 15 * 60_000
# After the route the van idles in the yard, then its tracker powers down.
POWER_DOWN_MIN_MS = 5 * 60_000
POWER_DOWN_MAX_MS = 10 * 60_000
PARK_OFFSET_MIN_M = 5.0
PARK_OFFSET_MAX_M = 35.0
# An edge-parked van stops this far inside its stop fence's boundary at most: within the
# GPS noise (sigma = accuracy / 2, 2.5-7.5 m), so fixes land on both sides of the edge.
EDGE_PARK_BAND_M = 8.0
EDGE_PARK_MIN_INSIDE_M = 0.5
CRUISE_MIN_MPS = 8.5
CRUISE_MAX_MPS = 12.5
MIN_SPEED_MPS = 1.5
TRAFFIC_PROBABILITY = 0.04
PING_INTERVAL_MIN_MS = 10_000
PING_INTERVAL_MAX_MS = 30_000
GAP_MIN_MS = 60_000
GAP_MAX_MS = 300_000
GPS_ACCURACY_MIN_M = 5.0
GPS_ACCURACY_MAX_M = 15.0
CELL_ACCURACY_MIN_M = 300.0
CELL_ACCURACY_MAX_M = 1500.0


@dataclass(frozen=True)
class Phase:
    t0_ms: int
    t1_ms: int
    a: Point
    b: Point
    kind: str

    @property
    def speed_mps(self) -> float:
        dt_s = (self.t1_ms - self.t0_ms) / 1000
        return dist_m(self.a, self.b) / dt_s if dt_s > 0 else 0.0

    def at(self, t_ms: int) -> Point:
        if self.t1_ms <= self.t0_ms or self.a == self.b:
            return self.a
        f = min(1.0, max(0.0, (t_ms - self.t0_ms) / (self.t1_ms - self.t0_ms)))
        return self.a[0] + f * (self.b[0] - self.a[0]), self.a[1] + f * (self.b[1] - self.a[1])


@dataclass(frozen=True)
class Visit:
    stop: CustomerStop
    stop_order: int
    park_xy: Point
    arrival_ms: int
    departure_ms: int
    # When the driver hands over (or fails to); the scans are stamped around it.
    handover_ms: int


@dataclass(frozen=True)
class Halt:
    """A stop away from any customer: a breakdown (kind STALL) or a driver break (kind BREAK)."""
    vehicle_id: str
    kind: str
    start_ms: int
    end_ms: int
    xy: Point


@dataclass
class VanPlan:
    vehicle_id: str
    route_id: str
    driver_id: str
    driver_pseudonym: str
    depot: Facility
    stops: list[CustomerStop]
    yard_xy: Point = (0.0, 0.0)
    depart_ms: int = 0
    return_ms: int = 0
    off_ms: int = 0
    phases: list[Phase] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    halts: list[Halt] = field(default_factory=list)


def plan_van(rng: random.Random, van: VanPlan, start_ms: int, stall_rate_per_hour: float,
             edge_park_rate: float = 0.0, edge_rng: random.Random | None = None) -> VanPlan:
    """Fill in ``van``'s timeline from shift start until its tracker powers down.

    With ``edge_park_rate`` > 0, that share of stops is parked at the edge of the stop's
    fence instead (drawn from ``edge_rng``, so ``rng``'s stream, and every other detail
    of the run, stays the same as without edge parking)."""
    cruise_mps = rng.uniform(CRUISE_MIN_MPS, CRUISE_MAX_MPS)
    yard = _offset(rng, van.depot.xy, 0.0, 30.0)
    van.yard_xy = yard
    t = start_ms + rng.randint(DEPART_MIN_MS, DEPART_MAX_MS)
    van.phases.append(Phase(start_ms, t, yard, yard, DEPOT))
    van.depart_ms = t
    break_due_ms = t + rng.randint(BREAK_DUE_MIN_MS, BREAK_DUE_MAX_MS)
    took_break = False
    here = yard
    for order, stop in enumerate(van.stops, start=1):
        park = _offset(rng, stop.xy, PARK_OFFSET_MIN_M, PARK_OFFSET_MAX_M)
        if edge_park_rate > 0 and edge_rng is not None and edge_rng.random() < edge_park_rate:
            inside_m = edge_rng.uniform(EDGE_PARK_MIN_INSIDE_M, EDGE_PARK_BAND_M)
            park = _offset(edge_rng, stop.xy, stop.radius_m - inside_m, stop.radius_m - inside_m)
        want_break = not took_break and t >= break_due_ms
        t, took = _drive(rng, van, here, park, t, cruise_mps, stall_rate_per_hour, want_break)
        took_break = took_break or took
        dwell_ms = rng.randint(DWELL_MIN_MS, DWELL_MAX_MS)
        handover_ms = t + rng.randint(30_000, dwell_ms - 30_000)
        van.phases.append(Phase(t, t + dwell_ms, park, park, DWELL))
        van.visits.append(Visit(stop, order, park, t, t + dwell_ms, handover_ms))
        t += dwell_ms
        here = park
    t, _ = _drive(rng, van, here, yard, t, cruise_mps, stall_rate_per_hour, False)
    van.return_ms = t
    van.off_ms = t + rng.randint(POWER_DOWN_MIN_MS, POWER_DOWN_MAX_MS)
    van.phases.append(Phase(t, van.off_ms, yard, yard, DEPOT))
    return van


def _offset(rng: random.Random, p: Point, min_m: float, max_m: float) -> Point:
    a = rng.uniform(0, 2 * math.pi)
    r = rng.uniform(min_m, max_m)
    return p[0] + r * math.cos(a), p[1] + r * math.sin(a)


def _drive(rng: random.Random, van: VanPlan, a: Point, b: Point, t_ms: int, cruise_mps: float,
           stall_rate_per_hour: float, want_break: bool) -> tuple[int, bool]:
    """Append DRIVE phases from a to b, plus maybe a stall or a break on the way.

    Returns the arrival time and whether a break was taken."""
    path = road_polyline(rng, a, b)
    pieces = _pieces(rng, path, cruise_mps)
    length_m = sum(dist_m(p, q) for p, q, _ in pieces)
    drive_h = sum(dist_m(p, q) / v for p, q, v in pieces) / 3600
    halt_kind = None
    if length_m > 2 * STOP_CLEARANCE_M:
        if want_break:
            halt_kind = BREAK
        elif stall_rate_per_hour > 0 and rng.random() < 1 - math.exp(-stall_rate_per_hour * drive_h):
            halt_kind = STALL
    halt_at_m = rng.uniform(STOP_CLEARANCE_M, length_m - STOP_CLEARANCE_M) if halt_kind else -1.0
    travelled = 0.0
    for p, q, v in pieces:
        seg = dist_m(p, q)
        if halt_kind and travelled <= halt_at_m < travelled + seg:
            f = (halt_at_m - travelled) / seg
            mid = (p[0] + f * (q[0] - p[0]), p[1] + f * (q[1] - p[1]))
            t_ms = _append_drive(van, p, mid, v, t_ms)
            lo, hi = (STALL_MIN_MS, STALL_MAX_MS) if halt_kind == STALL else (BREAK_MIN_MS, BREAK_MAX_MS)
            dur_ms = rng.randint(lo, hi)
            van.phases.append(Phase(t_ms, t_ms + dur_ms, mid, mid, halt_kind))
            van.halts.append(Halt(van.vehicle_id, halt_kind, t_ms, t_ms + dur_ms, mid))
            t_ms += dur_ms
            p = mid
        t_ms = _append_drive(van, p, q, v, t_ms)
        travelled += seg
    return t_ms, halt_kind == BREAK


def _append_drive(van: VanPlan, p: Point, q: Point, speed_mps: float, t_ms: int) -> int:
    d = dist_m(p, q)
    if d <= 0:
        return t_ms
    dt_ms = max(1, int(round(d / speed_mps * 1000)))
    van.phases.append(Phase(t_ms, t_ms + dt_ms, p, q, DRIVE))
    return t_ms + dt_ms


def _pieces(rng: random.Random, path: list[Point], cruise_mps: float) -> list[tuple[Point, Point, float]]:
    """Split the path into <= PIECE_MAX_M pieces, each with its own speed: slow off the line,
    round corners and into parking, and in occasional traffic."""
    pieces: list[tuple[Point, Point, bool]] = []
    prev_heading = None
    for p, q in zip(path, path[1:]):
        d = dist_m(p, q)
        if d <= 0:
            continue
        h = heading_deg(p, q)
        corner = prev_heading is not None and abs((h - prev_heading + 180) % 360 - 180) > 45
        prev_heading = h
        n = max(1, math.ceil(d / PIECE_MAX_M))
        for k in range(n):
            a = (p[0] + (q[0] - p[0]) * k / n, p[1] + (q[1] - p[1]) * k / n)
            b = (p[0] + (q[0] - p[0]) * (k + 1) / n, p[1] + (q[1] - p[1]) * (k + 1) / n)
            pieces.append((a, b, corner and k == 0))
    out = []
    traffic_left = 0
    for i, (a, b, after_corner) in enumerate(pieces):
        factor = min(1.3, max(0.7, rng.gauss(1.0, 0.1)))
        if traffic_left == 0 and rng.random() < TRAFFIC_PROBABILITY:
            traffic_left = rng.randint(1, 4)
        if traffic_left:
            factor *= rng.uniform(0.15, 0.45)
            traffic_left -= 1
        if after_corner:
            factor *= 0.6
        if i == 0 or i == len(pieces) - 1:
            factor *= 0.5
        out.append((a, b, max(MIN_SPEED_MPS, cruise_mps * factor)))
    return out


def van_pings(rng: random.Random, van: VanPlan, start_ms: int, end_ms: int, dropout_rate: float,
              cell_fallback_rate: float, new_id: Callable[[], str],
              interval_ms: tuple[int, int] = (PING_INTERVAL_MIN_MS, PING_INTERVAL_MAX_MS)) -> list[dict[str, Any]]:
    """GpsPing records (Avro-shaped dicts) from shift start until end_ms or power-down,
    every ``interval_ms`` (uniform between the two bounds)."""
    interval_min_ms, interval_max_ms = interval_ms
    out: list[dict[str, Any]] = []
    phases = van.phases
    idx = 0
    cell_left = 0
    t = start_ms + rng.randint(0, interval_min_ms)
    stop_ms = min(end_ms, van.off_ms)
    while t <= stop_ms:
        while phases[idx].t1_ms < t:
            idx += 1
        ph = phases[idx]
        if cell_left == 0 and rng.random() < dropout_rate:
            # Tunnels, dead zones, a tracker rebooting: simply nothing arrives for a while.
            t += rng.randint(GAP_MIN_MS, GAP_MAX_MS)
            continue
        if cell_left == 0 and rng.random() < cell_fallback_rate:
            cell_left = rng.randint(1, 3)
        x, y = ph.at(t)
        moving = ph.kind == DRIVE
        if cell_left:
            cell_left -= 1
            accuracy_m = rng.uniform(CELL_ACCURACY_MIN_M, CELL_ACCURACY_MAX_M)
            a = rng.uniform(0, 2 * math.pi)
            r = accuracy_m * math.sqrt(rng.random())
            x, y = x + r * math.cos(a), y + r * math.sin(a)
            speed, heading, source = None, None, "CELL"
        else:
            accuracy_m = rng.uniform(GPS_ACCURACY_MIN_M, GPS_ACCURACY_MAX_M)
            x += _clip(rng.gauss(0, accuracy_m / 2), 2 * accuracy_m)
            y += _clip(rng.gauss(0, accuracy_m / 2), 2 * accuracy_m)
            if moving:
                speed = round(ph.speed_mps * rng.uniform(0.92, 1.08), 2)
                heading = round(heading_deg(ph.a, ph.b), 1)
            else:
                speed, heading = round(abs(rng.gauss(0, 0.15)), 2), None
            source = "GPS"
        lat, lon = to_latlon(x, y)
        out.append({
            "event_id": new_id(),
            "vehicle_id": van.vehicle_id,
            "driver_pseudonym": van.driver_pseudonym,
            "event_time_ms": t,
            "lat": round(lat, 7),
            "lon": round(lon, 7),
            "speed_mps": speed,
            "heading_deg": heading,
            "accuracy_m": round(accuracy_m, 1),
            "source": source,
        })
        t += rng.randint(interval_min_ms, interval_max_ms)
    return out


def _clip(v: float, limit: float) -> float:
    return max(-limit, min(limit, v))
