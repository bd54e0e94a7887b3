"""Seeded fuzzing of the front door: whatever arrives, it is either a record or a dead letter."""
from __future__ import annotations

import math
import random
from collections import Counter

from fleetflow.contracts import _registry, decode, encode
from fleetflow.ingest import route_record
from tests.builders import T0_MS, hours, minutes, ping, scan
from udfs.validation import REASONS, ValidationConfig

SEED = 20260302
N_INPUTS = 2000
CFG = ValidationConfig()
CARRIERS = frozenset({"FEDEX", "UPS", "DHL"})
NOW_MS = T0_MS + hours(1)
CODEC_REASONS = {"UNDECODABLE", "UNKNOWN_FINGERPRINT", "WRONG_SCHEMA"}


def _valid(rng: random.Random, schema: str) -> dict:
    at_ms = NOW_MS - rng.randrange(0, hours(48))
    # Explicit ids: the builders' default id counter is global and would make inputs order-dependent.
    event_id = f"ev-{rng.getrandbits(48):012x}"
    if schema == "scans":
        located = rng.random() < 0.5
        return scan(f"TRK{rng.randrange(10_000):05d}", rng.choice(["PU", "AR", "DP", "OD", "DL"]), at_ms=at_ms,
                    carrier=rng.choice(sorted(CARRIERS)), lat=rng.uniform(-60, 70) if located else None,
                    lon=rng.uniform(-170, 170) if located else None, leg=rng.randrange(1, 4),
                    vehicle_id=rng.choice([None, "VAN001", "VAN002"]), event_id=event_id)
    return ping(f"VAN{rng.randrange(100):03d}", rng.uniform(-60, 70), rng.uniform(-170, 170), at_ms=at_ms,
                speed_mps=rng.choice([None, rng.uniform(0, 30)]), accuracy_m=rng.choice([None, 3.0, 800.0]),
                source=rng.choice(["GPS", "CELL", "DRIVER_CHECKIN"]), event_id=event_id)


def _broken_field(rng: random.Random, schema: str) -> tuple[dict, str]:
    record = _valid(rng, schema)
    choice = rng.choice(["id", "bad_id", "long_id", "coords", "nan", "island", "future", "old"]
                        + (["carrier"] if schema == "scans" else []))
    key = "tracking_id" if schema == "scans" else "vehicle_id"
    if choice == "id":
        record["event_id"] = rng.choice(["", " ", "\t"])
        return record, "MISSING_ID"
    if choice == "bad_id":
        record[rng.choice(["event_id", key])] = rng.choice([" K1", "K1\t", "K\x001", "K\x1b1", "K\u20281"])
        return record, "BAD_ID"
    if choice == "long_id":
        field, limit = rng.choice([("event_id", 512), (key, 128)])
        record[field] = "K" * (limit + 1 + rng.randrange(10_000))
        return record, "ID_TOO_LONG"
    if choice in ("coords", "nan", "island"):
        lat, lon = {"coords": (rng.choice([-91.0, 95.5]), 10.0), "nan": (math.nan, 10.0), "island": (0.0, 0.0)}[choice]
        if schema == "scans":
            record["location"] = {"lat": lat, "lon": lon}
        else:
            record["lat"], record["lon"] = lat, lon
        return record, "BAD_COORDINATES"
    if choice == "future":
        record["event_time_ms"] = NOW_MS + minutes(5) + 1 + rng.randrange(hours(100))
        return record, "FUTURE_EVENT"
    if choice == "old":
        record["event_time_ms"] = NOW_MS - hours(24 * 7) - 1 - rng.randrange(hours(100))
        return record, "TOO_OLD"
    record["carrier"] = "ACME"
    return record, "UNKNOWN_CARRIER"


def _inputs() -> list[tuple[str, bytes, str | None]]:
    """(schema, raw, expected) where expected is None (valid), a reason, or '?' (anything goes)."""
    rng = random.Random(SEED)
    fingerprints = sorted(_registry()[1])
    out: list[tuple[str, bytes, str | None]] = []
    while len(out) < N_INPUTS:
        schema = rng.choice(["scans", "pings"])
        kind = rng.randrange(7)
        if kind == 0:
            out.append((schema, rng.randbytes(rng.randrange(0, 120)), "?"))
        elif kind == 1:
            # A known header makes the body reach fastavro, exercising resolution on garbage.
            out.append((schema, b"\xc3\x01" + rng.choice(fingerprints) + rng.randbytes(rng.randrange(0, 120)), "?"))
        elif kind == 2:
            raw = bytearray(encode(schema, _valid(rng, schema)))
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            out.append((schema, bytes(raw), "?"))
        elif kind == 3:
            raw = encode(schema, _valid(rng, schema))
            out.append((schema, raw[:rng.randrange(len(raw))], "UNDECODABLE"))
        elif kind == 4:
            record, reason = _broken_field(rng, schema)
            out.append((schema, encode(schema, record), reason))
        elif kind == 5:
            other = "pings" if schema == "scans" else "scans"
            out.append((schema, encode(other, _valid(rng, other)), "WRONG_SCHEMA"))
        else:
            out.append((schema, encode(schema, _valid(rng, schema)), None))
    return out


INPUTS = _inputs()


def test_inputs_are_deterministic():
    again = _inputs()
    assert [raw for _, raw, _ in again] == [raw for _, raw, _ in INPUTS]
    assert len(INPUTS) == N_INPUTS


def test_every_input_is_either_valid_or_dead_and_nothing_escapes():
    valid, dead = [], []
    for offset, (schema, raw, _) in enumerate(INPUTS):
        record, dead_letter = route_record(raw, schema, NOW_MS, CFG, CARRIERS,
                                           source_partition=offset % 4, source_offset=offset)
        assert (record is None) != (dead_letter is None)
        (valid if record is not None else dead).append(record if record is not None else dead_letter)
    assert len(valid) + len(dead) == len(INPUTS)
    assert valid and dead
    for dead_letter in dead:
        assert dead_letter["reason"] in REASONS | CODEC_REASONS
        assert isinstance(dead_letter["original"], bytes)
        assert dead_letter["original"] == INPUTS[dead_letter["source_offset"]][1]
        assert decode(encode("dead_letters", dead_letter))[1] == dead_letter
    for record in valid:
        assert encode("scans" if "tracking_id" in record else "pings", record)


def test_known_outcomes_are_exact():
    outcomes = Counter()
    for schema, raw, expected in INPUTS:
        if expected == "?":
            continue
        record, dead_letter = route_record(raw, schema, NOW_MS, CFG, CARRIERS)
        got = None if record is not None else dead_letter["reason"]
        assert got == expected, (schema, raw.hex())
        outcomes[got] += 1
    # Every category is exercised, so a silent change in the generator cannot hollow the test out.
    assert {None, "MISSING_ID", "BAD_ID", "ID_TOO_LONG", "BAD_COORDINATES", "FUTURE_EVENT", "TOO_OLD",
            "UNKNOWN_CARRIER", "UNDECODABLE", "WRONG_SCHEMA"} <= set(outcomes)
