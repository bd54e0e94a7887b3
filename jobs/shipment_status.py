"""Shipment status job: scans in, status per shipment out.

Kafka ``ff.scans`` → decode + validate (anything untrusted → ``ff.dead-letters`` with its
reason, bytes and origin) → event-time watermarks → dedup by event_id (keyed, TTL) →
keyed by tracking_id → status rule → Cassandra history + current state, Redis hash.
"""
from __future__ import annotations

from pyflink.common.typeinfo import Types
from pyflink.datastream import StreamExecutionEnvironment

from fleetflow import topics
from fleetflow.carrier_mappings import load_all as load_carrier_mappings
from jobs.common import JobConfig, Outputs, Sinks, attach, run
from jobs.operators import DecisionOperator
from jobs.validate import validated_unique
from udfs import latest_status
from udfs.events import Scan

JOB_NAME = "fleetflow-shipment-status"
# Stable operator ids: savepoints map state to these, so never rename them.
# (the ingest stage adds scans-validate, scans-watermarks, scans-dedup: see jobs/validate.py)
UID_STATUS = "shipment-latest-status"
UIDS_SINKS = {"store": "shipment-store-writer", "store_sink": "shipment-store-sink",
              "dead_letters": "scans-dead-letter-sink"}


def build_pipeline(env: StreamExecutionEnvironment, scans, sinks: Sinks, cfg: JobConfig = JobConfig()) -> Outputs:
    """Wire the job. ``scans`` is a stream of RawRecord rows (see jobs/sources.py)."""
    unique, dead = validated_unique(
        scans, "scans", Scan.from_record, validation_cfg=cfg.validation(),
        known_carriers=frozenset(load_carrier_mappings()), out_of_orderness_ms=cfg.out_of_orderness_ms,
        idleness_ms=cfg.idleness_ms, dedup_ttl_ms=cfg.dedup_ttl_ms, uid_prefix="scans")
    emits = (unique.key_by(lambda s: s.tracking_id, key_type=Types.STRING())
             .process(DecisionOperator(latest_status.step), output_type=Types.PICKLED_BYTE_ARRAY())
             .uid(UID_STATUS).name("latest status per shipment"))
    return attach(sinks, emits, dead)


def main(argv: list[str] | None = None) -> None:
    run(JOB_NAME, topics.SCANS, build_pipeline, UIDS_SINKS, __doc__, argv)


if __name__ == "__main__":
    main()
