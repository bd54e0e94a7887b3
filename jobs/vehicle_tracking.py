"""Vehicle tracking job (first slice): pings in, vehicle positions out.

Kafka ``ff.pings`` → decode + validate (→ ``ff.dead-letters``) → event-time watermarks →
dedup by event_id → keyed by vehicle_id → latest position → Cassandra position history
(per vehicle per day), Redis vehicle hash and GEO index. Geofences, stalls and silence
build on this stream.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from pyflink.common.typeinfo import Types
from pyflink.datastream import StreamExecutionEnvironment

from fleetflow import topics
from jobs.operators import DecisionOperator
from jobs.shipment_status import Outputs, Sinks, store_and_dead_letter_sinks
from jobs.validate import validated_unique
from udfs import dedup, validation, vehicle_position
from udfs.events import Ping

JOB_NAME = "fleetflow-vehicle-tracking"
# Stable operator ids (the ingest stage adds pings-validate, pings-watermarks, pings-dedup).
UID_POSITION = "vehicle-latest-position"
UIDS_SINKS = {"store": "vehicle-store-writer", "store_sink": "vehicle-store-sink",
              "dead_letters": "pings-dead-letter-sink"}


@dataclass(frozen=True)
class JobConfig:
    out_of_orderness_ms: int = 30_000
    idleness_ms: int = 30_000
    dedup_ttl_ms: int = dedup.DEFAULT_DEDUP_TTL_MS
    future_tolerance_ms: int = validation.DEFAULT_FUTURE_TOLERANCE_MS
    retention_ms: int = validation.DEFAULT_RETENTION_MS
    parallelism: int | None = None

    def validation(self) -> validation.ValidationConfig:
        return validation.ValidationConfig(future_tolerance_ms=self.future_tolerance_ms,
                                           retention_ms=self.retention_ms)


def build_pipeline(env: StreamExecutionEnvironment, pings, sinks: Sinks, cfg: JobConfig = JobConfig()) -> Outputs:
    """Wire the job. ``pings`` is a stream of RawRecord rows (see jobs/sources.py)."""
    unique, dead = validated_unique(
        pings, "pings", Ping.from_record, validation_cfg=cfg.validation(), known_carriers=frozenset(),
        out_of_orderness_ms=cfg.out_of_orderness_ms, idleness_ms=cfg.idleness_ms, dedup_ttl_ms=cfg.dedup_ttl_ms,
        uid_prefix="pings")
    emits = (unique.key_by(lambda p: p.vehicle_id, key_type=Types.STRING())
             .process(DecisionOperator(vehicle_position.step), output_type=Types.PICKLED_BYTE_ARRAY())
             .uid(UID_POSITION).name("latest position per vehicle"))
    if sinks.store is not None:
        sinks.store(emits)
    if sinks.dead_letters is not None:
        sinks.dead_letters(dead)
    return Outputs(emits=emits, dead_letters=dead)


def main(argv: list[str] | None = None) -> None:
    from pyflink.table import StreamTableEnvironment

    from fleetflow import settings
    from jobs.sources import KafkaTopicSource, raw_kafka_stream

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="{}", help="JSON overrides for JobConfig")
    cfg = JobConfig(**json.loads(p.parse_args(argv).config))
    s = settings.load()
    env = StreamExecutionEnvironment.get_execution_environment()
    if cfg.parallelism:
        env.set_parallelism(cfg.parallelism)
    t_env = StreamTableEnvironment.create(env)
    pings = raw_kafka_stream(t_env, KafkaTopicSource(s.kafka_bootstrap, topics.PINGS.name, JOB_NAME), "pings_raw")
    build_pipeline(env, pings, store_and_dead_letter_sinks(s, UIDS_SINKS), cfg)
    env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
