"""The front door: every raw Kafka value becomes either a valid record or a dead letter.

``route_record`` never raises and never drops: decoding failures (contracts) and
admission failures (udfs.validation) both end up as a DeadLetter dict shaped like
``avro/dead_letters.avsc``, carrying the original bytes and where they came from, so
the input can be inspected and replayed.

Every schema with identifiers in ``udfs.validation.ID_FIELDS`` (all the jobs' inputs)
gets the shared id checks first (MISSING_ID, ID_TOO_LONG, BAD_ID), with a detail that
names the field; scans and pings then get their own admission rules.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from fleetflow import topics
from fleetflow.contracts import ContractError, decode
from udfs.validation import (MAX_EVENT_ID_CHARS, ValidationConfig, ping_admission_reason, scan_admission_reason,
                             topic_id_problem)

DeadLetter = dict[str, Any]

# Where a record did not come from a Kafka partition (partner files, API uploads).
NO_PARTITION = -1
NO_OFFSET = -1
# A string field quoted in a dead letter's detail is cut to this (the original bytes keep all of it).
MAX_SHOWN_CHARS = MAX_EVENT_ID_CHARS

_TOPIC_BY_SCHEMA = topics.TOPIC_BY_SCHEMA

Validator = Callable[[Mapping[str, Any], int, ValidationConfig, frozenset[str]], "str | None"]

_VALIDATORS: dict[str, Validator] = {
    "scans": scan_admission_reason,
    "pings": lambda record, now_ms, cfg, _carriers: ping_admission_reason(record, now_ms, cfg),
}


def make_dead_letter(reason: str, detail: str, original: bytes, *, source_topic: str,
                     source_partition: int = NO_PARTITION, source_offset: int = NO_OFFSET,
                     detected_time_ms: int) -> DeadLetter:
    return {
        "reason": reason,
        "detail": detail,
        "original": bytes(original),
        "source_topic": source_topic,
        "source_partition": int(source_partition),
        "source_offset": int(source_offset),
        "detected_time_ms": int(detected_time_ms),
    }


def validate_record(topic_schema: str, record: Mapping[str, Any], now_ms: int, cfg: ValidationConfig,
                    known_carriers: frozenset[str]) -> str | None:
    """Reason code, or None: the shared id checks, then the schema's admission rules (if any)."""
    problem = topic_id_problem(topic_schema, record)
    if problem is not None:
        return problem.reason
    return _admission_reason(topic_schema, record, now_ms, cfg, known_carriers)


def _admission_reason(topic_schema: str, record: Mapping[str, Any], now_ms: int, cfg: ValidationConfig,
                      known_carriers: frozenset[str]) -> str | None:
    validator = _VALIDATORS.get(topic_schema)
    return None if validator is None else validator(record, now_ms, cfg, known_carriers)


def route_record(raw: bytes, topic_schema: str, now_ms: int, cfg: ValidationConfig,
                 known_carriers: frozenset[str], *, source_topic: str | None = None,
                 source_partition: int = NO_PARTITION,
                 source_offset: int = NO_OFFSET) -> tuple[dict[str, Any] | None, DeadLetter | None]:
    """``(record, None)`` if ``raw`` decodes as ``topic_schema`` and passes validation, else ``(None, dead_letter)``.

    ``now_ms`` is the processing time of the caller; it is both the reference for the
    FUTURE_EVENT/TOO_OLD checks and the dead letter's ``detected_time_ms``.
    """
    topic = source_topic if source_topic is not None else _TOPIC_BY_SCHEMA.get(topic_schema, topic_schema)

    def dead(reason: str, detail: str) -> tuple[None, DeadLetter]:
        original = raw if isinstance(raw, (bytes, bytearray, memoryview)) else repr(raw).encode("utf-8")
        return None, make_dead_letter(reason, detail, original, source_topic=topic,
                                      source_partition=source_partition, source_offset=source_offset,
                                      detected_time_ms=now_ms)

    try:
        _, record = decode(raw, expected=topic_schema)
    except ContractError as exc:
        return dead(exc.reason, str(exc))
    problem = topic_id_problem(topic_schema, record)
    if problem is not None:
        # The detail names the field; an over-long id is quoted only by its start.
        return dead(problem.reason, f"{topic_schema}: {problem.detail}")
    reason = _admission_reason(topic_schema, record, now_ms, cfg, known_carriers)
    if reason is not None:
        return dead(reason, _describe(topic_schema, record))
    return record, None


def _describe(topic_schema: str, record: Mapping[str, Any]) -> str:
    # Enough to find the record again without copying the payload into the detail.
    # The ids passed the id checks by now; other strings (an over-long carrier) are clipped.
    keys = ("event_id", "tracking_id", "vehicle_id", "carrier", "event_time_ms", "lat", "lon", "location")
    shown = {k: _clip(record.get(k)) for k in keys if k in record}
    return f"{topic_schema}: {shown}"


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SHOWN_CHARS:
        return f"{value[:MAX_SHOWN_CHARS]}... ({len(value)} chars)"
    return value
