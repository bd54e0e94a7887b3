"""How a vehicle's Redis hash becomes the API's Vehicle fields."""
from api.repos.vehicles import parse_vehicle


def test_a_van_inside_no_fence_has_an_empty_fence_list_not_none():
    # The vehicle job writes fences="" once a van has left every fence; the API model
    # requires a list, so None here was a 500 on /v1/vehicles.
    v = parse_vehicle("VAN1", {b"fences": b"", b"lat": b"52.5", b"speed_mps": b""})
    assert v["fences"] == [] and v["lat"] == 52.5 and v["speed_mps"] is None


def test_fences_are_split_and_blank_entries_dropped():
    assert parse_vehicle("VAN1", {b"fences": b"GF-1,,GF-2"})["fences"] == ["GF-1", "GF-2"]


def test_an_empty_hash_is_no_vehicle():
    assert parse_vehicle("VAN1", {}) is None
