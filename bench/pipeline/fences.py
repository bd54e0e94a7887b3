"""10,000 synthetic geofences over the simulator's metro, published to ff.geofences.

A mix like a real estate: many small customer-stop circles, some hub and depot
polygons, a few restricted zones. Deterministic for a seed, and removable again with
tombstone records so a benchmark leaves the compacted topic as it found it.
"""
from __future__ import annotations

import math
import random
import time

from fleetflow import contracts, topics
from fleetflow.simulate.geo import METRO_BBOX

PREFIX = "BENCH-GF-"


def _polygon(rng: random.Random, lat: float, lon: float, radius_m: float, corners: int) -> str:
    pts = []
    for i in range(corners):
        a = 2 * math.pi * i / corners + rng.uniform(-0.2, 0.2)
        r = radius_m * rng.uniform(0.7, 1.0)
        dlat = r * math.cos(a) / 111_320
        dlon = r * math.sin(a) / (111_320 * math.cos(math.radians(lat)))
        pts.append(f"{lon + dlon:.7f} {lat + dlat:.7f}")
    pts.append(pts[0])
    return f"POLYGON(({', '.join(pts)}))"


def records(n: int = 10_000, seed: int = 11, at_ms: int | None = None) -> list[dict]:
    rng = random.Random(seed)
    at = int(time.time() * 1000) if at_ms is None else at_ms
    (min_lat, min_lon), (max_lat, max_lon) = (METRO_BBOX[0], METRO_BBOX[1]), (METRO_BBOX[2], METRO_BBOX[3])
    out = []
    for i in range(n):
        lat, lon = rng.uniform(min_lat, max_lat), rng.uniform(min_lon, max_lon)
        roll = rng.random()
        base = {"geofence_id": f"{PREFIX}{i:05d}", "name": "", "polygon_wkt": None, "circle": None,
                "dwell_ms": 120_000, "min_pings": 2, "exit_buffer_m": 30.0, "facility_id": None,
                "deleted": False, "updated_time_ms": at}
        if roll < 0.85:
            base.update(kind="CUSTOMER_STOP", circle={"lat": lat, "lon": lon, "radius_m": rng.uniform(30, 80)})
        elif roll < 0.97:
            base.update(kind=rng.choice(["HUB", "DEPOT"]), polygon_wkt=_polygon(rng, lat, lon, rng.uniform(80, 250), 8))
        else:
            base.update(kind="RESTRICTED", polygon_wkt=_polygon(rng, lat, lon, rng.uniform(200, 600), 12))
        out.append(base)
    return out


def encoded(recs: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(r["geofence_id"].encode(), contracts.encode("geofences", r)) for r in recs]


def tombstones(recs: list[dict]) -> list[dict]:
    at = int(time.time() * 1000)
    return [{**r, "deleted": True, "updated_time_ms": at} for r in recs]


TOPIC = topics.GEOFENCES.name
