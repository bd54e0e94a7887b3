"""Geofences live on the compacted ``ff.geofences`` topic (avro/geofences.avsc); the API
reads the topic to list them and publishes records (``deleted=true`` to retire one).

Reading the whole topic is fine: it is compacted to one record per geofence, and the
result is cached for a few seconds.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from fleetflow import contracts, geofences, topics

CACHE_S = 2.0


def _read_latest(bootstrap: str) -> dict[str, dict[str, Any]]:
    """Latest record per id (retired ones included), as fleetflow.geofences decides it."""
    return geofences.latest(_read_records(bootstrap), include_deleted=True)


def _read_records(bootstrap: str) -> list[dict[str, Any]]:
    # Reads up to the end offsets taken at the start instead of waiting for a consumer
    # timeout, so a listing costs one pass over the (compacted) topic.
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                      consumer_timeout_ms=2000)
    try:
        parts = [TopicPartition(topics.GEOFENCES.name, p)
                 for p in sorted(c.partitions_for_topic(topics.GEOFENCES.name) or ())]
        if not parts:
            return []
        c.assign(parts)
        c.seek_to_beginning(*parts)
        end = c.end_offsets(parts)
        records: list[dict[str, Any]] = []
        while any(c.position(tp) < end[tp] for tp in parts):
            batch = c.poll(timeout_ms=1000)
            if not batch:
                break
            for msgs in batch.values():
                for m in msgs:
                    if m.value is None:
                        continue
                    try:
                        _, rec = contracts.decode(m.value, expected="geofences")
                    except contracts.ContractError:
                        continue
                    records.append(rec)
        return records
    finally:
        c.close()


class GeofenceStore:
    def __init__(self, bootstrap: str):
        self._bootstrap = bootstrap
        self._cached: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()

    async def latest(self) -> dict[str, dict[str, Any]]:
        async with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_S:
                self._cached = (time.monotonic(), await asyncio.to_thread(_read_latest, self._bootstrap))
            return self._cached[1]

    def remember(self, rec: dict[str, Any]) -> None:
        # Read-your-writes for this process without re-reading the topic.
        if self._cached is not None:
            self._cached[1][rec["geofence_id"]] = rec

    async def active(self) -> list[dict[str, Any]]:
        return sorted((r for r in (await self.latest()).values() if not r.get("deleted")),
                      key=lambda r: r["geofence_id"])
