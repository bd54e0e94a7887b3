"""Alerts: one record shape, deterministic ids, routing, and a dedup/throttle gate.

:class:`Alert` mirrors ``avro/alerts.avsc`` field for field. An alert's id is a hash
of (type, entity, condition start[, subject]). The OPEN and RESOLVED of one
condition therefore share an id, and a replay of the same evidence produces the same
id, so sinks upsert on ``alert_id``.

:func:`route` picks a team or role from an ordered rule list: the first match wins,
and the default applies otherwise.

:func:`gate_step` runs per entity (keyed by ``entity_type:entity_id``) just before
the alerts sink. It stops duplicate notifications, the classic complaint about
tracking platforms:

* one condition (``alert_id``) is OPENed at most once, whether it is replayed or
  raised by two paths (the event-time and processing-time silence checks);
* OPEN and UPDATED alerts of one type are throttled per entity: at most
  ``max_per_window`` of them within ``window_ms`` of each other, in event time. A van
  stalling and resuming every two minutes pages once, not every two minutes.
  A condition whose OPEN was throttled is remembered, so it is not raised later;
* RESOLVED always passes the throttle. It is dropped only as an exact repeat (the
  same id already RESOLVED), so no condition is left open downstream. It passes even
  when its OPEN was throttled, which tells the channel the problem came and went.

The throttle uses alert event time, not wall clock, so a replay makes the same
decisions as the live run. Passes more than ``window_ms`` behind the entity's
newest alert are forgotten, so an alert arriving later than that is throttled only
against what is left. Gate state holds, per entity, the ids seen with their
last state and the recent passes per type. Entries older than ``dedup_ttl_ms``
(24 h) behind the newest alert are pruned. The whole state is cleared by an
event-time timer ``dedup_ttl_ms`` after the last alert. After that, a replay of an
older condition can pass again, and the sink's upsert on ``alert_id`` keeps it to
one row.

:func:`ack_step` runs per ``alert_id`` on dispatcher acks and assignments (earliest ACK
and newest assignment win, in any arrival order). :func:`validate_alert` and
:func:`validate_ack` are the alerts job's admission checks.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from udfs.decision import Decision
from udfs.validation import (BAD_EVENT_TIME, DEFAULT_CONFIG as DEFAULT_VALIDATION, ID_FIELDS, ValidationConfig,
                             event_time_reason, ids_reason)

INFO, WARNING, CRITICAL = "INFO", "WARNING", "CRITICAL"
SEVERITIES = (INFO, WARNING, CRITICAL)
OPEN, UPDATED, RESOLVED = "OPEN", "UPDATED", "RESOLVED"
# Gate bookkeeping for a condition whose OPEN was throttled.
SUPPRESSED = "SUPPRESSED"
DEFAULT_ROUTE = "ops"

RESTRICTED_AREA = "RESTRICTED_AREA"

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS


@dataclass(frozen=True)
class Alert:
    alert_id: str
    type: str
    severity: str
    entity_type: str
    entity_id: str
    # Event time of the evidence that raised or changed the alert.
    event_time_ms: int
    # Processing time at which FleetFlow raised it (passed in; udfs never read a clock).
    detected_time_ms: int
    details: dict[str, str] = field(default_factory=dict, hash=False)
    route_to: str = DEFAULT_ROUTE
    state: str = OPEN

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} not in {SEVERITIES}")
        if self.state not in (OPEN, UPDATED, RESOLVED):
            raise ValueError(f"state {self.state!r} not OPEN/UPDATED/RESOLVED")

    @property
    def entity_key(self) -> str:
        """The gate's key: throttling and dedup are per entity."""
        return f"{self.entity_type}:{self.entity_id}"

    def to_record(self) -> dict[str, Any]:
        """The ``ff.alerts`` record (avro/alerts.avsc)."""
        return {
            "alert_id": self.alert_id,
            "type": self.type,
            "severity": self.severity,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "event_time_ms": self.event_time_ms,
            "detected_time_ms": self.detected_time_ms,
            "details": dict(self.details),
            "route_to": self.route_to,
            "state": self.state,
        }

    @staticmethod
    def from_record(r: Mapping[str, Any]) -> "Alert":
        return Alert(
            alert_id=r["alert_id"],
            type=r["type"],
            severity=r.get("severity") or WARNING,
            entity_type=r["entity_type"],
            entity_id=r["entity_id"],
            event_time_ms=int(r["event_time_ms"]),
            detected_time_ms=int(r["detected_time_ms"]),
            details={str(k): str(v) for k, v in (r.get("details") or {}).items()},
            route_to=r.get("route_to") or DEFAULT_ROUTE,
            state=r.get("state") or OPEN,
        )


def alert_id(alert_type: str, entity_type: str, entity_id: str, condition_start_ms: int, subject: str = "") -> str:
    """Stable id of one condition. ``subject`` separates concurrent conditions of one
    type on one entity (e.g. two restricted fences entered in the same second)."""
    # hashlib, not hash(): Python salts str hashes per process, and replays must agree.
    key = f"{alert_type}|{entity_type}|{entity_id}|{condition_start_ms}|{subject}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- builders from rule outputs

# Default severity per vehicle condition (see udfs/vehicle_watch.py).
VEHICLE_SEVERITY = {"VEHICLE_STALLED": WARNING, "ROUTE_DEVIATION": WARNING, "SIGNAL_LOST": WARNING}


def from_vehicle_event(ev: Any, detected_time_ms: int, *, severity: Mapping[str, str] = VEHICLE_SEVERITY) -> Alert:
    """Alert for a ``vehicle_watch.VehicleEvent``: OPEN or RESOLVED of its condition."""
    details = dict(ev.details)
    details.update(event_type=ev.event_type, condition_start_ms=str(ev.condition_start_ms))
    if ev.lat is not None:
        details.update(lat=f"{ev.lat:.6f}", lon=f"{ev.lon:.6f}")
    return Alert(
        alert_id=alert_id(ev.condition, "VEHICLE", ev.vehicle_id, ev.condition_start_ms),
        type=ev.condition,
        severity=severity.get(ev.condition, WARNING),
        entity_type="VEHICLE",
        entity_id=ev.vehicle_id,
        event_time_ms=ev.event_time_ms,
        detected_time_ms=detected_time_ms,
        details=details,
        state=OPEN if ev.transition == OPEN else RESOLVED,
    )


def from_geofence_event(ev: Any, detected_time_ms: int) -> Alert | None:
    """RESTRICTED_AREA alert for a ``fence_membership.GeofenceEvent`` on a RESTRICTED
    fence (ENTER opens, EXIT resolves); None for every other fence kind."""
    if ev.kind != "RESTRICTED":
        return None
    details = {"geofence_id": ev.geofence_id, "visit_start_ms": str(ev.visit_start_ms),
               "interpolated": str(ev.interpolated).lower(), "reason": ev.reason}
    if ev.facility_id:
        details["facility_id"] = ev.facility_id
    return Alert(
        alert_id=alert_id(RESTRICTED_AREA, "VEHICLE", ev.vehicle_id, ev.visit_start_ms, subject=ev.geofence_id),
        type=RESTRICTED_AREA,
        severity=CRITICAL,
        entity_type="VEHICLE",
        entity_id=ev.vehicle_id,
        event_time_ms=ev.event_time_ms,
        detected_time_ms=detected_time_ms,
        details=details,
        state=OPEN if ev.event_type == "ENTER" else RESOLVED,
    )


# --------------------------------------------------------------------------- routing

@dataclass(frozen=True)
class RoutingRule:
    """Send matching alerts to ``route_to``. Unset criteria match anything."""

    route_to: str
    type: str | None = None
    # Matches this severity and anything more severe.
    min_severity: str | None = None
    entity_type: str | None = None
    # Prefix of entity_id, e.g. "VAN-HAM-" for the Hamburg fleet.
    entity_prefix: str | None = None

    def matches(self, alert: Alert) -> bool:
        return ((self.type is None or alert.type == self.type)
                and (self.min_severity is None
                     or SEVERITIES.index(alert.severity) >= SEVERITIES.index(self.min_severity))
                and (self.entity_type is None or alert.entity_type == self.entity_type)
                and (self.entity_prefix is None or alert.entity_id.startswith(self.entity_prefix)))

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "RoutingRule":
        rule = RoutingRule(route_to=d["route_to"], type=d.get("type"), min_severity=d.get("min_severity"),
                           entity_type=d.get("entity_type"), entity_prefix=d.get("entity_prefix"))
        if rule.min_severity is not None and rule.min_severity not in SEVERITIES:
            raise ValueError(f"min_severity {rule.min_severity!r} not in {SEVERITIES}")
        return rule


def route(alert: Alert, rules: Iterable[RoutingRule], default: str = DEFAULT_ROUTE) -> str:
    """The first matching rule's destination, else ``default``. Order rules specific first."""
    for rule in rules:
        if rule.matches(alert):
            return rule.route_to
    return default


def with_route(alert: Alert, rules: Iterable[RoutingRule], default: str = DEFAULT_ROUTE) -> Alert:
    return replace(alert, route_to=route(alert, rules, default))


# --------------------------------------------------------------------------- dedup + throttle gate

def _check_ints(cfg: Any, **minimum: int) -> None:
    """Config dataclasses come from job JSON: refuse wrong types and out-of-range values early."""
    bad = [f"{name} must be an integer >= {low}, got {getattr(cfg, name)!r}" for name, low in minimum.items()
           if not isinstance(getattr(cfg, name), int) or isinstance(getattr(cfg, name), bool)
           or getattr(cfg, name) < low]
    if bad:
        raise ValueError(f"{type(cfg).__name__}: " + "; ".join(bad))


@dataclass(frozen=True)
class GateConfig:
    max_per_window: int = 1
    window_ms: int = 5 * MINUTE_MS
    # How long a condition's id is remembered after the entity's newest alert.
    dedup_ttl_ms: int = 24 * HOUR_MS

    def __post_init__(self) -> None:
        _check_ints(self, max_per_window=1, window_ms=0, dedup_ttl_ms=1)


DEFAULT_GATE_CONFIG = GateConfig()


@dataclass(frozen=True)
class GateState:
    entity_key: str
    # (alert_id, last state passed or SUPPRESSED, event_time_ms of that alert).
    seen: tuple[tuple[str, str, int], ...] = ()
    # (type, event_time_ms) of OPEN/UPDATED alerts that passed: the throttle's memory.
    passed: tuple[tuple[str, int], ...] = ()
    newest_event_time_ms: int = 0
    suppressed_count: int = 0
    duplicate_count: int = 0
    expires_ms: int = 0
    timer_ms: int | None = None


def gate_step(state: GateState | None, alert: Alert, now_ms: int,
              cfg: GateConfig = DEFAULT_GATE_CONFIG) -> Decision[GateState]:
    """Pass (emit) or drop one alert for its entity.

    ``now_ms`` is the operator's current event-time clock (its watermark). The expiry
    timer is set from the later of it and the alert's time, so a late alert cannot
    put the timer in the past and clear the memory it has just written.
    """
    s = state or GateState(entity_key=alert.entity_key)
    t = alert.event_time_ms
    last = {aid: st for aid, st, _ in s.seen}.get(alert.alert_id)

    # remember: the state to record for this id; None drops the alert as a duplicate.
    if alert.state == RESOLVED:
        remember, passes = (None, False) if last == RESOLVED else (RESOLVED, True)
    elif (alert.state == OPEN and last is not None) or (alert.state == UPDATED and last == RESOLVED):
        remember, passes = None, False
    elif _throttled(s, alert.type, t, cfg):
        remember, passes = (last or SUPPRESSED), False
    else:
        remember, passes = alert.state, True

    newest = max(s.newest_event_time_ms, t)
    expires = max(s.expires_ms, max(now_ms, t) + cfg.dedup_ttl_ms)
    if remember is None:
        s = replace(s, duplicate_count=s.duplicate_count + 1, newest_event_time_ms=newest, expires_ms=expires)
    else:
        seen = tuple(e for e in s.seen if e[0] != alert.alert_id) + ((alert.alert_id, remember, t),)
        passed = s.passed + ((alert.type, t),) if passes and alert.state != RESOLVED else s.passed
        s = replace(
            s,
            seen=tuple(e for e in seen if e[2] >= newest - cfg.dedup_ttl_ms),
            passed=tuple(p for p in passed if p[1] > newest - cfg.window_ms),
            newest_event_time_ms=newest,
            suppressed_count=s.suppressed_count + (0 if passes else 1),
            expires_ms=expires,
        )
    emits: tuple[Alert, ...] = (alert,) if passes else ()
    if s.timer_ms is None:
        s = replace(s, timer_ms=s.expires_ms)
        return Decision(s, emits, timer_ms=s.timer_ms)
    return Decision(s, emits)


def gate_and_route(state: GateState | None, alert: Alert, now_ms: int, cfg: GateConfig = DEFAULT_GATE_CONFIG,
                   rules: Iterable[RoutingRule] = (), default: str = DEFAULT_ROUTE) -> Decision[GateState]:
    """``gate_step``, with each passed alert routed: routing only what passes saves the
    rule scan for the duplicates and throttled repeats, which are most of a flapping van."""
    d = gate_step(state, alert, now_ms, cfg)
    if not d.emits:
        return d
    return replace(d, emits=tuple(with_route(a, rules, default) for a in d.emits))


def gate_on_timer(state: GateState | None, timer_ms: int, cfg: GateConfig = DEFAULT_GATE_CONFIG) -> Decision[GateState]:
    """Clear the entity's memory once ``dedup_ttl_ms`` has passed quietly; else re-arm."""
    if state is None or timer_ms != state.timer_ms:
        return Decision(state)
    if timer_ms < state.expires_ms:
        return Decision(replace(state, timer_ms=state.expires_ms), timer_ms=state.expires_ms)
    return Decision(None)


def _throttled(s: GateState, alert_type: str, t: int, cfg: GateConfig) -> bool:
    # Symmetric window: a late alert is measured against passes on both sides of it.
    near = sum(1 for typ, pt in s.passed if typ == alert_type and abs(t - pt) < cfg.window_ms)
    return near >= cfg.max_per_window


PASSED, DEDUPED, THROTTLED = "passed", "deduped", "throttled"


def gate_verdict(before: GateState | None, d: Decision[GateState]) -> str:
    """What ``gate_step`` did with one alert: ``passed``, ``deduped`` or ``throttled``.

    Read off the Decision rather than returned by ``gate_step`` so the gate keeps the
    one step shape; the counters in GateState move by exactly one per alert.
    """
    if d.emits:
        return PASSED
    dup_before = before.duplicate_count if before is not None else 0
    return DEDUPED if d.state is not None and d.state.duplicate_count > dup_before else THROTTLED


# --------------------------------------------------------------------------- admission checks

def validate_alert(record: Mapping[str, Any], now_ms: int, cfg: ValidationConfig = DEFAULT_VALIDATION) -> str | None:
    """Reason code for an ``alerts`` candidate dict, or None if the gate may see it.

    The ids are the gate's key and the sinks' natural keys, so a blank one would merge
    unrelated alerts; they get the shared id checks (``udfs.validation.ID_FIELDS``:
    MISSING_ID, ID_TOO_LONG, BAD_ID). The event time drives the throttle and the expiry
    timer, so it gets the same admission window as pings and scans.
    """
    reason = ids_reason(record, ID_FIELDS["alerts"])
    if reason is not None:
        return reason
    reason = event_time_reason(record.get("event_time_ms"), now_ms, cfg)
    if reason is not None:
        return reason
    detected = record.get("detected_time_ms")
    if not isinstance(detected, int) or isinstance(detected, bool) or detected < 0:
        return BAD_EVENT_TIME
    return None


def validate_ack(record: Mapping[str, Any], now_ms: int, cfg: ValidationConfig = DEFAULT_VALIDATION) -> str | None:
    """Reason code for an ``alert_acks`` dict, or None. An ASSIGN needs no assignee
    (null un-assigns), but every ack needs its own id, the alert's id and an actor, each
    passing the shared id checks."""
    reason = ids_reason(record, ID_FIELDS["alert_acks"])
    if reason is not None:
        return reason
    return event_time_reason(record.get("event_time_ms"), now_ms, cfg)


# --------------------------------------------------------------------------- acknowledgements

ACK, ASSIGN = "ACK", "ASSIGN"
ALERT_ACK = "ALERT_ACK"
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class AlertAck:
    """One ``ff.alert-acks`` record: a dispatcher acknowledged or (re)assigned an alert."""
    ack_id: str
    alert_id: str
    action: str
    actor: str
    event_time_ms: int
    assignee: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.action not in (ACK, ASSIGN):
            raise ValueError(f"action {self.action!r} not ACK/ASSIGN")

    @staticmethod
    def from_record(r: Mapping[str, Any]) -> "AlertAck":
        return AlertAck(ack_id=r["ack_id"], alert_id=r["alert_id"], action=r["action"], actor=r["actor"],
                        event_time_ms=int(r["event_time_ms"]), assignee=r.get("assignee") or None,
                        note=r.get("note") or "")


@dataclass(frozen=True)
class AckConfig:
    # How long an alert's ack memory outlives its newest ack. An ack arriving after
    # that starts afresh (a later ACK would then overwrite acked_by; see docs/state.md).
    state_ttl_ms: int = 30 * DAY_MS
    # Bound on remembered ack ids per alert; the oldest are forgotten first.
    max_ack_ids: int = 256

    def __post_init__(self) -> None:
        _check_ints(self, state_ttl_ms=1, max_ack_ids=1)


DEFAULT_ACK_CONFIG = AckConfig()


@dataclass(frozen=True)
class AckState:
    alert_id: str
    # (ack_id, event_time_ms) of every ack applied: replays of them are dropped.
    ack_ids: tuple[tuple[str, int], ...] = ()
    acked_by: str | None = None
    acked_ms: int | None = None
    assignee: str | None = None
    # Event time of the assignment in force; None until an assignment arrives.
    assigned_ms: int | None = None
    assigned_by_ack_id: str = ""
    duplicate_count: int = 0
    expires_ms: int = 0
    timer_ms: int | None = None


@dataclass(frozen=True)
class AckApplied:
    """Emitted once per new ack: the ack itself (audit) and the alert's ack status after it."""
    ack: AlertAck
    acked_by: str | None
    acked_ms: int | None
    assignee: str | None
    assigned_ms: int | None


def ack_step(state: AckState | None, ack: AlertAck, now_ms: int,
             cfg: AckConfig = DEFAULT_ACK_CONFIG) -> Decision[AckState]:
    """Apply one ack to its alert (keyed by ``alert_id``); ``now_ms`` is the watermark.

    * the earliest ACK in event time is the acknowledgement (``acked_by``, ``acked_ms``);
      later ACKs are audited but do not move it, so a second dispatcher clicking "ack"
      does not rewrite who responded first, and arrival order does not matter;
    * the newest assignment in event time wins (ties broken by ``ack_id``). ASSIGN with
      no assignee un-assigns; an ACK that names an assignee also assigns;
    * an ``ack_id`` seen before is a replay and changes nothing.
    """
    s = state or AckState(alert_id=ack.alert_id)
    t = ack.event_time_ms
    expires = max(s.expires_ms, max(now_ms, t) + cfg.state_ttl_ms)
    if any(aid == ack.ack_id for aid, _ in s.ack_ids):
        return Decision(replace(s, duplicate_count=s.duplicate_count + 1, expires_ms=expires))
    acked_by, acked_ms = s.acked_by, s.acked_ms
    if ack.action == ACK and (acked_ms is None or t < acked_ms):
        acked_by, acked_ms = ack.actor, t
    assignee, assigned_ms, assigned_by = s.assignee, s.assigned_ms, s.assigned_by_ack_id
    assigns = ack.action == ASSIGN or ack.assignee is not None
    if assigns and (assigned_ms is None or (t, ack.ack_id) > (assigned_ms, assigned_by)):
        assignee, assigned_ms, assigned_by = ack.assignee, t, ack.ack_id
    ids = tuple(sorted(s.ack_ids + ((ack.ack_id, t),), key=lambda e: (e[1], e[0])))[-cfg.max_ack_ids:]
    s = replace(s, ack_ids=ids, acked_by=acked_by, acked_ms=acked_ms, assignee=assignee, assigned_ms=assigned_ms,
                assigned_by_ack_id=assigned_by, expires_ms=expires)
    emits = (AckApplied(ack, acked_by, acked_ms, assignee, assigned_ms),)
    if s.timer_ms is None:
        s = replace(s, timer_ms=s.expires_ms)
        return Decision(s, emits, timer_ms=s.timer_ms)
    return Decision(s, emits)


def ack_on_timer(state: AckState | None, timer_ms: int, cfg: AckConfig = DEFAULT_ACK_CONFIG) -> Decision[AckState]:
    """Forget the alert's acks ``state_ttl_ms`` after the newest one; else re-arm."""
    if state is None or timer_ms != state.timer_ms:
        return Decision(state)
    if timer_ms < state.expires_ms:
        return Decision(replace(state, timer_ms=state.expires_ms), timer_ms=state.expires_ms)
    return Decision(None)

