"""BatchingWriter: a bucket is written when full or when its timer fires, and its
pending list is cleared only after the writer has acknowledged the batch."""
from __future__ import annotations

import pytest

pytest.importorskip("pyflink")

from jobs.batching import END_OF_INPUT_MS, BatchConfig, BatchingWriter, bucket_of  # noqa: E402


class _ListState:
    def __init__(self):
        self.by_key, self.key = {}, None

    def add(self, v):
        self.by_key.setdefault(self.key, []).append(v)

    def get(self):
        return list(self.by_key.get(self.key, []))

    def clear(self):
        self.by_key.pop(self.key, None)


class _Timers:
    def __init__(self):
        self.processing, self.event = [], []

    def current_processing_time(self):
        return 10_000

    def register_processing_time_timer(self, t):
        self.processing.append(t)

    def register_event_time_timer(self, t):
        self.event.append(t)


class _Ctx:
    def __init__(self, state, key):
        self.state, self.key, self.timers = state, key, _Timers()
        state.key = key

    def get_current_key(self):
        self.state.key = self.key  # Flink scopes keyed state to the current key the same way
        return self.key

    def timer_service(self):
        return self.timers


class _Counter:
    def __init__(self):
        self.n = 0

    def inc(self, by=1):
        self.n += by


class _Writer:
    def __init__(self, fail=False):
        self.batches, self.fail = [], fail

    def write_batch(self, emits):
        if self.fail:
            raise ConnectionError("cassandra down")
        self.batches.append(list(emits))


def _op(writer, **cfg):
    op = BatchingWriter(writer, BatchConfig(**cfg))
    op._pending = _ListState()
    op._batches, op._written = _Counter(), _Counter()
    return op


def test_a_full_bucket_is_written_at_once_and_cleared():
    w = _Writer()
    op = _op(w, max_batch=3)
    ctx = _Ctx(op._pending, 1)
    for v in "abcd":
        list(op.process_element(v, ctx))
    assert w.batches == [["a", "b", "c"]]
    assert op._pending.by_key == {1: ["d"]}
    assert op._written.n == 3


def test_the_first_element_of_a_bucket_sets_its_flush_timer_and_the_end_of_input_timer():
    op = _op(_Writer(), max_batch=10, max_delay_ms=250)
    ctx = _Ctx(op._pending, 1)
    list(op.process_element("a", ctx))
    list(op.process_element("b", ctx))
    assert ctx.timers.processing == [10_250] and ctx.timers.event == [END_OF_INPUT_MS]


def test_the_timer_writes_what_the_bucket_holds_in_arrival_order():
    w = _Writer()
    op = _op(w, max_batch=10)
    ctx = _Ctx(op._pending, 5)
    for v in ["x1", "x2", "x3"]:
        list(op.process_element(v, ctx))
    list(op.on_timer(10_200, ctx))
    assert w.batches == [["x1", "x2", "x3"]] and op._pending.by_key == {}
    list(op.on_timer(END_OF_INPUT_MS, ctx))
    assert w.batches == [["x1", "x2", "x3"]], "an empty bucket writes nothing"


def test_buckets_are_written_separately():
    w = _Writer()
    op = _op(w, max_batch=2)
    a, b = _Ctx(op._pending, 0), _Ctx(op._pending, 1)
    list(op.process_element("a1", a))
    list(op.process_element("b1", b))
    list(op.process_element("a2", a))
    assert w.batches == [["a1", "a2"]] and op._pending.by_key == {1: ["b1"]}


def test_a_failed_write_keeps_the_batch_in_state_so_the_restart_replays_it():
    op = _op(_Writer(fail=True), max_batch=2)
    ctx = _Ctx(op._pending, 1)
    list(op.process_element("a", ctx))
    with pytest.raises(ConnectionError):
        list(op.process_element("b", ctx))
    assert op._pending.by_key == {1: ["a", "b"]}


def test_buckets_are_stable_across_processes_and_spread():
    assert bucket_of("VAN-0001", 8) == bucket_of("VAN-0001", 8)
    import zlib
    assert bucket_of("TRK1", 8) == zlib.crc32(b"TRK1") % 8
    assert len({bucket_of(f"TRK{i}", 8) for i in range(200)}) == 8


def test_config_from_mapping_rejects_unknown_and_non_positive_settings():
    assert BatchConfig.from_mapping({"max_batch": "64"}) == BatchConfig(max_batch=64)
    assert BatchConfig.from_mapping(None) == BatchConfig()
    with pytest.raises(ValueError, match="unknown"):
        BatchConfig.from_mapping({"max_batches": 3})
    with pytest.raises(ValueError, match="positive"):
        BatchConfig.from_mapping({"buckets": 0})
