"""Turning a clean event stream into what a real ingest sees, and keeping count of every change.

Each clean ping or scan gets at most one of: duplicate (same bytes re-sent, as a partner
retry), out-of-order (produced just after the next event of the same key), late
(produced 5-30 min after its event time). Malformed records are extra records derived
from a clean one, so the clean stream and its ground truth stay complete.

Out-of-order is defined per key because that is what the stateful jobs see: a victim is
always produced after a later-timed event of its own vehicle or package, within the
bound. Scans of one package are minutes apart, so few scans qualify; late scans
reorder packages' histories anyway.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from fleetflow.contracts import encode

DUPLICATE = "DUPLICATE"
OUT_OF_ORDER = "OUT_OF_ORDER"
LATE = "LATE"

RANDOM_BYTES = "RANDOM_BYTES"
TRUNCATED = "TRUNCATED"
MISSING_ID = "MISSING_ID"
BAD_COORDINATES = "BAD_COORDINATES"
FUTURE_TIME = "FUTURE_TIME"
UNKNOWN_CARRIER = "UNKNOWN_CARRIER"
MALFORMED_KINDS = (RANDOM_BYTES, TRUNCATED, MISSING_ID, BAD_COORDINATES, FUTURE_TIME, UNKNOWN_CARRIER)

LATE_MIN_MS = 5 * 60_000
LATE_MAX_MS = 30 * 60_000
RETRY_MIN_MS = 1_000
RETRY_MAX_MS = 120_000
FUTURE_MIN_MS = 24 * 3_600_000
FUTURE_MAX_MS = 30 * 24 * 3_600_000
# Unknown however they are folded: a lower-case "dhl" is DHL to every consumer.
UNKNOWN_CARRIERS = ("ACME", "FEDX", "PONY_EXPRESS", "zippy")

# Which record field carries the Kafka key, per schema: blanking it leaves the record unkeyed.
KEY_FIELD = {"pings": "vehicle_id", "scans": "tracking_id"}
FAULTABLE = frozenset(KEY_FIELD)


@dataclass(slots=True)
class CleanEvent:
    topic: str
    schema: str
    key: str | None
    record: dict[str, Any]
    event_time_ms: int
    produce_ms: int
    seq: int


@dataclass(slots=True)
class Outgoing:
    produce_ms: int
    seq: int
    topic: str
    key: str | None
    value: bytes
    fault: str | None = None


@dataclass
class FaultLog:
    duplicates: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    # (kind, topic, original event_id)
    malformed: list[tuple[str, str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        by_kind = {k: 0 for k in MALFORMED_KINDS}
        for kind, _, _ in self.malformed:
            by_kind[kind] += 1
        return {"duplicates": len(self.duplicates), "out_of_order": len(self.out_of_order), "late": len(self.late),
                "malformed": len(self.malformed), **{f"malformed_{k.lower()}": v for k, v in by_kind.items()}}


@dataclass(frozen=True)
class FaultRates:
    duplicate: float
    out_of_order: float
    out_of_order_bound_ms: int
    late: float
    malformed: float


def inject(rng: random.Random, events: list[CleanEvent], rates: FaultRates) -> tuple[list[Outgoing], FaultLog]:
    """All records to produce, sorted by produce time; ``events`` must be in (event_time_ms, seq) order."""
    log = FaultLog()
    values = [encode(e.schema, e.record) for e in events]
    fault: list[str | None] = [None] * len(events)
    produce = [e.produce_ms for e in events]
    extra: list[Outgoing] = []
    next_seq = max((e.seq for e in events), default=0) + 1

    by_key: dict[tuple[str, str | None], list[int]] = {}
    for i, e in enumerate(events):
        if e.schema in FAULTABLE:
            by_key.setdefault((e.topic, e.key), []).append(i)

    for indices in by_key.values():
        # An overtaker must stay where it is, or the victim would not end up behind it.
        anchored = set()
        for pos, i in enumerate(indices):
            if i in anchored:
                continue
            u = rng.random()
            e = events[i]
            if u < rates.late:
                fault[i] = LATE
                produce[i] = e.event_time_ms + rng.randint(LATE_MIN_MS, LATE_MAX_MS)
                log.late.append(e.record["event_id"])
            elif u < rates.late + rates.duplicate:
                fault[i] = DUPLICATE
                extra.append(Outgoing(produce[i] + rng.randint(RETRY_MIN_MS, RETRY_MAX_MS), next_seq, e.topic, e.key,
                                      values[i], DUPLICATE))
                next_seq += 1
                log.duplicates.append(e.record["event_id"])
            elif u < rates.late + rates.duplicate + rates.out_of_order and pos + 1 < len(indices):
                j = indices[pos + 1]
                gap_ms = events[j].event_time_ms - e.event_time_ms
                if 0 < gap_ms <= rates.out_of_order_bound_ms:
                    anchored.add(j)
                    fault[i] = OUT_OF_ORDER
                    produce[i] = produce[j] + rng.randint(1, 2_000)
                    log.out_of_order.append(e.record["event_id"])

    for i, e in enumerate(events):
        if e.schema in FAULTABLE and rng.random() < rates.malformed:
            kind, key, value = _malformed(rng, e, values[i], produce[i])
            extra.append(Outgoing(produce[i] + rng.randint(0, 2_000), next_seq, e.topic, key, value, kind))
            next_seq += 1
            log.malformed.append((kind, e.topic, e.record["event_id"]))

    out = [Outgoing(produce[i], e.seq, e.topic, e.key, values[i], fault[i] if fault[i] != DUPLICATE else None)
           for i, e in enumerate(events)]
    out.extend(extra)
    out.sort(key=lambda o: (o.produce_ms, o.seq))
    return out, log


def _malformed(rng: random.Random, e: CleanEvent, value: bytes, produce_ms: int) -> tuple[str, str | None, bytes]:
    kinds = [k for k in MALFORMED_KINDS if e.schema == "scans" or k != UNKNOWN_CARRIER]
    kind = rng.choice(kinds)
    if kind == RANDOM_BYTES:
        raw = bytearray(rng.randbytes(rng.randint(1, 120)))
        # Never the single-object marker's first byte, so this cannot decode by accident.
        raw[0] = rng.randint(0, 0xC2)
        return kind, e.key, bytes(raw)
    if kind == TRUNCATED:
        # A strict prefix of an Avro body always runs out of bytes mid-record.
        return kind, e.key, value[:rng.randint(1, len(value) - 1)]
    record = dict(e.record)
    record["event_id"] = f"{record['event_id']}-x"
    key = e.key
    if kind == MISSING_ID:
        blank = rng.choice(("event_id", KEY_FIELD[e.schema]))
        record[blank] = rng.choice(("", "   "))
        if blank == KEY_FIELD[e.schema]:
            key = None
    elif kind == BAD_COORDINATES:
        lat, lon = rng.choice(((0.0, 0.0), (rng.uniform(90.5, 180.0), record.get("lon") or 13.4),
                               (math.nan, math.nan), (record.get("lat") or 52.5, rng.uniform(-400.0, -181.0))))
        if e.schema == "pings":
            record["lat"], record["lon"] = lat, lon
        else:
            record["location"] = {"lat": lat, "lon": lon}
    elif kind == FUTURE_TIME:
        record["event_time_ms"] = produce_ms + rng.randint(FUTURE_MIN_MS, FUTURE_MAX_MS)
    elif kind == UNKNOWN_CARRIER:
        record["carrier"] = rng.choice(UNKNOWN_CARRIERS)
    return kind, key, encode(e.schema, record)
