"""Shipment status job: scans in, status per shipment out.

Kafka ``ff.scans`` → decode + validate (anything untrusted → ``ff.dead-letters`` with its
reason, bytes and origin) → event-time watermarks → dedup by event_id (keyed, TTL) →
keyed by tracking_id → status rule → Cassandra history + current state, Redis hash.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Callable

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import OutputTag, ProcessFunction, StreamExecutionEnvironment

from fleetflow import contracts, topics
from fleetflow.carrier_mappings import load_all as load_carrier_mappings
from fleetflow.ingest import route_record
from jobs.operators import DecisionOperator
from jobs.sinks import BYTES, StoreConfig, StoreWriter, discarding_sink, kafka_bytes_sink
from udfs import dedup, latest_status, validation
from udfs.events import Scan

JOB_NAME = "fleetflow-shipment-status"
# Stable operator ids: savepoints map state to these, so never rename them.
UID_DECODE = "scans-decode"
UID_DEDUP = "scans-dedup"
UID_WATERMARKS = "scans-watermarks"
UID_STATUS = "shipment-latest-status"
UID_STORE = "shipment-store-writer"
UID_STORE_SINK = "shipment-store-sink"
UID_DEAD_LETTERS = "scans-dead-letter-sink"

DEAD_LETTERS = OutputTag("dead-letters", BYTES)


@dataclass(frozen=True)
class JobConfig:
    out_of_orderness_ms: int = 60_000
    idleness_ms: int = 30_000
    dedup_ttl_ms: int = dedup.DEFAULT_DEDUP_TTL_MS
    future_tolerance_ms: int = validation.DEFAULT_FUTURE_TOLERANCE_MS
    retention_ms: int = validation.DEFAULT_RETENTION_MS
    parallelism: int | None = None

    def validation(self) -> validation.ValidationConfig:
        return validation.ValidationConfig(future_tolerance_ms=self.future_tolerance_ms,
                                           retention_ms=self.retention_ms)


class ValidateScans(ProcessFunction):
    """Decode and validate scans; anything that cannot be trusted becomes a dead letter.

    Stateless. Counts records in and dead letters per reason as Flink metrics
    (``scans_in``, ``scans_valid``, ``dead_letters_<REASON>``).
    """

    def __init__(self, cfg: validation.ValidationConfig, known_carriers: frozenset[str]):
        self.cfg = cfg
        self.known_carriers = known_carriers

    def open(self, runtime_context):
        self._metrics = runtime_context.get_metrics_group()
        self._in = self._metrics.counter("scans_in")
        self._valid = self._metrics.counter("scans_valid")
        self._by_reason = {}

    def process_element(self, row, ctx: ProcessFunction.Context):
        self._in.inc()
        now_ms = ctx.timer_service().current_processing_time()
        record, dead = route_record(bytes(row["value"]), "scans", now_ms, self.cfg, self.known_carriers,
                                    source_topic=row["topic"], source_partition=row["partition"],
                                    source_offset=row["offset"])
        if dead is None:
            self._valid.inc()
            yield Scan.from_record(record)
            return
        counter = self._by_reason.get(dead["reason"])
        if counter is None:
            counter = self._by_reason[dead["reason"]] = self._metrics.counter(f"dead_letters_{dead['reason']}")
        counter.inc()
        dead["detail"] = dead["detail"][:500]
        yield DEAD_LETTERS, contracts.encode("dead_letters", dead)


class ScanTime(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp: int) -> int:
        return value.event_time_ms


@dataclass
class Sinks:
    """What to attach to the job's outputs. ``None`` leaves an output for the caller."""
    store: Callable | None = None
    dead_letters: Callable | None = None


@dataclass
class Outputs:
    emits: object = None
    dead_letters: object = None
    extra: dict = field(default_factory=dict)


def build_pipeline(env: StreamExecutionEnvironment, scans, sinks: Sinks, cfg: JobConfig = JobConfig()) -> Outputs:
    """Wire the job. ``scans`` is a stream of RawRecord rows (see jobs/sources.py)."""
    decoded = (scans.process(ValidateScans(cfg.validation(), frozenset(load_carrier_mappings())), output_type=Types.PICKLED_BYTE_ARRAY())
               .uid(UID_DECODE).name("decode + validate scans"))
    dead = decoded.get_side_output(DEAD_LETTERS)
    watermarks = (WatermarkStrategy
                  .for_bounded_out_of_orderness(Duration.of_millis(cfg.out_of_orderness_ms))
                  .with_timestamp_assigner(ScanTime())
                  .with_idleness(Duration.of_millis(cfg.idleness_ms)))
    timed = decoded.assign_timestamps_and_watermarks(watermarks).uid(UID_WATERMARKS).name("scan event time")
    ttl_ms = cfg.dedup_ttl_ms
    unique = (timed.key_by(lambda s: s.event_id, key_type=Types.STRING())
              .process(DecisionOperator(lambda st, ev, now: dedup.step(st, ev, now, ttl_ms), dedup.on_timer,
                                        state_name="dedup"), output_type=Types.PICKLED_BYTE_ARRAY())
              .uid(UID_DEDUP).name("dedup by event_id"))
    emits = (unique.key_by(lambda s: s.tracking_id, key_type=Types.STRING())
             .process(DecisionOperator(latest_status.step), output_type=Types.PICKLED_BYTE_ARRAY())
             .uid(UID_STATUS).name("latest status per shipment"))
    if sinks.store is not None:
        sinks.store(emits)
    if sinks.dead_letters is not None:
        sinks.dead_letters(dead)
    return Outputs(emits=emits, dead_letters=dead)


def production_sinks(s) -> Sinks:
    store_cfg = StoreConfig.from_settings(s)

    def store(stream):
        (stream.flat_map(StoreWriter(store_cfg), output_type=Types.PICKLED_BYTE_ARRAY())
         .uid(UID_STORE).name("write Cassandra + Redis")
         .sink_to(discarding_sink()).uid(UID_STORE_SINK).name("store done"))

    def dead_letters(stream):
        stream.sink_to(kafka_bytes_sink(s.kafka_bootstrap, topics.DEAD_LETTERS.name)).uid(UID_DEAD_LETTERS).name(
            "dead letters → Kafka")

    return Sinks(store=store, dead_letters=dead_letters)


def main(argv: list[str] | None = None) -> None:
    from pyflink.table import StreamTableEnvironment

    from fleetflow import settings
    from jobs.sources import KafkaTopicSource, raw_kafka_stream

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="{}", help="JSON overrides for JobConfig")
    args = p.parse_args(argv)
    cfg = JobConfig(**json.loads(args.config))
    s = settings.load()
    env = StreamExecutionEnvironment.get_execution_environment()
    if cfg.parallelism:
        env.set_parallelism(cfg.parallelism)
    t_env = StreamTableEnvironment.create(env)
    scans = raw_kafka_stream(t_env, KafkaTopicSource(s.kafka_bootstrap, topics.SCANS.name, JOB_NAME), "scans_raw")
    build_pipeline(env, scans, production_sinks(s), cfg)
    env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
