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
