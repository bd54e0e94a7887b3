"""The ingest stage every job starts with: decode, validate, dead-letter the rest."""
from __future__ import annotations

from typing import Any, Callable

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import OutputTag, ProcessFunction

from fleetflow import contracts
from fleetflow.ingest import route_record
from jobs.operators import DecisionOperator
from jobs.sinks import BYTES
from udfs import dedup, validation

DEAD_LETTERS = OutputTag("dead-letters", BYTES)
MAX_DETAIL_CHARS = 500


class ValidateRecords(ProcessFunction):
    """Decode and validate one topic's records; anything untrusted becomes a dead letter.

    Stateless. Counts ``<schema>_in``, ``<schema>_valid`` and ``dead_letters_<REASON>`` as
    Flink metrics. Valid records leave as ``view(record)``; dead letters leave on the
    ``DEAD_LETTERS`` side output, Avro-encoded, with their bytes and origin.
    """

    def __init__(self, schema: str, view: Callable[[dict], Any], cfg: validation.ValidationConfig,
                 known_carriers: frozenset[str]):
        self.schema = schema
        self.view = view
        self.cfg = cfg
        self.known_carriers = known_carriers

    def open(self, runtime_context):
        self._metrics = runtime_context.get_metrics_group()
        self._in = self._metrics.counter(f"{self.schema}_in")
        self._valid = self._metrics.counter(f"{self.schema}_valid")
        self._by_reason = {}

    def process_element(self, row, ctx: ProcessFunction.Context):
        self._in.inc()
        now_ms = ctx.timer_service().current_processing_time()
        record, dead = route_record(bytes(row["value"]), self.schema, now_ms, self.cfg, self.known_carriers,
                                    source_topic=row["topic"], source_partition=row["partition"],
                                    source_offset=row["offset"])
        if dead is None:
            self._valid.inc()
            yield self.view(record)
            return
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
                     uid_prefix: str):
    """RawRecord rows → (valid events with event-time watermarks, deduplicated by event_id; dead letters).

    Operator uids are ``<uid_prefix>-validate``, ``-watermarks`` and ``-dedup``; keep them stable.
    """
    checked = (stream.process(ValidateRecords(schema, view, validation_cfg, known_carriers),
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
