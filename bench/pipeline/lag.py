"""Consumer lag of each Flink job, from the offsets its Kafka source commits on checkpoints.

The Kafka source commits offsets to the job's consumer group (group id = job name) when a
checkpoint completes, so the lag read here trails the true lag by up to one checkpoint
interval. That bias is constant, so it does not hide a lag that keeps growing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lag:
    group: str
    records: int
    # Partitions with no committed offset yet (before a job's first checkpoint).
    uncommitted_partitions: int


class LagReader:
    def __init__(self, bootstrap: str):
        from kafka import KafkaAdminClient, KafkaConsumer
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)

    def lag(self, group: str, topics: list[str]) -> Lag:
        from kafka import TopicPartition
        committed = self._admin.list_consumer_group_offsets(group)
        parts = [TopicPartition(t, p) for t in topics for p in (self._consumer.partitions_for_topic(t) or ())]
        ends = self._consumer.end_offsets(parts)
        total, missing = 0, 0
        for tp in parts:
            meta = committed.get(tp)
            if meta is None or meta.offset < 0:
                missing += 1
                total += ends[tp]
            else:
                total += max(0, ends[tp] - meta.offset)
        return Lag(group, total, missing)

    def close(self) -> None:
        self._admin.close()
        self._consumer.close()


def slope_per_s(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (t_s, lag) points: records per second the lag grows by."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    ml = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mt) * (v - ml) for t, v in points) / var
