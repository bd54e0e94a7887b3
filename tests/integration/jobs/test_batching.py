"""BatchingWriter on a MiniCluster at parallelism 2: every element is written exactly
once, one entity's elements in arrival order, in batches no larger than max_batch."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.minicluster


class FileWriter:
    """A StoreWriter that appends each batch as one JSON line (the operator runs in
    the TaskManager's interpreter, so the test reads what it wrote from a file)."""

    def __init__(self, path: str):
        self.path = path

    @staticmethod
    def batch_key(emit) -> str:
        return emit[0]

    def open(self, runtime_context):
        pass

    def close(self):
        pass

    def write_batch(self, emits: list) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps([list(e) for e in emits]) + "\n")


def test_every_element_is_written_once_in_per_entity_order(flink_env, tmp_path):
    from pyflink.common.typeinfo import Types

    from jobs.batching import BatchConfig, BatchingWriter, bucket_selector

    out = tmp_path / "batches.jsonl"
    entities = [f"VAN-{i:02d}" for i in range(12)]
    elements = [(entities[n % len(entities)], n) for n in range(600)]
    env = flink_env()
    cfg = BatchConfig(buckets=4, max_batch=16, max_delay_ms=60_000)
    writer = FileWriter(str(out))
    (env.from_collection(elements, type_info=Types.TUPLE([Types.STRING(), Types.INT()]))
     .key_by(bucket_selector(FileWriter.batch_key, cfg.buckets), key_type=Types.INT())
     .process(BatchingWriter(writer, cfg), output_type=Types.PICKLED_BYTE_ARRAY())
     .uid("store").name("batched writer"))
    env.execute("batching")

    batches = [json.loads(line) for line in out.read_text().splitlines()]
    written = [tuple(e) for b in batches for e in b]
    assert sorted(written) == sorted(elements), "every element exactly once (the end-of-input flush included)"
    for entity in entities:
        seq = [n for e, n in written if e == entity]
        assert seq == sorted(seq), f"{entity} written out of order"
    assert max(len(b) for b in batches) <= 16
    assert len(batches) < len(elements) / 4, "elements are written in batches, not one by one"
