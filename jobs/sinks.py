"""Writers for job outputs: Cassandra history/state, Redis current state, Kafka topics.

Writers run as Python operators (Flink 2.x has no Cassandra connector and none for
Redis). Every write is an idempotent upsert keyed by natural ids and is acknowledged
before the operator returns, so a checkpoint barrier that passes the writer covers only
acknowledged writes: at-least-once delivery plus idempotence gives effectively-once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pyflink.common.typeinfo import Types
from pyflink.datastream import FlatMapFunction, RuntimeContext
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink
from pyflink.common.serialization import ByteArraySchema
from pyflink.datastream.connectors import Sink

from fleetflow.settings import StackSettings

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())

# Only move the Redis state forward: a replayed older emit must not overwrite a newer one.
_REDIS_UPSERT_IF_NEWER = """
local cur = redis.call('HGET', KEYS[1], 'last_event_time_ms')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


def shipment_key(tracking_id: str) -> str:
    return f"ff:shipment:{tracking_id}"


def vehicle_key(vehicle_id: str) -> str:
    return f"ff:vehicle:{vehicle_id}"


VEHICLES_GEO_KEY = "ff:vehicles:geo"


@dataclass(frozen=True)
class StoreConfig:
    """Where writers connect; built from StackSettings so jobs on k8s read env vars."""
    host: str
    cassandra_port: int
    redis_url: str
    keyspace: str
    cassandra_username: str = ""
    cassandra_password: str = field(default="", repr=False)

    @staticmethod
    def from_settings(s: StackSettings) -> "StoreConfig":
        return StoreConfig(s.cassandra_host, s.cassandra_port, s.redis_url, s.keyspace,
                           s.cassandra_username, s.cassandra_password)


class StoreWriter(FlatMapFunction):
    """Writes each emit to Cassandra and/or Redis by its type; yields nothing."""

    def __init__(self, cfg: StoreConfig):
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext):
        import redis

        from fleetflow.cassandra_session import connect

        self._cluster, self._session = connect(self.cfg, keyspace=self.cfg.keyspace)
        self._history = self._session.prepare(
            "INSERT INTO shipment_history (tracking_id, event_time_ms, event_id, status, status_detail, carrier,"
            " raw_code, raw_text, facility_id, leg, source, late) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._current = self._session.prepare(
            "INSERT INTO shipment_current (tracking_id, status, status_detail, carrier, last_event_id,"
            " last_event_time_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)")
        self._position = self._session.prepare(
            "INSERT INTO vehicle_positions (vehicle_id, day, event_time_ms, event_id, lat, lon, speed_mps,"
            " heading_deg, accuracy_m, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._redis = redis.Redis.from_url(self.cfg.redis_url)
        self._upsert = self._redis.register_script(_REDIS_UPSERT_IF_NEWER)

    def close(self):
        if getattr(self, "_cluster", None) is not None:
            self._cluster.shutdown()

    def flat_map(self, emit: Any):
        kind = type(emit).__name__
        if kind == "HistoryRow":
            self._session.execute(self._history, (
                emit.tracking_id, emit.event_time_ms, emit.event_id, emit.status, emit.status_detail, emit.carrier,
                emit.raw_code, emit.raw_text, emit.facility_id, emit.leg, emit.source, emit.late))
        elif kind == "CurrentState":
            import time
            updated_ms = int(time.time() * 1000)
            self._session.execute(self._current, (
                emit.tracking_id, emit.status, emit.status_detail, emit.carrier, emit.last_event_id,
                emit.last_event_time_ms, updated_ms))
            fields = dataclasses.asdict(emit)
            fields["updated_ms"] = updated_ms
            self._upsert_hash(shipment_key(emit.tracking_id), emit.last_event_time_ms, fields)
        elif kind == "PositionRow":
            self._session.execute(self._position, (
                emit.vehicle_id, emit.day, emit.event_time_ms, emit.event_id, emit.lat, emit.lon, emit.speed_mps,
                emit.heading_deg, emit.accuracy_m, emit.source))
        elif kind == "VehiclePosition":
            fields = dataclasses.asdict(emit)
            fields["last_event_time_ms"] = emit.event_time_ms
            if self._upsert_hash(vehicle_key(emit.vehicle_id), emit.event_time_ms, fields):
                self._redis.geoadd(VEHICLES_GEO_KEY, (emit.lon, emit.lat, emit.vehicle_id))
        return iter(())

    def _upsert_hash(self, key: str, event_time_ms: int, fields: dict) -> bool:
        args = [event_time_ms]
        for k, v in fields.items():
            args += [k, "" if v is None else str(v)]
        return bool(self._upsert(keys=[key], args=args))


def discarding_sink() -> Sink:
    from pyflink.java_gateway import get_gateway
    return Sink(get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())


def kafka_bytes_sink(bootstrap: str, topic: str) -> KafkaSink:
    return (KafkaSink.builder()
            .set_bootstrap_servers(bootstrap)
            .set_record_serializer(KafkaRecordSerializationSchema.builder()
                                   .set_topic(topic)
                                   .set_value_serialization_schema(ByteArraySchema())
                                   .build())
            .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
            .build())
