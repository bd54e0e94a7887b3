"""The ingest stage every job starts with: decode, validate, dead-letter the rest."""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import OutputTag, ProcessFunction

from fleetflow import contracts
from fleetflow.ingest import make_dead_letter, route_record
from jobs.operators import DecisionOperator
from jobs.sinks import BYTES
from udfs import dedup, validation

DEAD_LETTERS = OutputTag("dead-letters", BYTES)
MAX_DETAIL_CHARS = 500


Check = Callable[[Mapping[str, Any], int, validation.ValidationConfig], "str | None"]
# A record that decodes and passes the shared rules but that its view or check refuses.
INVALID_RECORD = "INVALID_RECORD"


def _bytes(value) -> bytes:
    # Records handed over from Java collections arrive as signed bytes.
    return value if isinstance(value, bytes) else bytes(b & 0xFF for b in value)


class ValidateRecords(ProcessFunction):
    """Decode and validate one topic's records; anything untrusted becomes a dead letter.

    Stateless. Counts ``<schema>_in``, ``<schema>_valid`` and ``dead_letters_<REASON>`` as
    Flink metrics. Valid records leave as ``view(record)``; dead letters leave on the
    ``DEAD_LETTERS`` side output, Avro-encoded, with their bytes and origin. Exactly one
    of the two per input: a ``view`` that raises on a record the shared rules let through
    dead-letters it as ``INVALID_RECORD`` instead of failing the job.

    ``check(record, now_ms, cfg)`` (optional) adds a topic's own rules: it returns a
    reason code or None. ``describe(record)`` (optional) is the dead letter's detail.

    ``for_dedup``: valid records leave as ``udfs.dedup.Arrival`` (dedup key, content
    hash, the view, the original bytes and origin) for ``DedupOperator``.
    """

    def __init__(self, schema: str, view: Callable[[dict], Any], cfg: validation.ValidationConfig,
                 known_carriers: frozenset[str] = frozenset(), check: Check | None = None,
                 describe: Callable[[Mapping[str, Any]], str] | None = None, for_dedup: bool = False):
        self.schema = schema
        self.view = view
        self.cfg = cfg
        self.known_carriers = known_carriers
        self.check = check
        self.describe = describe
        self.for_dedup = for_dedup

    def open(self, runtime_context):
        self._metrics = runtime_context.get_metrics_group()
        self._in = self._metrics.counter(f"{self.schema}_in")
        self._valid = self._metrics.counter(f"{self.schema}_valid")
        self._by_reason = {}

    def process_element(self, row, ctx: ProcessFunction.Context):
        self._in.inc()
        now_ms = ctx.timer_service().current_processing_time()
        raw = _bytes(row["value"])
        origin = dict(source_topic=row["topic"], source_partition=row["partition"], source_offset=row["offset"])
        record, dead = route_record(raw, self.schema, now_ms, self.cfg, self.known_carriers, **origin)
        if dead is None:
            reason = self.check(record, now_ms, self.cfg) if self.check else None
            try:
                view = None if reason else self.view(record)
            except (KeyError, TypeError, ValueError) as exc:
                reason, view = INVALID_RECORD, None
                record = {**record, "error": str(exc)}
            if view is not None:
                self._valid.inc()
                if self.for_dedup:
                    view = dedup.Arrival(dedup.dedup_key(self.schema, record), dedup.content_hash(self.schema, record),
                                         view, raw, **origin)
                yield view
                return
            detail = self.describe(record) if self.describe else f"{self.schema}: {record.get('error', reason)}"
            dead = make_dead_letter(reason, detail, raw, detected_time_ms=now_ms, **origin)
        counter = self._by_reason.get(dead["reason"])
        if counter is None:
            counter = self._by_reason[dead["reason"]] = self._metrics.counter(f"dead_letters_{dead['reason']}")
        counter.inc()
        dead["detail"] = dead["detail"][:MAX_DETAIL_CHARS]
        yield DEAD_LETTERS, contracts.encode("dead_letters", dead)


class EventTime(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp: int) -> int:
        return value.event_time_ms


def event_time_strategy(out_of_orderness_ms: int, idleness_ms: int) -> WatermarkStrategy:
    """Bounded out-of-orderness on ``event_time_ms``, idle partitions ignored.

    ``with_idleness`` comes first: PyFlink 2.2's ``with_idleness`` returns a new strategy
    without an assigner set before it, and every record would keep Long.MIN_VALUE as its
    timestamp (event-time timers would never fire on a cluster).
    """
    return (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(out_of_orderness_ms))
            .with_idleness(Duration.of_millis(idleness_ms))
            .with_timestamp_assigner(EventTime()))


class DedupOperator(DecisionOperator):
    """The dedup stage: ``udfs.dedup.step``/``on_timer`` per dedup key, conflicts dead-lettered.

    Input: ``udfs.dedup.Arrival``, keyed by ``Arrival.key`` (the event's source identity,
    see ``udfs.dedup.dedup_key``). State: one ``DedupState`` per key (state name
    ``dedup``): first event time, expiry, the first arrival's content hash; cleared by
    the event-time timer at ``expires_at_ms`` (``ttl_ms`` after the first arrival).

    The first arrival leaves as its view; an exact repeat is dropped and counted
    (``<schema>_duplicates``); a repeat with other content leaves on the
    ``DEAD_LETTERS`` side output as ``EVENT_ID_CONFLICT`` with its original bytes and
    origin (``dead_letters_EVENT_ID_CONFLICT``).
    """

    def __init__(self, schema: str, ttl_ms: int):
        super().__init__(functools.partial(dedup.step, ttl_ms=ttl_ms), dedup.on_timer, state_name="dedup")
        self.schema = schema

    def open(self, runtime_context):
        super().open(runtime_context)
        metrics = runtime_context.get_metrics_group()
        self._duplicates = metrics.counter(f"{self.schema}_duplicates")
        self._conflicts = metrics.counter(f"dead_letters_{dedup.EVENT_ID_CONFLICT}")

    def process_element(self, value, ctx):
        emits = tuple(super().process_element(value, ctx))
        if not emits:
            self._duplicates.inc()
        for out in emits:
            if not isinstance(out, dedup.Conflict):
                yield out
                continue
            self._conflicts.inc()
            a = out.arrival
            dead = make_dead_letter(out.reason, f"{self.schema}: {out.detail}"[:MAX_DETAIL_CHARS], a.original,
                                    source_topic=a.source_topic, source_partition=a.source_partition,
                                    source_offset=a.source_offset,
                                    detected_time_ms=ctx.timer_service().current_processing_time())
            yield DEAD_LETTERS, contracts.encode("dead_letters", dead)


def unique_by_source(checked, schema: str, *, out_of_orderness_ms: int, idleness_ms: int, dedup_ttl_ms: int,
                     uid_prefix: str):
    """Arrivals (``ValidateRecords(for_dedup=True)``) → (events with event-time watermarks,
    deduplicated by source identity; EVENT_ID_CONFLICT dead letters).

    Operator uids ``<uid_prefix>-watermarks`` and ``<uid_prefix>-dedup``, state ``dedup``:
    the same as when the stage was keyed by bare event_id (see ``udfs/dedup.py`` for
    what an upgrade from such a savepoint means).
    """
    if schema not in dedup.DEDUP_TOPICS:
        raise ValueError(f"{schema}: no dedup key defined (udfs/dedup.py dedup_key)")
    strategy = event_time_strategy(out_of_orderness_ms, idleness_ms)
    timed = checked.assign_timestamps_and_watermarks(strategy).uid(f"{uid_prefix}-watermarks").name(
        f"{schema} event time")
    unique = (timed.key_by(_arrival_key, key_type=Types.STRING())
              .process(DedupOperator(schema, dedup_ttl_ms), output_type=Types.PICKLED_BYTE_ARRAY())
              .uid(f"{uid_prefix}-dedup").name(f"dedup {schema} by source and event id"))
    return unique, unique.get_side_output(DEAD_LETTERS)


def _arrival_key(arrival: dedup.Arrival) -> str:
    return arrival.key


def validated_unique(stream, schema: str, view: Callable[[dict], Any], *, validation_cfg: validation.ValidationConfig,
                     known_carriers: frozenset[str], out_of_orderness_ms: int, idleness_ms: int, dedup_ttl_ms: int,
                     uid_prefix: str, check: Check | None = None):
    """RawRecord rows → (valid events with event-time watermarks, deduplicated by source
    identity (``udfs.dedup.dedup_key``); dead letters, EVENT_ID_CONFLICT included).

    Operator uids are ``<uid_prefix>-validate``, ``-watermarks`` and ``-dedup``; keep them stable.
    """
    checked = (stream.process(ValidateRecords(schema, view, validation_cfg, known_carriers, check=check,
                                              for_dedup=True),
                              output_type=Types.PICKLED_BYTE_ARRAY())
               .uid(f"{uid_prefix}-validate").name(f"decode + validate {schema}"))
    unique, conflicts = unique_by_source(checked, schema, out_of_orderness_ms=out_of_orderness_ms,
                                         idleness_ms=idleness_ms, dedup_ttl_ms=dedup_ttl_ms, uid_prefix=uid_prefix)
    return unique, checked.get_side_output(DEAD_LETTERS).union(conflicts)
