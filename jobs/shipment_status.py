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

from pyflink.common.typeinfo import Types
from pyflink.datastream import StreamExecutionEnvironment

from fleetflow import topics
from fleetflow.carrier_mappings import load_all as load_carrier_mappings
from jobs.operators import DecisionOperator
from jobs.validate import validated_unique
from jobs.sinks import StoreConfig, StoreWriter, discarding_sink, kafka_bytes_sink
from udfs import dedup, latest_status, validation
from udfs.events import Scan

JOB_NAME = "fleetflow-shipment-status"
# Stable operator ids: savepoints map state to these, so never rename them.
# (the ingest stage's uids are scans-validate, scans-watermarks, scans-dedup: see jobs/validate.py)
UID_STATUS = "shipment-latest-status"
UIDS_SINKS = {"store": "shipment-store-writer", "store_sink": "shipment-store-sink",
              "dead_letters": "scans-dead-letter-sink"}

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
    unique, dead = validated_unique(
        scans, "scans", Scan.from_record, validation_cfg=cfg.validation(),
        known_carriers=frozenset(load_carrier_mappings()), out_of_orderness_ms=cfg.out_of_orderness_ms,
        idleness_ms=cfg.idleness_ms, dedup_ttl_ms=cfg.dedup_ttl_ms, uid_prefix="scans")
    emits = (unique.key_by(lambda s: s.tracking_id, key_type=Types.STRING())
             .process(DecisionOperator(latest_status.step), output_type=Types.PICKLED_BYTE_ARRAY())
             .uid(UID_STATUS).name("latest status per shipment"))
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
    build_pipeline(env, scans, store_and_dead_letter_sinks(s, UIDS_SINKS), cfg)
    env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
