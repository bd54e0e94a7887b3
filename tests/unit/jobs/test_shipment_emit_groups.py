"""The lifecycle's emits travel as one group per input, and the store writer puts every
write of a group in flight before it waits, still acknowledging all before returning."""
from __future__ import annotations

import pytest

pytest.importorskip("pyflink")

from jobs.operators import DecisionOperator, EmitGroup  # noqa: E402
from jobs.shipment_sinks import ShipmentStoreWriter  # noqa: E402
from jobs.shipment_status import _order_updates, _state_changes, _stuck_alerts  # noqa: E402
from udfs.decision import Decision  # noqa: E402
from udfs.lifecycle import AuditRow, HistoryRow, ShipmentAlert, StateChanged  # noqa: E402
from tests.unit.jobs.fakes import ValueState  # noqa: E402


class _Timers:
    def __init__(self):
        self.registered, self.deleted = [], []

    def current_processing_time(self):
        return 1_000

    def register_event_time_timer(self, t):
        self.registered.append(t)

    def delete_event_time_timer(self, t):
        self.deleted.append(t)


class _Ctx:
    def __init__(self):
        self.timers = _Timers()

    def timer_service(self):
        return self.timers


def _operator(group: bool, emits_per_event: int) -> DecisionOperator:
    def step(state, event, now_ms):
        n = (state or 0) + 1
        return Decision(n, emits=tuple(f"{event}-{i}" for i in range(emits_per_event)), timer_ms=now_ms + n)

    op = DecisionOperator(step, lambda state, t: Decision(state, emits=("timer",)), group_emits=group)
    op._state = ValueState()
    return op


def test_grouped_operator_yields_one_group_per_element_with_the_same_emits_state_and_timers():
    plain, grouped = _operator(False, 3), _operator(True, 3)
    ctx_a, ctx_b = _Ctx(), _Ctx()
    flat = [e for ev in "ab" for e in plain.process_element(ev, ctx_a)]
    groups = [g for ev in "ab" for g in grouped.process_element(ev, ctx_b)]
    assert all(isinstance(g, EmitGroup) for g in groups) and len(groups) == 2
    assert [e for g in groups for e in g] == flat == ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]
    assert plain._state.raw == grouped._state.raw
    assert ctx_a.timers.registered == ctx_b.timers.registered == [1_001, 1_002]
    assert list(grouped.on_timer(5, ctx_b)) == [EmitGroup(("timer",))]


def test_grouped_operator_yields_nothing_when_the_rule_emits_nothing():
    assert list(_operator(True, 0).process_element("a", _Ctx())) == []


class _Future:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def result(self):
        self.log.append(("wait", self.name))


class _Session:
    def __init__(self, log):
        self.log = log

    def execute_async(self, stmt, params):
        self.log.append(("send", stmt))
        return _Future(self.log, stmt)


class _Sender:
    """WriteSender's contract without a cluster: one request per write, futures back."""

    def __init__(self, session):
        self.session = session

    def send(self, writes):
        return [self.session.execute_async(stmt, params) for stmt, params in writes]


class _Pipeline:
    def __init__(self, log, verdicts):
        self.log, self.verdicts, self.queued = log, verdicts, []

    def evalsha(self, sha, numkeys, *keys_and_args):
        assert sha == "guard-sha" and numkeys == 1
        self.queued.append(keys_and_args[0])

    def execute(self):
        self.log.append(("redis", tuple(self.queued)))
        return [self.verdicts[k] for k in self.queued]


class _Redis:
    def __init__(self, log, verdicts):
        self.log, self.verdicts = log, verdicts

    def pipeline(self, transaction=True):
        assert transaction is False
        return _Pipeline(self.log, self.verdicts)


def _writer(verdicts: dict[str, int]):
    log: list = []
    w = ShipmentStoreWriter(cfg=None)
    w._unset = None
    w._sender = _Sender(_Session(log))
    w._redis = _Redis(log, verdicts)
    for name in ("history", "current", "by_status", "by_carrier", "audit", "dq", "order_row", "order_status",
                 "order_remove", "by_postcode", "by_order_day"):
        setattr(w, f"_{name}", name)

    class _Script:
        sha, script = "guard-sha", "-- lua"
    w._upsert = _Script()
    return w, log


def _changed(tid: str, version: int) -> StateChanged:
    fields = {f: None for f in StateChanged.__dataclass_fields__}
    fields.update(tracking_id=tid, version=version, status="IN_TRANSIT", detail="PICKED_UP", prev_status=None,
                  carrier="FEDEX", leg=1, legs=(), event_time_ms=86_400_000 * 3, status_since_ms=86_400_000 * 3,
                  last_event_time_ms=86_400_000 * 3, terminal=False, hidden_from_customers=False,
                  event_id=f"{tid}-e{version}", last_event_id=f"{tid}-e{version}")
    return StateChanged(**fields)


def _row(cls, **given):
    fields = {f: None for f in cls.__dataclass_fields__}
    fields.update(given)
    return cls(**fields)


def test_a_group_sends_every_write_before_waiting_and_waits_for_all_of_them():
    w, log = _writer({"ff:shipment:T1": 1, "ff:shipment:T2": 0})
    group = EmitGroup((_row(HistoryRow, tracking_id="T1", event_id="e1"), _changed("T1", 2),
                       _row(AuditRow, tracking_id="T1", version=2), _changed("T2", 7)))
    assert list(w.flat_map(group)) == []
    sends = [name for kind, name in log if kind == "send"]
    first_wait = next(i for i, (kind, _) in enumerate(log) if kind == "wait")
    assert all(kind != "send" for kind, _ in log[first_wait:]), "nothing is sent after the first wait"
    assert [e for e in log if e[0] == "redis"] == [("redis", ("ff:shipment:T1", "ff:shipment:T2"))], \
        "one Redis round trip for the whole group"
    assert sends.count("current") == 1, "only the change Redis accepted reaches shipment_current"
    assert sorted(sends) == sorted(["history", "by_status", "by_carrier", "audit", "by_status", "by_carrier",
                                    "current"])
    assert sorted(name for kind, name in log if kind == "wait") == sorted(sends), "every write is acknowledged"


def test_a_batch_guards_every_change_in_one_round_trip_in_arrival_order():
    w, log = _writer({"ff:shipment:T1": 1, "ff:shipment:T2": 1})
    batch = [EmitGroup((_changed("T1", 2),)), _row(HistoryRow, tracking_id="T2", event_id="e9"),
             EmitGroup((_changed("T2", 4), _changed("T1", 3)))]
    w.write_batch(batch)
    assert [e for e in log if e[0] == "redis"] == [
        ("redis", ("ff:shipment:T1", "ff:shipment:T2", "ff:shipment:T1"))]
    sends = [name for kind, name in log if kind == "send"]
    assert sends.count("current") == 3 and sends.count("history") == 1
    assert sorted(name for kind, name in log if kind == "wait") == sorted(sends)


def test_a_single_emit_still_writes_on_its_own():
    w, log = _writer({})
    w.flat_map(_row(HistoryRow, tracking_id="T1", event_id="e1"))
    assert [e for e in log] == [("send", "history"), ("wait", "history")]


def test_side_streams_pick_their_emits_out_of_a_group():
    changed = _changed("T1", 2)
    changed_with_order = _changed("T2", 3).__class__(**{**_changed("T2", 3).__dict__, "order_id": "O1"})
    alert = _row(ShipmentAlert, alert_id="A1", type="SHIPMENT_STUCK", tracking_id="T1", status="IN_TRANSIT",
                 detail="PICKED_UP", state="OPEN", timer_ms=5)
    group = EmitGroup((_row(HistoryRow, tracking_id="T1"), changed, alert, changed_with_order))
    assert _state_changes(group) == [changed, changed_with_order]
    assert [(u.order_id, u.tracking_id) for u in _order_updates(group)] == [("O1", "T2")]
    assert [a["alert_id"] for a in _stuck_alerts(group)] == ["A1"]
