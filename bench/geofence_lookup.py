"""Per-ping cost of GeofenceIndex lookups over a metro-sized fence set.

Builds 10,000 fences (half circles, half irregular polygons, a few large depot/hub
polygons, a tenth placed to overlap a neighbour) over a 50 x 50 km square around
Berlin with a fixed seed, then times ``lookup`` over random points. Two point sets:
``uniform`` (anywhere in the square) and ``near-fence`` (within 400 m of a fence
centre, which is where delivery vans spend their day and where boundary cells are).

Prints a markdown table. Usage:
    .venv/bin/python bench/geofence_lookup.py [--fences N] [--points N] [--runs N]
        [--resolutions 9,10] [--exact local,shapely]
"""
from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from udfs.geofence import Geofence, GeofenceIndex, LocalFrame  # noqa: E402

CENTER_LAT, CENTER_LON = 52.52, 13.405
HALF_SIDE_M = 25_000.0
SEED = 20260302


def make_fences(n: int, rnd: random.Random) -> list[Geofence]:
    frame = LocalFrame.at(CENTER_LAT, CENTER_LON)
    fences: list[Geofence] = []
    centres: list[tuple[float, float]] = []
    for i in range(n):
        if centres and rnd.random() < 0.10:
            # Overlap on purpose: a stop fence inside or across a neighbour.
            bx, by = rnd.choice(centres)
            x, y = bx + rnd.uniform(-150, 150), by + rnd.uniform(-150, 150)
        else:
            x, y = rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M), rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M)
        centres.append((x, y))
        lat, lon = frame.to_latlon(x, y)
        big = rnd.random() < 0.01
        radius_m = rnd.uniform(600, 1500) if big else math.exp(rnd.uniform(math.log(30), math.log(400)))
        kind = ("DEPOT" if rnd.random() < 0.5 else "HUB") if big else rnd.choice(("CUSTOMER_STOP", "CUSTOMER_STOP", "RESTRICTED"))
        fid = f"F{i:05d}"
        if not big and rnd.random() < 0.5:
            fences.append(Geofence.circle(fid, kind, lat, lon, radius_m))
            continue
        # Star-shaped polygon: always simple, usually non-convex.
        k = rnd.randint(5, 12)
        # Jittered even spacing keeps vertices apart, so 7-decimal rounding cannot self-intersect.
        angles = [(j + rnd.uniform(0.1, 0.9)) * 2 * math.pi / k for j in range(k)]
        ring = []
        for a in angles:
            r = radius_m * rnd.uniform(0.5, 1.0)
            plat, plon = frame.to_latlon(x + r * math.cos(a), y + r * math.sin(a))
            ring.append(f"{plon:.7f} {plat:.7f}")
        ring.append(ring[0])
        fences.append(Geofence.polygon(fid, kind, wkt=f"POLYGON(({', '.join(ring)}))"))
    return fences, centres


def make_points(n: int, rnd: random.Random, centres: list[tuple[float, float]] | None) -> list[tuple[float, float]]:
    frame = LocalFrame.at(CENTER_LAT, CENTER_LON)
    pts = []
    for _ in range(n):
        if centres is None:
            x, y = rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M), rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M)
        else:
            cx, cy = rnd.choice(centres)
            x, y = cx + rnd.uniform(-400, 400), cy + rnd.uniform(-400, 400)
        pts.append(frame.to_latlon(x, y))
    return pts


def time_lookups(index: GeofenceIndex, pts: list[tuple[float, float]], runs: int) -> float:
    lookup = index.lookup
    per_run = []
    for _ in range(runs):
        gc.disable()
        t0 = time.perf_counter()
        for lat, lon in pts:
            lookup(lat, lon)
        per_run.append((time.perf_counter() - t0) / len(pts) * 1e6)
        gc.enable()
    return statistics.median(per_run)


def _traced_build_mb(fences: list[Geofence], res: int, exact: str) -> float:
    # A separate build, because tracemalloc roughly doubles build time.
    gc.collect()
    tracemalloc.start()
    index = GeofenceIndex(fences, resolution=res, exact=exact)
    mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    del index
    return mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fences", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--resolutions", default="9,10")
    ap.add_argument("--exact", default="local,shapely")
    ap.add_argument("--memory", action="store_true", help="rebuild each index under tracemalloc to report its size")
    args = ap.parse_args()

    rnd = random.Random(SEED)
    fences, centres = make_fences(args.fences, rnd)
    point_sets = {
        "uniform": make_points(args.points, rnd, None),
        "near-fence": make_points(args.points, rnd, centres),
    }
    rows = []
    for res in (int(r) for r in args.resolutions.split(",")):
        for exact in args.exact.split(","):
            gc.collect()
            t0 = time.perf_counter()
            index = GeofenceIndex(fences, resolution=res, exact=exact)
            build_s = time.perf_counter() - t0
            mem_mb = _traced_build_mb(fences, res, exact) if args.memory else float("nan")
            for name, pts in point_sets.items():
                us = time_lookups(index, pts, args.runs)
                exact_frac = sum(index.needs_exact_test(la, lo) for la, lo in pts) / len(pts)
                hit_frac = sum(bool(index.lookup(la, lo)) for la, lo in pts) / len(pts)
                rows.append((res, exact, name, us, exact_frac, hit_frac, build_s, mem_mb, len(index._cells)))
            del index

    print(f"{args.fences} fences, {args.points} points per set, median of {args.runs} runs, Python {sys.version.split()[0]}\n")
    print("| res | exact test | points | lookup µs/ping (median) | lookups needing exact test | lookups inside ≥1 fence | build s | index MB | cells |")
    print("|---|---|---|---|---|---|---|---|---|")
    for res, exact, name, us, ef, hf, bs, mb, cells in rows:
        print(f"| {res} | {exact} | {name} | {us:.2f} | {ef:.1%} | {hf:.1%} | {bs:.1f} | {mb:.0f} | {cells} |")


if __name__ == "__main__":
    main()
