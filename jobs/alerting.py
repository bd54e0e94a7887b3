"""Alerts leave every job the same way: as Avro ``alerts`` records on ``ff.alert-candidates``.

The alerts job (jobs/alerts.py) is the only writer of ``ff.alerts``, Cassandra's alert
tables and the Redis alert stream: it dedups, throttles and routes what the other jobs
propose, so those rules live in one keyed place.
"""
from __future__ import annotations

from typing import Any, Mapping

from fleetflow import contracts
from jobs.sinks import BYTES


def encode_alert(record: Mapping[str, Any]) -> bytes:
    """One ``avro/alerts.avsc`` record → single-object bytes."""
    return contracts.encode("alerts", dict(record))


def to_candidates(stream, uid: str):
    """A stream of alert records (dicts) → a stream of encoded bytes for ``Sinks.alerts``."""
    return stream.map(encode_alert, output_type=BYTES).uid(uid).name("encode alert candidates")
