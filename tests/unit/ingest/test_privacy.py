import hmac
import logging
import re

import pytest

from fleetflow.privacy import DEV_HMAC_KEY, HMAC_KEY_ENV, hmac_key_from_env, pseudonymise_driver

KEY = b"test-key-1"


def test_pseudonym_is_prefixed_32_hex_chars():
    assert re.fullmatch(r"drv_[0-9a-f]{32}", pseudonymise_driver("D-1042", KEY))


def test_pseudonym_is_hmac_sha256_truncated_to_16_bytes():
    assert pseudonymise_driver("D-1042", KEY) == "drv_" + hmac.new(KEY, b"D-1042", "sha256").hexdigest()[:32]


def test_pseudonym_is_stable_across_releases():
    # Changing the algorithm would split every driver's history in two; this literal guards that.
    assert pseudonymise_driver("D-1042", KEY) == "drv_afcd22bbe29901963c8f20cfd30b2ab8"


def test_same_driver_same_key_is_deterministic():
    assert pseudonymise_driver("D-1042", KEY) == pseudonymise_driver("D-1042", KEY)


def test_surrounding_whitespace_does_not_change_identity():
    assert pseudonymise_driver("  D-1042\n", KEY) == pseudonymise_driver("D-1042", KEY)


def test_different_key_gives_unrelated_pseudonym():
    assert pseudonymise_driver("D-1042", KEY) != pseudonymise_driver("D-1042", b"test-key-2")


def test_different_drivers_differ():
    assert pseudonymise_driver("D-1042", KEY) != pseudonymise_driver("D-1043", KEY)



@pytest.mark.parametrize("driver_id,key", [("", KEY), ("   ", KEY), ("D-1", b"")])
def test_empty_inputs_are_rejected(driver_id, key):
    with pytest.raises(ValueError):
        pseudonymise_driver(driver_id, key)


def test_key_comes_from_env():
    assert hmac_key_from_env({HMAC_KEY_ENV: "s3cret"}) == b"s3cret"


def test_dev_key_only_when_unset_and_it_warns(caplog):
    # Attach to the logger itself: a CLI test may have configured fleetflow logging to
    # stop propagating, which would hide the record from caplog's root handler.
    logger = logging.getLogger("fleetflow.privacy")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="fleetflow.privacy"):
            assert hmac_key_from_env({}) == DEV_HMAC_KEY
            assert hmac_key_from_env({HMAC_KEY_ENV: ""}) == DEV_HMAC_KEY
    finally:
        logger.removeHandler(caplog.handler)
    assert "DEV ONLY" in caplog.text
    assert b"DEV-ONLY" in DEV_HMAC_KEY
