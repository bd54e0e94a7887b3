"""Put the world, the vans and the packages together into one deterministic recording."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from fleetflow import topics
from fleetflow.privacy import hmac_key_from_env, pseudonymise_driver
from fleetflow.simulate import carriers as cc
from fleetflow.simulate import faults as ff
from fleetflow.simulate import truth as tt
from fleetflow.simulate.config import SimConfig, rng_for
from fleetflow.simulate.fleet import VanPlan, plan_van, van_pings
from fleetflow.simulate.geo import to_latlon
from fleetflow.simulate.shipments import (ATTEMPT_FAIL, DELIVER, OrderSim, ShipmentHistory, make_orders, plan_record,
                                          set_promises, shipment_history)
from fleetflow.simulate.world import REGIONS, build_world, customer_stops

MIN = 60_000
HOUR = 3_600_000
# Facilities exist long before any order, so their geofences are in place when the first scan arrives.
FACILITY_GEOFENCE_LEAD_MS = 48 * HOUR
CUSTOMER_STOP_DWELL_MS = 60_000
# Normal produce latency per schema (ms): trackers upload fast, carriers a bit slower. All well
# under the gap between two events of one key, so only injected faults reorder a key.
LATENCY_MS = {"pings": (200, 3_000), "scans": (500, 5_000)}
DEFAULT_LATENCY_MS = (100, 1_000)
# Loading ends this long before departure; OFD scans come after it.
LOADING_DONE_BEFORE_DEPART_MS = 5 * MIN
# Below this a run finishes before a progress bar would be worth drawing.
PROGRESS_MIN_VANS = 200


@dataclass
class Summary:
    seed: int
    start_ms: int
    end_ms: int
    vans: int
    records_by_topic: dict[str, int]
    valid_by_topic: dict[str, int]
    duplicates: int
    out_of_order: int
    late: int
    malformed: int
    malformed_by_kind: dict[str, int]
    stalls: int
    breaks: int
    orders: int
    shipments: int
    packages: int
    deliveries: int
    failed_attempts: int
    exceptions: int
    generate_s: float = 0.0
    sent: int = 0
    send_s: float = 0.0
    outputs: list[str] = field(default_factory=list)

    @property
    def total_records(self) -> int:
        return sum(self.records_by_topic.values())


@dataclass
class Simulation:
    cfg: SimConfig
    records: list[ff.Outgoing]
    truth: dict[str, Any]
    summary: Summary

    @property
    def recording_start_ms(self) -> int:
        return self.records[0].produce_ms if self.records else self.cfg.start_ms


def generate(cfg: SimConfig, on_van_done: Callable[[int], None] | None = None) -> Simulation:
    """Everything the run would send, in produce order, with its ground truth. Pure given ``cfg``.

    ``on_van_done(1)`` is called after each van, for a progress display on big fleets.
    """
    started = time.process_time()
    cc.check_carriers(cfg.carriers)
    S, H = cfg.start_ms, cfg.end_ms
    world = build_world(rng_for(cfg.seed, "world"))
    driver_key = cfg.driver_key if cfg.driver_key is not None else hmac_key_from_env()
    day = datetime.fromtimestamp(S / 1000, tz=timezone.utc).strftime("%Y%m%d")

    events: list[tuple[str, str | None, dict[str, Any], int]] = []  # (schema, key, record, event_time_ms)

    def emit(schema: str, key: str | None, record: dict[str, Any], event_time_ms: int) -> None:
        events.append((schema, key, record, event_time_ms))

    for f in world.facilities:
        emit("geofences", f"GF-{f.facility_id}", _facility_geofence(f, S - FACILITY_GEOFENCE_LEAD_MS),
             S - FACILITY_GEOFENCE_LEAD_MS)

    vans: list[VanPlan] = []
    orders_by_van: list[list[OrderSim]] = []
    histories: list[ShipmentHistory] = []
    for i in range(cfg.vans):
        region = REGIONS[i % len(REGIONS)]
        vehicle_id = f"VAN-{region}-{i + 1:03d}"
        driver_id = f"DRV-{region}-{i + 1:04d}"
        vrng = rng_for(cfg.seed, "van", i)
        depot = world.depot(region)
        van = VanPlan(vehicle_id, f"RT-{day}-{vehicle_id}", driver_id, pseudonymise_driver(driver_id, driver_key),
                      depot, customer_stops(vrng, depot, cfg.stops_per_van, f"STP-{day}-{vehicle_id}"))
        plan_van(vrng, van, S, cfg.stall_rate_per_hour, cfg.edge_park_rate, rng_for(cfg.seed, "edge-park", i))
        vans.append(van)

        srng = rng_for(cfg.seed, "orders", i)
        idrng = rng_for(cfg.seed, "ids", i)
        new_hex = lambda r=idrng: f"{r.getrandbits(64):016x}"  # noqa: E731
        orders = make_orders(srng, world, van, cfg.carriers, cfg.multi_leg_rate, cfg.failed_attempt_rate,
                             cfg.exception_rate, new_hex)
        orders_by_van.append(orders)
        visits = {v.stop.stop_id: v for v in van.visits}
        for order in orders:
            visit = visits.get(order.stop.stop_id)
            for sh in order.shipments:
                on_route = sh.fate in (DELIVER, ATTEMPT_FAIL)
                histories.append(shipment_history(srng, world, sh, van, visit if on_route else None, S,
                                                  lambda h=new_hex: f"scn-{h()}"))
            order.order_time_ms = min(sh.label_ms for sh in order.shipments) - srng.randint(5 * MIN, 120 * MIN)
            set_promises(srng, order, S, visit)
            emit("plans", order.order_id, plan_record(order), order.order_time_ms)
            if visit is not None:
                emit("geofences", f"GF-{order.stop.stop_id}", _stop_geofence(order, order.order_time_ms),
                     order.order_time_ms)
        for record in _assignments(van, orders, S, lambda h=new_hex: f"asg-{h()}"):
            emit("assignments", record["vehicle_id"], record, record["event_time_ms"])
        for record in van_pings(vrng, van, S, H, cfg.dropout_rate, cfg.cell_fallback_rate,
                                lambda h=new_hex: f"png-{h()}",
                                (int(cfg.ping_interval_min_s * 1000), int(cfg.ping_interval_max_s * 1000))):
            emit("pings", record["vehicle_id"], record, record["event_time_ms"])
        if on_van_done is not None:
            on_van_done(1)

    for h in histories:
        for tracking_id, scans in h.scans.items():
            for s in scans:
                emit("scans", tracking_id, s.record, s.record["event_time_ms"])

    topic_of = topics.TOPIC_BY_SCHEMA
    lrng = rng_for(cfg.seed, "latency")
    order_idx = sorted((i for i, e in enumerate(events) if e[3] <= H), key=lambda i: (events[i][3], i))
    clean = []
    for seq, i in enumerate(order_idx):
        schema, key, record, t_ms = events[i]
        lo, hi = LATENCY_MS.get(schema, DEFAULT_LATENCY_MS)
        clean.append(ff.CleanEvent(topic_of[schema], schema, key, record, t_ms, t_ms + lrng.randint(lo, hi), seq))

    rates = ff.FaultRates(cfg.duplicate_rate, cfg.out_of_order_rate, int(cfg.out_of_order_bound_s * 1000),
                          cfg.late_rate, cfg.malformed_rate)
    records, log = ff.inject(rng_for(cfg.seed, "faults"), clean, rates)

    truth = tt.build_truth(cfg, world, vans, orders_by_van, histories, clean, records, log)
    summary = _summary(cfg, truth, log)
    summary.generate_s = time.process_time() - started
    return Simulation(cfg, records, truth, summary)


def _summary(cfg: SimConfig, truth: dict[str, Any], log: ff.FaultLog) -> Summary:
    counts = truth["counts"]
    faults = counts["faults"]
    return Summary(
        seed=cfg.seed, start_ms=cfg.start_ms, end_ms=cfg.end_ms, vans=cfg.vans,
        records_by_topic=dict(counts["records_by_topic"]), valid_by_topic=dict(counts["valid_unique_by_topic"]),
        duplicates=faults["duplicates"], out_of_order=faults["out_of_order"], late=faults["late"],
        malformed=faults["malformed"],
        malformed_by_kind={k: faults[f"malformed_{k.lower()}"] for k in ff.MALFORMED_KINDS},
        stalls=counts["stalls"], breaks=counts["breaks"], orders=counts["orders"], shipments=counts["shipments"],
        packages=counts["packages"], deliveries=counts["deliveries"], failed_attempts=counts["failed_attempts"],
        exceptions=counts["exceptions"])


def _facility_geofence(f, at_ms: int) -> dict[str, Any]:
    return {"geofence_id": f"GF-{f.facility_id}", "name": f.name, "kind": f.kind, "polygon_wkt": f.polygon_wkt(),
            "circle": None, "dwell_ms": 120_000, "min_pings": 2, "exit_buffer_m": 30.0,
            "facility_id": f.facility_id, "deleted": False, "updated_time_ms": at_ms}


def _stop_geofence(order: OrderSim, at_ms: int) -> dict[str, Any]:
    lat, lon = to_latlon(*order.stop.xy)
    return {"geofence_id": f"GF-{order.stop.stop_id}", "name": f"Customer stop {order.stop.postcode}",
            "kind": "CUSTOMER_STOP", "polygon_wkt": None,
            "circle": {"lat": round(lat, 7), "lon": round(lon, 7), "radius_m": order.stop.radius_m},
            # facility_id = stop_id: the vehicle job matches it to the assignments' stop_id.
            "dwell_ms": CUSTOMER_STOP_DWELL_MS, "min_pings": 2, "exit_buffer_m": 30.0,
            "facility_id": order.stop.stop_id,
            "deleted": False, "updated_time_ms": at_ms}


def _assignments(van: VanPlan, orders: list[OrderSim], start_ms: int, new_id) -> list[dict[str, Any]]:
    """LOADED for every package on the route, last stop first (it goes deepest into the van);
    UNLOADED back at the depot for packages whose delivery failed."""
    loaded = [(sh.stop_order, o, sh, p) for o in orders for sh in o.shipments if sh.fate in (DELIVER, ATTEMPT_FAIL)
              for p in sh.packages]
    loaded.sort(key=lambda x: -x[0])
    window_ms = van.depart_ms - LOADING_DONE_BEFORE_DEPART_MS - start_ms
    step_ms = max(1, window_ms // (len(loaded) + 1))
    out = []

    def record(action: str, stop_order: int, order: OrderSim, pkg, t_ms: int) -> dict[str, Any]:
        lat, lon = to_latlon(*order.stop.xy)
        return {"event_id": new_id(), "vehicle_id": van.vehicle_id, "route_id": van.route_id,
                "tracking_id": pkg.tracking_id, "action": action, "stop_order": stop_order,
                "stop_id": order.stop.stop_id, "stop_lat": round(lat, 7), "stop_lon": round(lon, 7),
                "driver_pseudonym": van.driver_pseudonym, "event_time_ms": t_ms}

    for k, (stop_order, order, sh, pkg) in enumerate(loaded, start=1):
        out.append(record("LOADED", stop_order, order, pkg, start_ms + k * step_ms))
    failed = [x for x in loaded if x[2].fate == ATTEMPT_FAIL]
    for k, (stop_order, order, sh, pkg) in enumerate(sorted(failed, key=lambda x: x[0]), start=1):
        out.append(record("UNLOADED", stop_order, order, pkg, van.return_ms + k * 15_000))
    return out



def simulate(cfg: SimConfig) -> Summary:
    """Generate the run and deliver it to every output ``cfg`` names (recording file, truth file, Kafka)."""
    from fleetflow.simulate import sinks

    with sinks.progress(cfg.progress and cfg.vans >= PROGRESS_MIN_VANS, cfg.vans, "simulate vans") as advance:
        sim = generate(cfg, advance)
    summary = sim.summary
    if cfg.out_path:
        sinks.write_recording(cfg.out_path, sim.records)
        summary.outputs.append(f"recording: {cfg.out_path}")
    if cfg.truth_path:
        if cfg.bootstrap:
            from fleetflow.simulate import accounting
            # Marks where this run starts on the topics, so `fleetflow accounting` can check it later.
            sim.truth[accounting.OFFSETS_KEY] = accounting.end_offsets(cfg.bootstrap)
        sinks.write_truth(cfg.truth_path, sim.truth)
        summary.outputs.append(f"truth: {cfg.truth_path}")
        if cfg.bootstrap:
            summary.outputs.append(f"check the stores once the jobs caught up: fleetflow accounting {cfg.truth_path}")
    if cfg.bootstrap:
        t0 = time.monotonic()
        sink = sinks.KafkaSink(cfg.bootstrap)
        pacer = sinks.Pacer(cfg.rate_eps, cfg.speedup, anchor_offset_ms=cfg.start_ms - sim.recording_start_ms)
        summary.sent = sinks.send_all(sink, sinks.outgoing_as_recorded(sim.records), len(sim.records), pacer,
                                      cfg.progress, "simulate → kafka")
        summary.send_s = time.monotonic() - t0
        summary.outputs.append(f"kafka: {cfg.bootstrap} ({summary.sent} records)")
    return summary
