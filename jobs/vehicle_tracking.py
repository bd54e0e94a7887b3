"""Vehicle tracking job (first slice): pings in, vehicle positions out.

Kafka ``ff.pings`` → decode + validate (→ ``ff.dead-letters``) → event-time watermarks →
dedup by event_id → keyed by vehicle_id → latest position → Cassandra position history
(per vehicle per day), Redis vehicle hash and GEO index. Geofences, stalls and silence
build on this stream.
"""
from __future__ import annotations

from pyflink.common.typeinfo import Types
from pyflink.datastream import StreamExecutionEnvironment

from fleetflow import topics
from jobs.common import JobConfig, Outputs, Sinks, attach, run
from jobs.operators import DecisionOperator
from jobs.validate import validated_unique
from udfs import vehicle_position
from udfs.events import Ping

JOB_NAME = "fleetflow-vehicle-tracking"
# Stable operator ids (the ingest stage adds pings-validate, pings-watermarks, pings-dedup).
UID_POSITION = "vehicle-latest-position"
UIDS_SINKS = {"store": "vehicle-store-writer", "store_sink": "vehicle-store-sink",
              "dead_letters": "pings-dead-letter-sink"}


def build_pipeline(env: StreamExecutionEnvironment, pings, sinks: Sinks, cfg: JobConfig = JobConfig()) -> Outputs:
    """Wire the job. ``pings`` is a stream of RawRecord rows (see jobs/sources.py)."""
    unique, dead = validated_unique(
        pings, "pings", Ping.from_record, validation_cfg=cfg.validation(), known_carriers=frozenset(),
        out_of_orderness_ms=cfg.out_of_orderness_ms, idleness_ms=cfg.idleness_ms, dedup_ttl_ms=cfg.dedup_ttl_ms,
        uid_prefix="pings")
    emits = (unique.key_by(lambda p: p.vehicle_id, key_type=Types.STRING())
             .process(DecisionOperator(vehicle_position.step), output_type=Types.PICKLED_BYTE_ARRAY())
             .uid(UID_POSITION).name("latest position per vehicle"))
    return attach(sinks, emits, dead)


def main(argv: list[str] | None = None) -> None:
    run(JOB_NAME, topics.PINGS, build_pipeline, UIDS_SINKS, __doc__, argv)


if __name__ == "__main__":
    main()
