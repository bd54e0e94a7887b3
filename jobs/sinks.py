"""What every job's writers share: store addresses, Redis key names and Kafka sinks.

Each job has its own store writer (jobs/*_sinks.py), a Python operator because Flink 2.x
has no Cassandra connector and none for Redis. Writers receive micro-batches from
``jobs.batching.BatchingWriter``, which keeps unwritten elements in Flink state. Every
write is an idempotent upsert keyed by natural ids and is acknowledged before a batch
is cleared from that state, so at-least-once delivery plus idempotence gives
effectively-once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pyflink.common.typeinfo import Types
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink
from pyflink.common.serialization import ByteArraySchema
from pyflink.datastream import FlatMapFunction
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


class StoreWriter(FlatMapFunction):
    """A job's writer: ``write_batch(emits)`` returns once every write is acknowledged.

    ``batch_key(emit)`` names the entity an emit belongs to; emits of one entity are
    batched in arrival order (jobs/batching.py). ``flat_map`` writes a batch of one, for
    callers outside a Flink pipeline.
    """

    def __init__(self, cfg: StoreConfig):
        self.cfg = cfg

    @staticmethod
    def batch_key(emit: Any) -> str:
        raise NotImplementedError

    def _connect(self) -> None:
        """What every writer's ``open`` needs: a Cassandra session with its WriteSender
        (``_session``, ``_sender``; ``_unset`` marks a column a write leaves alone) and a
        Redis client (``_redis``)."""
        import redis
        from cassandra.query import UNSET_VALUE

        from fleetflow.cassandra_session import connect
        from fleetflow.cassandra_writes import WriteSender

        self._unset = UNSET_VALUE
        self._cluster, self._session = connect(self.cfg, keyspace=self.cfg.keyspace)
        self._sender = WriteSender(self._session, UNSET_VALUE)
        self._redis = redis.Redis.from_url(self.cfg.redis_url)

    def close(self):
        if getattr(self, "_cluster", None) is not None:
            self._cluster.shutdown()

    def write_batch(self, emits: list) -> None:
        raise NotImplementedError

    def flat_map(self, emit: Any):
        self.write_batch([emit])
        return iter(())


def redis_scripts_pipeline(client, scripts: list, build: Callable[[Any], None]) -> list:
    """Runs ``build(pipe)`` as one non-transactional pipeline and returns its replies.

    Scripts are queued as EVALSHA of an already loaded script (``script.sha``): redis-py's
    own ``Script`` objects ask SCRIPT EXISTS first, a second round trip per pipeline. If
    Redis lost its script cache (restart, failover), the scripts are loaded again and
    the whole pipeline re-run; every script FleetFlow runs is an idempotent guard.
    """
    from redis.exceptions import NoScriptError

    for attempt in (1, 2):
        pipe = client.pipeline(transaction=False)
        build(pipe)
        try:
            return pipe.execute()
        except NoScriptError:
            if attempt == 2:
                raise
            for script in scripts:
                client.script_load(script.script)
    raise AssertionError("unreachable")


def evalsha(pipe, script, keys: list, args: list, fields: dict[str, str] | None = None) -> None:
    """Queues ``script`` with ``args`` followed by ``fields`` as name, value pairs."""
    pairs = [x for kv in fields.items() for x in kv] if fields else []
    pipe.evalsha(script.sha, len(keys), *keys, *args, *pairs)
