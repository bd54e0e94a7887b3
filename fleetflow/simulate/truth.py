"""The ground truth of one run: what really happened, independent of what the stream shows.

Benchmarks (ETA accuracy, stall detection, geofence visits, lifecycle, dedup) compare job output
against this file. Times are exact simulated instants, not reconstructed from pings.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from fleetflow.simulate import faults as ff
from fleetflow.simulate.config import SimConfig
from fleetflow.simulate.fleet import BREAK, STALL, VanPlan
from fleetflow.simulate.geo import to_latlon
from fleetflow.simulate.shipments import OrderSim, ShipmentHistory
from fleetflow.simulate.visits import true_fence_visits
from fleetflow.simulate.world import World

FORMAT = "fleetflow-sim-truth/1"


def _ll(xy) -> dict[str, float]:
    lat, lon = to_latlon(*xy)
    return {"lat": round(lat, 7), "lon": round(lon, 7)}


def build_truth(cfg: SimConfig, world: World, vans: list[VanPlan], orders_by_van: list[list[OrderSim]],
                histories: list[ShipmentHistory], clean: list[ff.CleanEvent], records: list[ff.Outgoing],
                log: ff.FaultLog) -> dict[str, Any]:
    H = cfg.end_ms
    emitted_ids = {e.record["event_id"] for e in clean if e.schema == "scans"}

    arrivals = []
    for van, orders in zip(vans, orders_by_van):
        visits = {v.stop.stop_id: v for v in van.visits}
        for order in orders:
            visit = visits.get(order.stop.stop_id)
            if visit is None:
                continue
            for sh in order.shipments:
                arrivals.append({
                    "shipment_id": sh.shipment_id, "order_id": sh.order_id,
                    "tracking_ids": [p.tracking_id for p in sh.packages],
                    "vehicle_id": van.vehicle_id, "route_id": van.route_id, "stop_id": visit.stop.stop_id,
                    "stop_order": visit.stop_order, "stop": _ll(visit.stop.xy),
                    "arrival_ms": visit.arrival_ms, "handover_ms": visit.handover_ms,
                    "departure_ms": visit.departure_ms, "outcome": sh.fate, "resolution": sh.resolution,
                    "promised_window_start_ms": sh.window_start_ms, "promised_window_end_ms": sh.window_end_ms,
                    # False: the van got there after the run's horizon, so no stream event shows it.
                    "observed": visit.arrival_ms <= H,
                })

    halts = [h for van in vans for h in van.halts if h.start_ms <= H]
    stalls = [{"vehicle_id": h.vehicle_id, "start_ms": h.start_ms, "end_ms": h.end_ms, **_ll(h.xy)}
              for h in halts if h.kind == STALL]
    breaks = [{"vehicle_id": h.vehicle_id, "start_ms": h.start_ms, "end_ms": h.end_ms, **_ll(h.xy)}
              for h in halts if h.kind == BREAK]

    packages = []
    statuses = Counter()
    for h in histories:
        sh = h.shipment
        for tracking_id, scans in h.scans.items():
            seen = [s for s in scans if s.record["event_id"] in emitted_ids]
            for s in seen:
                statuses[s.status] += 1
            packages.append({
                "tracking_id": tracking_id, "shipment_id": sh.shipment_id, "order_id": sh.order_id,
                "fate": sh.fate, "resolution": sh.resolution, "vehicle_id": sh.vehicle_id,
                "legs": [{"leg": leg.leg, "carrier": leg.carrier} for leg in sh.legs],
                "scans": [{"event_id": s.record["event_id"], "event_time_ms": s.record["event_time_ms"],
                           "carrier": s.record["carrier"], "leg": s.record["leg"], "raw_code": s.record["raw_code"],
                           "status": s.status, "detail": s.detail, "facility_id": s.record["facility_id"],
                           "vehicle_id": s.record["vehicle_id"]} for s in seen],
            })

    records_by_topic = Counter(r.topic for r in records)
    valid_by_topic = Counter(e.topic for e in clean)
    all_shipments = [sh for orders in orders_by_van for o in orders for sh in o.shipments]
    return {
        "format": FORMAT,
        "seed": cfg.seed,
        "start_ms": cfg.start_ms,
        "end_ms": H,
        # offset_ms in the recording counts from here.
        "recording_start_ms": records[0].produce_ms if records else cfg.start_ms,
        "config": _config_view(cfg),
        "counts": {
            "records_by_topic": dict(sorted(records_by_topic.items())),
            "valid_unique_by_topic": dict(sorted(valid_by_topic.items())),
            "faults": log.counts(),
            "stalls": len(stalls),
            "breaks": len(breaks),
            "orders": sum(len(o) for o in orders_by_van),
            "shipments": len(all_shipments),
            "packages": len(packages),
            "deliveries": statuses["DELIVERED"],
            "failed_attempts": statuses["ATTEMPT_FAIL"],
            "exceptions": statuses["EXCEPTION"],
        },
        "facilities": [{"facility_id": f.facility_id, "kind": f.kind, "region": f.region, **_ll(f.xy)}
                       for f in world.facilities],
        "vehicles": [{"vehicle_id": v.vehicle_id, "route_id": v.route_id, "driver_pseudonym": v.driver_pseudonym,
                      "depot": v.depot.facility_id, "depart_ms": v.depart_ms, "return_ms": v.return_ms,
                      "tracker_off_ms": v.off_ms, "stops": len(v.visits)} for v in vans],
        "arrivals": arrivals,
        "stalls": stalls,
        "breaks": breaks,
        # Each van's noise-free path inside each published geofence (visits.py); exit_ms None:
        # still inside when the tracker went off or the run ended.
        "fence_visits": true_fence_visits(vans, world.facilities, H),
        "packages": packages,
        "faults": {
            "duplicate_event_ids": log.duplicates,
            "out_of_order_event_ids": log.out_of_order,
            "late_event_ids": log.late,
            "malformed": [{"kind": k, "topic": t, "source_event_id": e} for k, t, e in log.malformed],
        },
    }


def _config_view(cfg: SimConfig) -> dict[str, Any]:
    hidden = {"driver_key", "out_path", "truth_path", "bootstrap", "progress"}
    out = {}
    for name in cfg.__dataclass_fields__:
        if name in hidden:
            continue
        value = getattr(cfg, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out

