import pytest

from udfs.orders import OrderStatus, rollup
from udfs.taxonomy import Status as S

O = OrderStatus


@pytest.mark.parametrize("statuses, expected", [
    ({}, O.IN_PROGRESS),
    ({"a": S.DELIVERED}, O.ALL_DELIVERED),
    ({"a": S.DELIVERED, "b": S.DELIVERED}, O.ALL_DELIVERED),
    ({"a": S.DELIVERED, "b": S.IN_TRANSIT}, O.PARTIALLY_DELIVERED),
    ({"a": S.DELIVERED, "b": S.ATTEMPT_FAIL}, O.PARTIALLY_DELIVERED),
    ({"a": S.PENDING, "b": S.OUT_FOR_DELIVERY}, O.IN_PROGRESS),
    ({"a": S.AVAILABLE_FOR_PICKUP}, O.IN_PROGRESS),
    ({"a": S.DELIVERED, "b": S.EXCEPTION}, O.EXCEPTION),
    ({"a": S.IN_TRANSIT, "b": S.RETURN_TO_SENDER}, O.EXCEPTION),
    ({"a": S.EXPIRED}, O.EXCEPTION),
    ({"a": S.CANCELLED}, O.CANCELLED),
    ({"a": S.CANCELLED, "b": S.CANCELLED}, O.CANCELLED),
    # A cancelled parcel is no longer owed: the rest decides.
    ({"a": S.CANCELLED, "b": S.DELIVERED}, O.ALL_DELIVERED),
    ({"a": S.CANCELLED, "b": S.IN_TRANSIT}, O.IN_PROGRESS),
    ({"a": S.CANCELLED, "b": S.EXCEPTION, "c": S.DELIVERED}, O.EXCEPTION),
])
def test_rollup(statuses, expected):
    assert rollup(statuses) is expected


def test_rollup_does_not_depend_on_shipment_order():
    statuses = {"a": S.DELIVERED, "b": S.IN_TRANSIT, "c": S.CANCELLED}
    reversed_ = dict(reversed(list(statuses.items())))
    assert rollup(statuses) is rollup(reversed_) is O.PARTIALLY_DELIVERED


# ---------------------------------------------------------------- keyed rollup

from udfs.orders import (DEFAULT_FORGET_AFTER_MS, OrderPlanned, OrderRollup, ShipmentUpdate, order_planned,  # noqa: E402
                         plan_index_rows, rollup_on_timer, rollup_step)
from tests.builders import T0_MS, hours, plan  # noqa: E402

PLAN = OrderPlanned("O1", 1, ("A", "B"), T0_MS)


def _fold(events):
    state, out = None, []
    for e in events:
        d = rollup_step(state, e, 0)
        state = d.state
        out.extend(d.emits)
    return state, out


def _upd(tid, status, version, h=1):
    return ShipmentUpdate("O1", tid, status, version, T0_MS + hours(h))


def test_order_is_delivered_when_every_planned_shipment_is():
    state, out = _fold([PLAN, _upd("A", S.DELIVERED, 3), _upd("B", S.IN_TRANSIT, 2), _upd("B", S.DELIVERED, 4)])
    assert [r.order_status for r in out] == [O.IN_PROGRESS, O.PARTIALLY_DELIVERED, O.PARTIALLY_DELIVERED,
                                             O.ALL_DELIVERED]
    assert out[-1].shipments == (("A", S.DELIVERED, 3), ("B", S.DELIVERED, 4))


def test_order_rollup_twin_updates_before_the_plan_ends_the_same():
    in_order, _ = _fold([PLAN, _upd("A", S.DELIVERED, 3), _upd("B", S.DELIVERED, 4)])
    shuffled, out = _fold([_upd("B", S.DELIVERED, 4), _upd("A", S.DELIVERED, 3), PLAN])
    assert shuffled.shipments == in_order.shipments and shuffled.planned == in_order.planned
    assert out[-1].order_status is O.ALL_DELIVERED


def test_older_or_replayed_shipment_version_changes_nothing():
    state, _ = _fold([PLAN, _upd("A", S.DELIVERED, 3)])
    assert rollup_step(state, _upd("A", S.IN_TRANSIT, 2), 0).emits == ()
    assert rollup_step(state, _upd("A", S.DELIVERED, 3), 0).emits == ()


def test_replan_removes_dropped_shipments_and_ignores_their_late_updates():
    state, _ = _fold([PLAN, _upd("A", S.IN_TRANSIT, 1)])
    d = rollup_step(state, OrderPlanned("O1", 2, ("B",), T0_MS + hours(2)), 0)
    (r,) = d.emits
    assert r.removed == ("A",) and [tid for tid, _, _ in r.shipments] == ["B"]
    assert rollup_step(d.state, _upd("A", S.DELIVERED, 5), 0).emits == ()
    assert rollup_step(d.state, PLAN, 0).emits == (), "an older plan is ignored"


def test_order_state_is_forgotten_after_its_last_event_with_one_lazy_timer():
    d = rollup_step(None, PLAN, 0)
    assert d.timer_ms == T0_MS + DEFAULT_FORGET_AFTER_MS
    d2 = rollup_step(d.state, _upd("A", S.IN_TRANSIT, 1, h=10), 0)
    assert d2.timer_ms is None, "a later event does not register another timer"
    early = rollup_on_timer(d2.state, d.timer_ms)
    assert early.state is not None and early.timer_ms == T0_MS + hours(10) + DEFAULT_FORGET_AFTER_MS
    assert rollup_on_timer(early.state, early.timer_ms).state is None


def test_plan_record_gives_members_and_index_rows():
    rec = plan("O9", ("T2", "T1"), at_ms=T0_MS, postcode="10 115", country="de")
    assert order_planned(rec) == OrderPlanned("O9", 1, ("T1", "T2"), T0_MS)
    rows = plan_index_rows(rec)
    assert sorted(r.tracking_id for r in rows) == ["T1", "T2"]
    assert {(r.country, r.postcode, r.order_day) for r in rows} == {("DE", "10115", T0_MS // 86_400_000)}
    assert isinstance(rollup_step(None, order_planned(rec), 0).emits[0], OrderRollup)
