"""WriteSender: fewer requests, same outcome as sending every write in order."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

pytest.importorskip("cassandra")

from cassandra.query import UNSET_VALUE, BatchStatement  # noqa: E402

from fleetflow.cassandra_writes import MAX_BATCH_STATEMENTS, WriteSender  # noqa: E402

TABLES = {"current": ["tracking_id"], "history": ["tracking_id", "event_time_ms"], "by_status": ["status", "day",
                                                                                                   "tracking_id"]}


@dataclass
class _Stmt:
    table: str
    columns: list
    query_string: str = "INSERT INTO t (...) VALUES (...)"

    @property
    def query_id(self):
        return (self.table, self.query_string)

    @property
    def column_metadata(self):
        return [SimpleNamespace(keyspace_name="ks", table_name=self.table, name=c) for c in self.columns]

    def bind(self, params):
        pk = TABLES[self.table][0]
        return SimpleNamespace(stmt=self, params=params, routing_key=params[self.columns.index(pk)],
                               query_string=self.query_string, keyspace="ks", custom_payload=None)


class _Session:
    def __init__(self):
        tables = {t: SimpleNamespace(primary_key=[SimpleNamespace(name=c) for c in cols]) for t, cols in TABLES.items()}
        self.cluster = SimpleNamespace(metadata=SimpleNamespace(keyspaces={"ks": SimpleNamespace(tables=tables)}))
        self.sent = []

    def execute_async(self, request, params=None):
        self.sent.append(request if params is None else (request, params))
        return object()


CURRENT = _Stmt("current", ["tracking_id", "status", "facility"])
HISTORY = _Stmt("history", ["tracking_id", "event_time_ms", "status"])
BY_STATUS = _Stmt("by_status", ["status", "day", "tracking_id", "version"])


def _statements(request):
    if isinstance(request, BatchStatement):
        return len(request._statements_and_parameters)
    return 1


def test_later_writes_to_one_row_win_and_unset_columns_keep_earlier_values():
    sender = WriteSender(_Session(), UNSET_VALUE)
    merged = sender.coalesce([(CURRENT, ("T1", "IN_TRANSIT", "HUB-1")), (CURRENT, ("T2", "PENDING", "HUB-9")),
                              (CURRENT, ("T1", "OUT_FOR_DELIVERY", UNSET_VALUE)),
                              (CURRENT, ("T1", "DELIVERED", None))])
    assert merged == [(CURRENT, ("T1", "DELIVERED", None)), (CURRENT, ("T2", "PENDING", "HUB-9"))]


def test_out_of_order_twin_two_versions_arriving_the_other_way_round_keep_the_later_one():
    sender = WriteSender(_Session(), UNSET_VALUE)
    merged = sender.coalesce([(CURRENT, ("T1", "DELIVERED", UNSET_VALUE)), (CURRENT, ("T1", "IN_TRANSIT", "HUB-1"))])
    assert merged == [(CURRENT, ("T1", "IN_TRANSIT", "HUB-1"))], "order, not content, decides: as sent in sequence"


def test_rows_with_different_keys_are_all_kept():
    sender = WriteSender(_Session(), UNSET_VALUE)
    writes = [(HISTORY, ("T1", t, "IN_TRANSIT")) for t in (1, 2, 3)]
    assert sender.coalesce(writes) == writes


def test_explicitly_timestamped_writes_are_never_merged():
    stamped = _Stmt("current", ["tracking_id", "status", "facility"], "INSERT INTO t (...) VALUES (...) USING TIMESTAMP ?")
    sender = WriteSender(_Session(), UNSET_VALUE)
    writes = [(stamped, ("T1", "OPEN", "x")), (stamped, ("T1", "RESOLVED", "y"))]
    assert sender.coalesce(writes) == writes


def test_one_partitions_writes_share_a_batch_across_tables_and_chunks_stay_small():
    session = _Session()
    sender = WriteSender(session, UNSET_VALUE)
    writes = [(HISTORY, ("T1", t, "IN_TRANSIT")) for t in range(MAX_BATCH_STATEMENTS + 3)]
    writes += [(CURRENT, ("T1", "IN_TRANSIT", "H")), (CURRENT, ("T2", "IN_TRANSIT", "H"))]
    futures = sender.send(writes)
    assert len(futures) == len(session.sent) == 3
    assert sorted(_statements(r) for r in session.sent) == [1, 4, MAX_BATCH_STATEMENTS]
    assert sum(_statements(r) for r in session.sent) == len(writes)


def test_a_delete_sends_every_write_on_its_own_in_order():
    session = _Session()
    delete = _Stmt("current", ["tracking_id"], "DELETE FROM t WHERE tracking_id = ?")
    writes = [(delete, ("T1",)), (CURRENT, ("T1", "IN_TRANSIT", "H")), (CURRENT, ("T1", "DELIVERED", "H"))]
    WriteSender(session, UNSET_VALUE).send(writes)
    assert session.sent == writes


def test_nothing_to_send_sends_nothing():
    session = _Session()
    assert WriteSender(session, UNSET_VALUE).send([]) == [] and session.sent == []
