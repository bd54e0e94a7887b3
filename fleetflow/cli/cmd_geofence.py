"""``fleetflow geofence add|list|rm``: manage the fences the vehicle job watches.

The work is in fleetflow/geofences.py; this module parses arguments and prints.
"""
from __future__ import annotations

import json

from fleetflow.stack.process import StackError


def _add(s, args) -> None:
    from fleetflow import geofences
    from udfs.geofence import GeofenceError
    try:
        circle = geofences.parse_circle(args.circle) if args.circle else None
        geojson = geofences.read_geojson(args.geojson) if args.geojson else None
        record = geofences.build_record(
            args.geofence_id, args.kind, wkt=args.wkt, geojson=geojson, circle=circle, name=args.name or "",
            dwell_ms=int(args.dwell_s * 1000), min_pings=args.min_pings, exit_buffer_m=args.exit_buffer_m,
            facility_id=args.facility_id)
    except GeofenceError as exc:
        raise StackError(str(exc)) from None
    geofences.add(s.kafka_bootstrap, record)
    shape = "circle" if record["circle"] else "polygon"
    print(f"published {record['geofence_id']} ({record['kind']} {shape}) to {geofences.TOPIC.name}")


def _list(s, args) -> None:
    from rich.console import Console
    from rich.table import Table

    from fleetflow import geofences
    fences = geofences.list_live(s.kafka_bootstrap)
    if args.kind:
        fences = [f for f in fences if f["kind"] == args.kind]
    if args.json:
        print(json.dumps(fences, indent=2, sort_keys=True))
        return
    t = Table("id", "kind", "name", "shape", "facility", "dwell s", "min pings", "exit buffer m")
    for f in fences:
        c = f.get("circle")
        shape = f"circle {c['lat']:.6f},{c['lon']:.6f} r={c['radius_m']:.0f} m" if c else "polygon"
        t.add_row(f["geofence_id"], f["kind"], f.get("name") or "", shape, f.get("facility_id") or "",
                  f"{f['dwell_ms'] / 1000:g}", str(f["min_pings"]), f"{f['exit_buffer_m']:g}")
    Console(width=160).print(t)
    print(f"{len(fences)} geofence(s)")


def _rm(s, args) -> None:
    from fleetflow import geofences
    from udfs.geofence import GeofenceError
    try:
        geofences.remove(s.kafka_bootstrap, args.geofence_id)
    except GeofenceError as exc:
        raise StackError(str(exc)) from None
    print(f"retired {args.geofence_id} (deleted=true on {geofences.TOPIC.name})")


def _dispatch(s, args) -> None:
    {"add": _add, "list": _list, "rm": _rm}[args.action](s, args)


def register(subparsers) -> None:
    from udfs.geofence import DEFAULT_DWELL_MS, DEFAULT_EXIT_BUFFER_M, DEFAULT_MIN_PINGS, KINDS
    p = subparsers.add_parser("geofence", help="add, list and retire geofences (compacted ff.geofences)")
    sub = p.add_subparsers(dest="action", required=True)

    add = sub.add_parser("add", help="publish a geofence (replaces one with the same id)")
    add.add_argument("geofence_id")
    add.add_argument("--kind", required=True, choices=KINDS)
    shape = add.add_mutually_exclusive_group(required=True)
    shape.add_argument("--wkt", help="WGS84 POLYGON/MULTIPOLYGON in WKT, lon lat order")
    shape.add_argument("--geojson", metavar="FILE", help="GeoJSON geometry, Feature or one-feature collection")
    shape.add_argument("--circle", metavar="LAT,LON,RADIUS_M", help="circle centre and radius in metres")
    add.add_argument("--name", help="label for dashboards")
    add.add_argument("--facility-id", help="depot/hub id, or the stop_id for a CUSTOMER_STOP fence")
    add.add_argument("--dwell-s", type=float, default=DEFAULT_DWELL_MS / 1000,
                     help="seconds inside before an ENTER counts (default %(default)g)")
    add.add_argument("--min-pings", type=int, default=DEFAULT_MIN_PINGS,
                     help="consecutive pings inside that also confirm an ENTER (default %(default)d)")
    add.add_argument("--exit-buffer-m", type=float, default=DEFAULT_EXIT_BUFFER_M,
                     help="metres beyond the edge before an EXIT (default %(default)g)")

    ls = sub.add_parser("list", help="live geofences (latest record per id, retired ones left out)")
    ls.add_argument("--kind", choices=KINDS)
    ls.add_argument("--json", action="store_true", help="print the records as JSON")

    rm = sub.add_parser("rm", help="retire a geofence (publishes deleted=true)")
    rm.add_argument("geofence_id")
    p.set_defaults(fn=_dispatch)
