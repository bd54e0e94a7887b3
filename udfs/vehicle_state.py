"""Everything the vehicle job keeps per ``vehicle_id``, and the one rule that folds it.

The vehicle job has one keyed operator. It gets pings and assignments for a van and
reads the geofence index (broadcast state). This module composes the per-vehicle
rules so the operator stays a thin adapter:

* :mod:`udfs.vehicle_position`: a Cassandra history row per ping;
* :mod:`udfs.fence_membership`: ENTER/EXIT with dwell and hysteresis;
* :mod:`udfs.vehicle_watch`: stalls, route deviation, lost signal, fed with the kinds
  (and the CUSTOMER_STOP facility ids) of the fences the van is in *after* this
  ping's membership update;
* parcels on board (LOADED/UNLOADED assignments) and the route plan built from them.
  The plan also names the route's stops (``stop_ids``: every stop loaded for the
  current route, delivered ones included), so the watch pauses the stall clock only
  in the van's own CUSTOMER_STOP fences. Delivered stops stay in it so a van lingering
  at the stop it has just unloaded at is not taken for a stalled one. The plan is
  kept, with no path, after the last parcel is unloaded, and cleared by a new route
  or the shift end;
* the shift: a van that comes back into a DEPOT fence after leaving one on shift
  has ended its shift (``OFF_SHIFT``: no silence, stall or deviation alerts; parcels
  left on board are dropped); the next LOADED starts a new one;
* geofence-derived scans (docs/data-layout.md): a van carrying a parcel ENTERs the
  CUSTOMER_STOP fence whose ``facility_id`` is the parcel's ``stop_id``
  (GEO_NEAR_DESTINATION), or any HUB fence (GEO_ARRIVED_HUB);
* a :class:`VehicleSnapshot` for the Redis current view, emitted when status,
  fences or route change, or at most every ``snapshot_interval_ms`` of event time.

Timers. The sub-rules each keep at most one event-time timer in their own state
(``MembershipState.expiry_timer_ms``, ``WatchState.timer_ms``). Rather than replaying
their register/cancel decisions, :class:`VehicleState` records the set of timers the
operator holds, and every call returns the difference to what the sub-rules want now
(:class:`Outcome`). A timer both rules asked for is registered once and deleted only
when neither wants it. The processing-time silence fallback is kept the same way in
``processing_timer_ms`` (see :func:`processing_timer`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

from udfs import fence_membership as fm
from udfs import vehicle_position as vp
from udfs import vehicle_watch as vw
from udfs.alerts import from_geofence_event, from_vehicle_event
from udfs.events import Ping
from udfs.geofence import GeofenceIndex

# Redis status values (docs/data-layout.md).
MOVING, STALLED, OFF_ROUTE, SIGNAL_LOST, OFF_SHIFT = "MOVING", "STALLED", "OFF_ROUTE", "SIGNAL_LOST", "OFF_SHIFT"
LOADED, UNLOADED = "LOADED", "UNLOADED"
GEO_CARRIER, GEO_SOURCE, GEO_LEG = "FLEETFLOW", "GEOFENCE", 0
GEO_NEAR_DESTINATION, GEO_ARRIVED_HUB = "GEO_NEAR_DESTINATION", "GEO_ARRIVED_HUB"


@dataclass(frozen=True)
class VehicleConfig:
    # Redis is the "where is it now" view: one write per van every few seconds is plenty,
    # while Cassandra keeps every ping.
    snapshot_interval_ms: int = 5_000


@dataclass(frozen=True)
class Rules:
    membership: fm.MembershipConfig = fm.DEFAULT_CONFIG
    # Assignments carry stops, not the road path: measure deviation against leg boxes.
    watch: vw.WatchConfig = vw.WatchConfig(route_corridor="leg_boxes")
    vehicle: VehicleConfig = VehicleConfig()


DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class Assignment:
    """View of an ``ff.assignments`` record (avro/assignments.avsc)."""
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
        return Assignment(r["event_id"], r["vehicle_id"], r["route_id"], r["tracking_id"], r["action"],
                          int(r["stop_order"]), r["stop_id"], float(r["stop_lat"]), float(r["stop_lon"]),
                          int(r["event_time_ms"]))


@dataclass(frozen=True)
class Parcel:
    tracking_id: str
    route_id: str
    stop_id: str
    stop_order: int
    stop_lat: float
    stop_lon: float
    loaded_ms: int


@dataclass(frozen=True)
class VehicleSnapshot:
    """The ``ff:vehicle:{id}`` hash (docs/data-layout.md); guarded by ``last_event_time_ms``."""
    vehicle_id: str
    lat: float
    lon: float
    speed_mps: float | None
    heading_deg: float | None
    accuracy_m: float | None
    source: str
    event_time_ms: int
    last_event_time_ms: int
    fences: tuple[str, ...]
    status: str
    route_id: str | None


@dataclass(frozen=True)
class GeofenceScan:
    """A GEOFENCE-sourced ``ff.scans`` record derived from a fence ENTER."""
    event_id: str
    tracking_id: str
    raw_code: str
    event_time_ms: int
    facility_id: str | None
    vehicle_id: str
    lat: float | None = None
    lon: float | None = None

    def to_record(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "tracking_id": self.tracking_id, "carrier": GEO_CARRIER,
                "raw_code": self.raw_code, "raw_text": "", "event_time_ms": self.event_time_ms,
                "facility_id": self.facility_id,
                "location": None if self.lat is None else {"lat": self.lat, "lon": self.lon},
                "vehicle_id": self.vehicle_id, "leg": GEO_LEG, "source": GEO_SOURCE}


@dataclass(frozen=True)
class VehicleState:
    vehicle_id: str
    position: vp.PositionState | None = None
    membership: fm.MembershipState | None = None
    watch: vw.WatchState | None = None
    parcels: tuple[Parcel, ...] = ()
    route_id: str | None = None
    # stop_id of every parcel LOADED for the current route, unloaded or not: the van's own
    # CUSTOMER_STOP fences. Reset by a new route and by the shift end.
    route_stop_ids: frozenset[str] = frozenset()
    # Where the route's plan starts and ends (the van's fix when loading began).
    plan_origin: tuple[float, float] | None = None
    # Event time the van last left a DEPOT fence while on shift.
    left_depot_ms: int | None = None
    # Newest ping: the position the snapshot shows.
    last_ping: Ping | None = None
    # (event_time_ms, status, fences, route_id) of the last snapshot emitted.
    last_snapshot: tuple[int, str, tuple[str, ...], str | None] | None = None
    rejected_assignments: int = 0
    # Event-time timers the operator holds, and its processing-time timer.
    timers_ms: frozenset[int] = frozenset()
    processing_timer_ms: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What the operator must do: store ``state`` (None clears it), sync timers, emit."""
    state: VehicleState | None
    emits: tuple[Any, ...] = ()
    register_ms: tuple[int, ...] = ()
    delete_ms: tuple[int, ...] = ()
    register_processing_ms: int | None = None
    delete_processing_ms: int | None = None


# --------------------------------------------------------------------------- inputs

def on_ping(state: VehicleState | None, ping: Ping, now_ms: int, index: GeofenceIndex,
            rules: Rules = DEFAULT_RULES, *, operator_started_ms: int | None = None) -> Outcome:
    """Fold one ping: history row, fences, watch, geofence scans, alerts, snapshot."""
    s = state or VehicleState(ping.vehicle_id)
    pos = vp.step(s.position, ping, now_ms)
    emits: list[Any] = [e for e in pos.emits if isinstance(e, vp.PositionRow)]
    newer = s.last_ping is None or ping.event_time_ms > s.last_ping.event_time_ms
    s = replace(s, position=pos.state, last_ping=ping if newer else s.last_ping)

    md = fm.step(s.membership, ping, now_ms, index, rules.membership)
    s = replace(s, membership=md.state)
    watch = s.watch
    for ev in md.emits:
        emits.append(ev)
        alert = from_geofence_event(ev, now_ms)
        if alert is not None:
            emits.append(alert)
        if ev.event_type == fm.ENTER:
            emits.extend(_geofence_scans(s, ev, ping))
        s, watch, shift_events = _track_shift(s, watch, ev, now_ms, rules)
        emits.extend(shift_events)

    if newer and s.parcels and s.plan_origin is None and fm.is_good(ping, rules.membership):
        s = replace(s, plan_origin=(ping.lat, ping.lon))
        watch, plan_events = _replan(s, watch, ping.event_time_ms, rules)
        emits.extend(from_vehicle_event(e, now_ms) for e in plan_events)

    kinds = frozenset(m.kind for m in md.state.members)
    stop_ids = frozenset(m.facility_id for m in md.state.members if m.kind == vw.CUSTOMER_STOP and m.facility_id)
    wd = vw.step(watch, ping, now_ms, rules.watch, fence_kinds=kinds, customer_stop_ids=stop_ids)
    emits.extend(from_vehicle_event(e, now_ms) for e in wd.emits)
    s = replace(s, watch=wd.state)
    return _finish(s, emits, rules, operator_started_ms, moved=newer)


def on_assignment(state: VehicleState | None, a: Assignment, now_ms: int,
                  rules: Rules = DEFAULT_RULES, *, operator_started_ms: int | None = None) -> Outcome:
    """LOADED puts a parcel on board (and starts a shift), UNLOADED takes it off; the plan follows."""
    s = state or VehicleState(a.vehicle_id)
    if not _valid_point(a.stop_lat, a.stop_lon) or a.action not in (LOADED, UNLOADED):
        return _finish(replace(s, rejected_assignments=s.rejected_assignments + 1), [], rules, operator_started_ms)
    watch = s.watch
    emits: list[Any] = []
    parcels = {p.tracking_id: p for p in s.parcels}
    current = parcels.get(a.tracking_id)
    if a.action == LOADED:
        if watch is not None and watch.shift_ended:
            wd = vw.set_shift(watch, s.vehicle_id, False, rules.watch)
            watch, s = wd.state, replace(s, left_depot_ms=None)
        if a.route_id != s.route_id:
            # A new route: what was left from the old one is not part of this plan.
            parcels = {}
            origin = (s.last_ping.lat, s.last_ping.lon) if s.last_ping is not None else None
            s = replace(s, route_id=a.route_id, plan_origin=origin, route_stop_ids=frozenset())
            current = None
        if current is None or a.event_time_ms >= current.loaded_ms:
            parcels[a.tracking_id] = Parcel(a.tracking_id, a.route_id, a.stop_id, a.stop_order, a.stop_lat,
                                            a.stop_lon, a.event_time_ms)
        s = replace(s, route_stop_ids=s.route_stop_ids | {a.stop_id})
    elif current is not None and a.event_time_ms >= current.loaded_ms:
        del parcels[a.tracking_id]
    s = replace(s, parcels=tuple(sorted(parcels.values(), key=lambda p: (p.stop_order, p.tracking_id))))
    watch, plan_events = _replan(s, watch, a.event_time_ms, rules)
    emits.extend(plan_events)
    s = replace(s, watch=watch)
    return _finish(s, [from_vehicle_event(e, now_ms) for e in emits], rules, operator_started_ms)


def on_timer(state: VehicleState | None, timer_ms: int, now_ms: int, rules: Rules = DEFAULT_RULES, *,
             operator_started_ms: int | None = None) -> Outcome:
    """An event-time timer fired: give it to both rules (each ignores timers not its own)."""
    if state is None:
        return Outcome(None)
    s = replace(state, timers_ms=state.timers_ms - {timer_ms})
    emits: list[Any] = []
    md = fm.on_timer(s.membership, timer_ms, rules.membership)
    for ev in md.emits:
        emits.append(ev)
        alert = from_geofence_event(ev, now_ms)
        if alert is not None:
            emits.append(alert)
    wd = vw.on_timer(s.watch, timer_ms, rules.watch)
    emits.extend(from_vehicle_event(e, now_ms) for e in wd.emits)
    s = replace(s, membership=md.state, watch=wd.state)
    if s.membership is None and s.watch is None:
        # Both rules expired the van (silent for their TTL): forget it entirely.
        return Outcome(None, tuple(emits), delete_ms=tuple(sorted(s.timers_ms)),
                       delete_processing_ms=s.processing_timer_ms)
    return _finish(s, emits, rules, operator_started_ms)


def on_processing_timer(state: VehicleState | None, now_ms: int, rules: Rules = DEFAULT_RULES, *,
                        operator_started_ms: int | None = None) -> Outcome:
    """The wall-clock silence fallback fired (udfs/vehicle_watch.py explains why it exists)."""
    if state is None:
        return Outcome(None)
    s = replace(state, processing_timer_ms=None)
    wd = vw.on_processing_timer(s.watch, now_ms, rules.watch, operator_started_ms=operator_started_ms)
    s = replace(s, watch=wd.state)
    return _finish(s, [from_vehicle_event(e, now_ms) for e in wd.emits], rules, operator_started_ms)


def status(s: VehicleState) -> str:
    w = s.watch
    if w is None:
        return MOVING
    if w.shift_ended:
        return OFF_SHIFT
    if w.signal_lost_since_ms is not None:
        return SIGNAL_LOST
    if w.stalled_since_ms is not None:
        return STALLED
    if w.deviation_since_ms is not None:
        return OFF_ROUTE
    return MOVING


def plan_points(s: VehicleState) -> tuple[tuple[float, float], ...]:
    """Origin, the stops of the parcels on board in stop order (each once), back to origin."""
    stops: dict[str, tuple[int, float, float]] = {}
    for p in s.parcels:
        stops.setdefault(p.stop_id, (p.stop_order, p.stop_lat, p.stop_lon))
    points = [(lat, lon) for _, lat, lon in sorted(stops.values())]
    if not points:
        return ()
    if s.plan_origin is not None:
        points = [s.plan_origin, *points, s.plan_origin]
    return tuple(points)


# --------------------------------------------------------------------------- internals

def _valid_point(lat: float, lon: float) -> bool:
    return math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


def plan_stop_ids(s: VehicleState) -> frozenset[str]:
    """The route's stops: every stop loaded for it, and those of the parcels on board
    (state written before ``route_stop_ids`` existed has only the latter)."""
    return s.route_stop_ids | {p.stop_id for p in s.parcels}


def _replan(s: VehicleState, watch: vw.WatchState | None, at_ms: int, rules: Rules):
    points, stop_ids = plan_points(s), plan_stop_ids(s)
    # With every parcel delivered there is no path left to deviate from, but the route's
    # stops are still the van's own until a new route or the shift end.
    plan = vw.RoutePlan(s.route_id, points, stop_ids) if (points or stop_ids) and s.route_id else None
    current = watch.plan if watch is not None else None
    if plan == current:
        return watch, []
    d = vw.set_plan(watch, s.vehicle_id, plan, at_ms, rules.watch)
    return d.state, list(d.emits)


def _track_shift(s: VehicleState, watch: vw.WatchState | None, ev: fm.GeofenceEvent, now_ms: int,
                 rules: Rules):
    """Leaving a depot on shift and coming back into one ends the shift."""
    if ev.kind != "DEPOT" or ev.interpolated or ev.reason != fm.OBSERVED:
        return s, watch, []
    on_shift = watch is None or not watch.shift_ended
    if ev.event_type == fm.EXIT and on_shift:
        return replace(s, left_depot_ms=ev.event_time_ms), watch, []
    if ev.event_type == fm.ENTER and on_shift and s.left_depot_ms is not None \
            and ev.event_time_ms >= s.left_depot_ms:
        d = vw.set_shift(watch, s.vehicle_id, True, rules.watch)
        s = replace(s, parcels=(), route_stop_ids=frozenset(), left_depot_ms=None, plan_origin=None)
        watch, events = _replan(s, d.state, ev.event_time_ms, rules)
        return s, watch, [from_vehicle_event(e, now_ms) for e in events]
    return s, watch, []


def _geofence_scans(s: VehicleState, ev: fm.GeofenceEvent, ping: Ping) -> list[GeofenceScan]:
    if ev.kind == "CUSTOMER_STOP":
        hits = [p for p in s.parcels if ev.facility_id and p.stop_id == ev.facility_id]
        code = GEO_NEAR_DESTINATION
    elif ev.kind == "HUB":
        hits, code = list(s.parcels), GEO_ARRIVED_HUB
    else:
        return []
    lat, lon = (None, None) if ev.interpolated else (ping.lat, ping.lon)
    return [GeofenceScan(f"geo|{ev.event_id}|{p.tracking_id}", p.tracking_id, code, ev.event_time_ms,
                         ev.facility_id, ev.vehicle_id, lat, lon) for p in hits]


def _finish(s: VehicleState, emits: list[Any], rules: Rules, operator_started_ms: int | None, *,
            moved: bool = False) -> Outcome:
    emits = list(emits)
    snap = _snapshot(s, rules, moved)
    if snap is not None:
        emits.append(snap)
        s = replace(s, last_snapshot=(snap.event_time_ms, snap.status, snap.fences, snap.route_id))
    # Event-time timers: hold exactly what the two rules want.
    want = frozenset(t for t in (s.membership.expiry_timer_ms if s.membership else None,
                                 s.watch.timer_ms if s.watch else None) if t is not None)
    register, delete = tuple(sorted(want - s.timers_ms)), tuple(sorted(s.timers_ms - want))
    s = replace(s, timers_ms=want)
    # Processing-time fallback: one timer, moved only when it must fire earlier.
    due = vw.processing_deadline_ms(s.watch, rules.watch, operator_started_ms=operator_started_ms)
    have = s.processing_timer_ms
    reg_p = del_p = None
    if due is not None and (have is None or due < have):
        reg_p, del_p = due, have
        s = replace(s, processing_timer_ms=due)
    elif due is None and have is not None:
        # Off shift or parked in a depot: nothing to watch, so do not wake up for it.
        del_p = have
        s = replace(s, processing_timer_ms=None)
    return Outcome(s, tuple(emits), register, delete, reg_p, del_p)


def _snapshot(s: VehicleState, rules: Rules, moved: bool) -> VehicleSnapshot | None:
    p = s.last_ping
    if p is None:
        return None
    fences = tuple(m.geofence_id for m in s.membership.members) if s.membership else ()
    st = status(s)
    last = s.last_snapshot
    changed = last is None or (st, fences, s.route_id) != last[1:]
    due = moved and (last is None or p.event_time_ms - last[0] >= rules.vehicle.snapshot_interval_ms)
    if not (changed or due):
        return None
    return VehicleSnapshot(s.vehicle_id, p.lat, p.lon, p.speed_mps, p.heading_deg, p.accuracy_m, p.source,
                           p.event_time_ms, p.event_time_ms, fences, st, s.route_id)
