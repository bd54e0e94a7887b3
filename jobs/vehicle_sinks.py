"""Where the vehicle job's state goes: Cassandra history, Redis current view.

Every write is an idempotent upsert on natural keys and is acknowledged before
``flat_map`` returns, so a checkpoint barrier behind the writer covers only written
rows (at-least-once + idempotence = effectively once):

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

from pyflink.datastream import FlatMapFunction, RuntimeContext

from jobs.sinks import VEHICLES_GEO_KEY, StoreConfig, vehicle_key

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


class VehicleStoreWriter(FlatMapFunction):
    """Writes the vehicle job's emits to Cassandra and Redis by type; yields nothing."""

    def __init__(self, cfg: StoreConfig):
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext):
        import redis

        from fleetflow.cassandra_session import connect

        self._cluster, self._session = connect(self.cfg, keyspace=self.cfg.keyspace)
        self._position = self._session.prepare(
            "INSERT INTO vehicle_positions (vehicle_id, day, event_time_ms, event_id, lat, lon, speed_mps,"
            " heading_deg, accuracy_m, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._fence = self._session.prepare(
            "INSERT INTO fence_events_by_vehicle (vehicle_id, day, event_time_ms, event_id, event_type, geofence_id,"
            " kind, facility_id, visit_start_ms, detected_time_ms, interpolated, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._redis = redis.Redis.from_url(self.cfg.redis_url)
        self._upsert = self._redis.register_script(_UPSERT_IF_NOT_OLDER)
        metrics = runtime_context.get_metrics_group()
        self._stale = metrics.counter("vehicle_snapshots_stale")

    def close(self):
        if getattr(self, "_cluster", None) is not None:
            self._cluster.shutdown()

    def flat_map(self, emit: Any):
        kind = type(emit).__name__
        if kind == "PositionRow":
            self._session.execute(self._position, (
                emit.vehicle_id, emit.day, emit.event_time_ms, emit.event_id, emit.lat, emit.lon, emit.speed_mps,
                emit.heading_deg, emit.accuracy_m, emit.source))
        elif kind == "FenceRow":
            r = emit.record
            self._session.execute(self._fence, (
                r["vehicle_id"], emit.day, r["event_time_ms"], r["event_id"], r["event_type"], r["geofence_id"],
                r["kind"], r["facility_id"], r["visit_start_ms"], r["detected_time_ms"], r["interpolated"],
                r["reason"]))
        elif kind == "VehicleSnapshot":
            fields = snapshot_fields(emit, int(time.time() * 1000))
            args: list[Any] = [emit.last_event_time_ms]
            for k, v in fields.items():
                args += [k, v]
            if self._upsert(keys=[vehicle_key(emit.vehicle_id)], args=args):
                self._redis.geoadd(VEHICLES_GEO_KEY, (emit.lon, emit.lat, emit.vehicle_id))
            else:
                self._stale.inc()
        return iter(())
