"""The alerts job's store writer: Cassandra alert tables and the Redis alert stream.

Each passed alert is written to ``alerts_by_entity``, ``alerts_by_day_type``,
``alerts_by_id`` and ``alert_audit`` (fleetflow/cql/008_alerts.cql), then pushed on
``ff:alerts:stream``. Each applied ack is written to ``alert_audit`` and the ack
columns of ``alerts_by_id``, then pushed as an ``ALERT_ACK`` entry.

Replays: every Cassandra write is an upsert on natural ids. ``alerts_by_id`` takes its
lifecycle columns with cell timestamp = event time (plus the state's rank), so a late
or replayed older transition loses to a newer one. A stream is append-only, so the
push goes through a Lua script that sets a marker key ``ff:alerts:pushed:<token>``
with NX and a TTL and XADDs only if the marker was new, in one atomic step. The token
is ``alert_id|state|event_time_ms`` for alerts and ``ack|ack_id`` for acks: a replay
after a restart (the operator writes before the checkpoint barrier passes it) finds
the marker and pushes nothing. The stream is written last, so a failed Cassandra write
is retried before anything is announced.
"""
from __future__ import annotations

import json
from typing import Any

from pyflink.datastream import RuntimeContext

from jobs.sinks import StoreWriter, evalsha, redis_scripts_pipeline
from udfs.alerts import ALERT_ACK, OPEN, RESOLVED, UPDATED, AckApplied, Alert

STREAM_KEY = "ff:alerts:stream"
PUSHED_PREFIX = "ff:alerts:pushed:"
# Approximate cap: Redis trims whole macro nodes, so the stream holds at least this many.
STREAM_MAXLEN = 100_000
# Longer than any replay can reach back: a restore replays at most the checkpoint
# interval, and candidates older than the 7-day admission window are dead-lettered.
PUSHED_TTL_S = 8 * 24 * 3600
DAY_MS = 24 * 3600 * 1000
SYSTEM_ACTOR = "fleetflow"
# Within one millisecond of event time, a later lifecycle state wins.
_STATE_RANK = {OPEN: 0, UPDATED: 1, RESOLVED: 2}

_PUSH_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return false end
local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*'}
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
return redis.call(unpack(args))
"""


def alert_stream_fields(a: Alert) -> dict[str, str]:
    """An alert's entry on ``ff:alerts:stream`` (docs/data-layout.md)."""
    return {"alert_id": a.alert_id, "type": a.type, "severity": a.severity, "state": a.state,
            "entity_type": a.entity_type, "entity_id": a.entity_id, "event_time_ms": str(a.event_time_ms),
            "detected_time_ms": str(a.detected_time_ms), "route_to": a.route_to,
            "details": json.dumps(a.details, sort_keys=True, separators=(",", ":"))}


def ack_stream_fields(applied: AckApplied) -> dict[str, str]:
    """An ack's ``ALERT_ACK`` entry: the ack, and the alert's ack status after it."""
    a = applied.ack
    return {"type": ALERT_ACK, "alert_id": a.alert_id, "ack_id": a.ack_id, "action": a.action,
            "actor": a.actor, "note": a.note, "event_time_ms": str(a.event_time_ms),
            "acked_by": applied.acked_by or "", "acked_ms": _str_or_empty(applied.acked_ms),
            "assignee": applied.assignee or "", "assigned_ms": _str_or_empty(applied.assigned_ms)}


def alert_token(a: Alert) -> str:
    return f"{a.alert_id}|{a.state}|{a.event_time_ms}"


def ack_token(applied: AckApplied) -> str:
    return f"ack|{applied.ack.ack_id}"


def lifecycle_timestamp_us(a: Alert) -> int:
    """Cassandra cell timestamp for an alert's lifecycle columns in ``alerts_by_id``."""
    return a.event_time_ms * 1000 + _STATE_RANK[a.state]


def _str_or_empty(v: int | None) -> str:
    return "" if v is None else str(v)


def _batch_key(emit: Any) -> str:
    return emit.ack.alert_id if isinstance(emit, AckApplied) else emit.alert_id


class AlertStoreWriter(StoreWriter):
    """Writes batches of Alert and AckApplied emits to Cassandra, then the Redis stream;
    batched by alert id.

    Counts ``stream_pushed`` and ``stream_replays_skipped`` as Flink metrics.
    """

    batch_key = staticmethod(_batch_key)

    def open(self, runtime_context: RuntimeContext):
        self._connect()
        s = self._session
        self._by_entity = s.prepare(
            "INSERT INTO alerts_by_entity (entity_type, entity_id, event_time_ms, alert_id, type, severity, state,"
            " route_to, detected_time_ms, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._by_day = s.prepare(
            "INSERT INTO alerts_by_day_type (day, type, event_time_ms, alert_id, entity_type, entity_id, severity,"
            " state, route_to, detected_time_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        base = ("alert_id, type, severity, state, entity_type, entity_id, event_time_ms, detected_time_ms,"
                " details, route_to")
        self._by_id = {
            state: s.prepare(f"INSERT INTO alerts_by_id ({base}{extra}) VALUES ({', '.join('?' * n)})"
                             " USING TIMESTAMP ?")
            for state, extra, n in ((OPEN, ", opened_ms", 11), (UPDATED, "", 10), (RESOLVED, ", resolved_ms", 11))}
        self._acked = s.prepare(
            "UPDATE alerts_by_id SET acked_by = ?, acked_ms = ?, assignee = ?, assigned_ms = ? WHERE alert_id = ?")
        self._audit = s.prepare(
            "INSERT INTO alert_audit (alert_id, at_ms, action_id, action, actor, assignee, note, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        self._push_once = self._redis.register_script(_PUSH_ONCE)
        metrics = runtime_context.get_metrics_group()
        self._pushed = metrics.counter("stream_pushed")
        self._skipped = metrics.counter("stream_replays_skipped")

    def write_batch(self, emits: list) -> None:
        """Every Cassandra write of the batch in flight at once and acknowledged, then the
        stream entries in one Redis pipeline, in arrival order."""
        writes, pushes = [], []
        for emit in emits:
            if isinstance(emit, Alert):
                writes += self._write_alert(emit)
                pushes.append((alert_token(emit), alert_stream_fields(emit)))
            elif isinstance(emit, AckApplied):
                writes += self._write_ack(emit)
                pushes.append((ack_token(emit), ack_stream_fields(emit)))
            else:
                raise TypeError(f"alerts store writer got {type(emit).__name__}; expected Alert or AckApplied")
        for f in self._sender.send(writes):
            f.result()
        if pushes:
            self._push(pushes)

    def _write_alert(self, a: Alert) -> list:
        details = dict(a.details)
        row = [a.alert_id, a.type, a.severity, a.state, a.entity_type, a.entity_id, a.event_time_ms,
               a.detected_time_ms, details, a.route_to]
        if a.state != UPDATED:
            row.append(a.event_time_ms)
        return [
            (self._by_entity, (a.entity_type, a.entity_id, a.event_time_ms, a.alert_id, a.type, a.severity,
                               a.state, a.route_to, a.detected_time_ms, details)),
            (self._by_day, (a.event_time_ms // DAY_MS, a.type, a.event_time_ms, a.alert_id, a.entity_type,
                            a.entity_id, a.severity, a.state, a.route_to, a.detected_time_ms)),
            (self._by_id[a.state], (*row, lifecycle_timestamp_us(a))),
            (self._audit, (a.alert_id, a.event_time_ms, a.state, a.state, SYSTEM_ACTOR, None, "", a.state))]

    def _write_ack(self, applied: AckApplied) -> list:
        a = applied.ack
        return [(self._audit, (a.alert_id, a.event_time_ms, a.ack_id, a.action, a.actor, a.assignee, a.note, None)),
                (self._acked, (applied.acked_by, applied.acked_ms, applied.assignee, applied.assigned_ms,
                               a.alert_id))]

    def _push(self, pushes: list[tuple[str, dict[str, str]]]) -> None:
        def build(pipe):
            for token, fields in pushes:
                evalsha(pipe, self._push_once, [STREAM_KEY, PUSHED_PREFIX + token], [PUSHED_TTL_S, STREAM_MAXLEN],
                        fields)
        replies = redis_scripts_pipeline(self._redis, [self._push_once], build)
        pushed = sum(1 for r in replies if r)
        if pushed:
            self._pushed.inc(pushed)
        if len(replies) > pushed:
            self._skipped.inc(len(replies) - pushed)
