"""Per-vehicle watch: stalls, route deviations and lost signal, in event time.

Keyed by ``vehicle_id``. :func:`step` takes each ping together with the kinds of the
fences the van is currently inside (from :mod:`udfs.fence_membership`).
:func:`set_plan` and :func:`set_shift` take the planned route and the shift status.
:func:`on_timer` fires the conditions that need no ping to become true. Every
condition opens once and resolves once, and both :class:`VehicleEvent` s carry the
same ``condition_start_ms``. The alert built from them therefore keeps one id
through OPEN -> RESOLVED (see :mod:`udfs.alerts`).

VEHICLE_STALLED / VEHICLE_RESUMED
    The van is *en route* when it is on shift and not at one of *its* stops:
    inside no DEPOT or HUB fence (shared facilities, so any van may wait there) and
    inside no CUSTOMER_STOP fence of its own. A CUSTOMER_STOP fence is the van's own
    when its ``facility_id`` is one of ``plan.stop_ids``, the stops of the van's
    current route (:class:`RoutePlan`). A van that breaks down next to another
    route's customer stop is therefore still en route, and its stall is reported.
    A van with no plan, or with a plan that names no stops, does not know its stops:
    then, as before this rule, any CUSTOMER_STOP fence counts as a stop. The caller
    passes the ``facility_id`` s of the CUSTOMER_STOP fences the van is inside as
    ``customer_stop_ids``; a CUSTOMER_STOP fence without a ``facility_id`` can never
    be matched, so it is only a stop for a van without a plan.

    The first good ping of a standstill is the *anchor*. Good pings within
    ``stall_radius_m`` of the anchor keep it: parked GPS drift is not motion.
    Low-quality pings (CELL, or ``accuracy_m`` over ``max_accuracy_m``) are not
    evidence of motion, nor of standing still. VEHICLE_STALLED is raised when an
    en-route van has stayed at its anchor for ``stall_after_ms``, from a ping or
    from the timer, and the van has been *seen* there recently: the newest good
    ping is no more than ``stall_max_ping_gap_ms`` before the deadline
    ``anchor + stall_after_ms`` (a good ping at or after the deadline always is).
    Its time is ``anchor + stall_after_ms``. While the van is at a stop, the anchor
    time moves with every ping, so a long customer stop does not count as a stall
    once the van leaves.

    VEHICLE_RESUMED, with hysteresis. Once stalled, distances are measured from the
    *stall position*: the running mean of the anchor and of every good ping kept at
    it (``anchor_mean``), not from the anchor alone. A good ping farther than
    ``stall_radius_m`` from the stall position resumes the van when it is also
    beyond ``stall_radius_m + min(accuracy_m, resume_accuracy_cap_m)`` (an unknown
    accuracy counts as the cap), or when the previous good ping was beyond the
    radius too (``resume_pending_ms``). A single fix beyond the radius but within
    its own accuracy of it is held, not trusted; a good ping back within the radius
    drops it and refines the mean. The RESUMED event is dated at the ping that
    resumes; its ``condition_start_ms`` is the stall's, so the alert keeps its id.

    Why: the anchor is one fix, and usually not a fix of the parked van: it is the
    first ping farther than the radius from the previous anchor, often taken while
    the van was still rolling to a halt. geofence_accuracy (edge-jitter, seed 42)
    found a stall anchored 38 m short of where the van stood: a later 15 m GPS error
    on the far side put one fix 52 m from the anchor, which resumed the van and
    raised a second VEHICLE_STALLED for the one breakdown. The mean of 20-60 parked
    fixes sits within a few metres of the van, so drift has to exceed the radius
    from the van itself; and one outlier that does, by less than its own reported
    accuracy, resumes nothing. A van that drives off is resumed by its first good
    ping beyond the radius from where it stood (as before this rule, when the anchor
    was a fix of the parked van), or by the next good ping at the latest: two
    consecutive good pings beyond the radius always resume. Only the resume test
    uses the mean: when a stall is raised, and its condition start, are unchanged.

    Why the ping-gap rule: without it, the timer raised VEHICLE_STALLED
    ``stall_after_ms`` after the anchor even when no ping had arrived since. A van
    whose tracker dropped out while it drove on was reported stalled for the gap
    (and resumed by its next, far-away ping), and a van whose pings stopped for good
    was reported stalled before it was reported SIGNAL_LOST (with the defaults, a
    van that was driving: 5 minutes before). Cell fixes during a GPS drop-out were
    no better: the first one after the deadline raised the stall, because a
    low-quality ping keeps the anchor. A gap is not evidence of anything: a van that
    goes quiet is SIGNAL_LOST, and a stall is reported only when a good ping near the
    anchor shows the van still there. The default (2 min) tolerates a few missed
    pings of a tracker reporting every 10-30 s; a sparser tracker's stall is raised
    by its next good ping at the anchor instead of by the timer, so the rule can
    delay a stall by up to one ping interval but never hides one while pings keep
    coming. A van seen at its anchor until less than ``stall_max_ping_gap_ms``
    before the deadline and silent afterwards is still reported stalled (and later
    SIGNAL_LOST): it was observed standing for most of ``stall_after_ms``.

Driver breaks (``break_allowance_ms``, default 20 min; 0 turns the rule off)
    Working-time rules make one break part of every shift, and on the road a break
    looks exactly like a breakdown: geofence_accuracy counted ~19 VEHICLE_STALLED per
    20-van run raised during drivers' 15-30 min breaks. So the watch presumes the
    shift's first halt that starts inside the break window (``break_earliest_after_depart_ms``
    to ``break_latest_after_depart_ms`` after departure, 2 h to 3 h 30 min) to be the
    break, and gives it ``stall_after_ms + break_allowance_ms`` instead of
    ``stall_after_ms``: a halt shorter than that raises nothing, a longer one still
    raises VEHICLE_STALLED (``details.break_allowance_ms``), with the halt's start as
    condition start, only ``break_allowance_ms`` later. A *halt* here is an anchor a
    good ping shows held past the plain ``stall_after_ms`` (shorter standstills raise
    nothing anyway, so a red light does not use up the break); that halt becomes the
    break (``break_halt_ms``) and no other halt of the shift gets the allowance.
    Departure (``departed_ms``) is the first ping outside a DEPOT fence after pings
    inside one, on shift; a van never seen leaving a depot gets no allowance. A new
    shift (:func:`set_shift`) or a new departure resets both. Pings older than the
    newest are ignored, as everywhere here, so a late ping changes nothing.

    Trade-off: a breakdown that is the shift's first halt in the window is reported
    ``break_allowance_ms`` later, and not at all if it ends within
    ``stall_after_ms + break_allowance_ms`` (30 min). geofence_accuracy (seeds 42/43,
    stall rate 1.0 per van-hour, ten times the simulator's default): break alerts
    19-20 -> 2-3 per run, stall recall 100% -> 89-91% (default scenario), every
    missed stall a 15-29 min breakdown taken for the break. Counting break alerts as
    false, stall precision goes from 50-60% to 86-92%, and false plus missed alerts
    per run from ~19 to ~5. bench/results/geofence_accuracy.md has the figures.

ROUTE_DEVIATION / ROUTE_RECOVERED
    Needs a plan: a polyline of (lat, lon). A good ping farther than
    ``deviation_m`` from the polyline starts the off-route clock. ROUTE_DEVIATION is
    raised once the van has been off route for ``deviation_after_ms``, from a ping
    or from the timer. A good ping within ``deviation_m`` before then stops the
    clock. Recovery needs a good ping within ``deviation_recover_m`` (below
    ``deviation_m``), so a van driving along the threshold cannot flap. A new or
    cleared plan resolves an open deviation (``reason=PLAN_CHANGED``): the van
    deviated from a route that no longer exists.

SIGNAL_LOST / SIGNAL_RESTORED
    SIGNAL_LOST is raised ``silence_after_ms`` after the last ping, in event time.
    Its time is ``last ping + silence_after_ms``, and its condition start is the
    last ping. It is not raised for a van whose shift has ended or whose last ping
    was inside a DEPOT: vans parked overnight are silent on purpose. The next ping
    of any quality raises SIGNAL_RESTORED.

Why there is a processing-time fallback, and how the operator uses it
    Event-time timers fire when the watermark passes them. If every van on a Kafka
    partition goes quiet, for example a depot's partition at night or an upstream
    gateway outage, that partition's watermark stops. The silence timers then never
    fire, and that is exactly when SIGNAL_LOST matters most. Idleness detection on
    the source does not help: an idle partition is excluded from the watermark, so
    its own timers still wait for events. So the operator also keeps a
    **processing-time** timer at :func:`processing_deadline_ms`, which is the last
    ping's wall-clock arrival (``last_ingest_ms``, the ``now_ms`` passed to
    :func:`step`) plus ``silence_after_ms``. When that timer fires, the operator
    calls :func:`on_processing_timer` with the wall clock. The operator re-registers
    lazily: it keeps one processing timer per key, and when it fires it asks
    :func:`processing_deadline_ms` again. Both paths give the same condition start,
    the last ping's event time. Whichever fires first wins, the state records that
    the signal is lost, and the other path does nothing. After a restore from a
    savepoint, overdue processing timers fire at once, before the backlog has been
    read. So the operator passes ``operator_started_ms`` and silence is measured from
    ``max(last_ingest_ms, operator_started_ms)``. A restart does not declare the
    whole fleet silent.

Ordering
    A ping not newer than the newest one seen is ignored and counted
    (``out_of_order_pings``). A late upload cannot resume a stalled van, restore a
    signal, or reset a clock.

State and timers
    At most one event-time timer is pending (``timer_ms``). It is the earliest of the
    stall, deviation, silence and expiry deadlines. A later deadline leaves it in
    place, and :func:`on_timer` re-arms it. An earlier deadline replaces it through
    ``cancel_timers_ms``. The state is cleared by the timer once the van has sent no
    ping for ``vehicle_state_ttl_ms`` (3 days): the van has left the fleet. Any
    condition still open is closed then with ``reason=STATE_EXPIRED``, so it does
    not stay open in the alert view.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from udfs.decision import Decision
from udfs.events import Ping
from udfs.geofence import distance_m, distance_to_leg_boxes_m, distance_to_polyline_m

# Conditions (these are also the alert types) and the transitions of each.
VEHICLE_STALLED = "VEHICLE_STALLED"
ROUTE_DEVIATION = "ROUTE_DEVIATION"
SIGNAL_LOST = "SIGNAL_LOST"
OPEN, RESOLVED = "OPEN", "RESOLVED"
# Event types.
VEHICLE_RESUMED = "VEHICLE_RESUMED"
ROUTE_RECOVERED = "ROUTE_RECOVERED"
SIGNAL_RESTORED = "SIGNAL_RESTORED"
WATCH_EXPIRED = "WATCH_EXPIRED"
# Reasons in details.
PLAN_CHANGED = "PLAN_CHANGED"
STATE_EXPIRED = "STATE_EXPIRED"
EVENT_TIME = "EVENT_TIME"
PROCESSING_TIME = "PROCESSING_TIME"

# Fence kinds where standing still is the job, not a stall. Depots and hubs are shared
# facilities and count for every van; a CUSTOMER_STOP counts only when it is the van's own
# (see the module docstring and _at_a_stop).
CUSTOMER_STOP = "CUSTOMER_STOP"
SHARED_STOP_KINDS = frozenset({"DEPOT", "HUB"})
STOP_KINDS = SHARED_STOP_KINDS | {CUSTOMER_STOP}
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 86_400_000


@dataclass(frozen=True)
class WatchConfig:
    # Parked urban GPS wanders 10-30 m; 50 m separates drift from creeping traffic.
    stall_radius_m: float = 50.0
    stall_after_ms: int = 10 * MINUTE_MS
    # A stall needs a good ping at the anchor no more than this before its deadline.
    # Trackers report every 10-30 s, so 2 min is several missed pings; a longer silence
    # is no evidence the van stood still (it may have driven off unseen), and a van
    # that stops pinging altogether is SIGNAL_LOST, not stalled. A sparser tracker's
    # stall is still raised, by its next good ping at the anchor (module docstring).
    stall_max_ping_gap_ms: int = 2 * MINUTE_MS
    # Resume hysteresis (module docstring): one good fix resumes a stalled van only beyond
    # stall_radius_m plus its accuracy, at most this much (unknown accuracy counts as this);
    # a fix beyond the radius alone needs the next good fix beyond it too.
    resume_accuracy_cap_m: float = 50.0
    deviation_m: float = 500.0
    deviation_recover_m: float = 400.0
    deviation_after_ms: int = 5 * MINUTE_MS
    silence_after_ms: int = 15 * MINUTE_MS
    vehicle_state_ttl_ms: int = 3 * DAY_MS
    max_accuracy_m: float = 75.0
    unknown_accuracy_is_good: bool = True
    # Wall-clock silence for the processing-time fallback; None means silence_after_ms.
    processing_silence_after_ms: int | None = None
    # How "off route" is measured: "polyline" (distance to the planned path) when the
    # plan is the road path, "leg_boxes" (distance to each stop-to-stop leg's box, see
    # udfs.geofence.distance_to_leg_boxes_m) when the plan has only the stops.
    route_corridor: str = "polyline"
    # Driver's break (module docstring, "Driver breaks"): the first halt of a shift that
    # starts this long after the van left its depot gets break_allowance_ms on top of
    # stall_after_ms. The simulated fleet's policy: a 15-30 min break due 2-3 h after
    # departure, taken at the next halt on the road (the halt starts up to ~3 h 20 min
    # after departure). break_allowance_ms = 0 turns the rule off.
    break_allowance_ms: int = 20 * MINUTE_MS
    break_earliest_after_depart_ms: int = 2 * HOUR_MS
    break_latest_after_depart_ms: int = 3 * HOUR_MS + 30 * MINUTE_MS

    def __post_init__(self) -> None:
        if self.route_corridor not in ("polyline", "leg_boxes"):
            raise ValueError(f"route_corridor must be 'polyline' or 'leg_boxes', not {self.route_corridor!r}")
        if self.break_allowance_ms < 0 or self.break_latest_after_depart_ms < self.break_earliest_after_depart_ms:
            raise ValueError("break_allowance_ms must be >= 0 and the break window must not end before it starts")

    @property
    def wall_silence_ms(self) -> int:
        return self.silence_after_ms if self.processing_silence_after_ms is None else self.processing_silence_after_ms


DEFAULT_CONFIG = WatchConfig()


@dataclass(frozen=True)
class RoutePlan:
    route_id: str
    # Planned path as (lat, lon) vertices, in driving order; empty when there is no path
    # left to follow (no deviation check then).
    points: tuple[tuple[float, float], ...]
    # facility_id of every customer stop on this route: the van's own CUSTOMER_STOP
    # fences. Empty means "not known", and then any CUSTOMER_STOP fence is a stop.
    stop_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class VehicleEvent:
    event_type: str
    # The alert type this event opens or resolves, and which of the two it does.
    condition: str
    transition: str
    vehicle_id: str
    event_time_ms: int
    # When the condition began; shared by OPEN and RESOLVED, so it keys the alert id.
    condition_start_ms: int
    lat: float | None = None
    lon: float | None = None
    details: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class WatchState:
    vehicle_id: str
    last_event_time_ms: int | None = None
    # Wall-clock arrival of the newest ping: the processing-time silence fallback's base.
    last_ingest_ms: int | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    # Event time of the newest good ping: the evidence a stall needs (stall_max_ping_gap_ms).
    # None in state written before this field existed; last_event_time_ms stands in then.
    last_good_ms: int | None = None
    # (lat, lon, since_ms) of the standstill being measured.
    anchor: tuple[float, float, int] | None = None
    stalled_since_ms: int | None = None
    # (lat, lon, n): running mean of the anchor and the n - 1 good pings kept at it, the
    # stall position a stalled van's resume is measured from. None in state written
    # before this field existed; the anchor (n = 1) stands in then.
    anchor_mean: tuple[float, float, int] | None = None
    # Event time of a good ping beyond the radius, but within its accuracy of it, that
    # did not resume the stalled van on its own: the next good ping beyond the radius does.
    resume_pending_ms: int | None = None
    plan: RoutePlan | None = None
    off_route_since_ms: int | None = None
    deviation_since_ms: int | None = None
    signal_lost_since_ms: int | None = None
    en_route: bool = False
    in_depot: bool = False
    shift_ended: bool = False
    out_of_order_pings: int = 0
    timer_ms: int | None = None
    # Driver breaks (module docstring). Event time of the van's last departure from a
    # DEPOT fence on this shift (its first ping outside after pings inside); None until
    # it has left one, and reset by a new shift.
    departed_ms: int | None = None
    # Start (anchor time) of the halt taken to be this shift's break: only that halt gets
    # the allowance, so once it ends the break is used up. None: not taken yet.
    break_halt_ms: int | None = None


def is_good(ping: Ping, cfg: WatchConfig = DEFAULT_CONFIG) -> bool:
    if ping.source == "CELL":
        return False
    if ping.accuracy_m is None:
        return cfg.unknown_accuracy_is_good
    return ping.accuracy_m <= cfg.max_accuracy_m


def step(state: WatchState | None, ping: Ping, now_ms: int, cfg: WatchConfig = DEFAULT_CONFIG, *,
         fence_kinds: frozenset[str] = frozenset(),
         customer_stop_ids: frozenset[str] = frozenset()) -> Decision[WatchState]:
    """Fold one ping in. ``now_ms`` is its wall-clock arrival (see the fallback notes);
    ``fence_kinds`` are the kinds of the fences the van is inside right now, and
    ``customer_stop_ids`` the ``facility_id`` s of the CUSTOMER_STOP fences among them
    (which of those are the van's own is decided against ``plan.stop_ids``)."""
    s = state or WatchState(vehicle_id=ping.vehicle_id)
    t = ping.event_time_ms
    if s.last_event_time_ms is not None and t <= s.last_event_time_ms:
        return Decision(replace(s, out_of_order_pings=s.out_of_order_pings + 1))
    good = is_good(ping, cfg)
    emits: list[VehicleEvent] = []
    vid = s.vehicle_id

    if s.signal_lost_since_ms is not None:
        emits.append(_event(SIGNAL_RESTORED, SIGNAL_LOST, RESOLVED, vid, t, s.signal_lost_since_ms, ping.lat, ping.lon))
        s = replace(s, signal_lost_since_ms=None)

    en_route = not _at_a_stop(s.plan, fence_kinds, customer_stop_ids) and not s.shift_ended
    in_depot = "DEPOT" in fence_kinds
    if s.in_depot and not in_depot and not s.shift_ended:
        # Left the depot on shift: the break clock starts, and any break is still to come.
        s = replace(s, departed_ms=t, break_halt_ms=None)
    s = replace(s, en_route=en_route, in_depot=in_depot)

    # Stall.
    s, resumed = _stall_on_ping(s, ping, cfg) if good else (s, [])
    emits.extend(resumed)
    if s.anchor is not None and not en_route:
        s = replace(s, anchor=(s.anchor[0], s.anchor[1], t))
    s = replace(s, last_good_ms=t if good else s.last_good_ms)
    if good:
        s = _take_break(s, t, cfg)
    s, stalled = _check_stall(s, t, cfg)
    emits.extend(stalled)

    # Route deviation.
    if s.plan is not None and s.plan.points and not s.shift_ended:
        s, deviation = _deviation_on_ping(s, ping, good, cfg)
        emits.extend(deviation)

    s = replace(
        s,
        last_event_time_ms=t,
        last_ingest_ms=now_ms if s.last_ingest_ms is None else max(s.last_ingest_ms, now_ms),
        last_lat=ping.lat if good or s.last_lat is None else s.last_lat,
        last_lon=ping.lon if good or s.last_lon is None else s.last_lon,
    )
    return _schedule(s, emits, cfg)


def set_plan(state: WatchState | None, vehicle_id: str, plan: RoutePlan | None, at_ms: int,
             cfg: WatchConfig = DEFAULT_CONFIG) -> Decision[WatchState]:
    """Replace (or clear, with ``None``) the van's planned route, effective at ``at_ms``."""
    s = state or WatchState(vehicle_id=vehicle_id)
    if plan == s.plan:
        return Decision(s)
    emits = []
    if s.deviation_since_ms is not None:
        emits.append(_event(ROUTE_RECOVERED, ROUTE_DEVIATION, RESOLVED, s.vehicle_id, at_ms, s.deviation_since_ms,
                            s.last_lat, s.last_lon, reason=PLAN_CHANGED))
    s = replace(s, plan=plan, off_route_since_ms=None, deviation_since_ms=None)
    return _schedule(s, emits, cfg)


def set_shift(state: WatchState | None, vehicle_id: str, shift_ended: bool,
              cfg: WatchConfig = DEFAULT_CONFIG) -> Decision[WatchState]:
    """Record shift end (silence and stalls stop mattering) or a new shift start."""
    s = state or WatchState(vehicle_id=vehicle_id)
    if shift_ended != s.shift_ended:
        # Either way the next shift's departure and break are still to come.
        s = replace(s, departed_ms=None, break_halt_ms=None)
    s = replace(s, shift_ended=shift_ended, en_route=s.en_route and not shift_ended,
                off_route_since_ms=None if shift_ended else s.off_route_since_ms)
    return _schedule(s, [], cfg)


def on_timer(state: WatchState | None, timer_ms: int, cfg: WatchConfig = DEFAULT_CONFIG) -> Decision[WatchState]:
    """Event-time timer: raise whatever became due by ``timer_ms``, expire, or re-arm."""
    if state is None or timer_ms != state.timer_ms:
        return Decision(state)
    s = replace(state, timer_ms=None)
    if s.last_event_time_ms is not None and timer_ms >= s.last_event_time_ms + cfg.vehicle_state_ttl_ms:
        return Decision(None, tuple(_close_all(s, timer_ms)))
    emits: list[VehicleEvent] = []
    if _silence_watched(s) and timer_ms >= s.last_event_time_ms + cfg.silence_after_ms:
        s, lost = _lose_signal(s, EVENT_TIME, cfg)
        emits.append(lost)
    s, stalled = _check_stall(s, timer_ms, cfg)
    emits.extend(stalled)
    if s.deviation_since_ms is None and s.off_route_since_ms is not None \
            and timer_ms >= s.off_route_since_ms + cfg.deviation_after_ms:
        s, raised = _raise_deviation(s, cfg)
        emits.extend(raised)
    return _schedule(s, emits, cfg)


def on_processing_timer(state: WatchState | None, now_ms: int, cfg: WatchConfig = DEFAULT_CONFIG, *,
                        operator_started_ms: int | None = None) -> Decision[WatchState]:
    """Wall-clock fallback for SIGNAL_LOST when the watermark has stalled (module docstring).

    ``now_ms`` is the processing time the timer fired at; ``operator_started_ms`` is
    when this operator instance (re)started, so a restore cannot flood SIGNAL_LOST.
    Registers no event-time timer; the operator asks :func:`processing_deadline_ms`
    for the next processing-time one.
    """
    if state is None or state.last_ingest_ms is None or not _silence_watched(state):
        return Decision(state)
    base_ms = max(state.last_ingest_ms, operator_started_ms or state.last_ingest_ms)
    if now_ms - base_ms < cfg.wall_silence_ms:
        return Decision(state)
    s, lost = _lose_signal(state, PROCESSING_TIME, cfg, silent_for_wall_ms=str(now_ms - state.last_ingest_ms))
    return Decision(s, (lost,))


def processing_deadline_ms(state: WatchState | None, cfg: WatchConfig = DEFAULT_CONFIG, *,
                           operator_started_ms: int | None = None) -> int | None:
    """When the processing-time fallback should next look at this van; None for never."""
    if state is None or state.last_ingest_ms is None or not _silence_watched(state):
        return None
    return max(state.last_ingest_ms, operator_started_ms or state.last_ingest_ms) + cfg.wall_silence_ms


# --------------------------------------------------------------------------- internals

def _at_a_stop(plan: RoutePlan | None, fence_kinds: frozenset[str], customer_stop_ids: frozenset[str]) -> bool:
    """Whether standing still here is the job: a depot or hub, or one of the van's own stops."""
    if fence_kinds & SHARED_STOP_KINDS:
        return True
    if CUSTOMER_STOP not in fence_kinds:
        return False
    own = plan.stop_ids if plan is not None else frozenset()
    # No plan naming its stops: the van cannot tell its stops from others', so any counts.
    return not own or bool(customer_stop_ids & own)


def _stall_on_ping(s: WatchState, ping: Ping, cfg: WatchConfig) -> tuple[WatchState, list[VehicleEvent]]:
    """Fold a good ping into the standstill: keep or move the anchor, refine the stall
    position, and resume a stalled van (hysteresis: module docstring)."""
    t, anchor = ping.event_time_ms, s.anchor
    if anchor is None:
        return _new_anchor(s, ping), []
    mean = s.anchor_mean or (anchor[0], anchor[1], 1)
    if s.stalled_since_ms is None:
        # Not stalled: the anchor itself is the reference, as before the hysteresis.
        if distance_m(anchor[0], anchor[1], ping.lat, ping.lon) > cfg.stall_radius_m:
            return _new_anchor(s, ping), []
        return replace(s, anchor_mean=_mean_with(mean, ping)), []
    away_m = distance_m(mean[0], mean[1], ping.lat, ping.lon)
    if away_m <= cfg.stall_radius_m:
        return replace(s, anchor_mean=_mean_with(mean, ping), resume_pending_ms=None), []
    if away_m > cfg.stall_radius_m + _accuracy_margin_m(ping, cfg):
        rule = "BEYOND_ACCURACY"
    elif s.resume_pending_ms is not None:
        rule = "SECOND_FIX"
    else:
        return replace(s, resume_pending_ms=t), []
    event = _event(VEHICLE_RESUMED, VEHICLE_STALLED, RESOLVED, s.vehicle_id, t, s.stalled_since_ms, ping.lat,
                   ping.lon, distance_m=f"{away_m:.0f}", resume_rule=rule)
    return _new_anchor(replace(s, stalled_since_ms=None), ping), [event]


def _new_anchor(s: WatchState, ping: Ping) -> WatchState:
    return replace(s, anchor=(ping.lat, ping.lon, ping.event_time_ms), anchor_mean=(ping.lat, ping.lon, 1),
                   resume_pending_ms=None)


def _mean_with(mean: tuple[float, float, int], ping: Ping) -> tuple[float, float, int]:
    lat, lon, n = mean
    return lat + (ping.lat - lat) / (n + 1), lon + (ping.lon - lon) / (n + 1), n + 1


def _accuracy_margin_m(ping: Ping, cfg: WatchConfig) -> float:
    """How far beyond the radius one fix must be to resume on its own."""
    if ping.accuracy_m is None:
        return cfg.resume_accuracy_cap_m
    return min(ping.accuracy_m, cfg.resume_accuracy_cap_m)


def _stall_deadline_ms(s: WatchState, cfg: WatchConfig) -> int | None:
    """When the standstill becomes a stall; None when it cannot (not en route, already
    stalled, no anchor) or when no good ping has been seen close enough to it."""
    a = s.anchor
    if not s.en_route or s.stalled_since_ms is not None or a is None:
        return None
    due = a[2] + cfg.stall_after_ms + (cfg.break_allowance_ms if _may_be_break(s, cfg) else 0)
    seen_ms = s.last_good_ms if s.last_good_ms is not None else s.last_event_time_ms
    if seen_ms is None or due - seen_ms > cfg.stall_max_ping_gap_ms:
        # Not seen at the anchor near the deadline: only a later good ping can tell.
        return None
    return due


def _may_be_break(s: WatchState, cfg: WatchConfig) -> bool:
    """Whether the current halt is (still) presumed to be the shift's break: it started
    inside the break window after departure, and no other halt has been taken for it."""
    a = s.anchor
    if cfg.break_allowance_ms <= 0 or a is None or s.departed_ms is None:
        return False
    if s.break_halt_ms is not None and s.break_halt_ms != a[2]:
        return False
    return cfg.break_earliest_after_depart_ms <= a[2] - s.departed_ms <= cfg.break_latest_after_depart_ms


def _take_break(s: WatchState, seen_ms: int, cfg: WatchConfig) -> WatchState:
    """A good ping at ``seen_ms`` shows the van still at its halt: once that is past the
    plain stall deadline and the halt may be the break, the break is this halt."""
    a = s.anchor
    if (s.break_halt_ms is None and s.en_route and s.stalled_since_ms is None and a is not None
            and seen_ms >= a[2] + cfg.stall_after_ms and _may_be_break(s, cfg)):
        return replace(s, break_halt_ms=a[2])
    return s


def _silence_watched(s: WatchState) -> bool:
    return (s.last_event_time_ms is not None and s.signal_lost_since_ms is None
            and not s.shift_ended and not s.in_depot)


def _lose_signal(s: WatchState, detected_by: str, cfg: WatchConfig, **details: str) -> tuple[WatchState, VehicleEvent]:
    since = s.last_event_time_ms
    event = _event(SIGNAL_LOST, SIGNAL_LOST, OPEN, s.vehicle_id, since + cfg.silence_after_ms, since,
                   s.last_lat, s.last_lon, detected_by=detected_by, last_ping_ms=str(since), **details)
    return replace(s, signal_lost_since_ms=since), event


def _check_stall(s: WatchState, at_ms: int, cfg: WatchConfig) -> tuple[WatchState, list[VehicleEvent]]:
    due = _stall_deadline_ms(s, cfg)
    if due is None or at_ms < due:
        return s, []
    a = s.anchor
    details = {"stall_radius_m": str(cfg.stall_radius_m)}
    if due > a[2] + cfg.stall_after_ms:
        details["break_allowance_ms"] = str(due - a[2] - cfg.stall_after_ms)
    event = _event(VEHICLE_STALLED, VEHICLE_STALLED, OPEN, s.vehicle_id, due, a[2], a[0], a[1], **details)
    if "break_allowance_ms" in details:
        s = replace(s, break_halt_ms=a[2])
    return replace(s, stalled_since_ms=a[2]), [event]


def _deviation_on_ping(s: WatchState, ping: Ping, good: bool, cfg: WatchConfig) -> tuple[WatchState, list[VehicleEvent]]:
    t = ping.event_time_ms
    measure = distance_to_leg_boxes_m if cfg.route_corridor == "leg_boxes" else distance_to_polyline_m
    off_m = measure(ping.lat, ping.lon, s.plan.points)
    if s.deviation_since_ms is not None:
        if good and off_m <= cfg.deviation_recover_m:
            event = _event(ROUTE_RECOVERED, ROUTE_DEVIATION, RESOLVED, s.vehicle_id, t, s.deviation_since_ms,
                           ping.lat, ping.lon, route_id=s.plan.route_id, distance_m=f"{off_m:.0f}")
            return replace(s, deviation_since_ms=None, off_route_since_ms=None), [event]
        return s, []
    if off_m <= cfg.deviation_m:
        return (replace(s, off_route_since_ms=None) if good else s), []
    if s.off_route_since_ms is None:
        if not good:
            return s, []
        s = replace(s, off_route_since_ms=t)
    if t - s.off_route_since_ms < cfg.deviation_after_ms:
        return s, []
    return _raise_deviation(s, cfg, lat=ping.lat, lon=ping.lon, off_m=off_m)


def _raise_deviation(s: WatchState, cfg: WatchConfig, *, lat: float | None = None, lon: float | None = None,
                     off_m: float | None = None) -> tuple[WatchState, list[VehicleEvent]]:
    since = s.off_route_since_ms
    details = {"route_id": s.plan.route_id}
    if off_m is not None:
        details["distance_m"] = f"{off_m:.0f}"
    event = _event(ROUTE_DEVIATION, ROUTE_DEVIATION, OPEN, s.vehicle_id, since + cfg.deviation_after_ms, since,
                   s.last_lat if lat is None else lat, s.last_lon if lon is None else lon, **details)
    return replace(s, deviation_since_ms=since), [event]


def _close_all(s: WatchState, at_ms: int) -> list[VehicleEvent]:
    open_conditions = [(VEHICLE_STALLED, s.stalled_since_ms), (ROUTE_DEVIATION, s.deviation_since_ms),
                       (SIGNAL_LOST, s.signal_lost_since_ms)]
    return [_event(WATCH_EXPIRED, cond, RESOLVED, s.vehicle_id, at_ms, since, s.last_lat, s.last_lon,
                   reason=STATE_EXPIRED)
            for cond, since in open_conditions if since is not None]


def _next_deadline(s: WatchState, cfg: WatchConfig) -> int | None:
    if s.last_event_time_ms is None:
        return None
    due = [s.last_event_time_ms + cfg.vehicle_state_ttl_ms]
    if _silence_watched(s):
        due.append(s.last_event_time_ms + cfg.silence_after_ms)
    stall_ms = _stall_deadline_ms(s, cfg)
    if stall_ms is not None:
        due.append(stall_ms)
    if s.deviation_since_ms is None and s.off_route_since_ms is not None:
        due.append(s.off_route_since_ms + cfg.deviation_after_ms)
    return min(due)


def _schedule(s: WatchState, emits: list[VehicleEvent], cfg: WatchConfig) -> Decision[WatchState]:
    """Keep exactly one pending timer, no later than the earliest deadline."""
    want = _next_deadline(s, cfg)
    have = s.timer_ms
    if want is None or (have is not None and have <= want):
        # A timer that fires early just re-arms; moving it on every ping would churn timer state.
        return Decision(s, tuple(emits))
    cancel = (have,) if have is not None else ()
    return Decision(replace(s, timer_ms=want), tuple(emits), timer_ms=want, cancel_timers_ms=cancel)


def _event(event_type: str, condition: str, transition: str, vehicle_id: str, at_ms: int, since_ms: int,
           lat: float | None, lon: float | None, **details: str) -> VehicleEvent:
    return VehicleEvent(event_type, condition, transition, vehicle_id, at_ms, since_ms, lat, lon,
                        {k: str(v) for k, v in details.items()})
