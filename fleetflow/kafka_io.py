"""Producing to and reading from FleetFlow topics with kafka-python."""
from __future__ import annotations

from typing import Iterable

from fleetflow import contracts


def producer(bootstrap: str, **overrides):
    from kafka import KafkaProducer
    # acks=all + idempotence: a publish returns only once the broker has it, exactly once.
    opts = dict(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True,
                retries=5, max_in_flight_requests_per_connection=1)
    opts.update(overrides)
    return KafkaProducer(**opts)


def publish(bootstrap: str, topic: str, schema: str, records: Iterable[dict], key_field: str | None) -> int:
    records = list(records)
    # kafka-python's idempotent producer can hang forever in close() when it never sent
    # anything (its sender thread waits on a socket with no request in flight).
    if not records:
        return 0
    p = producer(bootstrap)
    n = 0
    try:
        futures = []
        for r in records:
            key = r[key_field].encode() if key_field else None
            futures.append(p.send(topic, key=key, value=contracts.encode(schema, r)))
            n += 1
        p.flush()
        for f in futures:
            f.get(timeout=30)
    finally:
        p.close()
    return n


def publish_encoded(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Publish already-encoded (key, value) pairs; returns the count acknowledged."""
    items = list(items)
    if not items:
        return 0
    p = producer(bootstrap)
    try:
        futures = [p.send(topic, key=k, value=v) for k, v in items]
        p.flush()
        for f in futures:
            f.get(timeout=30)
    finally:
        p.close()
    return len(items)


def read_all(bootstrap: str, topic: str, timeout_ms: int = 3000) -> list[bytes]:
    """Every value currently in ``topic`` (for tests and the CLI)."""
    from kafka import KafkaConsumer
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=timeout_ms, group_id=None)
    try:
        return [m.value for m in c]
    finally:
        c.close()
