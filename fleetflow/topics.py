"""Kafka topic names and their layout. One place, so jobs, CLI, API and k8s agree."""
from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    # Avro schema file stem in avro/; None for topics with a non-Avro payload.
    schema: str | None
    partitions: int
    retention_ms: int | None
    compacted: bool = False


PINGS = Topic("ff.pings", "pings", partitions=4, retention_ms=7 * DAY_MS)
SCANS = Topic("ff.scans", "scans", partitions=4, retention_ms=7 * DAY_MS)
PLANS = Topic("ff.plans", "plans", partitions=4, retention_ms=30 * DAY_MS)
ASSIGNMENTS = Topic("ff.assignments", "assignments", partitions=4, retention_ms=7 * DAY_MS)
GEOFENCES = Topic("ff.geofences", "geofences", partitions=1, retention_ms=None, compacted=True)
CARRIER_MAPPINGS = Topic("ff.carrier-mappings", "carrier_mappings", partitions=1, retention_ms=None, compacted=True)
ALERTS = Topic("ff.alerts", "alerts", partitions=4, retention_ms=14 * DAY_MS)
DEAD_LETTERS = Topic("ff.dead-letters", "dead_letters", partitions=2, retention_ms=30 * DAY_MS)

ALL = (PINGS, SCANS, PLANS, ASSIGNMENTS, GEOFENCES, CARRIER_MAPPINGS, ALERTS, DEAD_LETTERS)
BY_NAME = {t.name: t for t in ALL}
