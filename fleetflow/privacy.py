"""Driver identities never enter FleetFlow's streams in the clear.

A driver id is replaced at the edge by a keyed HMAC, so the same driver maps to the
same pseudonym across days (stall and dwell analytics still work) while nobody
without the key can go back from pseudonym to person. Rotating the key deliberately
breaks that link for all earlier data.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from typing import Mapping

HMAC_KEY_ENV = "FLEETFLOW_HMAC_KEY"
PSEUDONYM_PREFIX = "drv_"
# 16 bytes keeps collisions negligible for any realistic fleet while staying short in keys and logs.
PSEUDONYM_BYTES = 16

# DEV ONLY. Used solely when FLEETFLOW_HMAC_KEY is unset, so a laptop stack works out of the box.
# It is public, so pseudonyms made with it are reversible by anyone with a list of driver ids.
DEV_HMAC_KEY = b"fleetflow-DEV-ONLY-hmac-key-not-a-secret"

log = logging.getLogger(__name__)


def pseudonymise_driver(raw_driver_id: str, key: bytes) -> str:
    """``drv_`` + hex of the first 16 bytes of HMAC-SHA256(key, driver id)."""
    if not key:
        raise ValueError("HMAC key must not be empty")
    # Surrounding whitespace is a formatting accident of the source system, not part of the identity.
    driver_id = raw_driver_id.strip()
    if not driver_id:
        raise ValueError("driver id must not be empty")
    digest = hmac.new(key, driver_id.encode("utf-8"), hashlib.sha256).digest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_BYTES].hex()


def hmac_key_from_env(environ: Mapping[str, str] | None = None) -> bytes:
    """The key from ``FLEETFLOW_HMAC_KEY``, or the labelled dev key (with a warning) when unset."""
    env = os.environ if environ is None else environ
    value = env.get(HMAC_KEY_ENV)
    if value:
        return value.encode("utf-8")
    log.warning("%s is not set: using the public DEV ONLY key; driver pseudonyms are not private", HMAC_KEY_ENV)
    return DEV_HMAC_KEY


SUBJECT_REF_PREFIX = "sub_"


def subject_ref(kind: str, value: str, key: bytes) -> str:
    """A stable, non-reversible reference to one identifier of a data subject.

    Privacy-request audit rows carry this instead of the identifier, so the audit trail
    of an erasure does not itself keep what was erased. ``kind`` is part of the message,
    so a tracking id and an order id with the same text never share a reference.
    """
    if not key:
        raise ValueError("HMAC key must not be empty")
    if not value.strip():
        raise ValueError("identifier must not be empty")
    msg = f"{kind}\x1f{value.strip()}".encode("utf-8")
    return SUBJECT_REF_PREFIX + hmac.new(key, msg, hashlib.sha256).digest()[:PSEUDONYM_BYTES].hex()
