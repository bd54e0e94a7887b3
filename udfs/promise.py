"""Promise risk: will this parcel miss its promised window, and how did it end?

Per parcel (keyed by tracking_id) :func:`risk_step` takes each ETA update and keeps
at most one open LATE_RISK alert:

* OPEN when the ETA window's late edge (``latest_ms``) passes the promised window
  end. Lateness ``late_by_ms = latest_ms - promised_window_end_ms``; severity
  WARNING below ``critical_after_ms`` (30 min), CRITICAL from there.
* UPDATED only when it gets worse by a step: severity rises, or lateness grows by
  ``worsen_step_ms`` (15 min) over what was last reported. Improvements that stay
  late are not reported; a customer-facing channel needs news, not jitter.
* RESOLVED once the late edge is back ``resolve_margin_ms`` (5 min) inside the
  promise. The margin is hysteresis: an ETA hovering at the promise end would
  otherwise open and resolve an alert on every update.

Every alert of one episode shares an ``alert_id`` = hash(type, tracking_id, time
first raised) with the raising evidence's event time, so a replay raises the same
id and the alert sink upserts instead of duplicating; ``revision`` orders the
lifecycle within it.

:func:`on_delivered` closes any open alert, emits the :class:`SlaOutcome` and
clears the state.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

from udfs.decision import Decision
from udfs.eta import EtaUpdate
from udfs.lanes import Lane

LATE_RISK = "LATE_RISK"
WARNING = "WARNING"
CRITICAL = "CRITICAL"
_SEVERITY_RANK = {WARNING: 1, CRITICAL: 2}
OPEN, UPDATED, RESOLVED = "OPEN", "UPDATED", "RESOLVED"
DAY_MS = 86_400_000


@dataclass(frozen=True)
class PromiseConfig:
    critical_after_ms: int = 30 * 60_000
    worsen_step_ms: int = 15 * 60_000
    resolve_margin_ms: int = 5 * 60_000
    # A parcel never delivered (lost, returned outside our feed) is forgotten this long
    # after its promise end or its last estimate, whichever is later, so its state cannot leak.
    forget_after_ms: int = 7 * DAY_MS


DEFAULT_CONFIG = PromiseConfig()


@dataclass(frozen=True)
class PromiseAlert:
    alert_id: str
    type: str
    # OPEN, UPDATED or RESOLVED, as in avro/alerts.avsc AlertState.
    state: str
    severity: str
    tracking_id: str
    # Event time of the evidence that raised or changed the alert.
    event_time_ms: int
    raised_ms: int
    revision: int
    late_by_ms: int
    eta_ms: int | None
    latest_ms: int | None
    promised_window_end_ms: int
    basis: str | None
    # Why a RESOLVED alert closed: ON_TRACK, DELIVERED or EXPIRED; None otherwise.
    reason: str | None = None

    def to_alert_record(self, detected_time_ms: int) -> dict[str, Any]:
        """The ``ff.alerts`` record (avro/alerts.avsc); details values are strings there."""
        details = {
            "raised_ms": str(self.raised_ms),
            "revision": str(self.revision),
            "late_by_ms": str(self.late_by_ms),
            "promised_window_end_ms": str(self.promised_window_end_ms),
        }
        for name in ("eta_ms", "latest_ms", "basis", "reason"):
            value = getattr(self, name)
            if value is not None:
                details[name] = str(value)
        return {
            "alert_id": self.alert_id,
            "type": self.type,
            "severity": self.severity,
            "entity_type": "PACKAGE",
            "entity_id": self.tracking_id,
            "event_time_ms": self.event_time_ms,
            "detected_time_ms": detected_time_ms,
            "details": details,
            "route_to": "ops",
            "state": self.state,
        }


@dataclass(frozen=True)
class SlaOutcome:
    tracking_id: str
    carrier: str
    lane: str
    # Reporting day 'YYYY-MM-DD' (UTC date of the promise end unless the caller says otherwise).
    day: str
    on_time: bool
    lateness_ms: int


def alert_id(alert_type: str, tracking_id: str, raised_ms: int) -> str:
    # hashlib, not hash(): Python salts str hashes per process, replays must agree.
    return hashlib.sha256(f"{alert_type}|{tracking_id}|{raised_ms}".encode()).hexdigest()[:24]


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of the proleptic Gregorian date ``days`` after 1970-01-01.

    Counts in 400-year eras of 146097 days, with years starting on 1 March so the
    leap day falls at the end of the year and month lengths follow a linear rule.
    """
    z = days + 719_468  # days since 0000-03-01
    era = z // 146_097
    doe = z - era * 146_097  # day of era, 0..146096
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365  # year of era, 0..399
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)  # day of March-based year, 0..365
    mp = (5 * doy + 2) // 153  # March = 0 .. February = 11
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def utc_day(epoch_ms: int) -> str:
    y, m, d = civil_from_days(epoch_ms // DAY_MS)
    return f"{y:04d}-{m:02d}-{d:02d}"


def _forget_at_ms(st: Mapping[str, Any], cfg: PromiseConfig) -> int:
    # Kept alive by fresh estimates as well as by a promise still ahead.
    end_ms = st.get("promised_end_ms")
    as_of_ms = st["as_of_ms"]
    return (as_of_ms if end_ms is None else max(end_ms, as_of_ms)) + cfg.forget_after_ms


def _severity(late_by_ms: int, cfg: PromiseConfig) -> str:
    return CRITICAL if late_by_ms >= cfg.critical_after_ms else WARNING


def _alert(tracking_id: str, open_: Mapping[str, Any], state: str, event_time_ms: int, promised_end_ms: int,
           eta: EtaUpdate | None, reason: str | None = None) -> PromiseAlert:
    return PromiseAlert(
        alert_id=open_["alert_id"], type=LATE_RISK, state=state, severity=open_["severity"],
        tracking_id=tracking_id, event_time_ms=event_time_ms, raised_ms=open_["raised_ms"],
        revision=open_["revision"], late_by_ms=open_["late_by_ms"],
        eta_ms=eta.eta_ms if eta else None, latest_ms=eta.latest_ms if eta else None,
        promised_window_end_ms=promised_end_ms, basis=eta.basis if eta else None, reason=reason,
    )


def risk_step(state: Mapping[str, Any] | None, eta_update: EtaUpdate, promised_window_end_ms: int | None,
              now_ms: int, cfg: PromiseConfig = DEFAULT_CONFIG) -> Decision:
    """One ETA update for one parcel -> open/update/resolve its LATE_RISK alert.

    State (plain dict): ``as_of_ms`` of the freshest estimate applied (older ones are
    dropped, so a late-arriving stale ETA cannot raise or resolve anything),
    ``promised_end_ms``, ``timer_ms`` (forget timer) and ``open`` (the open alert's
    id, raised time, severity, reported lateness, revision) or None. Cleared by
    :func:`on_delivered` or :func:`risk_on_timer`.
    """
    st = dict(state) if state else {}
    as_of_ms = eta_update.as_of_ms if eta_update.as_of_ms is not None else now_ms
    if st.get("as_of_ms") is not None and as_of_ms < st["as_of_ms"]:
        return Decision(state)
    st["as_of_ms"] = as_of_ms
    st["tracking_id"] = eta_update.tracking_id
    if promised_window_end_ms is not None:
        st["promised_end_ms"] = promised_window_end_ms
    timer_ms = None
    if st.get("timer_ms") is None:
        timer_ms = _forget_at_ms(st, cfg)
        st["timer_ms"] = timer_ms
    if promised_window_end_ms is None:
        return Decision(st, timer_ms=timer_ms)

    tid = eta_update.tracking_id
    late_by_ms = eta_update.latest_ms - promised_window_end_ms
    open_ = st.get("open")
    if open_ is None:
        if late_by_ms <= 0:
            return Decision(st, timer_ms=timer_ms)
        open_ = {"alert_id": alert_id(LATE_RISK, tid, as_of_ms), "raised_ms": as_of_ms,
                 "severity": _severity(late_by_ms, cfg), "late_by_ms": late_by_ms, "revision": 1}
        st["open"] = open_
        return Decision(st, (_alert(tid, open_, OPEN, as_of_ms, promised_window_end_ms, eta_update),), timer_ms)

    if late_by_ms <= -cfg.resolve_margin_ms:
        closed = dict(open_, revision=open_["revision"] + 1)
        st["open"] = None
        alert = _alert(tid, closed, RESOLVED, as_of_ms, promised_window_end_ms, eta_update, "ON_TRACK")
        return Decision(st, (alert,), timer_ms)

    severity = _severity(late_by_ms, cfg)
    worse = (_SEVERITY_RANK[severity] > _SEVERITY_RANK[open_["severity"]]
             or late_by_ms >= open_["late_by_ms"] + cfg.worsen_step_ms)
    if not worse:
        return Decision(st, timer_ms=timer_ms)
    open_ = dict(open_, severity=severity, late_by_ms=late_by_ms, revision=open_["revision"] + 1)
    st["open"] = open_
    return Decision(st, (_alert(tid, open_, UPDATED, as_of_ms, promised_window_end_ms, eta_update),), timer_ms)


def on_delivered(state: Mapping[str, Any] | None, tracking_id: str, delivered_ms: int,
                 promised_window_end_ms: int | None, carrier: str, lane: Lane | str,
                 day: str | None = None) -> Decision:
    """Delivery: resolve any open alert, emit the SLA outcome, clear the state.

    ``day`` defaults to the UTC date of the promise end: a parcel two days late
    counts against the day it was due, so each day's on-time rate has a stable
    denominator (the parcels due that day). Without a promise there is nothing to
    score and only the state is cleared. A repeated delivery event finds no state
    and emits the same SlaOutcome again; the sink upserts it by tracking_id.
    """
    st = state or {}
    emits: list[Any] = []
    open_ = st.get("open")
    end_ms = promised_window_end_ms if promised_window_end_ms is not None else st.get("promised_end_ms")
    if open_:
        closed = dict(open_, revision=open_["revision"] + 1)
        emits.append(_alert(tracking_id, closed, RESOLVED, delivered_ms,
                            end_ms if end_ms is not None else 0, None, "DELIVERED"))
    if end_ms is not None:
        lateness_ms = max(0, delivered_ms - end_ms)
        emits.append(SlaOutcome(
            tracking_id=tracking_id, carrier=carrier,
            lane=lane.key if isinstance(lane, Lane) else lane,
            day=day if day is not None else utc_day(end_ms),
            on_time=lateness_ms == 0, lateness_ms=lateness_ms,
        ))
    timer = st.get("timer_ms")
    return Decision(None, tuple(emits), cancel_timers_ms=(timer,) if timer is not None else ())


def risk_on_timer(state: Mapping[str, Any] | None, timer_ms: int, cfg: PromiseConfig = DEFAULT_CONFIG) -> Decision:
    """Forget a parcel whose delivery never came; re-arm while estimates keep coming
    or the promise moved later. An open alert is closed as EXPIRED rather than left
    dangling in the alert view."""
    if not state:
        return Decision(None)
    forget_at_ms = _forget_at_ms(state, cfg)
    if timer_ms < forget_at_ms:
        return Decision(dict(state, timer_ms=forget_at_ms), timer_ms=forget_at_ms)
    emits: tuple[PromiseAlert, ...] = ()
    open_ = state.get("open")
    if open_:
        closed = dict(open_, revision=open_["revision"] + 1)
        emits = (_alert(state["tracking_id"], closed, RESOLVED, timer_ms, state["promised_end_ms"], None, "EXPIRED"),)
    return Decision(None, emits)


# --- The promise rule as the ETA job runs it: estimates and shipment states per parcel ---

LATE_RISK_OPEN, LATE_RISK_CLEAR = "OPEN", "CLEAR"


@dataclass(frozen=True)
class EtaRecord:
    """What the ETA job stores per applied estimate: the estimate plus the parcel's
    late-risk flag after it. ``eta_ms`` is None for a record that only clears the
    flag (delivery, cancellation), which leaves the last estimate's fields alone."""
    tracking_id: str
    as_of_ms: int
    late_risk: str
    late_by_ms: int
    eta_ms: int | None = None
    earliest_ms: int | None = None
    latest_ms: int | None = None
    confidence: float | None = None
    basis: str | None = None


@dataclass(frozen=True)
class ParcelPromiseConfig:
    risk: PromiseConfig = DEFAULT_CONFIG
    # After delivery the parcel is remembered this long, so a straggling estimate or a
    # repeated delivery cannot raise LATE_RISK on a delivered parcel.
    delivered_ttl_ms: int = 2 * DAY_MS


DEFAULT_PARCEL_CONFIG = ParcelPromiseConfig()
DELIVERED_STATUS = "DELIVERED"


def _eta_record(st: Mapping[str, Any], upd: EtaUpdate) -> EtaRecord:
    risk = st.get("risk") or {}
    end_ms = st.get("promised_end_ms")
    open_ = risk.get("open") is not None
    late_by_ms = max(0, upd.latest_ms - end_ms) if open_ and end_ms is not None else 0
    return EtaRecord(upd.tracking_id, upd.as_of_ms if upd.as_of_ms is not None else risk.get("as_of_ms", 0),
                     LATE_RISK_OPEN if open_ else LATE_RISK_CLEAR, late_by_ms, upd.eta_ms, upd.earliest_ms,
                     upd.latest_ms, upd.confidence, upd.basis)


def _deadline(st: Mapping[str, Any], cfg: ParcelPromiseConfig) -> int:
    if st.get("delivered_ms") is not None:
        return st["delivered_ms"] + cfg.delivered_ttl_ms
    end_ms = st.get("promised_end_ms")
    return max(st["last_ms"], end_ms if end_ms is not None else st["last_ms"]) + cfg.risk.forget_after_ms


def _with_timer(st: dict[str, Any], emits: list, cfg: ParcelPromiseConfig) -> Decision:
    """One timer per parcel at its deadline; moved only when the deadline comes earlier
    (delivery), otherwise re-armed lazily when it fires."""
    deadline = _deadline(st, cfg)
    pending = st.get("timer_ms")
    if pending is None:
        st["timer_ms"] = deadline
        return Decision(st, tuple(emits), deadline)
    if deadline < pending:
        st["timer_ms"] = deadline
        return Decision(st, tuple(emits), deadline, cancel_timers_ms=(pending,))
    return Decision(st, tuple(emits))


def _apply_estimate(st: dict[str, Any], upd: EtaUpdate, now_ms: int, cfg: ParcelPromiseConfig) -> list:
    before = st.get("risk")
    d = risk_step(before, upd, st.get("promised_end_ms"), now_ms, cfg.risk)
    if d.state is before:
        return []  # older than the freshest estimate applied
    st["risk"] = d.state
    st["last_eta"] = upd
    return list(d.emits) + [_eta_record(st, upd)]


def promise_step(state: Mapping[str, Any] | None, event: Any, now_ms: int,
                 cfg: ParcelPromiseConfig = DEFAULT_PARCEL_CONFIG) -> Decision:
    """Per-parcel promise rule, keyed by tracking_id: :func:`risk_step` on estimates,
    :func:`on_delivered` on delivery, with the promise taken from shipment states.

    * An :class:`EtaUpdate` (ROUTE or LANE) is applied at once unless an estimate with
      a later ``as_of_ms`` already was; each applied one yields an :class:`EtaRecord`
      and any LATE_RISK alert change. Estimates for a delivered parcel are ignored.
    * A shipment state (``udfs.lanes.ShipmentView``, newer version only) is held until
      the event-time timer at its own time fires (:func:`promise_on_timer`), i.e. until
      the watermark says every estimate made before it has been applied. So a
      delivery is never judged before the estimates that preceded it, whichever
      input is faster. Applying it updates the promise, carrier and lane; a moved
      promise re-scores the last estimate. DELIVERED resolves an open alert, emits the
      :class:`SlaOutcome` and a record clearing the flag; another terminal status
      (cancelled, returned, expired) resolves the alert with that status as the
      reason and scores nothing.

    State: ``tracking_id``, ``risk`` (risk_step's; its own forget timer is not used,
    this rule's deadline timer covers it), ``last_eta``, ``pending`` views,
    ``promised_end_ms``, ``carrier``, ``lane``, ``version``, ``delivered_ms``,
    ``last_ms`` and the deadline timer ``timer_ms``. Cleared ``delivered_ttl_ms`` after
    delivery or a terminal status, or ``forget_after_ms`` after the later of the
    promise end and the last event (an open alert is then closed as EXPIRED).
    """
    st = dict(state) if state else {}
    st["tracking_id"] = event.tracking_id
    if isinstance(event, EtaUpdate):
        if st.get("delivered_ms") is not None:
            return Decision(state)
        emits = _apply_estimate(st, event, now_ms, cfg)
        if not emits:
            return Decision(state)
        as_of_ms = event.as_of_ms if event.as_of_ms is not None else now_ms
        st["last_ms"] = max(st.get("last_ms", as_of_ms), as_of_ms)
        return _with_timer(st, emits, cfg)
    view = event
    pending = list(st.get("pending") or ())
    if view.version <= st.get("version", 0) or any(v.version == view.version for v in pending):
        return Decision(state)  # already applied or already held
    st["pending"] = pending + [view]
    return Decision(st, timer_ms=view.event_time_ms)


def _apply_view(st: dict[str, Any], view: Any, now_ms: int, cfg: ParcelPromiseConfig) -> list:
    if view.version <= st.get("version", 0):
        return []
    st["version"] = view.version
    if view.carrier:
        st["carrier"] = view.carrier
    if view.lane:
        st["lane"] = view.lane
    moved = view.promised_end_ms is not None and view.promised_end_ms != st.get("promised_end_ms")
    if view.promised_end_ms is not None:
        st["promised_end_ms"] = view.promised_end_ms
    st["last_ms"] = max(st.get("last_ms", view.event_time_ms), view.event_time_ms)
    if st.get("delivered_ms") is not None:
        return []
    emits: list[Any] = []
    if moved and st.get("last_eta") is not None:
        # Score the last estimate against the promise first, also when this state is
        # already the delivery: an earlier state carrying the promise may have been
        # superseded before it got here, and the parcel was at risk all the same.
        emits += _apply_estimate(st, st["last_eta"], now_ms, cfg)
    if view.status == DELIVERED_STATUS or view.terminal:
        if view.status == DELIVERED_STATUS:
            d = on_delivered(st.get("risk"), view.tracking_id, view.event_time_ms, st.get("promised_end_ms"),
                             st.get("carrier") or "UNKNOWN", st.get("lane") or "UNKNOWN")
            emits += list(d.emits)
        else:
            emits += _close(st, view.tracking_id, view.event_time_ms, view.status)
        # At least as new as any estimate already written, so the Redis guard lets it in.
        as_of_ms = max(view.event_time_ms, (st.get("risk") or {}).get("as_of_ms", 0))
        emits.append(EtaRecord(view.tracking_id, as_of_ms, LATE_RISK_CLEAR, 0))
        st["risk"], st["last_eta"], st["delivered_ms"] = None, None, view.event_time_ms
    return emits


def _close(st: Mapping[str, Any], tracking_id: str, at_ms: int, reason: str) -> list:
    open_ = (st.get("risk") or {}).get("open")
    if not open_:
        return []
    closed = dict(open_, revision=open_["revision"] + 1)
    return [_alert(tracking_id, closed, RESOLVED, at_ms, st.get("promised_end_ms") or 0, None, reason)]


def promise_on_timer(state: Mapping[str, Any] | None, timer_ms: int,
                     cfg: ParcelPromiseConfig = DEFAULT_PARCEL_CONFIG) -> Decision:
    """Apply the held shipment states up to ``timer_ms``; at the deadline, forget the
    parcel (closing an open alert as EXPIRED) or re-arm if it moved later."""
    if not state:
        return Decision(None)
    st = dict(state)
    emits: list[Any] = []
    pending = sorted(st.get("pending") or (), key=lambda v: v.version)
    due = [v for v in pending if v.event_time_ms <= timer_ms]
    if due:
        st["pending"] = [v for v in pending if v.event_time_ms > timer_ms]
        for view in due:
            emits += _apply_view(st, view, timer_ms, cfg)
    if timer_ms == st.get("timer_ms"):
        st["timer_ms"] = None
        if timer_ms >= _deadline(st, cfg):
            if not st.get("pending"):
                return Decision(None, tuple(emits + _close(st, st["tracking_id"], timer_ms, "EXPIRED")))
            # Held states still to come: their timers re-arm the deadline when applied.
            return Decision(st, tuple(emits))
    if "last_ms" not in st:
        return Decision(st, tuple(emits))
    return _with_timer(st, emits, cfg)
