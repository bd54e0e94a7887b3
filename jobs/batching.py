"""Micro-batched store writes that stay checkpoint-safe.

Waiting for Cassandra and Redis once per element made each job's writer the bottleneck
(bench/results/pipeline.md): ~5 round trips per scan, one scan at a time. Writing in
batches needs somewhere to hold elements between arrivals, and PyFlink's Python
functions get no "a checkpoint is coming, flush now" hook. So the pending elements live
in Flink keyed state instead of in memory:

* the writer's input is keyed by ``bucket(entity id)``, so one entity's writes stay in
  order (same bucket, one FIFO list) while a subtask holds a few buckets;
* each element is appended to its bucket's ``ListState``; the bucket is written, and
  its list cleared, when it holds ``max_batch`` elements or when the bucket's
  processing-time timer (``max_delay_ms`` after its first element) fires;
* a write waits for every acknowledgement before the list is cleared, so a checkpoint
  either contains an element in the list (it is written after a restore, again
  harmlessly: every write is an idempotent upsert) or was taken after it was written.

Nothing is buffered outside Flink state, so a crash loses nothing. The price is up to
``max_delay_ms`` more latency from event to query.

A bounded input (tests, backfills) ends with a final watermark; an event-time timer at
the end of time flushes what is left, since Flink drops pending processing-time timers
at end of input.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor

# Fires only on the final watermark of a bounded input (Long.MAX_VALUE).
END_OF_INPUT_MS = 2 ** 63 - 2


@dataclass(frozen=True)
class BatchConfig:
    """Tunables; override per job with ``--config '{"rules": {"store": {...}}}'``."""
    # Per subtask, a few buckets each; more buckets spread better at high parallelism,
    # fewer make bigger batches at low rates.
    buckets: int = 8
    max_batch: int = 128
    max_delay_ms: int = 200

    @staticmethod
    def from_mapping(m: dict | None) -> "BatchConfig":
        m = dict(m or {})
        unknown = set(m) - {"buckets", "max_batch", "max_delay_ms"}
        if unknown:
            raise ValueError(f"unknown store batching settings {sorted(unknown)}")
        cfg = BatchConfig(**{k: int(v) for k, v in m.items()})
        if cfg.buckets < 1 or cfg.max_batch < 1 or cfg.max_delay_ms < 1:
            raise ValueError(f"store batching settings must be positive: {cfg}")
        return cfg


class BatchWriter(Protocol):
    def open(self, runtime_context: RuntimeContext) -> None: ...

    def close(self) -> None: ...

    def write_batch(self, emits: list) -> None: ...


def bucket_of(entity_key: str, buckets: int) -> int:
    # crc32, not hash(): Python salts str hashes per process, and the bucket must be the
    # same in every TaskManager and after every restart.
    return zlib.crc32(entity_key.encode("utf-8")) % buckets


def bucket_selector(batch_key: Callable[[Any], str], buckets: int) -> Callable[[Any], int]:
    def select(emit: Any) -> int:
        return bucket_of(batch_key(emit), buckets)
    return select


class BatchingWriter(KeyedProcessFunction):
    """Buffers a bucket's elements in ``ListState`` and hands them to ``writer.write_batch``.

    State: ``pending`` (a list per bucket), cleared after each acknowledged write; a
    processing-time timer per non-empty bucket. The in-memory counts only decide when a
    bucket is full; after a restore they start at zero and the restored timers flush.
    """

    def __init__(self, writer: BatchWriter, cfg: BatchConfig = BatchConfig()):
        self._writer = writer
        self._cfg = cfg
        self._pending = None
        self._counts: dict[Any, int] = {}

    def open(self, runtime_context: RuntimeContext):
        self._pending = runtime_context.get_list_state(ListStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY()))
        metrics = runtime_context.get_metrics_group()
        self._batches = metrics.counter("store_batches")
        self._written = metrics.counter("store_elements_written")
        self._writer.open(runtime_context)

    def close(self):
        self._writer.close()

    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        key = ctx.get_current_key()
        n = self._counts.get(key, 0)
        self._pending.add(value)
        if n == 0:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(timers.current_processing_time() + self._cfg.max_delay_ms)
            timers.register_event_time_timer(END_OF_INPUT_MS)
        if n + 1 >= self._cfg.max_batch:
            self._flush(key)
        else:
            self._counts[key] = n + 1
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        self._flush(ctx.get_current_key())
        return iter(())

    def _flush(self, key) -> None:
        self._counts[key] = 0
        batch = list(self._pending.get() or ())
        if not batch:
            return
        self._writer.write_batch(batch)
        self._pending.clear()
        self._batches.inc()
        self._written.inc(len(batch))
