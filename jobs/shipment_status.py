"""Shipment status job (walking skeleton): scans in, latest status per shipment out.

Kafka ``ff.scans`` → decode (bad bytes → ``ff.dead-letters``) → event-time watermarks →
keyed by tracking_id → latest status (dedup by event_id) → Cassandra history + current
state, Redis current-state hash.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Callable

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import OutputTag, ProcessFunction, StreamExecutionEnvironment

from fleetflow import contracts, topics
from jobs.operators import DecisionOperator
from jobs.sinks import BYTES, StoreConfig, StoreWriter, discarding_sink, kafka_bytes_sink
from udfs import latest_status
from udfs.events import Scan

JOB_NAME = "fleetflow-shipment-status"
# Stable operator ids: savepoints map state to these, so never rename them.
UID_DECODE = "scans-decode"
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
    parallelism: int | None = None


class DecodeScans(ProcessFunction):
    """Decode Avro single-object scans; anything undecodable becomes a dead letter."""

    def process_element(self, row, ctx: ProcessFunction.Context):
        value = bytes(row["value"])
        try:
            _, record = contracts.decode(value, expected="scans")
            yield Scan.from_record(record)
        except contracts.ContractError as exc:
            yield DEAD_LETTERS, contracts.encode("dead_letters", {
                "reason": exc.reason, "detail": str(exc)[:500], "original": value,
                "source_topic": row["topic"], "source_partition": row["partition"], "source_offset": row["offset"],
                "detected_time_ms": int(time.time() * 1000)})


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
    decoded = scans.process(DecodeScans(), output_type=Types.PICKLED_BYTE_ARRAY()).uid(UID_DECODE).name("decode scans")
    dead = decoded.get_side_output(DEAD_LETTERS)
    watermarks = (WatermarkStrategy
                  .for_bounded_out_of_orderness(Duration.of_millis(cfg.out_of_orderness_ms))
                  .with_timestamp_assigner(ScanTime())
                  .with_idleness(Duration.of_millis(cfg.idleness_ms)))
    timed = decoded.assign_timestamps_and_watermarks(watermarks).uid(UID_WATERMARKS).name("scan event time")
    emits = (timed.key_by(lambda s: s.tracking_id, key_type=Types.STRING())
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
