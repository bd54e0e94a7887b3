"""Sending a writer's batch of Cassandra upserts with as few requests as it means.

The Python driver spends ~0.1–0.2 ms of CPU (under the GIL) per request it sends, so a
job writer that sends one request per row spends most of its time in the driver
(bench/results/pipeline.md). ``send_writes`` keeps the meaning of "each write in order,
later writes win" and sends less:

1. **Coalesce.** Writes of one prepared statement to one primary key collapse into one,
   later values over earlier ones. An UNSET value (a column the write leaves alone) does
   not hide an earlier value, so the result is what the writes in sequence would leave.
   A shipment that changes state three times inside one batch is written once.
2. **Group by partition.** The coalesced writes are grouped by routing key (partition key
   value: same token, same replicas, even across tables) and each group goes out as one
   UNLOGGED batch of at most ``MAX_BATCH_STATEMENTS``: one request, one mutation per
   replica. Shared partitions (``shipments_by_status_day``) gain the most.

Why not always: a batch gives all its statements one write timestamp, so order inside it
no longer decides who wins. Coalescing removes same-row conflicts within a statement;
writes that carry their own ``USING TIMESTAMP`` are not coalesced (their timestamps, not
their order, decide) but may share a batch. A list with a DELETE in it is sent as it
was, one request per write in order, because a tombstone wins a timestamp tie.
"""
from __future__ import annotations

from typing import Any

# Small enough to stay under Cassandra's 5 KiB batch warning for typical rows.
MAX_BATCH_STATEMENTS = 16

Write = tuple[Any, tuple]


class WriteSender:
    """Per session: remembers each prepared statement's primary-key parameter positions."""

    def __init__(self, session, unset: Any):
        self._session = session
        self._unset = unset
        self._pk_positions: dict[bytes, tuple[int, ...] | None] = {}

    def send(self, writes: list[Write]) -> list:
        """Futures of the requests that carry ``writes`` (params already converted)."""
        if not writes:
            return []
        if any(_is_delete(stmt) for stmt, _ in writes):
            return [self._session.execute_async(stmt, params) for stmt, params in writes]
        from cassandra.query import BatchStatement, BatchType

        groups: dict[Any, list] = {}
        for stmt, params in self.coalesce(writes):
            bound = stmt.bind(params)
            groups.setdefault(bound.routing_key, []).append(bound)
        futures = []
        for bounds in groups.values():
            for i in range(0, len(bounds), MAX_BATCH_STATEMENTS):
                chunk = bounds[i:i + MAX_BATCH_STATEMENTS]
                if len(chunk) == 1:
                    futures.append(self._session.execute_async(chunk[0]))
                    continue
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for b in chunk:
                    batch.add(b)
                futures.append(self._session.execute_async(batch))
        return futures

    def coalesce(self, writes: list[Write]) -> list[Write]:
        """``writes`` with same-statement, same-row writes merged, in first-seen order."""
        merged: dict[Any, list] = {}
        for n, (stmt, params) in enumerate(writes):
            positions = self._positions(stmt)
            key = (stmt.query_id, n) if positions is None else (stmt.query_id, tuple(params[i] for i in positions))
            earlier = merged.get(key)
            if earlier is None:
                merged[key] = [stmt, list(params)]
                continue
            values = earlier[1]
            for i, v in enumerate(params):
                if v is not self._unset:
                    values[i] = v
        return [(stmt, tuple(values)) for stmt, values in merged.values()]

    def _positions(self, stmt) -> tuple[int, ...] | None:
        """Bind positions of the statement's primary key, or None when it must not be
        coalesced (explicit timestamps, a key column that is not a bind marker)."""
        qid = stmt.query_id
        if qid in self._pk_positions:
            return self._pk_positions[qid]
        positions = None
        if "USING TIMESTAMP" not in stmt.query_string.upper():
            cols = stmt.column_metadata or []
            if cols:
                table = self._session.cluster.metadata.keyspaces[cols[0].keyspace_name].tables[cols[0].table_name]
                names = [c.name for c in cols]
                wanted = [c.name for c in table.primary_key]
                if all(names.count(w) == 1 for w in wanted):
                    positions = tuple(names.index(w) for w in wanted)
        self._pk_positions[qid] = positions
        return positions


def _is_delete(stmt) -> bool:
    return stmt.query_string.lstrip().upper().startswith("DELETE")
