"""Order status rolled up from the statuses of its shipments (or packages).

An order is what a customer bought; it is delivered when everything still owed is
delivered. Cancelled shipments are no longer owed, so they drop out of the rollup
unless nothing else is left. Trouble outranks progress: an order with one delivered
parcel and one damaged parcel is an EXCEPTION for operations, not "partially delivered".
"""
from __future__ import annotations

from enum import Enum
from typing import Mapping

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
