"""What every FleetFlow job shares: its ingest config, its sink hooks and its entry point."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pyflink.common.typeinfo import Types
from pyflink.datastream import StreamExecutionEnvironment

from fleetflow import topics
from jobs.batching import BatchConfig, BatchingWriter, bucket_selector
from jobs.sinks import StoreConfig, discarding_sink, kafka_bytes_sink
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
    # Per-rule overrides, e.g. {"watch": {"stall_after_ms": 300000}}; each job maps its
    # section onto its udfs' config dataclasses (unknown keys are an error there).
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rule(self, name: str, base):
        """``base`` (a frozen config dataclass) with ``rules[name]`` applied."""
        import dataclasses
        return dataclasses.replace(base, **self.rules.get(name, {}))

    def validation(self) -> validation.ValidationConfig:
        return validation.ValidationConfig(future_tolerance_ms=self.future_tolerance_ms,
                                           retention_ms=self.retention_ms)


@dataclass
class Sinks:
    """What to attach to the job's outputs. ``None`` leaves an output for the caller (tests collect it).

    ``alerts`` takes a stream of Avro-encoded alert bytes (jobs/alerting.py) bound for
    ``ff.alert-candidates``; ``topics`` maps a derived topic's name to a sink for a stream
    of Avro-encoded bytes (for example ``ff.shipment-states``).
    """
    store: Callable | None = None
    dead_letters: Callable | None = None
    alerts: Callable | None = None
    topics: dict[str, Callable] = field(default_factory=dict)


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


def kafka_topic_sink(s, topic_name: str, uid: str) -> Callable:
    """A sink hook that sends a stream of encoded bytes to ``topic_name``."""
    def sink(stream):
        stream.sink_to(kafka_bytes_sink(s.kafka_bootstrap, topic_name)).uid(uid).name(f"→ {topic_name}")
    return sink


def store_and_dead_letter_sinks(s, uids: dict[str, str], derived: Sequence[str] = (), *,
                                writer: Callable, batching: BatchConfig = BatchConfig()) -> Sinks:
    """Production sinks: emits → Cassandra + Redis writer, dead letters and alerts → Kafka.

    ``derived`` lists extra topic names the job publishes; their sink uid is
    ``uids[topic_name]`` (required: savepoints map sink state by uid). ``writer`` is the
    job's store writer class, built with a StoreConfig; it writes micro-batches
    (jobs/batching.py) of the elements of one bucket of its ``batch_key``.
    """
    store_cfg = StoreConfig.from_settings(s)

    def store(stream):
        (stream.key_by(bucket_selector(writer.batch_key, batching.buckets), key_type=Types.INT())
         .process(BatchingWriter(writer(store_cfg), batching), output_type=Types.PICKLED_BYTE_ARRAY())
         .uid(uids["store"]).name("write Cassandra + Redis (batched)")
         .sink_to(discarding_sink()).uid(uids["store_sink"]).name("store done"))

    def dead_letters(stream):
        stream.sink_to(kafka_bytes_sink(s.kafka_bootstrap, topics.DEAD_LETTERS.name)).uid(
            uids["dead_letters"]).name("dead letters → Kafka")

    alerts = kafka_topic_sink(s, topics.ALERT_CANDIDATES.name, uids["alerts"]) if "alerts" in uids else None
    return Sinks(store=store, dead_letters=dead_letters, alerts=alerts,
                 topics={name: kafka_topic_sink(s, name, uids[name]) for name in derived})


def run(job_name: str, topic: topics.Topic | Sequence[topics.Topic], build_pipeline, uids: dict[str, str], doc: str,
        argv: list[str] | None = None, *, derived: Sequence[str] = (),
        startup_modes: dict[str, str] | None = None, writer: Callable) -> None:
    """Entry point shared by the jobs: read config, attach Kafka/Cassandra/Redis, execute.

    ``topic`` may be several topics: their RawRecord streams are passed to
    ``build_pipeline(env, *streams, sinks, cfg)`` in that order. ``startup_modes`` maps a
    topic name to a Kafka startup mode; broadcast topics (geofences, carrier mappings)
    use ``earliest-offset`` so every start rebuilds the full picture.
    """
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
    wanted = [topic] if isinstance(topic, topics.Topic) else list(topic)
    modes = startup_modes or {}
    streams = [raw_kafka_stream(t_env, KafkaTopicSource(s.kafka_bootstrap, t.name, job_name,
                                                        startup_mode=modes.get(t.name, "group-offsets")),
                                f"{t.name}_raw")
               for t in wanted]
    sinks = store_and_dead_letter_sinks(s, uids, derived, writer=writer,
                                        batching=BatchConfig.from_mapping(cfg.rules.get("store")))
    build_pipeline(env, *streams, sinks, cfg)
    env.execute(job_name)
