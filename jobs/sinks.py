"""What every job's writers share: store addresses, Redis key names and Kafka sinks.

Each job has its own store writer (jobs/*_sinks.py), a Python operator because Flink 2.x
has no Cassandra connector and none for Redis. Every write there is an idempotent upsert
keyed by natural ids and is acknowledged before the operator returns, so a checkpoint
barrier that passes a writer covers only acknowledged writes: at-least-once delivery
plus idempotence gives effectively-once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyflink.common.typeinfo import Types
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink
from pyflink.common.serialization import ByteArraySchema
from pyflink.datastream.connectors import Sink

from fleetflow.settings import StackSettings

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())



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
