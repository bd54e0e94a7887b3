"""What every FleetFlow job shares: its ingest config, its sink hooks and its entry point."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Callable

from pyflink.common.typeinfo import Types
from pyflink.datastream import StreamExecutionEnvironment

from fleetflow import topics
from jobs.sinks import StoreConfig, StoreWriter, discarding_sink, kafka_bytes_sink
from udfs import dedup, validation


@dataclass(frozen=True)
class JobConfig:
    """Per-job tunables; override with ``--config '{"out_of_orderness_ms": 30000}'``."""
    out_of_orderness_ms: int = 60_000
    idleness_ms: int = 30_000
    dedup_ttl_ms: int = dedup.DEFAULT_DEDUP_TTL_MS
    future_tolerance_ms: int = validation.DEFAULT_FUTURE_TOLERANCE_MS
    retention_ms: int = validation.DEFAULT_RETENTION_MS
    parallelism: int | None = None

    def validation(self) -> validation.ValidationConfig:
        return validation.ValidationConfig(future_tolerance_ms=self.future_tolerance_ms,
                                           retention_ms=self.retention_ms)


@dataclass
class Sinks:
    """What to attach to the job's outputs. ``None`` leaves an output for the caller (tests collect it)."""
    store: Callable | None = None
    dead_letters: Callable | None = None


@dataclass
class Outputs:
    emits: object = None
    dead_letters: object = None


def attach(sinks: Sinks, emits, dead) -> Outputs:
    if sinks.store is not None:
        sinks.store(emits)
    if sinks.dead_letters is not None:
        sinks.dead_letters(dead)
    return Outputs(emits=emits, dead_letters=dead)


def store_and_dead_letter_sinks(s, uids: dict[str, str]) -> Sinks:
    """Production sinks: emits → Cassandra + Redis writer, dead letters → Kafka."""
    store_cfg = StoreConfig.from_settings(s)

    def store(stream):
        (stream.flat_map(StoreWriter(store_cfg), output_type=Types.PICKLED_BYTE_ARRAY())
         .uid(uids["store"]).name("write Cassandra + Redis")
         .sink_to(discarding_sink()).uid(uids["store_sink"]).name("store done"))

    def dead_letters(stream):
        stream.sink_to(kafka_bytes_sink(s.kafka_bootstrap, topics.DEAD_LETTERS.name)).uid(
            uids["dead_letters"]).name("dead letters → Kafka")

    return Sinks(store=store, dead_letters=dead_letters)


def run(job_name: str, topic: topics.Topic, build_pipeline, uids: dict[str, str], doc: str,
        argv: list[str] | None = None) -> None:
    """Entry point shared by the jobs: read config, attach Kafka/Cassandra/Redis, execute."""
    from pyflink.table import StreamTableEnvironment

    from fleetflow import settings
    from jobs.sources import KafkaTopicSource, raw_kafka_stream

    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--config", default="{}", help="JSON overrides for JobConfig")
    cfg = JobConfig(**json.loads(p.parse_args(argv).config))
    s = settings.load()
    env = StreamExecutionEnvironment.get_execution_environment()
    if cfg.parallelism:
        env.set_parallelism(cfg.parallelism)
    t_env = StreamTableEnvironment.create(env)
    source = raw_kafka_stream(t_env, KafkaTopicSource(s.kafka_bootstrap, topic.name, job_name),
                              f"{topic.schema}_raw")
    build_pipeline(env, source, store_and_dead_letter_sinks(s, uids), cfg)
    env.execute(job_name)
