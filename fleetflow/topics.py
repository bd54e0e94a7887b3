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
# Derived topics, written by FleetFlow's own jobs (see docs/data-layout.md).
# Shipment job -> ETA job (promise windows, delivered) and anyone else who wants changes.
SHIPMENT_STATES = Topic("ff.shipment-states", "shipment_states", partitions=4, retention_ms=7 * DAY_MS)
# Vehicle job: geofence ENTER/EXIT after hysteresis.
FENCE_EVENTS = Topic("ff.fence-events", "fence_events", partitions=4, retention_ms=14 * DAY_MS)
# Every job's raw alerts; the alerts job dedups, throttles and routes them onto ff.alerts.
ALERT_CANDIDATES = Topic("ff.alert-candidates", "alerts", partitions=4, retention_ms=7 * DAY_MS)
# API -> alerts job: acknowledge / assign.
ALERT_ACKS = Topic("ff.alert-acks", "alert_acks", partitions=1, retention_ms=30 * DAY_MS)

ALL = (PINGS, SCANS, PLANS, ASSIGNMENTS, GEOFENCES, CARRIER_MAPPINGS, ALERTS, DEAD_LETTERS,
       SHIPMENT_STATES, FENCE_EVENTS, ALERT_CANDIDATES, ALERT_ACKS)
BY_NAME = {t.name: t for t in ALL}
# Schema stem -> the topic that record type is published on. ff.alerts comes before
# ff.alert-candidates in ALL, so an "alerts" record maps to the gated topic.
TOPIC_BY_SCHEMA: dict[str, str] = {}
for _t in ALL:
    if _t.schema:
        TOPIC_BY_SCHEMA.setdefault(_t.schema, _t.name)
