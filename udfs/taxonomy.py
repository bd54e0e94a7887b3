"""FleetFlow's one status vocabulary, shared by every carrier.

Top-level ``Status`` follows AfterShip's nine tags (so anyone who has used a tracking
aggregator reads it without a legend) plus RETURN_TO_SENDER and CANCELLED, which
AfterShip folds into EXCEPTION but which FleetFlow's lifecycle treats differently (a
return has its own clock; a cancellation soft-deletes the shipment). ``Detail`` is the
sub-status; each detail belongs to exactly one status (``DETAIL_STATUS``), so a
(status, detail) pair can be checked without knowing the carrier.

Values are persisted in Flink state (pickled), Cassandra rows and Kafka records:
members may be added, never renamed or removed.
"""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    PENDING = "PENDING"
    INFO_RECEIVED = "INFO_RECEIVED"
    IN_TRANSIT = "IN_TRANSIT"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    ATTEMPT_FAIL = "ATTEMPT_FAIL"
    DELIVERED = "DELIVERED"
    AVAILABLE_FOR_PICKUP = "AVAILABLE_FOR_PICKUP"
    EXCEPTION = "EXCEPTION"
    EXPIRED = "EXPIRED"
    RETURN_TO_SENDER = "RETURN_TO_SENDER"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


class Detail(str, Enum):
    # PENDING
    AWAITING_INFO = "AWAITING_INFO"
    # INFO_RECEIVED
    LABEL_CREATED = "LABEL_CREATED"
    PICKUP_SCHEDULED = "PICKUP_SCHEDULED"
    # IN_TRANSIT
    PICKED_UP = "PICKED_UP"
    DROPPED_OFF = "DROPPED_OFF"
    ARRIVED_AT_FACILITY = "ARRIVED_AT_FACILITY"
    PROCESSING_AT_FACILITY = "PROCESSING_AT_FACILITY"
    DEPARTED_FACILITY = "DEPARTED_FACILITY"
    IN_TRANSIT = "IN_TRANSIT"
    HANDOFF_TO_CARRIER = "HANDOFF_TO_CARRIER"
    CUSTOMS_PROCESSING = "CUSTOMS_PROCESSING"
    CUSTOMS_CLEARED = "CUSTOMS_CLEARED"
    ARRIVED_AT_DESTINATION_COUNTRY = "ARRIVED_AT_DESTINATION_COUNTRY"
    REROUTED = "REROUTED"
    # OUT_FOR_DELIVERY
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    NEAR_DESTINATION = "NEAR_DESTINATION"
    # ATTEMPT_FAIL
    ATTEMPT_FAILED_RECIPIENT_ABSENT = "ATTEMPT_FAILED_RECIPIENT_ABSENT"
    ATTEMPT_FAILED_NO_ACCESS = "ATTEMPT_FAILED_NO_ACCESS"
    ATTEMPT_FAILED_BUSINESS_CLOSED = "ATTEMPT_FAILED_BUSINESS_CLOSED"
    ATTEMPT_FAILED_NO_SAFE_PLACE = "ATTEMPT_FAILED_NO_SAFE_PLACE"
    # DELIVERED
    DELIVERED = "DELIVERED"
    DELIVERED_TO_NEIGHBOUR = "DELIVERED_TO_NEIGHBOUR"
    DELIVERED_TO_MAILBOX = "DELIVERED_TO_MAILBOX"
    DELIVERED_TO_SAFE_PLACE = "DELIVERED_TO_SAFE_PLACE"
    COLLECTED_BY_RECIPIENT = "COLLECTED_BY_RECIPIENT"
    # AVAILABLE_FOR_PICKUP
    AVAILABLE_FOR_PICKUP = "AVAILABLE_FOR_PICKUP"
    HELD_AT_LOCKER = "HELD_AT_LOCKER"
    # EXCEPTION
    CUSTOMS_HOLD = "CUSTOMS_HOLD"
    WEATHER_DELAY = "WEATHER_DELAY"
    DELAYED = "DELAYED"
    REFUSED = "REFUSED"
    DAMAGED = "DAMAGED"
    LOST = "LOST"
    ADDRESS_ISSUE = "ADDRESS_ISSUE"
    MISSORTED = "MISSORTED"
    HELD_BY_CARRIER = "HELD_BY_CARRIER"
    PAYMENT_REQUIRED = "PAYMENT_REQUIRED"
    OTHER_EXCEPTION = "OTHER_EXCEPTION"
    # EXPIRED
    EXPIRED = "EXPIRED"
    # RETURN_TO_SENDER
    RETURN_TO_SENDER = "RETURN_TO_SENDER"
    RETURNED = "RETURNED"
    # CANCELLED
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


S, D = Status, Detail

# The table that makes a (status, detail) pair checkable on its own.
DETAIL_STATUS: dict[Detail, Status] = {
    D.AWAITING_INFO: S.PENDING,
    D.LABEL_CREATED: S.INFO_RECEIVED,
    D.PICKUP_SCHEDULED: S.INFO_RECEIVED,
    D.PICKED_UP: S.IN_TRANSIT,
    D.DROPPED_OFF: S.IN_TRANSIT,
    D.ARRIVED_AT_FACILITY: S.IN_TRANSIT,
    D.PROCESSING_AT_FACILITY: S.IN_TRANSIT,
    D.DEPARTED_FACILITY: S.IN_TRANSIT,
    D.IN_TRANSIT: S.IN_TRANSIT,
    D.HANDOFF_TO_CARRIER: S.IN_TRANSIT,
    D.CUSTOMS_PROCESSING: S.IN_TRANSIT,
    D.CUSTOMS_CLEARED: S.IN_TRANSIT,
    D.ARRIVED_AT_DESTINATION_COUNTRY: S.IN_TRANSIT,
    D.REROUTED: S.IN_TRANSIT,
    D.OUT_FOR_DELIVERY: S.OUT_FOR_DELIVERY,
    D.NEAR_DESTINATION: S.OUT_FOR_DELIVERY,
    D.ATTEMPT_FAILED_RECIPIENT_ABSENT: S.ATTEMPT_FAIL,
    D.ATTEMPT_FAILED_NO_ACCESS: S.ATTEMPT_FAIL,
    D.ATTEMPT_FAILED_BUSINESS_CLOSED: S.ATTEMPT_FAIL,
    D.ATTEMPT_FAILED_NO_SAFE_PLACE: S.ATTEMPT_FAIL,
    D.DELIVERED: S.DELIVERED,
    D.DELIVERED_TO_NEIGHBOUR: S.DELIVERED,
    D.DELIVERED_TO_MAILBOX: S.DELIVERED,
    D.DELIVERED_TO_SAFE_PLACE: S.DELIVERED,
    D.COLLECTED_BY_RECIPIENT: S.DELIVERED,
    D.AVAILABLE_FOR_PICKUP: S.AVAILABLE_FOR_PICKUP,
    D.HELD_AT_LOCKER: S.AVAILABLE_FOR_PICKUP,
    D.CUSTOMS_HOLD: S.EXCEPTION,
    D.WEATHER_DELAY: S.EXCEPTION,
    D.DELAYED: S.EXCEPTION,
    D.REFUSED: S.EXCEPTION,
    D.DAMAGED: S.EXCEPTION,
    D.LOST: S.EXCEPTION,
    D.ADDRESS_ISSUE: S.EXCEPTION,
    D.MISSORTED: S.EXCEPTION,
    D.HELD_BY_CARRIER: S.EXCEPTION,
    D.PAYMENT_REQUIRED: S.EXCEPTION,
    D.OTHER_EXCEPTION: S.EXCEPTION,
    D.EXPIRED: S.EXPIRED,
    D.RETURN_TO_SENDER: S.RETURN_TO_SENDER,
    D.RETURNED: S.RETURN_TO_SENDER,
    D.CANCELLED: S.CANCELLED,
}

# What a status means when nothing more specific is known (e.g. a timer-made EXPIRED).
DEFAULT_DETAIL: dict[Status, Detail] = {
    S.PENDING: D.AWAITING_INFO,
    S.INFO_RECEIVED: D.LABEL_CREATED,
    S.IN_TRANSIT: D.IN_TRANSIT,
    S.OUT_FOR_DELIVERY: D.OUT_FOR_DELIVERY,
    S.ATTEMPT_FAIL: D.ATTEMPT_FAILED_RECIPIENT_ABSENT,
    S.DELIVERED: D.DELIVERED,
    S.AVAILABLE_FOR_PICKUP: D.AVAILABLE_FOR_PICKUP,
    S.EXCEPTION: D.OTHER_EXCEPTION,
    S.EXPIRED: D.EXPIRED,
    S.RETURN_TO_SENDER: D.RETURN_TO_SENDER,
    S.CANCELLED: D.CANCELLED,
}

# The fleet simulator picks a raw code for each of these by reverse lookup in every
# carrier file, so a carrier file that lacks one cannot be simulated.
REQUIRED_PAIRS: tuple[tuple[Status, Detail], ...] = (
    (S.INFO_RECEIVED, D.LABEL_CREATED),
    (S.IN_TRANSIT, D.PICKED_UP),
    (S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    (S.IN_TRANSIT, D.DEPARTED_FACILITY),
    (S.IN_TRANSIT, D.IN_TRANSIT),
    (S.OUT_FOR_DELIVERY, D.OUT_FOR_DELIVERY),
    (S.DELIVERED, D.DELIVERED),
    (S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_RECIPIENT_ABSENT),
    (S.EXCEPTION, D.DAMAGED),
    (S.EXCEPTION, D.WEATHER_DELAY),
    (S.EXCEPTION, D.CUSTOMS_HOLD),
    (S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    (S.IN_TRANSIT, D.HANDOFF_TO_CARRIER),
)

# Statuses before the parcel has physically moved; a leg in one of these has not started.
PRE_TRANSIT: frozenset[Status] = frozenset({S.PENDING, S.INFO_RECEIVED})


def details_of(status: Status) -> tuple[Detail, ...]:
    return tuple(d for d, s in DETAIL_STATUS.items() if s is status)


def is_valid_pair(status: Status, detail: Detail) -> bool:
    return DETAIL_STATUS.get(detail) is status


def is_terminal(status: Status, detail: Detail | None = None) -> bool:
    """True where the shipment's story is over and its state only waits to be cleared.

    A return is terminal only once it has reached the sender (RETURNED); while it is
    travelling back it still needs a stuck clock.
    """
    if status in (S.DELIVERED, S.CANCELLED, S.EXPIRED):
        return True
    return status is S.RETURN_TO_SENDER and detail is D.RETURNED


def parse_status(value: str) -> Status:
    """Status from its name; raises ValueError naming the bad value."""
    try:
        return Status(str(value).strip().upper())
    except ValueError:
        raise ValueError(f"unknown status {value!r}") from None


def parse_detail(value: str) -> Detail:
    try:
        return Detail(str(value).strip().upper())
    except ValueError:
        raise ValueError(f"unknown detail {value!r}") from None
