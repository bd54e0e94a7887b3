"""Pure pieces of auth: key format and hashing, key specs, signed page tokens."""
import pytest

from api.errors import ApiError
from api.tokens import PageTokens
from fleetflow import apikeys


def test_new_key_parses_and_hashes_with_the_pepper():
    key_id, raw = apikeys.new_key()
    assert apikeys.key_id_of(raw) == key_id and len(key_id) == 16
    h = apikeys.hash_key(raw, b"pepper-1")
    assert apikeys.matches(raw, h, b"pepper-1")
    assert not apikeys.matches(raw, h, b"pepper-2")
    assert not apikeys.matches(raw + "x", h, b"pepper-1")


@pytest.mark.parametrize("raw", ["", "ffk_", "ffk_XYZ_abc", "ffk_0123456789abcdef_short", "Bearer x"])
def test_malformed_keys_have_no_id(raw):
    assert apikeys.key_id_of(raw) is None


def test_key_specs():
    assert apikeys.check_spec("partner", " fedex ", None) == ("FEDEX", 600)
    assert apikeys.check_spec("admin", None, 5) == (None, 5)
    for role, carrier, limit in [("partner", None, None), ("dispatcher", "FEDEX", None), ("root", None, None),
                                 ("customer", None, 0), ("partner", "fed ex", None)]:
        with pytest.raises(apikeys.ApiKeyError):
            apikeys.check_spec(role, carrier, limit)


def test_page_tokens_round_trip_and_refuse_forgery_and_other_queries():
    tokens = PageTokens(b"pepper")
    t = tokens.encode(["history", "TRK1", 20], {"p": "abc", "i": 3})
    assert tokens.decode(["history", "TRK1", 20], t) == {"p": "abc", "i": 3}
    assert tokens.decode(["history", "TRK1", 20], None) is None
    for scope, token in [(["history", "TRK2", 20], t), (["history", "TRK1", 20], t[:-2] + "AA"),
                         (["history", "TRK1", 20], "nodot"), (["history", "TRK1", 20], "a.b.c")]:
        with pytest.raises(ApiError) as e:
            tokens.decode(scope, token)
        assert e.value.status == 400 and e.value.code == "INVALID_PAGE_TOKEN"
    assert PageTokens(b"other").encode(["q"], {}) != PageTokens(b"pepper").encode(["q"], {})


def test_vehicle_patterns_are_partner_only_named_and_matched_fnmatch_style():
    assert apikeys.check_vehicle_patterns("partner", ["FX-VAN*, FX-TRUCK?", "FX-VAN*"]) == ("FX-VAN*", "FX-TRUCK?")
    assert apikeys.check_vehicle_patterns("admin", []) == ()
    assert apikeys.vehicle_allowed("FX-VAN12", ("FX-VAN*",))
    assert not apikeys.vehicle_allowed("VAN007", ("FX-VAN*",))
    assert not apikeys.vehicle_allowed("fx-van12", ("FX-VAN*",))  # van ids are case-sensitive
    assert not apikeys.vehicle_allowed("VAN007", ())
    for role, patterns in [("admin", ["FX*"]), ("dispatcher", ["FX*"]), ("partner", ["*"]), ("partner", ["**?"]),
                           ("partner", ["FX VAN*"]), ("partner", ["X" * 65]), ("partner", [f"P{i}" for i in range(21)])]:
        with pytest.raises(apikeys.ApiKeyError):
            apikeys.check_vehicle_patterns(role, patterns)
