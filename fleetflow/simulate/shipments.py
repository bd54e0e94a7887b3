"""Orders, shipments and packages, and the carrier scans of each package's life.

One order per customer stop. Its shipments travel origin hub -> linehaul ->
destination hub -> destination depot before the shift starts (the night run), then
go out on a van. About one in ten is handed from one carrier to another at the
destination hub (leg 2). A few never get on a van: damaged (returned to sender) or
held by customs.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from fleetflow.simulate import carriers as cc
from fleetflow.simulate.fleet import VanPlan, Visit
from fleetflow.simulate.geo import Point, to_latlon
from fleetflow.simulate.world import CustomerStop, World, other_region, postcode_for, random_point_in_region

MIN = 60_000
HOUR = 3_600_000

DELIVER = "DELIVERED"
ATTEMPT_FAIL = "ATTEMPT_FAILED"
DAMAGED = "DAMAGED_RETURNED"
CUSTOMS_HOLD = "CUSTOMS_HOLD"

RETRY_NEXT_DAY = "RETRY_NEXT_DAY"
AVAILABLE_FOR_PICKUP = "AVAILABLE_FOR_PICKUP"

CARRIER_WEIGHTS = {"DHL": 0.4, "UPS": 0.25, "FEDEX": 0.2, "USPS": 0.15}
SERVICE_LEVELS = (("STANDARD", 0.5), ("NEXT_DAY", 0.25), ("EXPRESS", 0.1), ("ECONOMY", 0.1), ("SAME_DAY", 0.05))
HS_CODES = ("8471.30", "6109.10", "8517.13", "9503.00", "3304.99", "4202.92")
MERCHANTS = 40
CUSTOMS_SHARE_OF_MULTI_LEG = 0.5
WEATHER_DELAY_RATE = 0.03
# Packages of one shipment go through a scanner one after another.
PACKAGE_SCAN_GAP_MIN_MS = 3_000
PACKAGE_SCAN_GAP_MAX_MS = 12_000


@dataclass(frozen=True)
class PackageSim:
    package_id: str
    tracking_id: str
    dimensions_cm: tuple[float, float, float]
    weight_kg: float


@dataclass(frozen=True)
class LegSim:
    leg: int
    carrier: str
    origin_hub: str
    destination_hub: str
    mode: str = "ROAD"


@dataclass
class ShipmentSim:
    shipment_id: str
    order_id: str
    service_level: str
    packages: list[PackageSim]
    legs: list[LegSim]
    customs: dict[str, Any] | None
    origin_region: str
    dest_region: str
    shipper_xy: Point
    stop: CustomerStop
    fate: str
    weather_delay: bool = False
    vehicle_id: str | None = None
    stop_order: int | None = None
    resolution: str | None = None
    window_start_ms: int = 0
    window_end_ms: int = 0
    label_ms: int = 0


@dataclass
class OrderSim:
    order_id: str
    merchant_id: str
    stop: CustomerStop
    shipments: list[ShipmentSim]
    order_time_ms: int = 0


@dataclass(frozen=True)
class ScanSim:
    """One emitted scan with its normalised meaning, kept for the ground truth."""
    record: dict[str, Any]
    status: str
    detail: str


@dataclass
class ShipmentHistory:
    shipment: ShipmentSim
    scans: dict[str, list[ScanSim]] = field(default_factory=dict)  # by tracking_id


def _weighted(rng: random.Random, pairs) -> str:
    r = rng.random() * sum(w for _, w in pairs)
    for value, w in pairs:
        r -= w
        if r <= 0:
            return value
    return pairs[-1][0]


def tracking_id(rng: random.Random, carrier: str) -> str:
    """Shaped like each carrier's real numbers, so nothing downstream assumes one format."""
    digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    if carrier == "UPS":
        return "1Z" + "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(6)) + digits(10)
    if carrier == "USPS":
        return "9400" + digits(18)
    if carrier == "FEDEX":
        return digits(12)
    return "JD" + digits(18)


def make_orders(rng: random.Random, world: World, van: VanPlan, carriers: tuple[str, ...], multi_leg_rate: float,
                failed_attempt_rate: float, exception_rate: float, new_hex: Callable[[], str]) -> list[OrderSim]:
    """One order per stop of ``van``'s route, plus the occasional order that never makes it onto the van."""
    weights = [(c, CARRIER_WEIGHTS.get(c, 0.1)) for c in carriers]
    dest = van.depot.region
    orders = []
    for visit in van.visits:
        failed = rng.random() < failed_attempt_rate
        resolution = (RETRY_NEXT_DAY if rng.random() < 0.7 else AVAILABLE_FOR_PICKUP) if failed else None
        order = _order(rng, world, visit.stop, dest, weights, carriers, multi_leg_rate, new_hex,
                       ATTEMPT_FAIL if failed else DELIVER)
        for sh in order.shipments:
            sh.vehicle_id = van.vehicle_id
            sh.stop_order = visit.stop_order
            sh.resolution = resolution
        orders.append(order)
        if rng.random() < exception_rate:
            # A neighbour's order that was meant for this route but broke down upstream.
            xy = (visit.stop.xy[0] + rng.uniform(-300, 300), visit.stop.xy[1] + rng.uniform(-300, 300))
            stop = CustomerStop(f"{visit.stop.stop_id}-X", dest, xy, postcode_for(xy))
            orders.append(_order(rng, world, stop, dest, weights, carriers, multi_leg_rate, new_hex, DAMAGED))
    return orders


def _order(rng, world, stop, dest, weights, carriers, multi_leg_rate, new_hex, fate) -> OrderSim:
    order_id = f"ORD-{new_hex()[:12].upper()}"
    origin = other_region(dest)
    shipments = []
    for j in range(1, 2 if rng.random() < 0.8 else 3):
        c1 = _weighted(rng, weights)
        multi = len(carriers) > 1 and rng.random() < multi_leg_rate
        if multi:
            c2 = _weighted(rng, [(c, w) for c, w in weights if c != c1])
            legs = [LegSim(1, c1, world.hub(origin).facility_id, world.hub(dest).facility_id),
                    LegSim(2, c2, world.hub(dest).facility_id, world.depot(dest).facility_id)]
        else:
            legs = [LegSim(1, c1, world.hub(origin).facility_id, world.depot(dest).facility_id)]
        customs = None
        if multi and rng.random() < CUSTOMS_SHARE_OF_MULTI_LEG:
            customs = {"hs_codes": [rng.choice(HS_CODES)], "declared_value_minor": rng.randint(1_000, 50_000),
                       "currency": "EUR", "customs_status": "PENDING"}
        sh_fate = fate
        if fate == DAMAGED and customs is not None and rng.random() < 0.6:
            sh_fate = CUSTOMS_HOLD
        shipment_id = f"{order_id}-S{j}"
        packages = []
        for k in range(1, _weighted(rng, ((1, 0.7), (2, 0.2), (3, 0.1))) + 1):
            dims = (round(rng.uniform(15, 60), 1), round(rng.uniform(10, 40), 1), round(rng.uniform(5, 30), 1))
            tid = tracking_id(rng, c1)
            packages.append(PackageSim(f"{shipment_id}-P{k}", tid, dims, round(rng.uniform(0.2, 15), 2)))
        shipments.append(ShipmentSim(
            shipment_id=shipment_id, order_id=order_id, service_level=_weighted(rng, SERVICE_LEVELS),
            packages=packages, legs=legs, customs=customs, origin_region=origin, dest_region=dest,
            shipper_xy=random_point_in_region(rng, origin), stop=stop, fate=sh_fate,
            weather_delay=rng.random() < WEATHER_DELAY_RATE))
    return OrderSim(order_id, f"MER-{rng.randint(1, MERCHANTS):03d}", stop, shipments)


def set_promises(rng: random.Random, order: OrderSim, start_ms: int, visit: Visit | None) -> None:
    """Timed services promise a window around when the planner expected the van; day services the whole shift.

    The planner's guess is the true arrival blurred by ~45 min, so some promises are missed.
    """
    for sh in order.shipments:
        if sh.service_level in ("STANDARD", "ECONOMY") or visit is None:
            sh.window_start_ms, sh.window_end_ms = start_ms, start_ms + 10 * HOUR
            continue
        guess_ms = visit.arrival_ms + int(rng.gauss(0, 45 * MIN))
        width_h = 2 if sh.service_level in ("EXPRESS", "SAME_DAY") else 4
        start = max(start_ms, (guess_ms - width_h * HOUR // 2) // HOUR * HOUR)
        sh.window_start_ms, sh.window_end_ms = start, start + width_h * HOUR


def shipment_history(rng: random.Random, world: World, sh: ShipmentSim, van: VanPlan, visit: Visit | None,
                     start_ms: int, new_id: Callable[[], str]) -> ShipmentHistory:
    """Every scan of every package of ``sh``, with the van stages taken from ``visit``."""
    u = lambda lo, hi: rng.randint(int(lo), int(hi))  # noqa: E731
    origin_hub, dest_hub, depot = world.hub(sh.origin_region), world.hub(sh.dest_region), world.depot(sh.dest_region)
    first, last = sh.legs[0], sh.legs[-1]
    partner_source = "PARTNER_API" if len(sh.legs) > 1 else "CARRIER"

    depot_arr = start_ms - u(90 * MIN, 300 * MIN)
    hub_dep = depot_arr - u(40 * MIN, 90 * MIN)
    hub_arr = hub_dep - u(60 * MIN, 180 * MIN)
    linehaul = hub_arr - u(20 * MIN, 60 * MIN)
    weather_ms = u(60 * MIN, 180 * MIN) if sh.weather_delay else 0
    origin_dep = linehaul - u(15 * MIN, 45 * MIN) - weather_ms
    origin_arr = origin_dep - u(60 * MIN, 240 * MIN)
    pickup = origin_arr - u(30 * MIN, 180 * MIN)
    label = pickup - u(60 * MIN, 1200 * MIN)
    sh.label_ms = label

    # (time, leg, stage, facility_id, xy or None, vehicle_id, source)
    steps: list[tuple[int, LegSim, tuple[str, str], str | None, Point | None, str | None, str]] = [
        (label, first, cc.LABEL_CREATED, None, None, None, partner_source),
        (pickup, first, cc.PICKED_UP, None, sh.shipper_xy, None, partner_source),
        (origin_arr, first, cc.ARRIVED_AT_FACILITY, origin_hub.facility_id, origin_hub.xy, None, partner_source),
        (origin_dep, first, cc.DEPARTED_FACILITY, origin_hub.facility_id, origin_hub.xy, None, partner_source),
    ]
    if sh.weather_delay:
        near = (origin_hub.xy[0] + (dest_hub.xy[0] - origin_hub.xy[0]) * 0.15,
                origin_hub.xy[1] + (dest_hub.xy[1] - origin_hub.xy[1]) * 0.15)
        steps.append((origin_dep + u(10 * MIN, 30 * MIN), first, cc.WEATHER_DELAY, None, near, None, partner_source))
    mid = ((origin_hub.xy[0] + dest_hub.xy[0]) / 2 + rng.uniform(-500, 500),
           (origin_hub.xy[1] + dest_hub.xy[1]) / 2 + rng.uniform(-500, 500))
    steps.append((linehaul, first, cc.IN_TRANSIT, None, mid, None, partner_source))
    steps.append((hub_arr, first, cc.ARRIVED_AT_FACILITY, dest_hub.facility_id, dest_hub.xy, None, partner_source))
    handoff = hub_arr + u(20_000, 5 * MIN)
    if len(sh.legs) > 1:
        steps.append((handoff, last, cc.HANDOFF_TO_CARRIER, dest_hub.facility_id, dest_hub.xy, None, "CARRIER"))

    if sh.fate == DAMAGED:
        damaged = hub_arr + u(6 * MIN, 30 * MIN)
        steps.append((damaged, last, cc.DAMAGED, dest_hub.facility_id, dest_hub.xy, None, "CARRIER"))
        steps.append((damaged + u(60 * MIN, 180 * MIN), last, cc.RETURN_TO_SENDER, dest_hub.facility_id,
                      dest_hub.xy, None, "CARRIER"))
    elif sh.fate == CUSTOMS_HOLD:
        steps.append((handoff + u(5 * MIN, 30 * MIN), last, cc.CUSTOMS_HOLD, dest_hub.facility_id, dest_hub.xy,
                      None, "CARRIER"))
    else:
        assert visit is not None, "a shipment on a route needs its visit"
        steps.append((hub_dep, last, cc.DEPARTED_FACILITY, dest_hub.facility_id, dest_hub.xy, None, "CARRIER"))
        steps.append((depot_arr, last, cc.ARRIVED_AT_FACILITY, depot.facility_id, depot.xy, None, "CARRIER"))
        steps.append((van.depart_ms - u(60_000, 4 * MIN), last, cc.OUT_FOR_DELIVERY, depot.facility_id, van.yard_xy,
                      van.vehicle_id, "DRIVER_APP"))
        a = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(0, 8)
        door = (visit.stop.xy[0] + r * math.cos(a), visit.stop.xy[1] + r * math.sin(a))
        outcome = cc.DELIVERED if sh.fate == DELIVER else cc.ATTEMPT_FAILED
        steps.append((visit.handover_ms, last, outcome, None, door, van.vehicle_id, "DRIVER_APP"))
        if sh.fate == ATTEMPT_FAIL:
            back = cc.ARRIVED_AT_FACILITY
            if sh.resolution == AVAILABLE_FOR_PICKUP and cc.has_stage(last.carrier, cc.AVAILABLE_FOR_PICKUP):
                back = cc.AVAILABLE_FOR_PICKUP
            steps.append((van.return_ms + u(2 * MIN, 10 * MIN), last, back, depot.facility_id, van.yard_xy,
                          van.vehicle_id, "DRIVER_APP"))

    history = ShipmentHistory(sh)
    for k, pkg in enumerate(sh.packages):
        # The same scanning order at every facility keeps one package's scans well apart in time.
        offset_ms = k * u(PACKAGE_SCAN_GAP_MIN_MS, PACKAGE_SCAN_GAP_MAX_MS)
        scans = []
        for t_ms, leg, stage, facility_id, xy, vehicle_id, source in steps:
            code = cc.raw_code(leg.carrier, stage)
            loc = None
            if xy is not None:
                lat, lon = to_latlon(*xy)
                loc = {"lat": round(lat, 7), "lon": round(lon, 7)}
            scans.append(ScanSim({
                "event_id": new_id(),
                "tracking_id": pkg.tracking_id,
                "carrier": leg.carrier,
                "raw_code": code.code,
                "raw_text": code.text,
                "event_time_ms": t_ms + offset_ms + u(0, 2_000),
                "facility_id": facility_id,
                "location": loc,
                "vehicle_id": vehicle_id,
                "leg": leg.leg,
                "source": source,
            }, stage[0], stage[1]))
        history.scans[pkg.tracking_id] = scans
    return history


def plan_record(order: OrderSim) -> dict[str, Any]:
    lat, lon = to_latlon(*order.stop.xy)
    return {
        "order_id": order.order_id,
        "plan_version": 1,
        "merchant_id": order.merchant_id,
        "order_time_ms": order.order_time_ms,
        "destination": {"postcode": order.stop.postcode, "city": "Berlin", "country": "DE",
                        "point": {"lat": round(lat, 7), "lon": round(lon, 7)}},
        "shipments": [{
            "shipment_id": sh.shipment_id,
            "service_level": sh.service_level,
            "promised_window_start_ms": sh.window_start_ms,
            "promised_window_end_ms": sh.window_end_ms,
            "packages": [{
                "package_id": p.package_id,
                "tracking_id": p.tracking_id,
                "dimensions_cm": {"length_cm": p.dimensions_cm[0], "width_cm": p.dimensions_cm[1],
                                  "height_cm": p.dimensions_cm[2]},
                "weight_kg": p.weight_kg,
            } for p in sh.packages],
            "legs": [{"leg": leg.leg, "carrier": leg.carrier, "mode": leg.mode, "origin_hub": leg.origin_hub,
                      "destination_hub": leg.destination_hub} for leg in sh.legs],
            "customs": sh.customs,
        } for sh in order.shipments],
    }
