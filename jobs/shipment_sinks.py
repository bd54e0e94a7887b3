"""Where the shipment job's results go: Cassandra, Redis, ``ff.shipment-states`` and alerts.

``ShipmentStoreWriter`` is the job's store writer (``run(..., writer=ShipmentStoreWriter)``).
Every write is an idempotent upsert on natural ids, and every write of a batch is
acknowledged before ``write_batch`` returns and the batch leaves Flink state
(jobs/batching.py): at-least-once delivery plus idempotence.

Current state, highest version wins. Redis decides: a Lua script compares ``version``
with the stored one and writes the hash only if it is not older. Cassandra's
``shipment_current`` is written only when Redis accepted. That costs nothing extra,
where an LWT (``IF version < ?``) would take a Paxos round (four round trips) per
change, and ``USING TIMESTAMP <version>`` would fight every other writer of the row
(a privacy erase, or rows written by the old job, carry real microsecond timestamps
that no version could ever beat). Equal versions are accepted, so a replay after a
crash between the two writes completes the Cassandra row. The one gap: if the Redis
hash is lost while a replay of older versions is in flight, Cassandra may briefly go
back to an older snapshot until the next change; the version column shows it.
"""
from __future__ import annotations

import json
import time
from typing import Any

from pyflink.datastream import RuntimeContext

from jobs.operators import EmitGroup
from jobs.sinks import StoreWriter, evalsha, redis_scripts_pipeline, shipment_key
from udfs.lifecycle import AuditRow, DataQuality, HistoryRow, ShipmentAlert, StateChanged
from udfs.orders import DAY_MS, OrderRollup, PlannedShipmentIndex

# KEYS[1] = hash; ARGV[1] = version; then field, value pairs. Returns 1 if written.
_REDIS_UPSERT_IF_NOT_OLDER = """
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and cur ~= '' and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


def legs_json(changed: StateChanged) -> str:
    return json.dumps({str(n): {"carrier": leg.carrier, "status": _value(leg.status), "detail": _value(leg.detail),
                                "last_event_time_ms": leg.last_event_time_ms, "returning": leg.returning}
                       for n, leg in changed.legs}, sort_keys=True, separators=(",", ":"))


def redis_fields(changed: StateChanged, updated_ms: int) -> dict[str, str]:
    """The shipment job's fields of ``ff:shipment:{tracking_id}`` (docs/data-layout.md)."""
    fields = {
        "status": _value(changed.status), "status_detail": _value(changed.detail),
        "prev_status": _value(changed.prev_status), "carrier": changed.carrier, "leg": changed.leg,
        "legs": legs_json(changed), "version": changed.version, "last_event_id": changed.last_event_id,
        "last_event_time_ms": changed.last_event_time_ms, "status_since_ms": changed.status_since_ms,
        "service_level": changed.service_level, "order_id": changed.order_id,
        "promised_start_ms": changed.promised_start_ms, "promised_end_ms": changed.promised_end_ms,
        "terminal": int(changed.terminal), "hidden_from_customers": int(changed.hidden_from_customers),
        "last_facility_id": changed.last_facility_id, "last_lat": changed.last_lat, "last_lon": changed.last_lon,
        "updated_ms": updated_ms,
    }
    return {k: "" if v is None else str(v) for k, v in fields.items()}


def state_record(changed: StateChanged) -> dict[str, Any]:
    """The ``avro/shipment_states.avsc`` record for one state change."""
    return {
        "tracking_id": changed.tracking_id, "version": changed.version, "status": _value(changed.status),
        "status_detail": _value(changed.detail), "prev_status": _value(changed.prev_status),
        "event_id": changed.event_id, "event_time_ms": changed.event_time_ms,
        "status_since_ms": changed.status_since_ms, "carrier": changed.carrier, "leg": changed.leg,
        "facility_id": changed.last_facility_id, "service_level": changed.service_level,
        "order_id": changed.order_id, "promised_start_ms": changed.promised_start_ms,
        "promised_end_ms": changed.promised_end_ms, "terminal": changed.terminal,
        "hidden_from_customers": changed.hidden_from_customers,
    }


def stuck_alert_record(alert: ShipmentAlert, detected_time_ms: int) -> dict[str, Any]:
    """A SHIPMENT_STUCK alert (OPEN or RESOLVED, same id) as an ``avro/alerts.avsc`` record."""
    return {
        "alert_id": alert.alert_id, "type": alert.type, "severity": "WARNING", "entity_type": "SHIPMENT",
        "entity_id": alert.tracking_id, "event_time_ms": alert.event_time_ms or alert.timer_ms,
        "detected_time_ms": int(detected_time_ms),
        "details": {k: "" if v is None else str(v) for k, v in {
            "status": _value(alert.status), "status_detail": _value(alert.detail), "since_ms": alert.since_ms,
            "limit_ms": alert.limit_ms, "service_level": alert.service_level, "carrier": alert.carrier,
            "leg": alert.leg, "order_id": alert.order_id}.items()},
        "route_to": "ops", "state": alert.state,
    }


def _day(ms: int) -> int:
    return ms // DAY_MS


def _batch_key(emit: Any) -> str:
    first = emit[0] if isinstance(emit, EmitGroup) and emit else emit
    return getattr(first, "tracking_id", None) or getattr(first, "order_id", None) or ""


class ShipmentStoreWriter(StoreWriter):
    """Writes batches of lifecycle emit groups, rollups and plan-index rows to Cassandra
    and/or Redis. Batched by tracking id (orders by order id).

    Stateless (connections only). Emits it has no table for (Handoff, alerts) pass by.
    """

    batch_key = staticmethod(_batch_key)

    def open(self, runtime_context: RuntimeContext):
        self._connect()
        prep = self._session.prepare
        self._history = prep(
            "INSERT INTO shipment_history (tracking_id, event_time_ms, event_id, status, status_detail, carrier,"
            " raw_code, raw_text, facility_id, leg, source, late, hidden_from_customers)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._current = prep(
            "INSERT INTO shipment_current (tracking_id, status, status_detail, prev_status, carrier, leg, legs,"
            " version, last_event_id, last_event_time_ms, status_since_ms, service_level, order_id,"
            " promised_start_ms, promised_end_ms, terminal, hidden_from_customers, last_facility_id, last_lat,"
            " last_lon, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._by_status = prep(
            "INSERT INTO shipments_by_status_day (status, day, tracking_id, status_since_ms, carrier, version)"
            " VALUES (?, ?, ?, ?, ?, ?)")
        self._by_carrier = prep(
            "INSERT INTO shipments_by_carrier_day (carrier, day, tracking_id, status, event_time_ms, version)"
            " VALUES (?, ?, ?, ?, ?, ?)")
        self._audit = prep(
            "INSERT INTO shipment_audit (tracking_id, version, changed_time_ms, event_id, prev_status, new_status,"
            " prev_detail, new_detail, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._dq = prep("INSERT INTO shipment_data_quality (tracking_id, event_id, type, details) VALUES (?, ?, ?, ?)")
        self._order_row = prep(
            "INSERT INTO order_shipments (order_id, tracking_id, status, status_version) VALUES (?, ?, ?, ?)")
        self._order_status = prep(
            "INSERT INTO order_shipments (order_id, order_status, updated_time_ms) VALUES (?, ?, ?)")
        self._order_remove = prep("DELETE FROM order_shipments WHERE order_id = ? AND tracking_id = ?")
        self._by_postcode = prep(
            "INSERT INTO shipments_by_postcode (country, postcode, order_time_ms, tracking_id, order_id,"
            " service_level, promised_end_ms) VALUES (?, ?, ?, ?, ?, ?, ?)")
        self._by_order_day = prep(
            "INSERT INTO shipments_by_order_day (order_day, order_time_ms, tracking_id, order_id, country, postcode,"
            " service_level, promised_end_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        self._upsert = self._redis.register_script(_REDIS_UPSERT_IF_NOT_OLDER)

    def _n(self, v: Any) -> Any:
        # None as "unset", not null: a null would write a tombstone per empty column.
        return self._unset if v is None else _value(v)

    def _send(self, writes: list[tuple[Any, tuple]]) -> list:
        return self._sender.send([(stmt, tuple(self._n(v) for v in params)) for stmt, params in writes])

    def write_batch(self, emits: list) -> None:
        """Writes every emit (and every emit of each ``EmitGroup``) and returns once all are acknowledged.

        The batch's writes are all in flight together: the unconditional Cassandra rows go
        out first, the Redis version guards of its state changes run meanwhile as one
        pipeline (in arrival order), then the accepted ``shipment_current`` rows follow;
        the batch is done when every future has succeeded (a failure raises and fails the
        task, so the batch is replayed from the last checkpoint).
        """
        writes: list[tuple[Any, tuple]] = []
        changes: list[StateChanged] = []
        for emit in emits:
            for e in (emit if isinstance(emit, EmitGroup) else (emit,)):
                if isinstance(e, StateChanged):
                    changes.append(e)
                    writes += self._index_rows(e)
                else:
                    writes += self._rows(e)
        futures = self._send(writes)
        if changes:
            futures += self._send(self._current_rows(changes))
        for f in futures:
            f.result()

    def _rows(self, emit: Any) -> list[tuple[Any, tuple]]:
        if isinstance(emit, HistoryRow):
            return [(self._history, (
                emit.tracking_id, emit.event_time_ms, emit.event_id, emit.status, emit.detail, emit.carrier,
                emit.raw_code, emit.raw_text, emit.facility_id, emit.leg, emit.source, emit.late,
                emit.hidden_from_customers))]
        if isinstance(emit, AuditRow):
            return [(self._audit, (
                emit.tracking_id, emit.version, emit.changed_time_ms, emit.event_id, emit.prev_status,
                emit.new_status, emit.prev_detail, emit.new_detail, emit.source))]
        if isinstance(emit, DataQuality):
            return [(self._dq, (emit.tracking_id, emit.event_id, emit.type, dict(emit.details)))]
        if isinstance(emit, OrderRollup):
            writes = [(self._order_row, (emit.order_id, tid, status, version)) for tid, status, version in
                      emit.shipments]
            writes += [(self._order_remove, (emit.order_id, tid)) for tid in emit.removed]
            writes.append((self._order_status, (emit.order_id, emit.order_status, emit.event_time_ms)))
            return writes
        if isinstance(emit, PlannedShipmentIndex):
            return [
                (self._by_postcode, (emit.country, emit.postcode, emit.order_time_ms, emit.tracking_id,
                                     emit.order_id, emit.service_level, emit.promised_end_ms)),
                (self._by_order_day, (emit.order_day, emit.order_time_ms, emit.tracking_id, emit.order_id,
                                      emit.country, emit.postcode, emit.service_level, emit.promised_end_ms))]
        return []

    def _index_rows(self, c: StateChanged) -> list[tuple[Any, tuple]]:
        # Index rows are history ("was X on day D"), true whatever the version guard says.
        writes = [(self._by_status, (c.status, _day(c.status_since_ms), c.tracking_id, c.status_since_ms,
                                     c.carrier, c.version))]
        if c.carrier:
            writes.append((self._by_carrier, (c.carrier, _day(c.event_time_ms), c.tracking_id, c.status,
                                              c.event_time_ms, c.version)))
        return writes

    def _current_rows(self, changes: list[StateChanged]) -> list[tuple[Any, tuple]]:
        """The Redis guard for every change in one pipeline round trip (run in order, so two
        versions of one shipment are compared as they were emitted), then the Cassandra rows
        Redis accepted, issued in emit order so the newer one gets the later write timestamp."""
        updated_ms = int(time.time() * 1000)
        all_fields = [redis_fields(c, updated_ms) for c in changes]

        def guards(pipe):
            for c, fields in zip(changes, all_fields):
                evalsha(pipe, self._upsert, [shipment_key(c.tracking_id)], [c.version], fields)
        accepted = redis_scripts_pipeline(self._redis, [self._upsert], guards)
        return [(self._current, (
            c.tracking_id, c.status, c.detail, c.prev_status, c.carrier, c.leg, fields["legs"], c.version,
            c.last_event_id, c.last_event_time_ms, c.status_since_ms, c.service_level, c.order_id,
            c.promised_start_ms, c.promised_end_ms, c.terminal, c.hidden_from_customers, c.last_facility_id,
            c.last_lat, c.last_lon, updated_ms))
            for c, fields, ok in zip(changes, all_fields, accepted) if ok]
