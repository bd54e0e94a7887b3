"""Helpers for simulator tests: a small run (5 vans, 30 simulated minutes) with every fault turned up."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fleetflow import topics
from fleetflow.contracts import decode
from fleetflow.ingest import route_record
from fleetflow.simulate import SimConfig
from fleetflow.simulate.carriers import known_carriers
from fleetflow.simulate.sinks import read_recording
from tests.builders import T0_MS
from udfs.validation import DEFAULT_CONFIG

TEST_DRIVER_KEY = b"simulator-test-key"
SCHEMA_OF_TOPIC = {t.name: t.schema for t in topics.ALL if t.schema}


def sim_config(**overrides: Any) -> SimConfig:
    """Small and fault-heavy, so every fault type and a few stalls appear in half an hour."""
    base = SimConfig(seed=7, start_ms=T0_MS, duration_s=1800, vans=5, stops_per_van=10, duplicate_rate=0.05,
                     out_of_order_rate=0.10, late_rate=0.03, malformed_rate=0.03, stall_rate_per_hour=4.0,
                     failed_attempt_rate=0.2, exception_rate=0.1, driver_key=TEST_DRIVER_KEY)
    return dataclasses.replace(base, **overrides)


@dataclass(frozen=True)
class Seen:
    """One record of a recording as an ingest would see it."""
    produce_ms: int
    topic: str
    key: str | None
    raw: bytes
    record: dict[str, Any] | None  # None: rejected (undecodable or invalid)
    reason: str | None


def read_stream(recording_path, truth: dict[str, Any]) -> list[Seen]:
    carriers = known_carriers()
    out = []
    for r in read_recording(recording_path):
        produce_ms = truth["recording_start_ms"] + r.offset_ms
        record, dead = route_record(r.value, SCHEMA_OF_TOPIC[r.topic], produce_ms, DEFAULT_CONFIG, carriers,
                                    source_topic=r.topic)
        out.append(Seen(produce_ms, r.topic, r.key, r.value, record, None if dead is None else dead["reason"]))
    return out


def strict_decode(seen: Seen) -> dict[str, Any]:
    _, record = decode(seen.raw, expected=SCHEMA_OF_TOPIC[seen.topic])
    return record


@dataclass(frozen=True)
class Run:
    cfg: SimConfig
    summary: Any
    truth: dict[str, Any]
    stream: list[Seen]
    recording: Any


def identity(seen: Seen) -> tuple:
    """What makes a record the same event: event_id where the schema has one, else its natural key and version."""
    r = seen.record or {}
    if "event_id" in r:
        return ("event", r["event_id"])
    if "order_id" in r:
        return ("plan", r["order_id"], r["plan_version"])
    return ("geofence", r.get("geofence_id"), r.get("updated_time_ms"))
