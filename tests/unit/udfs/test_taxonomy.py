import pytest

from udfs.taxonomy import (DEFAULT_DETAIL, DETAIL_STATUS, REQUIRED_PAIRS, Detail, Status, details_of, is_terminal,
                           is_valid_pair, parse_detail, parse_status)

AFTERSHIP_TAGS = {"PENDING", "INFO_RECEIVED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "ATTEMPT_FAIL", "DELIVERED",
                  "AVAILABLE_FOR_PICKUP", "EXCEPTION", "EXPIRED"}


def test_status_covers_aftership_tags_plus_return_and_cancel():
    assert {s.value for s in Status} == AFTERSHIP_TAGS | {"RETURN_TO_SENDER", "CANCELLED"}


def test_enum_values_are_their_names_so_persisted_values_read_back():
    for member in list(Status) + list(Detail):
        assert member.value == member.name
        assert str(member) == member.name


def test_every_detail_belongs_to_exactly_one_status():
    assert set(DETAIL_STATUS) == set(Detail)


def test_every_status_has_a_default_detail_that_belongs_to_it():
    for status in Status:
        assert is_valid_pair(status, DEFAULT_DETAIL[status])
        assert DEFAULT_DETAIL[status] in details_of(status)


@pytest.mark.parametrize("status, detail", REQUIRED_PAIRS)
def test_required_pairs_are_valid(status, detail):
    assert is_valid_pair(status, detail)


@pytest.mark.parametrize("status, detail, valid", [
    (Status.EXCEPTION, Detail.WEATHER_DELAY, True),
    (Status.IN_TRANSIT, Detail.CUSTOMS_CLEARED, True),
    (Status.IN_TRANSIT, Detail.CUSTOMS_HOLD, False),
    (Status.DELIVERED, Detail.OUT_FOR_DELIVERY, False),
    (Status.RETURN_TO_SENDER, Detail.RETURNED, True),
])
def test_is_valid_pair(status, detail, valid):
    assert is_valid_pair(status, detail) is valid


@pytest.mark.parametrize("status, detail, terminal", [
    (Status.DELIVERED, Detail.DELIVERED, True),
    (Status.CANCELLED, Detail.CANCELLED, True),
    (Status.EXPIRED, Detail.EXPIRED, True),
    (Status.RETURN_TO_SENDER, Detail.RETURNED, True),
    (Status.RETURN_TO_SENDER, Detail.RETURN_TO_SENDER, False),
    (Status.EXCEPTION, Detail.LOST, False),
    (Status.OUT_FOR_DELIVERY, Detail.OUT_FOR_DELIVERY, False),
])
def test_terminal_statuses(status, detail, terminal):
    assert is_terminal(status, detail) is terminal


def test_parse_is_lenient_on_case_and_whitespace_and_names_bad_values():
    assert parse_status(" in_transit ") is Status.IN_TRANSIT
    assert parse_detail("weather_delay") is Detail.WEATHER_DELAY
    with pytest.raises(ValueError, match="SHIPPED"):
        parse_status("SHIPPED")
    with pytest.raises(ValueError, match="unknown detail"):
        parse_detail("TELEPORTED")
