"""Publishing to Kafka from the API: acknowledged by the broker before the API answers.

kafka-python's producer is thread-safe and blocking, so sends and the wait for their
acks run in a worker thread. One producer per process (idempotent, acks=all).
"""
from __future__ import annotations

import asyncio
import threading
from typing import Iterable

from api.errors import ApiError
from api.settings import ApiSettings


class Publisher:
    def __init__(self, settings: ApiSettings):
        self._s = settings
        self._producer = None
        self._lock = threading.Lock()

    def _get(self):
        with self._lock:
            if self._producer is None:
                from fleetflow import kafka_io
                self._producer = kafka_io.producer(self._s.kafka_bootstrap, linger_ms=1,
                                                   request_timeout_ms=int(self._s.kafka_ack_timeout_s * 1000),
                                                   max_block_ms=int(self._s.kafka_ack_timeout_s * 1000))
            return self._producer

    def _send_all(self, topic: str, items: list[tuple[bytes | None, bytes]]) -> int:
        p = self._get()
        futures = [p.send(topic, key=k, value=v) for k, v in items]
        p.flush(timeout=self._s.kafka_ack_timeout_s)
        for f in futures:
            f.get(timeout=self._s.kafka_ack_timeout_s)
        return len(futures)

    async def publish(self, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Publish (key, value) pairs; returns once the broker acknowledged every one."""
        items = list(items)
        if not items:
            return 0
        try:
            return await asyncio.to_thread(self._send_all, topic, items)
        except Exception as exc:
            raise ApiError(503, "KAFKA_UNAVAILABLE", f"Kafka did not acknowledge the write: {exc}") from None

    def _check(self) -> None:
        from fleetflow import topics
        if not self._get().partitions_for(topics.SCANS.name):
            raise RuntimeError(f"no partitions for {topics.SCANS.name}")

    async def ping(self) -> None:
        await asyncio.to_thread(self._check)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
