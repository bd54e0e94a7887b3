"""Vehicle tracking job: pings, assignments and geofences in; positions, fences, scans and alerts out.

Kafka ``ff.pings`` and ``ff.assignments`` → decode + validate (→ ``ff.dead-letters``) →
event-time watermarks → dedup by (vehicle_id, event_id) → union, keyed by vehicle_id → one keyed
operator (udfs/vehicle_state.py) that also reads the geofences as broadcast state
(compacted ``ff.geofences``, read from the earliest offset on every start).

Outputs: every ping → Cassandra ``vehicle_positions``; a throttled snapshot → Redis
``ff:vehicle:{id}`` + ``ff:vehicles:geo``; ENTER/EXIT → ``ff.fence-events`` and Cassandra
``fence_events_by_vehicle``; GEOFENCE scans → ``ff.scans``; vehicle alerts →
``ff.alert-candidates``. docs/state.md "Vehicle state" has the state and timer rules.
"""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from typing import Any

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import KeyedBroadcastProcessFunction, OutputTag, ProcessFunction, StreamExecutionEnvironment
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor
from pyflink.datastream.time_domain import TimeDomain

from fleetflow import contracts, topics
from fleetflow.ingest import make_dead_letter, route_record
from jobs.alerting import encode_alert
from jobs.common import JobConfig, Outputs, Sinks, run
from jobs.sinks import BYTES
from jobs.state_ttl import ttl_config
from jobs.validate import DEAD_LETTERS, MAX_DETAIL_CHARS, validated_unique
# Emitted between operators, so it must live in an importable module (jobs run as __main__).
from jobs.vehicle_sinks import FenceRow
from udfs import vehicle_state as vs
from udfs.alerts import Alert
from udfs.events import Ping
from udfs.fence_membership import GeofenceEvent
from udfs.geofence import Geofence, GeofenceError, GeofenceIndex

JOB_NAME = "fleetflow-vehicle-tracking"
# Stable operator ids: savepoints map state to these, so never rename them.
# (the ingest stages add pings-/assignments- validate, watermarks, dedup: see jobs/validate.py)
UID_POSITION = "vehicle-latest-position"  # the keyed vehicle operator (it grew from the position rule)
UID_GEOFENCES_VALIDATE = "geofences-validate"
UID_ROUTE_OUTPUTS = "vehicle-outputs-route"
UID_GEOFENCES_WATERMARKS = "geofences-watermarks"
UIDS_SINKS = {"store": "vehicle-store-writer", "store_sink": "vehicle-store-sink",
              "dead_letters": "pings-dead-letter-sink", "alerts": "vehicle-alert-candidates-sink",
              topics.FENCE_EVENTS.name: "vehicle-fence-events-sink", topics.SCANS.name: "vehicle-geofence-scans-sink"}

BAD_GEOFENCE = "BAD_GEOFENCE"
# A backstop behind the rules' own 3-day expiry timers (docs/state.md): catches a van
# whose timers never fire because its watermark stopped for good.
STATE_TTL_MS = 7 * 86_400_000


FENCE_EVENTS = OutputTag("fence-events", BYTES)
GEOFENCE_SCANS = OutputTag("geofence-scans", BYTES)
ALERTS = OutputTag("vehicle-alerts", BYTES)
GEOFENCE_STATE = MapStateDescriptor("geofences", Types.STRING(), Types.PICKLED_BYTE_ARRAY())


@dataclass
class VehicleOutputs(Outputs):
    """Streams left for the caller when ``Sinks`` does not attach them (tests collect them)."""
    fence_events: Any = None
    scans: Any = None
    alerts: Any = None


def rules_from(cfg: JobConfig) -> vs.Rules:
    """``JobConfig.rules`` sections ``membership``, ``watch`` and ``vehicle`` over the defaults."""
    unknown = set(cfg.rules) - {"membership", "watch", "vehicle"}
    if unknown:
        raise ValueError(f"unknown rules sections {sorted(unknown)}; expected membership, watch, vehicle")
    base = vs.DEFAULT_RULES
    return vs.Rules(membership=cfg.rule("membership", base.membership), watch=cfg.rule("watch", base.watch),
                    vehicle=cfg.rule("vehicle", base.vehicle))


def fence_record(ev: GeofenceEvent, detected_time_ms: int) -> dict:
    return {"event_id": ev.event_id, "event_type": ev.event_type, "vehicle_id": ev.vehicle_id,
            "geofence_id": ev.geofence_id, "kind": ev.kind, "facility_id": ev.facility_id,
            "event_time_ms": ev.event_time_ms, "visit_start_ms": ev.visit_start_ms,
            "detected_time_ms": detected_time_ms, "interpolated": ev.interpolated, "reason": ev.reason}


class GeofenceRecords(ProcessFunction):
    """Decode geofence definitions; one that cannot be indexed becomes a dead letter.

    Stateless. A fence is checked here (polygon validity, coordinate range, knobs), so
    the broadcast side only ever sees fences the index accepts.
    """

    def open(self, runtime_context):
        self._bad = runtime_context.get_metrics_group().counter("geofences_rejected")

    def process_element(self, row, ctx: ProcessFunction.Context):
        now_ms = int(time.time() * 1000)
        raw = bytes(row["value"])
        record, dead = route_record(raw, "geofences", now_ms, JobConfig().validation(), frozenset(),
                                    source_topic=row["topic"], source_partition=row["partition"],
                                    source_offset=row["offset"])
        if dead is None and not record.get("deleted"):
            try:
                Geofence.from_dict(record)
            except (GeofenceError, ValueError, TypeError, KeyError) as exc:
                dead = make_dead_letter(BAD_GEOFENCE, str(exc)[:MAX_DETAIL_CHARS], raw, source_topic=row["topic"],
                                        source_partition=row["partition"], source_offset=row["offset"],
                                        detected_time_ms=now_ms)
        if dead is None:
            yield record
        else:
            self._bad.inc()
            yield DEAD_LETTERS, contracts.encode("dead_letters", dead)


class UpdatedTime(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp: int) -> int:
        return int(value.get("updated_time_ms") or 0)


class VehicleOperator(KeyedBroadcastProcessFunction):
    """Keyed by vehicle_id; the adapter around :mod:`udfs.vehicle_state`.

    State: one pickled ``VehicleState`` per van (positions guard, fence memberships,
    watch conditions, parcels on board, plan, shift, timers held), with a 7-day
    processing-time TTL as a backstop. It is cleared when both rules expire the van
    (3 days without a ping, event time). Broadcast state: the geofence records by id;
    each subtask keeps a GeofenceIndex built from it (rebuilt lazily after a restore).
    Timers: the event-time timers the rules ask for, and one processing-time timer for
    the wall-clock silence fallback.
    """

    def __init__(self, rules: vs.Rules, state_ttl_ms: int = STATE_TTL_MS):
        self._rules = rules
        self._state_ttl_ms = state_ttl_ms

    def open(self, runtime_context):
        desc = ValueStateDescriptor("vehicle-state", Types.PICKLED_BYTE_ARRAY())
        desc.enable_time_to_live(ttl_config(self._state_ttl_ms))
        self._state = runtime_context.get_state(desc)
        self._index: GeofenceIndex | None = None
        self._started_ms: int | None = None
        metrics = runtime_context.get_metrics_group()
        self._fence_updates = metrics.counter("geofence_updates")
        self._alerts = metrics.counter("vehicle_alerts")

    def _geofences(self, ctx) -> GeofenceIndex:
        if self._index is None:
            index = GeofenceIndex()
            for _, raw in ctx.get_broadcast_state(GEOFENCE_STATE).items():
                index.apply_record(pickle.loads(raw))
            self._index = index
        return self._index

    def process_broadcast_element(self, record, ctx):
        index = self._geofences(ctx)
        fences = ctx.get_broadcast_state(GEOFENCE_STATE)
        if record.get("deleted"):
            fences.remove(record["geofence_id"])
        else:
            fences.put(record["geofence_id"], pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
        index.apply_record(record)
        self._fence_updates.inc()
        return iter(())

    def _now(self, ctx) -> int:
        try:
            now_ms = ctx.current_processing_time()
        except AttributeError:
            # Thread mode's keyed-broadcast timer context lacks currentProcessingTime; the
            # processing-time service is the wall clock, so read it directly.
            now_ms = int(time.time() * 1000)
        if self._started_ms is None:
            self._started_ms = now_ms
        return now_ms

    def process_element(self, value, ctx):
        now_ms = self._now(ctx)
        state = self._load()
        if isinstance(value, Ping):
            out = vs.on_ping(state, value, now_ms, self._geofences(ctx), self._rules,
                             operator_started_ms=self._started_ms)
        else:
            out = vs.on_assignment(state, value, now_ms, self._rules, operator_started_ms=self._started_ms)
        yield from self._apply(out, ctx, now_ms)

    def on_timer(self, timestamp: int, ctx):
        now_ms = self._now(ctx)
        state = self._load()
        if ctx.time_domain() == TimeDomain.EVENT_TIME:
            out = vs.on_timer(state, timestamp, now_ms, self._rules, operator_started_ms=self._started_ms)
        else:
            out = vs.on_processing_timer(state, now_ms, self._rules, operator_started_ms=self._started_ms)
        yield from self._apply(out, ctx, now_ms)

    def _load(self) -> vs.VehicleState | None:
        raw = self._state.value()
        return None if raw is None else pickle.loads(raw)

    def _apply(self, out: vs.Outcome, ctx, now_ms: int):
        if out.state is None:
            self._state.clear()
        else:
            self._state.update(pickle.dumps(out.state, protocol=pickle.HIGHEST_PROTOCOL))
        timers = ctx.timer_service()
        for t in out.delete_ms:
            timers.delete_event_time_timer(t)
        for t in out.register_ms:
            timers.register_event_time_timer(t)
        if out.delete_processing_ms is not None:
            timers.delete_processing_time_timer(out.delete_processing_ms)
        if out.register_processing_ms is not None:
            timers.register_processing_time_timer(out.register_processing_ms)
        # Everything leaves on the main output and RouteOutputs splits it: PyFlink 2.2's
        # keyed-broadcast operator drops side outputs yielded from on_timer into the main
        # output, which would lose every timer-driven alert (stall, silence).
        for e in out.emits:
            if isinstance(e, GeofenceEvent):
                yield FenceRow(fence_record(e, now_ms))
            else:
                if isinstance(e, Alert):
                    self._alerts.inc()
                yield e


class RouteOutputs(ProcessFunction):
    """Stateless: fence events, scans and alerts → their encoded side outputs; the rest
    (and fence rows too) → the store writer."""

    def process_element(self, e, ctx):
        if isinstance(e, FenceRow):
            yield FENCE_EVENTS, contracts.encode("fence_events", e.record)
            yield e
        elif isinstance(e, Alert):
            yield ALERTS, encode_alert(e.to_record())
        elif isinstance(e, vs.GeofenceScan):
            yield GEOFENCE_SCANS, contracts.encode("scans", e.to_record())
        else:
            yield e


def build_pipeline(env: StreamExecutionEnvironment, pings, assignments=None, geofences=None, sinks: Sinks = None,
                   cfg: JobConfig = JobConfig()) -> VehicleOutputs:
    """Wire the job. Each input is a stream of RawRecord rows (see jobs/sources.py);
    ``assignments`` and ``geofences`` may be None (no plans, no fences)."""
    sinks = sinks if sinks is not None else Sinks()
    rules = rules_from(cfg)
    common = dict(validation_cfg=cfg.validation(), known_carriers=frozenset(), out_of_orderness_ms=cfg.out_of_orderness_ms,
                  idleness_ms=cfg.idleness_ms, dedup_ttl_ms=cfg.dedup_ttl_ms)
    unique_pings, dead = validated_unique(pings, "pings", Ping.from_record, uid_prefix="pings", **common)
    events = unique_pings
    if assignments is not None:
        unique_assignments, dead_a = validated_unique(assignments, "assignments", vs.Assignment.from_record,
                                                      uid_prefix="assignments", **common)
        events = events.union(unique_assignments)
        dead = dead.union(dead_a)
    keyed = events.key_by(lambda e: e.vehicle_id, key_type=Types.STRING())
    if geofences is not None:
        checked = (geofences.process(GeofenceRecords(), output_type=Types.PICKLED_BYTE_ARRAY())
                   .uid(UID_GEOFENCES_VALIDATE).name("decode + check geofences"))
        dead = dead.union(checked.get_side_output(DEAD_LETTERS))
        # A fence update must not hold event time back: its watermark follows the fence's
        # own timestamp and the stream is idle (ignored) between updates.
        fences = checked.assign_timestamps_and_watermarks(
            # with_idleness first: PyFlink 2.2 drops an assigner set before it.
            WatermarkStrategy.for_monotonous_timestamps().with_idleness(Duration.of_millis(cfg.idleness_ms))
            .with_timestamp_assigner(UpdatedTime())).uid(UID_GEOFENCES_WATERMARKS).name("geofence time")
    else:
        fences = env.from_collection(["none"], type_info=Types.STRING()).map(
            lambda _: {"geofence_id": "", "deleted": True}, output_type=Types.PICKLED_BYTE_ARRAY())
    processed = (keyed.connect(fences.broadcast(GEOFENCE_STATE))
                 .process(VehicleOperator(rules), output_type=Types.PICKLED_BYTE_ARRAY())
                 .uid(UID_POSITION).name("vehicle state (fences, watch, parcels)")
                 .process(RouteOutputs(), output_type=Types.PICKLED_BYTE_ARRAY())
                 .uid(UID_ROUTE_OUTPUTS).name("route vehicle outputs")
                 # Fused into the keyed-broadcast operator, its side outputs go astray (2.2).
                 .disable_chaining())
    out = VehicleOutputs(emits=processed, dead_letters=dead,
                         fence_events=processed.get_side_output(FENCE_EVENTS),
                         scans=processed.get_side_output(GEOFENCE_SCANS),
                         alerts=processed.get_side_output(ALERTS))
    if sinks.store is not None:
        sinks.store(out.emits)
    if sinks.dead_letters is not None:
        sinks.dead_letters(dead)
    if sinks.alerts is not None:
        sinks.alerts(out.alerts)
    for name, stream in ((topics.FENCE_EVENTS.name, out.fence_events), (topics.SCANS.name, out.scans)):
        if name in sinks.topics:
            sinks.topics[name](stream)
    return out


def main(argv: list[str] | None = None) -> None:
    from jobs.vehicle_sinks import VehicleStoreWriter
    run(JOB_NAME, [topics.PINGS, topics.ASSIGNMENTS, topics.GEOFENCES], build_pipeline, UIDS_SINKS, __doc__, argv,
        derived=[topics.FENCE_EVENTS.name, topics.SCANS.name],
        startup_modes={topics.GEOFENCES.name: "earliest-offset"}, writer=VehicleStoreWriter)


if __name__ == "__main__":
    main()
