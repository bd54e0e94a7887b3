"""Kafka sources that keep each record's origin (topic, partition, offset).

The DataStream KafkaSource in PyFlink only hands over values, but a dead letter must
say where its bytes came from. The Kafka SQL connector exposes partition and offset as
metadata columns, so sources are declared as tables in 'raw' format and converted to
streams of ``RawRecord`` rows: (value bytes, topic, partition, offset).
"""
from __future__ import annotations

from dataclasses import dataclass

from pyflink.common import Row
from pyflink.common.typeinfo import Types

RAW_RECORD_TYPE = Types.ROW_NAMED(
    ["value", "topic", "partition", "offset"],
    [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.STRING(), Types.INT(), Types.LONG()],
)


@dataclass(frozen=True)
class KafkaTopicSource:
    bootstrap: str
    topic: str
    group_id: str
    # 'earliest-offset' for a fresh group; committed offsets win on restart from a checkpoint.
    startup_mode: str = "group-offsets"
    idle_timeout: str = "30 s"


def raw_kafka_stream(t_env, src: KafkaTopicSource, table_name: str):
    safe = table_name.replace("-", "_").replace(".", "_")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {safe} (
            `value` BYTES,
            `topic` STRING METADATA VIRTUAL,
            `partition` INT METADATA VIRTUAL,
            `offset` BIGINT METADATA VIRTUAL
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{src.topic}',
            'properties.bootstrap.servers' = '{src.bootstrap}',
            'properties.group.id' = '{src.group_id}',
            'properties.auto.offset.reset' = 'earliest',
            'scan.startup.mode' = '{src.startup_mode}',
            'scan.watermark.idle-timeout' = '{src.idle_timeout}',
            'format' = 'raw'
        )""")
    return t_env.to_data_stream(t_env.from_path(safe)).map(
        lambda r: Row(value=r[0], topic=r[1], partition=r[2], offset=r[3]), output_type=RAW_RECORD_TYPE)


def collection_stream(env, records: list[tuple[bytes, str, int, int]]):
    """Test and replay source: the same RawRecord rows from memory."""
    rows = [Row(value=v, topic=t, partition=p, offset=o) for v, t, p, o in records]
    return env.from_collection(rows, type_info=RAW_RECORD_TYPE)
