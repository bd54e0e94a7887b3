"""Arrival estimates for parcels on a van, and the throttled per-van ETA rule.

``route_eta`` walks the van's remaining stops in route order. Each leg is the
great-circle distance times a road circuity factor, driven at the speed model's
expected speed at the leg's midpoint (looked up for the time the van starts the
leg), and each stop adds its dwell before the van leaves for the next one.

Window calibration
------------------
Each stop's window is ``eta ± half_width`` with::

    calibrated = sqrt(window_base_ms² + window_k_ms_per_sqrt_s² * remaining_s)
    half_width = calibrated * (1 + low_confidence_widening * (1 - confidence))

Why a square root: the error of an arrival time is the sum of many roughly
independent leg and dwell errors, so its variance grows about linearly with the
remaining time. The assumption behind k: one delivery cycle of ~10 min (6 min
driving + 4 min dwell) with a spread of ~150 s (dwell sd ~2 min, driving-time cv
~25 %), i.e. ~37.5 s² of variance per second of remaining route, sd ≈
6.1·sqrt(remaining_s) s. A two-sided 85 % normal interval is ±1.44 sd, so k ≈ 9 s
per sqrt(s). The base (3 min, the half-width at the door) covers what does not
scale with the route: ping delay, parking, the walk to the door and the delivery
scan, taken as sd ~2 min. The two are independent, so they add in quadrature; the
additive form ``base + k·sqrt(remaining_s)`` over-covers short horizons (~97 % in
the same simulation). Result: ±4.7 min for a stop 10 min out, ±9.5 min an hour out.

With a fully trusted model (confidence 1) this covers ~87 % of simulated arrivals,
flat across stop positions; a noisier world (driving cv 35 %, dwell sd 2.5 min)
drops it to ~79 %, a calmer one (15 %, 1.5 min) lifts it to ~95 %. ``test_eta.py``
pins the first case. A thin model widens the
window up to 2x, because then the mean itself may be biased, not just noisy. Only
the accuracy benchmark against real arrivals can confirm the constants; they are
config.

The windows are symmetric. Real arrivals skew late (a van is rarely much early),
so the early side is generous and the late side tight; a skew parameter is the
natural next step once the benchmark measures it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import h3

from udfs.decision import Decision
from udfs.events import Ping

EARTH_RADIUS_M = 6_371_008.8
NAIVE_SPEED_MPS = 8.5
BASIS_ROUTE = "ROUTE"

# (lat, lon, at_ms) -> (speed_mps, confidence); see udfs.speed_model.make_speed_lookup.
SpeedLookup = Callable[[float, float, int], tuple[float, float]]


@dataclass(frozen=True)
class Stop:
    stop_id: str
    lat: float
    lon: float
    tracking_ids: tuple[str, ...] = ()
    # A dwell learned for this stop (a loading dock, a concierge); None uses cfg.dwell_ms.
    dwell_ms: int | None = None


@dataclass(frozen=True)
class StopEta:
    stop_id: str
    eta_ms: int
    earliest_ms: int
    latest_ms: int
    confidence: float


@dataclass(frozen=True)
class EtaUpdate:
    tracking_id: str
    eta_ms: int
    earliest_ms: int
    latest_ms: int
    confidence: float
    # ROUTE (van on its way) or LANE (linehaul/hub, udfs.lanes).
    basis: str
    # Event time of the evidence behind the estimate; lets consumers drop a stale
    # estimate that arrives after a fresher one.
    as_of_ms: int | None = None


@dataclass(frozen=True)
class EtaConfig:
    circuity: float = 1.3
    dwell_ms: int = 4 * 60_000
    # Floor for a speed lookup, so one odd slot cannot push an ETA out by hours.
    min_speed_mps: float = 2.0
    window_base_ms: int = 3 * 60_000
    window_k_ms_per_sqrt_s: float = 9_000.0
    # At confidence 0 the window is (1 + this) times the calibrated width.
    low_confidence_widening: float = 1.0
    # Throttling for eta_step.
    cell_res: int = 9
    recompute_interval_ms: int = 60_000
    emit_threshold_ms: int = 2 * 60_000
    # Cell-tower fixes are often off by a kilometre; recomputing on them flaps the ETA.
    max_accuracy_m: float = 100.0
    # A van silent this long has ended its shift or lost its device; its state goes.
    idle_ttl_ms: int = 6 * 3_600_000
    naive_speed_mps: float = NAIVE_SPEED_MPS


DEFAULT_CONFIG = EtaConfig()


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def midpoint(lat1: float, lon1: float, lat2: float, lon2: float) -> tuple[float, float]:
    """Great-circle midpoint; a plain average of longitudes breaks across the antimeridian."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    l1 = math.radians(lon1)
    dl = math.radians(lon2 - lon1)
    bx = math.cos(p2) * math.cos(dl)
    by = math.cos(p2) * math.sin(dl)
    lat = math.atan2(math.sin(p1) + math.sin(p2), math.sqrt((math.cos(p1) + bx) ** 2 + by ** 2))
    lon = l1 + math.atan2(by, math.cos(p1) + bx)
    return math.degrees(lat), (math.degrees(lon) + 540.0) % 360.0 - 180.0


def naive_eta(now_ms: int, van_lat: float, van_lon: float, stop_lat: float, stop_lon: float,
              speed_mps: float = NAIVE_SPEED_MPS) -> int:
    """Straight line at constant speed: the baseline the accuracy benchmark must beat."""
    return now_ms + round(haversine_m(van_lat, van_lon, stop_lat, stop_lon) / speed_mps * 1000)


def window_half_width_ms(remaining_ms: int, confidence: float, cfg: EtaConfig = DEFAULT_CONFIG) -> int:
    remaining_s = max(remaining_ms, 0) / 1000.0
    # Door-side and route errors are independent, so they add in quadrature.
    calibrated = math.sqrt(cfg.window_base_ms ** 2 + cfg.window_k_ms_per_sqrt_s ** 2 * remaining_s)
    confidence = min(max(confidence, 0.0), 1.0)
    return round(calibrated * (1.0 + cfg.low_confidence_widening * (1.0 - confidence)))


def route_eta(now_ms: int, van_lat: float, van_lon: float, remaining_stops: Sequence[Stop],
              speed_lookup: SpeedLookup, cfg: EtaConfig = DEFAULT_CONFIG) -> list[StopEta]:
    """ETAs for ``remaining_stops`` (route order) for a van at (van_lat, van_lon) at ``now_ms``.

    A stop's ETA is when the van pulls up, not when it leaves, so its own dwell
    counts only towards later stops. Its confidence is the speed confidence averaged
    over the driving time that leads to it.
    """
    out: list[StopEta] = []
    t_ms = float(now_ms)
    lat, lon = van_lat, van_lon
    weighted_conf = 0.0
    weight_total = 0.0
    for stop in remaining_stops:
        distance_m = haversine_m(lat, lon, stop.lat, stop.lon) * cfg.circuity
        mid_lat, mid_lon = midpoint(lat, lon, stop.lat, stop.lon)
        speed_mps, confidence = speed_lookup(mid_lat, mid_lon, int(t_ms))
        speed_mps = max(speed_mps, cfg.min_speed_mps)
        drive_ms = distance_m / speed_mps * 1000.0
        t_ms += drive_ms
        # A zero-length leg (already at the stop) still says how much we trust the area.
        w = max(drive_ms, 1.0)
        weighted_conf += w * confidence
        weight_total += w
        stop_conf = weighted_conf / weight_total
        eta_ms = round(t_ms)
        half = window_half_width_ms(eta_ms - now_ms, stop_conf, cfg)
        out.append(StopEta(stop.stop_id, eta_ms, max(now_ms, eta_ms - half), eta_ms + half, stop_conf))
        t_ms += stop.dwell_ms if stop.dwell_ms is not None else cfg.dwell_ms
        lat, lon = stop.lat, stop.lon
    return out


def _usable_fix(ping: Ping, cfg: EtaConfig) -> bool:
    if ping.source == "CELL":
        return False
    return ping.accuracy_m is None or ping.accuracy_m <= cfg.max_accuracy_m


def eta_step(state: Mapping[str, Any] | None, ping: Ping, now_ms: int, route: Iterable[Stop],
             speed_lookup: SpeedLookup, cfg: EtaConfig = DEFAULT_CONFIG) -> Decision:
    """Per-van ETA rule, keyed by vehicle_id.

    ``route`` is the van's remaining stops in order, as the route state knows them
    now. The estimate is anchored at the ping's event time (where the van was
    then); ``now_ms`` (the operator's event-time clock) only stops an ETA from being
    placed in the past when the ping is already old.

    State (plain dict): ``last_ping_ms``, ``cell`` and ``route`` (stop ids) of the
    last recompute, ``computed_ms``, ``emitted`` (tracking_id -> last emitted
    eta_ms) and ``timer_ms`` (the pending idle timer). Cleared when the route has
    no stops left, or by :func:`eta_on_timer` after ``idle_ttl_ms`` without pings.

    Recomputes when the van enters a new res-``cell_res`` cell, the route changed,
    or ``recompute_interval_ms`` passed since the last recompute. Emits an
    :class:`EtaUpdate` for a parcel the first time and then only when its ETA moved
    more than ``emit_threshold_ms`` from the last one *emitted*, so slow drift is
    still reported once it adds up.
    """
    st = dict(state) if state else {}
    last_ping_ms = st.get("last_ping_ms")
    if last_ping_ms is not None and ping.event_time_ms <= last_ping_ms:
        # An older (or duplicate) fix would move the van backwards along its route.
        return Decision(state)
    if not _usable_fix(ping, cfg):
        return Decision(state)

    stops = tuple(route)
    pending_timer = st.get("timer_ms")
    if not stops:
        return Decision(None, cancel_timers_ms=(pending_timer,) if pending_timer is not None else ())

    timer_ms = None
    if pending_timer is None:
        timer_ms = ping.event_time_ms + cfg.idle_ttl_ms
        st["timer_ms"] = timer_ms
    st["last_ping_ms"] = ping.event_time_ms

    cell = h3.latlng_to_cell(ping.lat, ping.lon, cfg.cell_res)
    route_ids = [s.stop_id for s in stops]
    computed_ms = st.get("computed_ms")
    due = (
        computed_ms is None
        or cell != st.get("cell")
        or route_ids != st.get("route")
        or ping.event_time_ms - computed_ms >= cfg.recompute_interval_ms
    )
    if not due:
        return Decision(st, timer_ms=timer_ms)

    st["cell"] = cell
    st["route"] = route_ids
    st["computed_ms"] = ping.event_time_ms
    previous = st.get("emitted") or {}
    emitted: dict[str, int] = {}
    emits: list[EtaUpdate] = []
    for stop, est in zip(stops, route_eta(ping.event_time_ms, ping.lat, ping.lon, stops, speed_lookup, cfg)):
        eta_ms = max(est.eta_ms, now_ms)
        earliest_ms = max(est.earliest_ms, now_ms)
        latest_ms = max(est.latest_ms, eta_ms)
        for tracking_id in stop.tracking_ids:
            last = previous.get(tracking_id)
            if last is None or abs(eta_ms - last) > cfg.emit_threshold_ms:
                emits.append(EtaUpdate(tracking_id, eta_ms, earliest_ms, latest_ms, est.confidence,
                                       BASIS_ROUTE, ping.event_time_ms))
                emitted[tracking_id] = eta_ms
            else:
                emitted[tracking_id] = last
    # Parcels no longer on the route (delivered, moved to another van) are dropped here.
    st["emitted"] = emitted
    return Decision(st, tuple(emits), timer_ms=timer_ms)


def eta_on_timer(state: Mapping[str, Any] | None, timer_ms: int, cfg: EtaConfig = DEFAULT_CONFIG) -> Decision:
    """Clear a van that went silent; otherwise re-arm one timer at last ping + TTL.

    One timer per van instead of one per ping keeps the timer service small.
    """
    if not state:
        return Decision(None)
    idle_at_ms = state["last_ping_ms"] + cfg.idle_ttl_ms
    if timer_ms >= idle_at_ms:
        return Decision(None)
    return Decision(dict(state, timer_ms=idle_at_ms), timer_ms=idle_at_ms)
