"""Where the vehicle job's state goes: Cassandra history, Redis current view.

Every write is an idempotent upsert on natural keys and is acknowledged before
``write_batch`` returns and the batch leaves Flink state (jobs/batching.py), so
at-least-once + idempotence = effectively once:

* ``PositionRow`` → ``vehicle_positions`` ((vehicle_id, day), event_time_ms, event_id);
* ``FenceRow`` → ``fence_events_by_vehicle`` ((vehicle_id, day), event_time_ms, event_id);
* ``VehicleSnapshot`` → ``ff:vehicle:{id}`` hash, only if its ``last_event_time_ms`` is
  not older than the stored one (a replay or a straggler never moves a van back), and
  ``ff:vehicles:geo`` only when that hash write won.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pyflink.datastream import RuntimeContext

from jobs.sinks import VEHICLES_GEO_KEY, StoreWriter, evalsha, redis_scripts_pipeline, vehicle_key

# KEYS[1] = hash, ARGV[1] = guard time, then field/value pairs. Returns 1 when written.
_UPSERT_IF_NOT_OLDER = """
local cur = redis.call('HGET', KEYS[1], 'last_event_time_ms')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


@dataclass(frozen=True)
class FenceRow:
    """One ``ff.fence-events`` record, bound for Cassandra ``fence_events_by_vehicle``."""
    record: dict

    @property
    def day(self) -> int:
        return self.record["event_time_ms"] // 86_400_000


def snapshot_fields(snap: Any, updated_ms: int) -> dict[str, str]:
    """The hash fields of docs/data-layout.md; absent values are empty strings."""
    values = {
        "lat": snap.lat, "lon": snap.lon, "speed_mps": snap.speed_mps, "heading_deg": snap.heading_deg,
        "accuracy_m": snap.accuracy_m, "source": snap.source, "event_time_ms": snap.event_time_ms,
        "last_event_time_ms": snap.last_event_time_ms, "fences": ",".join(snap.fences), "status": snap.status,
        "route_id": snap.route_id, "updated_ms": updated_ms,
    }
    return {k: "" if v is None else str(v) for k, v in values.items()}


def _batch_key(emit: Any) -> str:
    return emit.record["vehicle_id"] if isinstance(emit, FenceRow) else emit.vehicle_id


class VehicleStoreWriter(StoreWriter):
    """Writes batches of the vehicle job's emits to Cassandra and Redis by type, batched by van."""

    batch_key = staticmethod(_batch_key)

    def open(self, runtime_context: RuntimeContext):
        self._connect()
        self._position = self._session.prepare(
            "INSERT INTO vehicle_positions (vehicle_id, day, event_time_ms, event_id, lat, lon, speed_mps,"
            " heading_deg, accuracy_m, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._fence = self._session.prepare(
            "INSERT INTO fence_events_by_vehicle (vehicle_id, day, event_time_ms, event_id, event_type, geofence_id,"
            " kind, facility_id, visit_start_ms, detected_time_ms, interpolated, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._upsert = self._redis.register_script(_UPSERT_IF_NOT_OLDER)
        metrics = runtime_context.get_metrics_group()
        self._stale = metrics.counter("vehicle_snapshots_stale")

    def write_batch(self, emits: list) -> None:
        """Cassandra rows all in flight at once; the snapshots' guards in one Redis
        pipeline (arrival order, so a van's newer snapshot is compared after its older
        one), then one GEOADD for the snapshots that won; returns when all are acknowledged."""
        writes, snaps = [], []
        for emit in emits:
            kind = type(emit).__name__
            if kind == "PositionRow":
                writes.append((self._position, (
                    emit.vehicle_id, emit.day, emit.event_time_ms, emit.event_id, emit.lat, emit.lon,
                    emit.speed_mps, emit.heading_deg, emit.accuracy_m, emit.source)))
            elif kind == "FenceRow":
                r = emit.record
                writes.append((self._fence, (
                    r["vehicle_id"], emit.day, r["event_time_ms"], r["event_id"], r["event_type"], r["geofence_id"],
                    r["kind"], r["facility_id"], r["visit_start_ms"], r["detected_time_ms"], r["interpolated"],
                    r["reason"])))
            elif kind == "VehicleSnapshot":
                snaps.append(emit)
        futures = self._sender.send(writes)
        if snaps:
            self._write_snapshots(snaps)
        for f in futures:
            f.result()

    def _write_snapshots(self, snaps: list) -> None:
        updated_ms = int(time.time() * 1000)

        def guards(pipe):
            for snap in snaps:
                evalsha(pipe, self._upsert, [vehicle_key(snap.vehicle_id)], [snap.last_event_time_ms],
                        snapshot_fields(snap, updated_ms))
        accepted = redis_scripts_pipeline(self._redis, [self._upsert], guards)
        won = [snap for snap, ok in zip(snaps, accepted) if ok]
        if len(won) < len(snaps):
            self._stale.inc(len(snaps) - len(won))
        if won:
            # One GEOADD; members repeat in arrival order, so a van ends at its newest point.
            values: list[Any] = []
            for snap in won:
                values += [snap.lon, snap.lat, snap.vehicle_id]
            self._redis.geoadd(VEHICLES_GEO_KEY, values)
