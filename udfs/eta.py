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
from udfs.validation import ID_FIELDS, ids_reason

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
    # Stops of the route we know nothing about (stop orders not seen yet) that come
    # before this one; each costs cfg.unknown_stop_ms.
    unknown_before: int = 0


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
    # Share of the half-width moved from the early side to the late side. Arrivals
    # skew late (breaks, breakdowns, a van is rarely much early); 0 keeps it symmetric.
    window_late_skew: float = 0.0
    # Throttling for eta_step.
    cell_res: int = 9
    recompute_interval_ms: int = 60_000
    emit_threshold_ms: int = 2 * 60_000
    # Cell-tower fixes are often off by a kilometre; recomputing on them flaps the ETA.
    max_accuracy_m: float = 100.0
    # A van silent this long has ended its shift or lost its device; its state goes.
    idle_ttl_ms: int = 6 * 3_600_000
    naive_speed_mps: float = NAIVE_SPEED_MPS
    # The van rule (van_step) counts a stop as reached on a GPS fix this close to it at
    # walking pace or slower: vans park up to ~35 m from the stop point, and GPS adds ~15 m.
    arrival_radius_m: float = 75.0
    arrival_max_speed_mps: float = 2.0
    # While the van is still this close to the stop it reached, it is taken to be dwelling
    # there, and the next leg starts when the dwell is up rather than now.
    at_stop_radius_m: float = 120.0
    # Time budgeted for a stop order the van rule has not seen (a van still loading gets
    # its last stops first): one dwell plus a typical urban leg.
    unknown_stop_ms: int = 7 * 60_000
    # The driver's break, which working-time rules make part of every shift: expected
    # length, and when it falls after the van leaves its depot. Stops that may come after
    # it get its expected share in the ETA and its full length on the window's late
    # side. The defaults are the simulated fleet's policy; break_ms=0 turns this off.
    break_ms: int = 22 * 60_000
    break_earliest_after_depart_ms: int = 2 * 3_600_000
    break_latest_after_depart_ms: int = 3 * 3_600_000
    # A van counts as departed once this far from its first fix of the shift.
    depart_radius_m: float = 300.0
    # Fixes within halt_radius_m of each other for halt_min_ms, away from every stop, are
    # a halt (the break, or a breakdown): the van leaves when the break is up, not now.
    halt_radius_m: float = 60.0
    halt_min_ms: int = 8 * 60_000


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
              speed_lookup: SpeedLookup, cfg: EtaConfig = DEFAULT_CONFIG,
              depart_ms: int | None = None, pending_break: tuple[int, int] | None = None) -> list[StopEta]:
    """ETAs for ``remaining_stops`` (route order) for a van at (van_lat, van_lon) at ``now_ms``.

    A stop's ETA is when the van pulls up, not when it leaves, so its own dwell
    counts only towards later stops. Its confidence is the speed confidence averaged
    over the driving time that leads to it. ``depart_ms`` (>= now_ms) is when the van
    will start driving, for a van still dwelling at the stop it just reached; the
    windows still widen from ``now_ms``. ``pending_break`` is (earliest, latest) start
    of a break of ``cfg.break_ms`` the driver has yet to take: a stop reached (without
    it) at time t gets the probability that the break started before t times its
    length, and the window's late edge covers the whole break whenever it may come first.
    """
    out: list[StopEta] = []
    t_ms = float(max(now_ms, depart_ms) if depart_ms is not None else now_ms)
    lat, lon = van_lat, van_lon
    weighted_conf = 0.0
    weight_total = 0.0
    for stop in remaining_stops:
        t_ms += stop.unknown_before * cfg.unknown_stop_ms
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
        p_break = _break_share(t_ms, pending_break) if cfg.break_ms > 0 else 0.0
        eta_ms = round(t_ms + p_break * cfg.break_ms)
        half = window_half_width_ms(eta_ms - now_ms, stop_conf, cfg)
        early, late = round(half * (1.0 - cfg.window_late_skew)), round(half * (1.0 + cfg.window_late_skew))
        # The window spans "no break yet" (early edge) to "break taken" (late edge).
        earliest_ms = round(t_ms + (cfg.break_ms if p_break >= 1.0 else 0)) - early
        latest_ms = round(t_ms + (cfg.break_ms if p_break > 0.0 else 0)) + late
        out.append(StopEta(stop.stop_id, eta_ms, max(now_ms, earliest_ms), max(latest_ms, eta_ms), stop_conf))
        t_ms += stop.dwell_ms if stop.dwell_ms is not None else cfg.dwell_ms
        lat, lon = stop.lat, stop.lon
    return out


def _break_share(t_ms: float, pending_break: tuple[int, int] | None) -> float:
    """Probability that a break due uniformly in [earliest, latest] started before t_ms."""
    if pending_break is None:
        return 0.0
    lo, hi = pending_break
    if t_ms <= lo:
        return 0.0
    if t_ms >= hi:
        return 1.0
    return (t_ms - lo) / (hi - lo)


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

    emits = _throttled_estimates(st, ping, now_ms, stops, speed_lookup, cfg)
    if emits is None:
        return Decision(st, timer_ms=timer_ms)
    return Decision(st, emits, timer_ms=timer_ms)


def _throttled_estimates(st: dict[str, Any], ping: Ping, now_ms: int, stops: Sequence[Stop],
                         speed_lookup: SpeedLookup, cfg: EtaConfig,
                         depart_ms: int | None = None,
                         pending_break: tuple[int, int] | None = None) -> tuple[EtaUpdate, ...] | None:
    """The recompute-and-emit part of the ETA rule; updates ``st`` in place.

    None when no recompute was due (same cell, same route, interval not up).
    """
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
        return None

    st["cell"] = cell
    st["route"] = route_ids
    st["computed_ms"] = ping.event_time_ms
    previous = st.get("emitted") or {}
    emitted: dict[str, int] = {}
    emits: list[EtaUpdate] = []
    estimates = route_eta(ping.event_time_ms, ping.lat, ping.lon, stops, speed_lookup, cfg, depart_ms, pending_break)
    for stop, est in zip(stops, estimates):
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
    return tuple(emits)


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


# --- The van rule: route state from assignments and deliveries, arrival detection, ETAs ---

LOADED, UNLOADED = "LOADED", "UNLOADED"


@dataclass(frozen=True)
class Assignment:
    """A parcel loaded onto or unloaded from a van for one stop (avro/assignments.avsc)."""
    event_id: str
    vehicle_id: str
    route_id: str
    tracking_id: str
    action: str
    stop_order: int
    stop_id: str
    stop_lat: float
    stop_lon: float
    event_time_ms: int

    @staticmethod
    def from_record(r: Mapping[str, Any]) -> "Assignment":
        return Assignment(event_id=r["event_id"], vehicle_id=r["vehicle_id"], route_id=r["route_id"],
                          tracking_id=r["tracking_id"], action=str(r["action"]), stop_order=int(r["stop_order"]),
                          stop_id=r["stop_id"], stop_lat=float(r["stop_lat"]), stop_lon=float(r["stop_lon"]),
                          event_time_ms=int(r["event_time_ms"]))


def assignment_problem(r: Mapping[str, Any]) -> str | None:
    """Dead-letter reason for a decoded assignment the van rule cannot use, or None.

    Its ids get the shared checks (``udfs.validation.ID_FIELDS["assignments"]``)."""
    reason = ids_reason(r, ID_FIELDS["assignments"])
    if reason is not None:
        return reason
    lat, lon = r.get("stop_lat"), r.get("stop_lon")
    if not (isinstance(lat, (int, float)) and isinstance(lon, (int, float))
            and math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
            and (lat, lon) != (0.0, 0.0)):
        return "BAD_COORDINATES"
    if int(r.get("stop_order") or 0) < 1:
        return "BAD_STOP_ORDER"
    return None


@dataclass(frozen=True)
class ParcelDone:
    """The parcel left the van's work at its stop (delivered, failed, cancelled...).

    Built by the parcel tracker (``udfs.lanes.parcel_step``) from shipment states and
    routed to the van that loaded it."""
    vehicle_id: str
    tracking_id: str
    event_time_ms: int
    status: str


def _route_stops(st: Mapping[str, Any], now_ms: int) -> list[Stop]:
    """Remaining stops in route order at the van's time ``now_ms``: stops with parcels
    still on board then, not reached by then.

    Outcomes and unloads take effect at their own event time, not when they arrive: in
    a replay a delivery can arrive long before the pings that lead up to it.

    Stop orders never seen in an assignment, between the van's progress (the highest
    order it reached) and a remaining stop, are counted into ``unknown_before``: while a
    van loads, its last stops are known before its first ones.
    """
    reached = {k: t for k, t in (st.get("reached") or {}).items() if t <= now_ms}
    parcels = st.get("parcels") or {}
    known_orders = {p[0] for p in parcels.values()}
    progress = max((p[0] for p in parcels.values() if p[1] in reached), default=0)
    by_stop: dict[str, list] = {}
    for tracking_id, (order, stop_id, lat, lon, _ms, off_ms) in sorted(parcels.items()):
        if (off_ms is not None and off_ms <= now_ms) or stop_id in reached:
            continue
        entry = by_stop.setdefault(stop_id, [order, lat, lon, []])
        entry[3].append(tracking_id)
    ordered = sorted(by_stop.items(), key=lambda kv: (kv[1][0], kv[0]))
    out = []
    before = progress
    for stop_id, (order, lat, lon, tids) in ordered:
        unknown = sum(1 for o in range(before + 1, order) if o not in known_orders)
        out.append(Stop(stop_id, lat, lon, tuple(tids), unknown_before=unknown))
        before = max(before, order)
    return out


def _apply_assignment(st: dict[str, Any], a: Assignment) -> None:
    route_id = st.get("route_id")
    if route_id != a.route_id:
        # A van runs one route at a time: a newer route replaces the old one (a new
        # shift), an assignment of an older route is a straggler and changes nothing.
        if route_id is not None:
            if a.event_time_ms <= st.get("route_last_ms", 0):
                return
            st["parcels"], st["reached"], st["done"] = {}, {}, {}
            for k in ("at_stop", "first_fix", "departed_ms", "halt", "break_since_ms"):
                st.pop(k, None)
        st["route_id"] = a.route_id
    st["route_last_ms"] = max(st.get("route_last_ms", a.event_time_ms), a.event_time_ms)
    parcels = dict(st.get("parcels") or {})
    current = parcels.get(a.tracking_id)
    if current is not None and a.event_time_ms < current[4]:
        return  # an older assignment must not undo a newer one
    if a.action == LOADED:
        done_ms = (st.get("done") or {}).get(a.tracking_id)
        off_ms = done_ms if done_ms is not None and done_ms >= a.event_time_ms else None
    else:
        off_ms = a.event_time_ms
    parcels[a.tracking_id] = [a.stop_order, a.stop_id, a.stop_lat, a.stop_lon, a.event_time_ms, off_ms]
    st["parcels"] = parcels


def _apply_done(st: dict[str, Any], done: ParcelDone) -> None:
    st["done"] = dict(st.get("done") or {}, **{done.tracking_id: done.event_time_ms})
    parcels = dict(st.get("parcels") or {})
    current = parcels.get(done.tracking_id)
    if current is None or current[4] > done.event_time_ms:
        return  # not on this route yet, or reloaded after this outcome
    off_ms = done.event_time_ms if current[5] is None else min(current[5], done.event_time_ms)
    parcels[done.tracking_id] = current[:5] + [off_ms]
    st["parcels"] = parcels
    # A handover at the stop means the van got there, at the latest by then.
    reached = dict(st.get("reached") or {})
    stop_id = current[1]
    reached[stop_id] = min(reached.get(stop_id, done.event_time_ms), done.event_time_ms)
    st["reached"] = reached


def _detect_arrival(st: dict[str, Any], ping: Ping, stops: Sequence[Stop], cfg: EtaConfig) -> None:
    """Mark stops the van has pulled up at; keep track of the stop it is dwelling at."""
    reached = dict(st.get("reached") or {})
    slow = ping.speed_mps is None or ping.speed_mps <= cfg.arrival_max_speed_mps
    if slow:
        for stop in stops:
            if haversine_m(ping.lat, ping.lon, stop.lat, stop.lon) <= cfg.arrival_radius_m:
                reached[stop.stop_id] = ping.event_time_ms
                st["at_stop"] = [stop.stop_id, stop.lat, stop.lon, ping.event_time_ms]
    st["reached"] = reached
    at_stop = st.get("at_stop")
    if at_stop and haversine_m(ping.lat, ping.lon, at_stop[1], at_stop[2]) > cfg.at_stop_radius_m:
        st.pop("at_stop", None)


def _track_shift(st: dict[str, Any], ping: Ping, cfg: EtaConfig) -> None:
    """Departure from the depot, and halts away from stops (the break, a breakdown)."""
    t = ping.event_time_ms
    first = st.get("first_fix")
    if first is None:
        st["first_fix"] = [ping.lat, ping.lon]
    elif st.get("departed_ms") is None and haversine_m(ping.lat, ping.lon, first[0], first[1]) > cfg.depart_radius_m:
        st["departed_ms"] = t
    halt = st.get("halt")
    if halt is None or haversine_m(ping.lat, ping.lon, halt[0], halt[1]) > cfg.halt_radius_m:
        st["halt"] = halt = [ping.lat, ping.lon, t]
    if (st.get("departed_ms") is not None and not st.get("at_stop") and t - halt[2] >= cfg.halt_min_ms
            and not st.get("break_since_ms")):
        st["break_since_ms"] = halt[2]  # the first long halt of the shift is taken as the break


def _depart_ms(st: Mapping[str, Any], ping: Ping, cfg: EtaConfig) -> int | None:
    at_stop = st.get("at_stop")
    if at_stop:
        return max(ping.event_time_ms, at_stop[3] + cfg.dwell_ms)
    halt = st.get("halt")
    if halt and st.get("break_since_ms") == halt[2]:
        return max(ping.event_time_ms, halt[2] + cfg.break_ms)
    return None


def _pending_break(st: Mapping[str, Any], ping: Ping, cfg: EtaConfig) -> tuple[int, int] | None:
    departed_ms = st.get("departed_ms")
    if cfg.break_ms <= 0 or departed_ms is None or st.get("break_since_ms"):
        return None
    lo = departed_ms + cfg.break_earliest_after_depart_ms
    hi = departed_ms + cfg.break_latest_after_depart_ms
    if ping.event_time_ms > hi + 3_600_000:
        return None  # long overdue: this shift has no break to wait for
    return (max(lo, ping.event_time_ms), max(hi, ping.event_time_ms))


def _arm_idle_timer(st: dict[str, Any], event_time_ms: int, cfg: EtaConfig) -> int | None:
    st["last_event_ms"] = max(st.get("last_event_ms", event_time_ms), event_time_ms)
    if st.get("timer_ms") is not None:
        return None
    st["timer_ms"] = st["last_event_ms"] + cfg.idle_ttl_ms
    return st["timer_ms"]


VanEvent = Any  # Ping | Assignment | ParcelDone


def van_step(state: Mapping[str, Any] | None, event: VanEvent, now_ms: int, speed_lookup: SpeedLookup,
             cfg: EtaConfig = DEFAULT_CONFIG) -> Decision:
    """Per-van rule, keyed by vehicle_id: route state plus throttled ETAs for its parcels.

    * :class:`Assignment` LOADED/UNLOADED builds the route (stop order, stop point,
      parcels). Per parcel the newest assignment wins, so a replayed or late one cannot
      undo a newer one; an assignment of a newer route starts the van's next shift.
    * :class:`ParcelDone` (delivered, failed attempt...) takes the parcel off the
      route and marks its stop reached, both as of the outcome's event time, so a
      delivery that arrives ahead of the van's pings (a replay) does not end the
      parcel's estimates early.
    * :class:`Ping`: a slow GPS fix within ``arrival_radius_m`` of a remaining stop
      marks it reached (its ETA is then moot), then the ETA rule of :func:`eta_step`
      runs over the stops not yet reached: recompute on a new cell, a changed route or
      every ``recompute_interval_ms``, emit a parcel's ETA when it moved more than
      ``emit_threshold_ms``. A van dwelling at the stop it reached starts its next
      leg when the dwell is up.

    State (plain dict): ``route_id``, ``parcels`` {tracking_id: [stop_order, stop_id,
    lat, lon, assignment time, time it left the van or None]}, ``done`` {tracking_id:
    outcome time}, ``reached`` {stop_id: time}, ``at_stop``, shift fields
    (``first_fix``, ``departed_ms``, ``halt``, ``break_since_ms``), the ETA rule's throttle fields
    (``last_ping_ms``, ``cell``, ``route``, ``computed_ms``, ``emitted``), and one idle
    timer (``timer_ms``, ``last_event_ms``), plus ``held`` pings waiting for the
    watermark (:func:`hold_ping`). Delivered and unloaded parcels stay as
    tombstones until the route is replaced or the van goes idle, so a straggling
    LOADED cannot put them back. Cleared by :func:`van_on_timer` ``idle_ttl_ms`` after
    the van's last event of any kind.
    """
    st = dict(state) if state else {}
    if isinstance(event, Assignment):
        _apply_assignment(st, event)
        return Decision(st, timer_ms=_arm_idle_timer(st, event.event_time_ms, cfg))
    if isinstance(event, ParcelDone):
        _apply_done(st, event)
        return Decision(st, timer_ms=_arm_idle_timer(st, event.event_time_ms, cfg))

    ping = event
    last_ping_ms = st.get("last_ping_ms")
    if last_ping_ms is not None and ping.event_time_ms <= last_ping_ms:
        return Decision(state)  # an older fix would move the van backwards along its route
    if not _usable_fix(ping, cfg):
        return Decision(state)
    timer_ms = _arm_idle_timer(st, ping.event_time_ms, cfg)
    st["last_ping_ms"] = ping.event_time_ms
    _detect_arrival(st, ping, _route_stops(st, ping.event_time_ms), cfg)
    _track_shift(st, ping, cfg)
    stops = _route_stops(st, ping.event_time_ms)
    if not stops:
        st["emitted"] = {}
        st["route"] = []
        return Decision(st, timer_ms=timer_ms)
    emits = _throttled_estimates(st, ping, now_ms, stops, speed_lookup, cfg, _depart_ms(st, ping, cfg),
                                 _pending_break(st, ping, cfg))
    return Decision(st, emits or (), timer_ms=timer_ms)


def hold_ping(state: Mapping[str, Any] | None, ping: Ping, cfg: EtaConfig = DEFAULT_CONFIG) -> Decision:
    """Hold a ping until the watermark passes its time (timer at its event time).

    The van's inputs (pings, assignments, outcomes) come from different topics. Taking
    pings in event-time order, after everything that happened before them, means a
    replay or a slow assignment feed gives the same estimates as a live run: the route
    a ping sees is the route as it was at the ping's time. The cost is the watermark
    delay (the job's out-of-orderness bound) on every estimate.
    """
    st = dict(state) if state else {}
    last_ping_ms = st.get("last_ping_ms")
    if last_ping_ms is not None and ping.event_time_ms <= last_ping_ms:
        return Decision(state)  # older than a ping already applied: it would move the van backwards
    held = list(st.get("held") or ())
    if any(p.event_time_ms == ping.event_time_ms for p in held):
        return Decision(state)  # one fix per instant is enough (and a duplicate is the same fix)
    held.append(ping)
    held.sort(key=lambda p: p.event_time_ms)
    st["held"] = held
    return Decision(st, timer_ms=ping.event_time_ms)


def van_on_timer(state: Mapping[str, Any] | None, timer_ms: int, cfg: EtaConfig = DEFAULT_CONFIG,
                 speed_lookup: SpeedLookup | None = None) -> Decision:
    """Apply held pings up to ``timer_ms`` (:func:`van_step`, in event-time order); at the
    idle timer, clear a van with no event for ``idle_ttl_ms`` or re-arm at last event + TTL."""
    if not state:
        return Decision(None)
    st: dict[str, Any] | None = dict(state)
    emits: list[Any] = []
    timers: list[int] = []
    held = list(st.get("held") or ())
    due = [p for p in held if p.event_time_ms <= timer_ms]
    if due:
        st["held"] = [p for p in held if p.event_time_ms > timer_ms]
        lookup = speed_lookup or (lambda lat, lon, at_ms: (cfg.naive_speed_mps, 0.0))
        for ping in due:
            d = van_step(st, ping, ping.event_time_ms, lookup, cfg)
            st = dict(d.state)
            emits += d.emits
            if d.timer_ms is not None:
                timers.append(d.timer_ms)
    if timer_ms == st.get("timer_ms"):
        idle_at_ms = st["last_event_ms"] + cfg.idle_ttl_ms
        if timer_ms >= idle_at_ms and not st.get("held"):
            return Decision(None, tuple(emits))
        st["timer_ms"] = max(idle_at_ms, timer_ms + 1)
        timers.append(st["timer_ms"])
    # At most one new timer comes out of a firing: the idle timer (armed or re-armed).
    return Decision(st, tuple(emits), timer_ms=max(timers) if timers else None)
