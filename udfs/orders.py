"""Order status rolled up from the statuses of its shipments (or packages).

An order is what a customer bought; it is delivered when everything still owed is
delivered. Cancelled shipments are no longer owed, so they drop out of the rollup
unless nothing else is left. Trouble outranks progress: an order with one delivered
parcel and one damaged parcel is an EXCEPTION for operations, not "partially delivered".

``rollup_step`` keeps one order's shipments keyed by order_id, fed by its plan (which
parcels belong to it) and by the lifecycle's state changes (what each parcel is doing).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Mapping

from udfs.decision import Decision
from udfs.taxonomy import Status

S = Status


class OrderStatus(str, Enum):
    ALL_DELIVERED = "ALL_DELIVERED"
    PARTIALLY_DELIVERED = "PARTIALLY_DELIVERED"
    IN_PROGRESS = "IN_PROGRESS"
    EXCEPTION = "EXCEPTION"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


# Shipment statuses that mean this parcel will not reach the customer without help.
# ATTEMPT_FAIL is not among them: carriers retry on their own.
TROUBLE: frozenset[Status] = frozenset({S.EXCEPTION, S.RETURN_TO_SENDER, S.EXPIRED})


def rollup(shipment_statuses: Mapping[str, Status]) -> OrderStatus:
    owed = [s for s in shipment_statuses.values() if s is not S.CANCELLED]
    if not shipment_statuses:
        # Nothing tracked yet: the plan exists but no shipment has reported.
        return OrderStatus.IN_PROGRESS
    if not owed:
        return OrderStatus.CANCELLED
    if any(s in TROUBLE for s in owed):
        return OrderStatus.EXCEPTION
    delivered = sum(1 for s in owed if s is S.DELIVERED)
    if delivered == len(owed):
        return OrderStatus.ALL_DELIVERED
    if delivered:
        return OrderStatus.PARTIALLY_DELIVERED
    return OrderStatus.IN_PROGRESS


# ---------------------------------------------------------------- the keyed rollup (by order_id)

DAY_MS = 86_400_000
# Longer than a shipment's own life (30 d idle expiry + 7 d retention), so the order row
# outlives every update its shipments can still send.
DEFAULT_FORGET_AFTER_MS = 45 * DAY_MS


@dataclass(frozen=True)
class OrderPlanned:
    """Which tracking ids belong to an order, from its plan (``avro/plans.avsc``)."""
    order_id: str
    plan_version: int
    tracking_ids: tuple[str, ...]
    order_time_ms: int


@dataclass(frozen=True)
class ShipmentUpdate:
    """One shipment's new status, from the lifecycle's StateChanged (which carries order_id)."""
    order_id: str
    tracking_id: str
    status: Status
    version: int
    event_time_ms: int


@dataclass(frozen=True)
class OrderState:
    order_id: str
    plan_version: int = 0
    # Members per the newest plan; empty until a plan has been seen.
    planned: tuple[str, ...] = ()
    # tracking_id -> (status, version): the highest version wins, so replays are harmless.
    shipments: Mapping[str, tuple[Status, int]] = field(default_factory=dict, hash=False)
    last_event_time_ms: int = 0
    timer_ms: int | None = None


@dataclass(frozen=True)
class OrderRollup:
    """The order's shipments and the status they add up to; the sink writes one row per shipment."""
    order_id: str
    order_status: OrderStatus
    shipments: tuple[tuple[str, Status, int], ...]
    # Tracking ids a newer plan dropped from the order: the sink removes their rows.
    removed: tuple[str, ...] = ()
    event_time_ms: int = 0


def order_planned(order_plan: Mapping[str, Any]) -> OrderPlanned:
    tids = sorted({p["tracking_id"] for s in order_plan.get("shipments") or () for p in s.get("packages") or ()})
    return OrderPlanned(order_plan["order_id"], int(order_plan.get("plan_version") or 1), tuple(tids),
                        int(order_plan.get("order_time_ms") or 0))


def _members(s: OrderState) -> tuple[str, ...]:
    return s.planned if s.planned else tuple(sorted(s.shipments))


def _rollup_of(s: OrderState, removed: tuple[str, ...], at_ms: int) -> OrderRollup:
    # A planned shipment that has not reported yet is still owed: PENDING.
    rows = tuple((tid, *s.shipments.get(tid, (S.PENDING, 0))) for tid in _members(s))
    return OrderRollup(s.order_id, rollup({tid: st for tid, st, _ in rows}), rows, removed, at_ms)


def rollup_step(state: OrderState | None, event: OrderPlanned | ShipmentUpdate, now_ms: int,
                forget_after_ms: int = DEFAULT_FORGET_AFTER_MS) -> Decision[OrderState]:
    """Fold a plan or a shipment update into the order; emit the new rollup when it changed.

    State: ``OrderState`` per order_id, cleared by the one timer ``forget_after_ms`` after
    the newest event (re-armed lazily by ``rollup_on_timer``, never per event).
    """
    base = state or OrderState(event.order_id)
    removed: tuple[str, ...] = ()
    if isinstance(event, OrderPlanned):
        if event.plan_version < base.plan_version:
            return Decision(base)
        removed = tuple(sorted(set(_members(base)) - set(event.tracking_ids)))
        after = replace(base, plan_version=event.plan_version, planned=event.tracking_ids,
                        shipments={k: v for k, v in base.shipments.items() if k not in removed})
        at_ms = event.order_time_ms
    else:
        known = base.shipments.get(event.tracking_id)
        if known is not None and known[1] >= event.version:
            return Decision(base)
        if base.planned and event.tracking_id not in base.planned:
            # Re-planned out of this order; its state still names the old order.
            return Decision(base)
        after = replace(base, shipments={**base.shipments, event.tracking_id: (event.status, event.version)})
        at_ms = event.event_time_ms
    after = replace(after, last_event_time_ms=max(base.last_event_time_ms, at_ms))
    before_rollup = _rollup_of(base, (), at_ms) if state is not None else None
    out = _rollup_of(after, removed, at_ms)
    emits = () if before_rollup is not None and (before_rollup.order_status, before_rollup.shipments) == (
        out.order_status, out.shipments) and not removed else (out,)
    if after.timer_ms is None:
        deadline = after.last_event_time_ms + forget_after_ms
        return Decision(replace(after, timer_ms=deadline), emits, timer_ms=deadline)
    return Decision(after, emits)


def rollup_on_timer(state: OrderState | None, timer_ms: int,
                    forget_after_ms: int = DEFAULT_FORGET_AFTER_MS) -> Decision[OrderState]:
    if state is None or timer_ms != state.timer_ms:
        return Decision(state)
    deadline = state.last_event_time_ms + forget_after_ms
    if deadline > timer_ms:
        return Decision(replace(state, timer_ms=deadline), timer_ms=deadline)
    return Decision(None)


# ---------------------------------------------------------------- search index rows from plans

@dataclass(frozen=True)
class PlannedShipmentIndex:
    """One package of a plan, for the by-postcode and by-order-day search tables."""
    tracking_id: str
    order_id: str
    shipment_id: str
    country: str
    postcode: str
    order_day: int
    order_time_ms: int
    service_level: str
    promised_end_ms: int | None


def plan_index_rows(order_plan: Mapping[str, Any]) -> list[PlannedShipmentIndex]:
    dest = order_plan.get("destination") or {}
    order_time_ms = int(order_plan.get("order_time_ms") or 0)
    out = []
    for shipment in order_plan.get("shipments") or ():
        for package in shipment.get("packages") or ():
            out.append(PlannedShipmentIndex(
                tracking_id=package["tracking_id"], order_id=order_plan["order_id"],
                shipment_id=shipment.get("shipment_id") or "", country=str(dest.get("country") or "").upper(),
                postcode=str(dest.get("postcode") or "").replace(" ", "").upper(),
                order_day=order_time_ms // DAY_MS, order_time_ms=order_time_ms,
                service_level=shipment.get("service_level") or "STANDARD",
                promised_end_ms=shipment.get("promised_window_end_ms")))
    return out
