"""The ingest stage every job starts with: decode, validate, dead-letter the rest."""
from __future__ import annotations

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
    """

    def __init__(self, schema: str, view: Callable[[dict], Any], cfg: validation.ValidationConfig,
                 known_carriers: frozenset[str] = frozenset(), check: Check | None = None,
                 describe: Callable[[Mapping[str, Any]], str] | None = None):
        self.schema = schema
        self.view = view
        self.cfg = cfg
        self.known_carriers = known_carriers
        self.check = check
        self.describe = describe

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


def validated_unique(stream, schema: str, view: Callable[[dict], Any], *, validation_cfg: validation.ValidationConfig,
                     known_carriers: frozenset[str], out_of_orderness_ms: int, idleness_ms: int, dedup_ttl_ms: int,
                     uid_prefix: str, check: Check | None = None):
    """RawRecord rows → (valid events with event-time watermarks, deduplicated by event_id; dead letters).

    Operator uids are ``<uid_prefix>-validate``, ``-watermarks`` and ``-dedup``; keep them stable.
    """
    checked = (stream.process(ValidateRecords(schema, view, validation_cfg, known_carriers, check=check),
                              output_type=Types.PICKLED_BYTE_ARRAY())
               .uid(f"{uid_prefix}-validate").name(f"decode + validate {schema}"))
    dead = checked.get_side_output(DEAD_LETTERS)
    strategy = event_time_strategy(out_of_orderness_ms, idleness_ms)
    timed = checked.assign_timestamps_and_watermarks(strategy).uid(f"{uid_prefix}-watermarks").name(
        f"{schema} event time")
    unique = (timed.key_by(lambda e: e.event_id, key_type=Types.STRING())
              .process(DecisionOperator(lambda st, ev, now: dedup.step(st, ev, now, dedup_ttl_ms), dedup.on_timer,
                                        state_name="dedup"), output_type=Types.PICKLED_BYTE_ARRAY())
              .uid(f"{uid_prefix}-dedup").name(f"dedup {schema} by event_id"))
    return unique, dead
