"""The shipment lifecycle: one keyed state machine per tracking_id, in event time.

``step(state, scan, now_ms, cfg)`` folds one normalised scan into the shipment's state;
``on_timer(state, timer_ms, cfg)`` handles the shipment's single pending timer;
``apply_plan(state, plan, now_ms, cfg)`` folds in the order system's plan (service level,
promised window, order, carriers per leg). All three return a ``Decision``.

Rules, in the order ``step`` applies them:

1. Duplicate ``event_id`` (among the last ``cfg.dedup_window`` seen): ignored, no emits.
2. OUT_FOR_DELIVERY or ATTEMPT_FAIL before any IN_TRANSIT scan: parked in the state
   (at most ``cfg.max_parked``) with an INVALID_TRANSITION record marked ``parked``, and
   retried as soon as an IN_TRANSIT scan has been seen, so shuffled journeys converge.
3. Late scan (event time older than the newest applied scan): recorded in history with
   ``late=True`` and as a LATE_EVENT data-quality record; it never regresses the status.
   A late scan is applied only where in-order processing would have kept it and refused
   the newer scans (``_late_but_decisive``: a DELIVERED, a return reaching the sender, a
   return under newer movement, a first movement after a label).
4. Illegal transition (``ALLOWED`` table, checked per leg, plus shipment-wide rules):
   an INVALID_TRANSITION data-quality record; state is not overwritten.
5. Otherwise the scan updates its leg, the shipment status is re-derived from the legs
   (``derive_status``), and history, state-change, audit and handoff records are emitted.

State: ``ShipmentState``. At most one event-time timer is pending per shipment
(``state.timer_ms``/``timer_kind``), so superseding one always means cancelling exactly
one other:

* STUCK  at stuck_since_ms + cfg limit for (status, service level): raises SHIPMENT_STUCK.
* EXPIRE at last scan + cfg.idle_expiry_ms: the shipment becomes EXPIRED (AfterShip's
  meaning: no news for 30 days), which is terminal.
* RETAIN at terminal time + cfg.terminal_retention_ms: state is cleared. It is kept
  that long so late scans are still deduplicated and recorded rather than starting a
  fresh, wrong shipment.
* DISCARD at the oldest parked scan + cfg.park_timeout_ms, only while nothing has been
  applied yet (version 0): the parked scans are given up and the state is cleared.

Leg 0 means "the shipment's current leg" (geofence-derived scans from the vehicle job):
the scan is applied to that leg under that leg's carrier, and its source (GEOFENCE) is
what the audit row records.

``now_ms`` is processing time. Rules run on event time, so ``step`` does not use it; it
is kept for the shared rule shape and used by ``apply_plan`` when a plan has no time.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from udfs.decision import Decision
from udfs.dedup import KEY_SEPARATOR
from udfs.normalise import NormalisedScan
from udfs.taxonomy import DEFAULT_DETAIL, PRE_TRANSIT, Detail, Status, is_terminal

S, D = Status, Detail

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

SERVICE_STANDARD = "STANDARD"
# Wildcard service level in stuck limits: applies where no level-specific limit exists.
ANY_SERVICE = "*"

DEFAULT_STUCK_LIMITS_MS: dict[tuple[Status, str], int] = {
    (S.PENDING, ANY_SERVICE): 72 * HOUR_MS,
    (S.INFO_RECEIVED, ANY_SERVICE): 72 * HOUR_MS,
    (S.IN_TRANSIT, ANY_SERVICE): 48 * HOUR_MS,
    (S.IN_TRANSIT, "SAME_DAY"): 8 * HOUR_MS,
    (S.IN_TRANSIT, "NEXT_DAY"): 24 * HOUR_MS,
    (S.IN_TRANSIT, "EXPRESS"): 24 * HOUR_MS,
    (S.IN_TRANSIT, "STANDARD"): 48 * HOUR_MS,
    (S.IN_TRANSIT, "ECONOMY"): 96 * HOUR_MS,
    (S.OUT_FOR_DELIVERY, ANY_SERVICE): 12 * HOUR_MS,
    (S.ATTEMPT_FAIL, ANY_SERVICE): 24 * HOUR_MS,
    (S.EXCEPTION, ANY_SERVICE): 24 * HOUR_MS,
    # Carriers hold parcels for collection about a week before returning them.
    (S.AVAILABLE_FOR_PICKUP, ANY_SERVICE): 7 * DAY_MS,
    (S.RETURN_TO_SENDER, ANY_SERVICE): 14 * DAY_MS,
}
DEFAULT_TERMINAL_RETENTION_MS = 7 * DAY_MS
DEFAULT_IDLE_EXPIRY_MS = 30 * DAY_MS
# A parcel sees tens of scans; 64 ids cover a full journey plus carrier re-sends.
DEFAULT_DEDUP_WINDOW = 64
# Refused-for-now scans kept for a retry. A journey has one delivery round, maybe two.
DEFAULT_MAX_PARKED = 8
# How long a shipment made only of parked scans waits for its IN_TRANSIT scan.
DEFAULT_PARK_TIMEOUT_MS = 3 * DAY_MS
# Leg number that stands for "whatever leg the shipment is on now".
CURRENT_LEG = 0

# Data-quality record types.
INVALID_TRANSITION = "INVALID_TRANSITION"
LATE_EVENT = "LATE_EVENT"
# Alert type and states (the alerts topic upserts on alert_id through OPEN -> RESOLVED).
SHIPMENT_STUCK = "SHIPMENT_STUCK"
ALERT_OPEN = "OPEN"
ALERT_RESOLVED = "RESOLVED"
# Timer kinds.
TIMER_STUCK = "STUCK"
TIMER_EXPIRE = "EXPIRE"
TIMER_RETAIN = "RETAIN"
TIMER_DISCARD = "DISCARD"
# Audit source for changes FleetFlow makes itself rather than a scan.
SOURCE_TIMER = "FLEETFLOW_TIMER"
SOURCE_PLAN = "PLAN"

_MOVING = frozenset({S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.ATTEMPT_FAIL, S.DELIVERED, S.AVAILABLE_FOR_PICKUP,
                     S.EXCEPTION, S.RETURN_TO_SENDER})

# Legal next statuses per leg. Staying in the same status (a new detail) is always legal
# except after RETURNED. OUT_FOR_DELIVERY and ATTEMPT_FAIL also need an earlier
# IN_TRANSIT scan (``_NEEDS_MOVEMENT``).
ALLOWED: dict[Status, frozenset[Status]] = {
    S.PENDING: _MOVING - {S.ATTEMPT_FAIL} | {S.INFO_RECEIVED, S.CANCELLED, S.EXPIRED},
    S.INFO_RECEIVED: _MOVING - {S.ATTEMPT_FAIL} | {S.CANCELLED, S.EXPIRED},
    S.IN_TRANSIT: _MOVING | {S.EXPIRED},
    # Back to IN_TRANSIT: the van returned the parcel to the depot.
    S.OUT_FOR_DELIVERY: _MOVING,
    S.ATTEMPT_FAIL: _MOVING | {S.EXPIRED},
    S.AVAILABLE_FOR_PICKUP: _MOVING - {S.ATTEMPT_FAIL} | {S.EXPIRED},
    S.EXCEPTION: _MOVING | {S.CANCELLED, S.EXPIRED},
    # Delivered is final except for a return (refused after the fact, recalled).
    S.DELIVERED: frozenset({S.RETURN_TO_SENDER}),
    # A fresh scan after FleetFlow gave up on a shipment revives it.
    S.EXPIRED: _MOVING,
    # Movement during a return is absorbed into RETURN_TO_SENDER before this check.
    S.RETURN_TO_SENDER: frozenset({S.EXCEPTION}),
    S.CANCELLED: frozenset(),
}

# A delivery round, or an attempt at one, needs the parcel to have moved first. Checked
# for the shipment (any leg), so a last-mile carrier may start with OUT_FOR_DELIVERY.
_NEEDS_MOVEMENT = frozenset({S.OUT_FOR_DELIVERY, S.ATTEMPT_FAIL})

# Statuses that, while a leg is travelling back to the sender, mean "still returning".
_RETURN_MOVEMENT = frozenset({S.INFO_RECEIVED, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.ATTEMPT_FAIL,
                              S.AVAILABLE_FOR_PICKUP})


@dataclass(frozen=True)
class LifecycleConfig:
    stuck_limits_ms: Mapping[tuple[Status, str], int] = field(
        default_factory=lambda: dict(DEFAULT_STUCK_LIMITS_MS), hash=False)
    terminal_retention_ms: int = DEFAULT_TERMINAL_RETENTION_MS
    idle_expiry_ms: int = DEFAULT_IDLE_EXPIRY_MS
    dedup_window: int = DEFAULT_DEDUP_WINDOW
    max_parked: int = DEFAULT_MAX_PARKED
    park_timeout_ms: int = DEFAULT_PARK_TIMEOUT_MS

    def stuck_limit_ms(self, status: Status, service_level: str) -> int | None:
        limit = self.stuck_limits_ms.get((status, service_level))
        return limit if limit is not None else self.stuck_limits_ms.get((status, ANY_SERVICE))

    @staticmethod
    def from_mapping(overrides: Mapping[str, Any]) -> "LifecycleConfig":
        """Defaults overridden from config, e.g. ``{"terminal_retention_ms": ...,
        "stuck_limits_ms": {"IN_TRANSIT": {"EXPRESS": 86400000, "*": 172800000}}}``.
        Stuck limits merge into the defaults; a limit of 0 or null removes one."""
        limits = dict(DEFAULT_STUCK_LIMITS_MS)
        for status_name, per_level in (overrides.get("stuck_limits_ms") or {}).items():
            status = Status(status_name)
            for level, limit in per_level.items():
                if limit:
                    limits[(status, level)] = int(limit)
                else:
                    limits.pop((status, level), None)
        base = LifecycleConfig()
        return LifecycleConfig(
            stuck_limits_ms=limits,
            terminal_retention_ms=int(overrides.get("terminal_retention_ms", base.terminal_retention_ms)),
            idle_expiry_ms=int(overrides.get("idle_expiry_ms", base.idle_expiry_ms)),
            dedup_window=int(overrides.get("dedup_window", base.dedup_window)),
            max_parked=int(overrides.get("max_parked", base.max_parked)),
            park_timeout_ms=int(overrides.get("park_timeout_ms", base.park_timeout_ms)),
        )


DEFAULT_CONFIG = LifecycleConfig()


# ---------------------------------------------------------------- state

@dataclass(frozen=True)
class LegState:
    """One hop of the shipment. ``status`` is None for a leg known only from the plan."""

    carrier: str | None = None
    status: Status | None = None
    detail: Detail | None = None
    last_event_time_ms: int | None = None
    # Set once the leg turns back to the sender; later movement is the return trip.
    returning: bool = False


@dataclass(frozen=True)
class ShipmentState:
    tracking_id: str
    status: Status = S.PENDING
    detail: Detail = D.AWAITING_INFO
    # Event time the status last changed (time-in-status is measured from here).
    status_since_ms: int = 0
    # Event time the status or detail last changed: the stuck clock. A new facility scan
    # is progress even though the status stays IN_TRANSIT.
    stuck_since_ms: int = 0
    # Newest applied scan; None until the first scan (a plan-only shipment).
    last_event_time_ms: int | None = None
    last_event_id: str | None = None
    leg: int = 1
    legs: Mapping[int, LegState] = field(default_factory=dict, hash=False)
    seen_in_transit: bool = False
    # Highest leg a Handoff was emitted for, so a handoff scan and the first scan of the
    # next leg do not both announce it.
    handed_off_to_leg: int = 1
    recent_event_ids: tuple[str, ...] = ()
    service_level: str = SERVICE_STANDARD
    order_id: str | None = None
    shipment_id: str | None = None
    promised_start_ms: int | None = None
    promised_end_ms: int | None = None
    plan_version: int = 0
    planned_leg_count: int = 0
    timer_ms: int | None = None
    timer_kind: str | None = None
    stuck_alerted: bool = False
    # Soft delete: CANCELLED shipments stay for audit but are hidden from customers.
    deleted: bool = False
    # Bumped on every StateChanged; sinks keep the highest, so replays cannot go backwards.
    # 0 means nothing has been applied yet: the state holds only parked scans.
    version: int = 0
    # Scans refused only for want of an earlier IN_TRANSIT, oldest first (see step, rule 2).
    parked: tuple[NormalisedScan, ...] = ()
    # Where the newest applied scan was, when it said (kept from older scans otherwise).
    last_facility_id: str | None = None
    last_lat: float | None = None
    last_lon: float | None = None

    @property
    def carrier(self) -> str | None:
        leg = self.legs.get(self.leg)
        return leg.carrier if leg else None


# ---------------------------------------------------------------- emits

@dataclass(frozen=True)
class HistoryRow:
    tracking_id: str
    event_time_ms: int
    event_id: str
    status: Status
    detail: Detail
    carrier: str
    leg: int
    raw_code: str
    source: str
    late: bool
    raw_text: str = ""
    facility_id: str | None = None
    hidden_from_customers: bool = False


@dataclass(frozen=True)
class StateChanged:
    """Snapshot of the shipment after a change, for the Redis/Cassandra current state."""

    tracking_id: str
    status: Status
    detail: Detail
    prev_status: Status | None
    prev_detail: Detail | None
    status_since_ms: int
    last_event_time_ms: int | None
    event_id: str
    carrier: str | None
    leg: int
    legs: tuple[tuple[int, LegState], ...]
    service_level: str
    order_id: str | None
    promised_start_ms: int | None
    promised_end_ms: int | None
    terminal: bool
    deleted: bool
    hidden_from_customers: bool
    version: int
    # Event time of what caused the change: the scan, the plan, or the timer.
    event_time_ms: int = 0
    last_event_id: str | None = None
    last_facility_id: str | None = None
    last_lat: float | None = None
    last_lon: float | None = None


@dataclass(frozen=True)
class AuditRow:
    tracking_id: str
    changed_time_ms: int
    event_id: str
    prev_status: Status | None
    new_status: Status
    prev_detail: Detail | None
    new_detail: Detail
    source: str
    version: int


@dataclass(frozen=True)
class DataQuality:
    type: str
    tracking_id: str
    event_id: str
    details: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Handoff:
    tracking_id: str
    event_id: str
    event_time_ms: int
    from_leg: int
    to_leg: int
    from_carrier: str | None
    to_carrier: str | None


@dataclass(frozen=True)
class ShipmentAlert:
    type: str
    # Stable across OPEN -> RESOLVED so the alerts sink upserts instead of duplicating.
    alert_id: str
    tracking_id: str
    status: Status
    detail: Detail
    since_ms: int
    timer_ms: int
    limit_ms: int
    service_level: str
    carrier: str | None
    leg: int
    order_id: str | None
    state: str = ALERT_OPEN
    # Event time of the evidence: the timer for OPEN, the resolving change for RESOLVED.
    event_time_ms: int = 0


# ---------------------------------------------------------------- plan input

@dataclass(frozen=True)
class ShipmentPlan:
    """The part of an OrderPlan (``avro/plans.avsc``) that concerns one tracking_id."""

    tracking_id: str
    order_id: str | None = None
    shipment_id: str | None = None
    plan_version: int = 1
    service_level: str = SERVICE_STANDARD
    promised_start_ms: int | None = None
    promised_end_ms: int | None = None
    leg_carriers: tuple[tuple[int, str], ...] = ()
    plan_time_ms: int | None = None

    @staticmethod
    def from_record(r: Mapping[str, Any]) -> "ShipmentPlan":
        legs = r.get("leg_carriers") or r.get("legs") or ()
        pairs = tuple(sorted((int(x["leg"]), str(x["carrier"])) if isinstance(x, Mapping) else (int(x[0]), str(x[1]))
                             for x in legs))
        return ShipmentPlan(
            tracking_id=r["tracking_id"], order_id=r.get("order_id"), shipment_id=r.get("shipment_id"),
            plan_version=int(r.get("plan_version") or 1),
            service_level=r.get("service_level") or SERVICE_STANDARD,
            promised_start_ms=r.get("promised_start_ms", r.get("promised_window_start_ms")),
            promised_end_ms=r.get("promised_end_ms", r.get("promised_window_end_ms")),
            leg_carriers=pairs, plan_time_ms=r.get("plan_time_ms", r.get("order_time_ms")))


def plans_from_order(order_plan: Mapping[str, Any]) -> list[ShipmentPlan]:
    """Flatten one OrderPlan record into per-package plans, ready to key by tracking_id."""
    out: list[ShipmentPlan] = []
    for shipment in order_plan.get("shipments") or ():
        legs = tuple(sorted((int(leg["leg"]), str(leg["carrier"])) for leg in shipment.get("legs") or ()))
        for package in shipment.get("packages") or ():
            out.append(ShipmentPlan(
                tracking_id=package["tracking_id"], order_id=order_plan.get("order_id"),
                shipment_id=shipment.get("shipment_id"), plan_version=int(order_plan.get("plan_version") or 1),
                service_level=shipment.get("service_level") or SERVICE_STANDARD,
                promised_start_ms=shipment.get("promised_window_start_ms"),
                promised_end_ms=shipment.get("promised_window_end_ms"),
                leg_carriers=legs, plan_time_ms=order_plan.get("order_time_ms")))
    return out


# ---------------------------------------------------------------- pure helpers

def derive_status(legs: Mapping[int, LegState], planned_leg_count: int = 0) -> tuple[Status, Detail, int]:
    """Shipment (status, detail, current leg) from its legs.

    The current leg is the highest-numbered leg that has physically moved (a label
    created by the next carrier does not make that leg current). A DELIVERED current
    leg that is not the final leg means "handed to the next carrier". An EXCEPTION on
    an earlier leg that is newer than anything on the current leg still shows: the
    later leg has not progressed since.
    """
    scanned = {n: leg for n, leg in legs.items() if leg.status is not None}
    if not scanned:
        return S.PENDING, D.AWAITING_INFO, 1
    moved = [n for n, leg in scanned.items() if leg.status not in PRE_TRANSIT]
    current = max(moved) if moved else max(scanned)
    leg = scanned[current]
    assert leg.status is not None and leg.detail is not None
    for n in sorted(scanned, reverse=True):
        earlier = scanned[n]
        if (n < current and earlier.status is S.EXCEPTION and earlier.detail is not None
                and (earlier.last_event_time_ms or 0) > (leg.last_event_time_ms or 0)):
            return S.EXCEPTION, earlier.detail, n
    final_leg = max(planned_leg_count, max(scanned))
    if leg.status is S.DELIVERED and current < final_leg:
        return S.IN_TRANSIT, D.HANDOFF_TO_CARRIER, current
    return leg.status, leg.detail, current


def _effective_pair(leg: LegState, status: Status, detail: Detail) -> tuple[Status, Detail]:
    """What a scan means on this leg: while returning, movement is the return trip and a
    delivery is the delivery back to the sender."""
    if not leg.returning:
        return status, detail
    if status is S.DELIVERED:
        return S.RETURN_TO_SENDER, D.RETURNED
    if status in _RETURN_MOVEMENT:
        return S.RETURN_TO_SENDER, D.RETURN_TO_SENDER
    return status, detail


def _rejection(state: ShipmentState, leg: LegState, status: Status, detail: Detail, leg_no: int) -> str | None:
    """Why this scan may not be applied, or None if it may."""
    if state.status is S.CANCELLED and status is not S.CANCELLED:
        return "shipment is cancelled"
    if state.status is S.RETURN_TO_SENDER and state.detail is D.RETURNED and (status, detail) != (
            S.RETURN_TO_SENDER, D.RETURNED):
        return "shipment was returned to the sender"
    if status in _NEEDS_MOVEMENT and not state.seen_in_transit:
        return f"{status.value} before any IN_TRANSIT scan"
    scanned_legs = [n for n, lg in state.legs.items() if lg.status is not None]
    if (state.status is S.DELIVERED and scanned_legs and leg_no > max(scanned_legs)
            and state.planned_leg_count and leg_no > state.planned_leg_count):
        return "shipment was delivered on its final planned leg"
    if leg.status is None:
        return None
    if leg.status is status:
        if (leg.status, leg.detail) == (S.RETURN_TO_SENDER, D.RETURNED) and detail is not D.RETURNED:
            return "leg was returned to the sender"
        return None
    if status not in ALLOWED[leg.status]:
        return f"{leg.status.value} -> {status.value} is not a legal transition"
    return None


def _seen_id(event: NormalisedScan) -> str:
    """Event ids are the producer's: two carriers of one shipment (a leg handover) can both
    send "evt-1", so a scan is remembered by carrier and id, as the ingest dedup keys it."""
    return f"{event.carrier}{KEY_SEPARATOR}{event.event_id}"


def _remember(ids: tuple[str, ...], event_id: str, window: int) -> tuple[str, ...]:
    return (ids + (event_id,))[-window:] if window > 0 else ()


def _history(ev: NormalisedScan, late: bool, hidden: bool, status: Status | None = None,
             detail: Detail | None = None) -> HistoryRow:
    return HistoryRow(ev.tracking_id, ev.event_time_ms, ev.event_id, status or ev.status, detail or ev.detail,
                      ev.carrier, ev.leg, ev.raw_code, ev.source, late, ev.raw_text, ev.facility_id, hidden)


def _snapshot(s: ShipmentState, prev_status: Status | None, prev_detail: Detail | None, event_id: str,
              at_ms: int) -> StateChanged:
    return StateChanged(
        tracking_id=s.tracking_id, status=s.status, detail=s.detail, prev_status=prev_status,
        prev_detail=prev_detail, status_since_ms=s.status_since_ms, last_event_time_ms=s.last_event_time_ms,
        event_id=event_id, carrier=s.carrier, leg=s.leg, legs=tuple(sorted(s.legs.items())),
        service_level=s.service_level, order_id=s.order_id, promised_start_ms=s.promised_start_ms,
        promised_end_ms=s.promised_end_ms, terminal=is_terminal(s.status, s.detail), deleted=s.deleted,
        hidden_from_customers=s.deleted, version=s.version, event_time_ms=at_ms, last_event_id=s.last_event_id,
        last_facility_id=s.last_facility_id, last_lat=s.last_lat, last_lon=s.last_lon)


def _alert(s: ShipmentState, timer_ms: int, limit_ms: int, alert_state: str, at_ms: int) -> ShipmentAlert:
    return ShipmentAlert(
        type=SHIPMENT_STUCK, alert_id=f"{SHIPMENT_STUCK}:{s.tracking_id}:{s.stuck_since_ms}",
        tracking_id=s.tracking_id, status=s.status, detail=s.detail, since_ms=s.stuck_since_ms, timer_ms=timer_ms,
        limit_ms=limit_ms, service_level=s.service_level, carrier=s.carrier, leg=s.leg, order_id=s.order_id,
        state=alert_state, event_time_ms=at_ms)


def _desired_timer(s: ShipmentState, cfg: LifecycleConfig) -> tuple[str, int]:
    if s.version == 0 and s.parked:
        return TIMER_DISCARD, s.parked[0].event_time_ms + cfg.park_timeout_ms
    if is_terminal(s.status, s.detail):
        return TIMER_RETAIN, s.status_since_ms + cfg.terminal_retention_ms
    limit = cfg.stuck_limit_ms(s.status, s.service_level)
    if limit and not s.stuck_alerted:
        return TIMER_STUCK, s.stuck_since_ms + limit
    last = s.last_event_time_ms if s.last_event_time_ms is not None else s.stuck_since_ms
    return TIMER_EXPIRE, max(last, s.stuck_since_ms) + cfg.idle_expiry_ms


def _with_timer(s: ShipmentState, emits: Iterable[Any], cfg: LifecycleConfig) -> Decision[ShipmentState]:
    """Decision that moves the shipment's one timer to where the rules want it."""
    kind, at_ms = _desired_timer(s, cfg)
    if (kind, at_ms) == (s.timer_kind, s.timer_ms):
        return Decision(s, tuple(emits))
    old = s.timer_ms
    new = replace(s, timer_kind=kind, timer_ms=at_ms)
    if old == at_ms:
        return Decision(new, tuple(emits))
    return Decision(new, tuple(emits), timer_ms=at_ms, cancel_timers_ms=() if old is None else (old,))


def _change(before: ShipmentState, after: ShipmentState, at_ms: int, event_id: str, source: str,
            cfg: LifecycleConfig) -> tuple[ShipmentState, list[Any]]:
    """Bookkeeping shared by every status/detail change: clocks, version, soft delete,
    alert resolution, and the state-changed and audit records."""
    status_changed = after.status is not before.status
    emits: list[Any] = []
    if before.stuck_alerted:
        limit = cfg.stuck_limit_ms(before.status, before.service_level) or 0
        emits.append(_alert(before, before.stuck_since_ms + limit, limit, ALERT_RESOLVED, at_ms))
    after = replace(
        after,
        status_since_ms=at_ms if status_changed else before.status_since_ms,
        stuck_since_ms=at_ms,
        stuck_alerted=False,
        deleted=before.deleted or after.status is S.CANCELLED,
        version=before.version + 1)
    emits.append(_snapshot(after, before.status, before.detail, event_id, at_ms))
    emits.append(AuditRow(after.tracking_id, at_ms, event_id, before.status, after.status, before.detail,
                          after.detail, source, after.version))
    return after, emits


def _new_state(tracking_id: str, at_ms: int) -> ShipmentState:
    return ShipmentState(tracking_id=tracking_id, status_since_ms=at_ms, stuck_since_ms=at_ms)


# ---------------------------------------------------------------- the rule

def _late_but_decisive(leg: LegState, status: Status, detail: Detail) -> bool:
    """Whether a late scan is one that in-order processing would have kept.

    Without a reorder buffer, a late scan is normally only recorded. The exceptions
    are the cases where, had the scans arrived in event-time order, this scan would
    have stood and the newer ones would have been refused as illegal. Applying it
    then gives the same final status as in-order processing, and it is never a
    regression:

    * the leg has no scan yet: nothing on it can regress (legs are ranked by
      ``derive_status``);
    * the leg is still pre-transit and this scan is not: the newer label scan would
      have been a regression (typical of manifests that arrive after pickup);
    * DELIVERED, or a return reaching the sender: nothing but a return may follow;
    * RETURN_TO_SENDER under newer movement: in order, that movement would have been
      the return trip (``_effective_pair``).
    """
    if leg.status is None:
        return True
    if leg.status in PRE_TRANSIT:
        return status not in PRE_TRANSIT
    if status is S.DELIVERED:
        return not leg.returning and leg.status is not S.DELIVERED
    if (status, detail) == (S.RETURN_TO_SENDER, D.RETURNED):
        return leg.detail is not D.RETURNED
    if status is S.RETURN_TO_SENDER:
        return not leg.returning and (leg.status in _RETURN_MOVEMENT or leg.status is S.DELIVERED)
    return False


def _late_pair(leg: LegState, event_time_ms: int, status: Status, detail: Detail) -> tuple[Status, Detail]:
    """A late return under a newer delivery: in order, that delivery reached the sender."""
    if (status, detail) == (S.RETURN_TO_SENDER, D.RETURN_TO_SENDER) and leg.status is S.DELIVERED and (
            leg.last_event_time_ms or 0) > event_time_ms:
        return S.RETURN_TO_SENDER, D.RETURNED
    return status, detail


def step(state: ShipmentState | None, event: NormalisedScan, now_ms: int,
         cfg: LifecycleConfig = DEFAULT_CONFIG) -> Decision[ShipmentState]:
    d = _step(state, event, cfg)
    after, emits = d.state, list(d.emits)
    # Parked scans waited only for an IN_TRANSIT; once one has been seen they are
    # replayed in event-time order, exactly as if they had arrived now.
    while after is not None and after.parked and after.seen_in_transit:
        retry, rest = after.parked[0], after.parked[1:]
        d = _step(replace(after, parked=rest), retry, cfg)
        after = d.state
        emits.extend(d.emits)
    return _timer_delta(state, after, emits)


def _timer_delta(before: ShipmentState | None, after: ShipmentState | None, emits: Iterable[Any]
                 ) -> Decision[ShipmentState]:
    """One Decision for a whole step: the shipment's one timer moves from where it was
    on entry to where the final state wants it, whatever happened in between."""
    old = before.timer_ms if before is not None else None
    new = after.timer_ms if after is not None else None
    if old == new:
        return Decision(after, tuple(emits))
    return Decision(after, tuple(emits), timer_ms=new, cancel_timers_ms=() if old is None else (old,))


def _at_current_leg(state: ShipmentState | None, event: NormalisedScan) -> NormalisedScan:
    """Leg 0 (a geofence-derived scan) is the shipment's current leg, under its carrier."""
    if event.leg != CURRENT_LEG:
        return event
    leg_no = state.leg if state is not None else 1
    leg = state.legs.get(leg_no) if state is not None else None
    carrier = leg.carrier if leg is not None and leg.carrier else event.carrier
    return replace(event, leg=leg_no, carrier=carrier)


def _movement_reason(status: Status) -> str:
    return f"{status.value} before any IN_TRANSIT scan"


def _invalid(base: ShipmentState, leg: LegState, event: NormalisedScan, status: Status, detail: Detail,
             reason: str, **extra: str) -> DataQuality:
    return DataQuality(INVALID_TRANSITION, event.tracking_id, event.event_id, {
        "from_status": (leg.status or base.status).value, "to_status": status.value,
        "from_detail": (leg.detail or base.detail).value, "to_detail": detail.value,
        "shipment_status": base.status.value, "leg": str(event.leg), "carrier": event.carrier,
        "raw_code": event.raw_code, "event_time_ms": str(event.event_time_ms), "reason": reason, **extra})


def _given_up(s: ShipmentState, scans: Iterable[NormalisedScan], why: str) -> list[DataQuality]:
    """Parked scans that will never be retried: their INVALID_TRANSITION record is
    rewritten (same type and event id, so the sink upserts it) to say so."""
    leg = LegState()
    return [_invalid(s, leg, e, e.status, e.detail, f"{_movement_reason(e.status)}; {why}", parked="false")
            for e in scans]


def _park(base: ShipmentState, leg: LegState, event: NormalisedScan, status: Status, detail: Detail,
          reason: str, cfg: LifecycleConfig) -> Decision[ShipmentState]:
    emits: list[Any] = [_invalid(base, leg, event, status, detail, reason, parked="true")]
    parked = tuple(sorted(base.parked + (event,), key=lambda e: (e.event_time_ms, e.event_id)))
    if len(parked) > cfg.max_parked:
        dropped, parked = parked[:len(parked) - cfg.max_parked], parked[len(parked) - cfg.max_parked:]
        emits.extend(_given_up(base, dropped, "dropped: too many parked scans"))
    return _with_timer(replace(base, parked=parked), emits, cfg)


def _step(state: ShipmentState | None, event: NormalisedScan, cfg: LifecycleConfig) -> Decision[ShipmentState]:
    seen_id = _seen_id(event)
    # A bare id in the window comes from state written before ids were kept per carrier
    # (ids cannot contain the separator), so it still counts for the shipment's scans.
    if state is not None and (seen_id in state.recent_event_ids or event.event_id in state.recent_event_ids
                              or any(_seen_id(p) == seen_id for p in state.parked)):
        return Decision(state)
    # Parked as received: a leg-0 scan finds its leg when it is finally applied.
    received = event
    event = _at_current_leg(state, event)
    # Version 0 holds parked scans only: the first applied scan still starts the shipment.
    is_new = state is None or state.version == 0
    if state is None:
        base = _new_state(event.tracking_id, event.event_time_ms)
    elif is_new:
        base = replace(_new_state(event.tracking_id, event.event_time_ms), parked=state.parked,
                       timer_ms=state.timer_ms, timer_kind=state.timer_kind)
    else:
        base = state
    seen_ids = _remember(base.recent_event_ids, seen_id, cfg.dedup_window)
    hidden = base.deleted
    leg_no = event.leg
    leg = base.legs.get(leg_no) or LegState()
    status, detail = _effective_pair(leg, event.status, event.detail)
    reason = _rejection(base, leg, status, detail, leg_no)
    if reason is not None and reason == _movement_reason(status):
        return _park(base, leg, received, status, detail, reason, cfg)

    late = base.last_event_time_ms is not None and event.event_time_ms < base.last_event_time_ms
    if late:
        assert base.last_event_time_ms is not None
        dq_late = DataQuality(LATE_EVENT, event.tracking_id, event.event_id, {
            "status": status.value, "detail": detail.value, "leg": str(leg_no),
            "event_time_ms": str(event.event_time_ms), "last_event_time_ms": str(base.last_event_time_ms),
            "lateness_ms": str(base.last_event_time_ms - event.event_time_ms)})
        if reason is not None or not _late_but_decisive(leg, status, detail):
            # Kept for the record; it must not move the status. That the parcel was once
            # IN_TRANSIT is true whatever the order, and OUT_FOR_DELIVERY checks it.
            kept = replace(base, recent_event_ids=seen_ids,
                           seen_in_transit=base.seen_in_transit or event.status is S.IN_TRANSIT)
            return Decision(kept, (_history(event, True, hidden, status, detail), dq_late))
        status, detail = _late_pair(leg, event.event_time_ms, status, detail)

    if reason is not None:
        dq = _invalid(base, leg, event, status, detail, reason)
        if state is None:
            # Nothing valid has been seen yet; keeping an empty shipment only for this id
            # would leak, and a redelivery would just be rejected again.
            return Decision(None, (dq,))
        if is_new:
            # Parked scans are waiting: keep them, but nothing else about this scan.
            return Decision(state, (dq,))
        return Decision(replace(base, recent_event_ids=seen_ids), (dq,))

    first_on_leg = leg.status is None
    leg_last_ms = max(event.event_time_ms, leg.last_event_time_ms or event.event_time_ms)
    new_leg = LegState(carrier=event.carrier, status=status, detail=detail, last_event_time_ms=leg_last_ms,
                       returning=leg.returning or status is S.RETURN_TO_SENDER)
    legs = {**base.legs, leg_no: new_leg}
    # History shows what the scan meant on its leg: a "delivered" on the way back is RETURNED.
    emits: list[Any] = [_history(event, late, hidden, status, detail)]
    if late:
        emits.append(dq_late)

    handed_off_to = base.handed_off_to_leg
    if detail is D.HANDOFF_TO_CARRIER and leg_no + 1 > handed_off_to:
        nxt = legs.get(leg_no + 1)
        emits.append(Handoff(event.tracking_id, event.event_id, event.event_time_ms, leg_no, leg_no + 1,
                             event.carrier, nxt.carrier if nxt else None))
        handed_off_to = leg_no + 1
    elif first_on_leg and leg_no > handed_off_to:
        prev = legs.get(leg_no - 1)
        emits.append(Handoff(event.tracking_id, event.event_id, event.event_time_ms, leg_no - 1, leg_no,
                             prev.carrier if prev else None, event.carrier))
        handed_off_to = leg_no

    new_status, new_detail, current_leg = derive_status(legs, base.planned_leg_count)
    newest = not late
    after = replace(base, legs=legs, leg=current_leg, status=new_status, detail=new_detail,
                    last_event_time_ms=event.event_time_ms if newest else base.last_event_time_ms,
                    last_event_id=event.event_id if newest else base.last_event_id,
                    seen_in_transit=base.seen_in_transit or event.status is S.IN_TRANSIT,
                    handed_off_to_leg=handed_off_to, recent_event_ids=seen_ids)
    if newest:
        after = replace(after, last_facility_id=event.facility_id or base.last_facility_id,
                        last_lat=event.lat if event.lat is not None else base.last_lat,
                        last_lon=event.lon if event.lat is not None else base.last_lon)
    if is_new or (new_status, new_detail) != (base.status, base.detail):
        after, change_emits = _change(base, after, event.event_time_ms, event.event_id, event.source, cfg)
        if is_new:
            change_emits = [_first_snapshot(e) for e in change_emits]
        emits.extend(change_emits)
    return _with_timer(after, emits, cfg)


def _first_snapshot(e: Any) -> Any:
    """A brand-new shipment has no previous status to report."""
    if isinstance(e, StateChanged):
        return replace(e, prev_status=None, prev_detail=None)
    if isinstance(e, AuditRow):
        return replace(e, prev_status=None, prev_detail=None)
    return e


def on_timer(state: ShipmentState | None, timer_ms: int,
             cfg: LifecycleConfig = DEFAULT_CONFIG) -> Decision[ShipmentState]:
    if state is None:
        return Decision(None)
    if timer_ms != state.timer_ms:
        # A superseded timer that fired before the operator deleted it.
        return Decision(state)
    if state.timer_kind == TIMER_RETAIN:
        return Decision(None, tuple(_given_up(state, state.parked, "dropped: shipment state cleared")))
    if state.timer_kind == TIMER_DISCARD:
        return Decision(None, tuple(_given_up(state, state.parked, "dropped: no IN_TRANSIT scan arrived")))
    fired = replace(state, timer_ms=None, timer_kind=None)
    if state.timer_kind == TIMER_STUCK:
        limit = cfg.stuck_limit_ms(state.status, state.service_level) or 0
        alert = _alert(state, timer_ms, limit, ALERT_OPEN, timer_ms)
        return _with_timer(replace(fired, stuck_alerted=True), (alert,), cfg)
    # TIMER_EXPIRE: nothing has happened for idle_expiry_ms; stop waiting for the carrier.
    expired = replace(fired, status=S.EXPIRED, detail=DEFAULT_DETAIL[S.EXPIRED])
    after, emits = _change(fired, expired, timer_ms, f"{SOURCE_TIMER}:{TIMER_EXPIRE}:{timer_ms}", SOURCE_TIMER, cfg)
    return _with_timer(after, emits, cfg)


def handle(state: ShipmentState | None, event: NormalisedScan | ShipmentPlan, now_ms: int,
           cfg: LifecycleConfig = DEFAULT_CONFIG) -> Decision[ShipmentState]:
    """The keyed operator's one entry point: scans and plans share the shipment's state."""
    if isinstance(event, ShipmentPlan):
        return apply_plan(state, event, now_ms, cfg)
    return step(state, event, now_ms, cfg)


def apply_plan(state: ShipmentState | None, plan: ShipmentPlan | Mapping[str, Any], now_ms: int,
               cfg: LifecycleConfig = DEFAULT_CONFIG) -> Decision[ShipmentState]:
    """Fold the order system's plan into the shipment. A plan can arrive before or after
    the first scan; an older plan_version than the one applied is ignored."""
    p = plan if isinstance(plan, ShipmentPlan) else ShipmentPlan.from_record(plan)
    at_ms = p.plan_time_ms if p.plan_time_ms is not None else now_ms
    # Version 0 holds parked scans only: the plan still starts the shipment.
    is_new = state is None or state.version == 0
    if state is None:
        base = _new_state(p.tracking_id, at_ms)
    elif is_new:
        base = replace(_new_state(p.tracking_id, at_ms), parked=state.parked, timer_ms=state.timer_ms,
                       timer_kind=state.timer_kind)
    else:
        base = state
    if not is_new and p.plan_version < base.plan_version:
        return Decision(base)
    legs = dict(base.legs)
    for leg_no, carrier in p.leg_carriers:
        leg = legs.get(leg_no)
        if leg is None:
            legs[leg_no] = LegState(carrier=carrier)
        elif leg.status is None:
            legs[leg_no] = replace(leg, carrier=carrier)
    planned = max((n for n, _ in p.leg_carriers), default=0)
    after = replace(base, legs=legs, service_level=p.service_level, order_id=p.order_id, shipment_id=p.shipment_id,
                    promised_start_ms=p.promised_start_ms, promised_end_ms=p.promised_end_ms,
                    plan_version=p.plan_version, planned_leg_count=planned)
    status, detail, current_leg = derive_status(legs, planned)
    after = replace(after, status=status, detail=detail, leg=current_leg)
    if after == base:
        # The plans topic replays on restart; the same plan again changes nothing.
        return Decision(base)
    event_id = f"{SOURCE_PLAN}:{p.order_id}:{p.plan_version}"
    if is_new or (status, detail) != (base.status, base.detail):
        after, emits = _change(base, after, at_ms, event_id, SOURCE_PLAN, cfg)
        if is_new:
            emits = [_first_snapshot(e) for e in emits]
    else:
        # Same status, new promise or service level: the current-state row still changes.
        after = replace(after, version=base.version + 1)
        emits = [_snapshot(after, base.status, base.detail, event_id, at_ms)]
    return _with_timer(after, emits, cfg)
