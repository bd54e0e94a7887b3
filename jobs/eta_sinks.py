"""The ETA job's store writer: ETA fields in Redis, estimates and outcomes in Cassandra.

Redis: the ETA job owns only the ETA fields of ``ff:shipment:{tracking_id}`` (see
docs/data-layout.md); the shipment job owns the rest of that hash and guards it by
``version``. These fields are guarded by ``eta_as_of_ms`` in one Lua script, so a
replayed or late estimate never overwrites a fresher one and the shipment job's fields
are never touched.

Cassandra (fleetflow/cql/005_eta.cql): ``eta_history``, ``sla_outcomes``,
``sla_by_carrier_day`` and ``late_risk_by_day``; every write is an upsert on natural
ids, acknowledged before a batch leaves Flink state (see jobs/batching.py for why).
"""
from __future__ import annotations

from typing import Any

from pyflink.datastream import RuntimeContext

from jobs.sinks import StoreWriter, evalsha, redis_scripts_pipeline, shipment_key
from udfs.promise import utc_day

# Only move the ETA fields forward. Equal as_of passes: the flag written by the promise
# rule for the same evidence as the estimate must land.
_REDIS_ETA_IF_NEWER = """
local cur = redis.call('HGET', KEYS[1], 'eta_as_of_ms')
if cur and cur ~= '' and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'eta_as_of_ms', ARGV[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

ETA_FIELDS = ("eta_ms", "eta_earliest_ms", "eta_latest_ms", "eta_confidence", "eta_basis", "eta_as_of_ms",
              "late_risk", "late_by_ms")


def redis_eta_fields(rec) -> dict[str, str]:
    """The hash fields one EtaRecord sets (besides eta_as_of_ms). A record without an
    estimate (delivery, cancellation) only clears the risk flag."""
    fields = {"late_risk": rec.late_risk, "late_by_ms": str(rec.late_by_ms)}
    if rec.eta_ms is not None:
        fields.update(eta_ms=str(rec.eta_ms), eta_earliest_ms=str(rec.earliest_ms),
                      eta_latest_ms=str(rec.latest_ms), eta_confidence=f"{rec.confidence:.3f}",
                      eta_basis=rec.basis or "")
    return fields


def write_timestamp_us(event_time_ms: int, revision: int) -> int:
    """Cassandra write time for an alert revision: later evidence, then higher revision, wins."""
    return event_time_ms * 1000 + min(max(revision, 0), 999)


def _batch_key(emit: Any) -> str:
    return emit.tracking_id


class EtaStoreWriter(StoreWriter):
    """Writes batches of EtaRecord, PromiseAlert and SlaOutcome emits, batched by tracking id."""

    batch_key = staticmethod(_batch_key)

    def open(self, runtime_context: RuntimeContext):
        self._connect()
        self._history = self._session.prepare(
            "INSERT INTO eta_history (tracking_id, as_of_ms, eta_ms, eta_earliest_ms, eta_latest_ms, eta_confidence,"
            " eta_basis, late_risk, late_by_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._outcome = self._session.prepare(
            "INSERT INTO sla_outcomes (tracking_id, carrier, lane, day, on_time, lateness_ms) VALUES (?, ?, ?, ?, ?, ?)")
        self._by_day = self._session.prepare(
            "INSERT INTO sla_by_carrier_day (carrier, day, lane, tracking_id, on_time, lateness_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)")
        self._late = self._session.prepare(
            "INSERT INTO late_risk_by_day (day, tracking_id, alert_id, state, severity, late_by_ms, eta_ms,"
            " promised_end_ms, raised_ms, event_time_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
        self._upsert = self._redis.register_script(_REDIS_ETA_IF_NEWER)

    def write_batch(self, emits: list) -> None:
        """Cassandra rows all in flight at once, the ETA guards as one Redis pipeline in
        arrival order; returns when all are acknowledged."""
        writes, etas = [], []
        for emit in emits:
            kind = type(emit).__name__
            if kind == "EtaRecord":
                etas.append(emit)
                if emit.eta_ms is not None:
                    writes.append((self._history, (
                        emit.tracking_id, emit.as_of_ms, emit.eta_ms, emit.earliest_ms, emit.latest_ms,
                        emit.confidence, emit.basis, emit.late_risk, emit.late_by_ms)))
            elif kind == "PromiseAlert":
                writes.append((self._late, (
                    utc_day(emit.promised_window_end_ms), emit.tracking_id, emit.alert_id, emit.state, emit.severity,
                    emit.late_by_ms, emit.eta_ms, emit.promised_window_end_ms, emit.raised_ms, emit.event_time_ms,
                    write_timestamp_us(emit.event_time_ms, emit.revision))))
            elif kind == "SlaOutcome":
                writes.append((self._outcome, (emit.tracking_id, emit.carrier, emit.lane, emit.day, emit.on_time,
                                                emit.lateness_ms)))
                writes.append((self._by_day, (emit.carrier, emit.day, emit.lane, emit.tracking_id,
                                               1 if emit.on_time else 0, emit.lateness_ms)))
        futures = self._sender.send(writes)
        if etas:
            def guards(pipe):
                for rec in etas:
                    evalsha(pipe, self._upsert, [shipment_key(rec.tracking_id)], [rec.as_of_ms],
                            redis_eta_fields(rec))
            redis_scripts_pipeline(self._redis, [self._upsert], guards)
        for f in futures:
            f.result()
