"""Shipment status job: scans and plans in, one lifecycle per shipment out.

``ff.scans`` → decode + validate (untrusted → ``ff.dead-letters`` with reason, bytes and
origin) → event-time watermarks → dedup by (carrier, event_id) → normalise the carrier code with
the carrier mappings (broadcast state fed by ``ff.carrier-mappings`` on top of the files
in fleetflow/carriers/; an unknown code → dead letter + CARRIER_ONBOARDING alert) →
keyed by tracking_id, together with ``ff.plans`` split per package → lifecycle rule
(udfs/lifecycle.py) → Cassandra + Redis (jobs/shipment_sinks.py), ``ff.shipment-states``,
SHIPMENT_STUCK alert candidates; state changes and plans → order rollup keyed by order_id.
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import OutputTag, StreamExecutionEnvironment
from pyflink.datastream.functions import BroadcastProcessFunction
from pyflink.datastream.state import MapStateDescriptor

from fleetflow import contracts, topics
from fleetflow.carrier_mappings import load_all as load_carrier_mappings
from fleetflow.ingest import make_dead_letter
from jobs.alerting import to_candidates
from jobs.common import JobConfig, Outputs, Sinks, attach, run
from jobs.operators import DecisionOperator
from jobs.shipment_sinks import ShipmentStoreWriter, state_record, stuck_alert_record
from jobs.sinks import BYTES
from jobs.validate import DEAD_LETTERS, MAX_DETAIL_CHARS, ValidateRecords, unique_by_source
from udfs import lifecycle, orders
from udfs.events import Scan
from udfs.lifecycle import ShipmentAlert, StateChanged
from udfs.normalise import (UNKNOWN_CARRIER_CODE, CarrierMapping, UnknownCode, apply_mapping_update, carrier_key,
                            carrier_onboarding_alert, normalise)
from udfs.received import ReceivedScan

JOB_NAME = "fleetflow-shipment-status"
# Stable operator ids: savepoints map state to these, so never rename them.
# (the scans ingest stage keeps scans-validate, scans-watermarks, scans-dedup)
UID_SCANS_PREFIX = "scans"
UID_PLANS_VALIDATE = "plans-validate"
UID_PLANS_TIME = "plans-ingestion-time"
UID_PLAN_SHIPMENTS = "plans-per-shipment"
UID_PLAN_ORDERS = "plans-per-order"
UID_PLAN_INDEX = "plans-index-rows"
UID_MAPPINGS_TIME = "carrier-mappings-ingestion-time"
UID_NORMALISE = "shipment-normalise"
UID_LIFECYCLE = "shipment-lifecycle"
UID_ORDER_UPDATES = "order-updates"
UID_ORDER_ROLLUP = "order-rollup"
UID_STUCK_ALERTS = "shipment-stuck-alerts"
UID_ALERTS_ENCODE = "shipment-alerts-encode"
UID_STATES_ENCODE = "shipment-states-encode"
UID_STATE_CHANGES = "shipment-state-changes"
UIDS_SINKS = {"store": "shipment-store-writer", "store_sink": "shipment-store-sink",
              "dead_letters": "scans-dead-letter-sink", "alerts": "shipment-alert-candidates-sink",
              topics.SHIPMENT_STATES.name: "shipment-states-sink"}

# Backstop behind the rule's own timers (37 d at most): see docs/state.md.
LIFECYCLE_STATE_TTL_MS = 45 * 24 * 3_600_000
# Distinct unknown (carrier, code) pairs one subtask remembers having alerted on; the
# alert id is deterministic, so forgetting one costs only a duplicate candidate.
MAX_ALERTED_CODES = 10_000

MAPPINGS = MapStateDescriptor("carrier-mappings", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
ALERTS = OutputTag("carrier-onboarding-alerts", Types.PICKLED_BYTE_ARRAY())

log = logging.getLogger(__name__)


@dataclass
class ShipmentOutputs(Outputs):
    """What build_pipeline returns: store emits (lifecycle emits as one EmitGroup per input,
    rollups and plan index rows one by one), dead letters, alert records, state changes."""
    alerts: Any = None
    states: Any = None


def scan_view(record: dict) -> Scan:
    scan = Scan.from_record(record)
    # Scan.from_record reads leg 0 as the default 1; 0 means "the current leg" (geofence scans).
    return replace(scan, leg=0) if record.get("leg") == 0 else scan


class AnyCarrier:
    """Admission lets every carrier through: which carriers exist is decided by the
    broadcast mappings downstream, which may gain a carrier at runtime."""

    def __contains__(self, carrier: object) -> bool:
        return isinstance(carrier, str) and bool(carrier.strip())


class ValidateScansKeepingOrigin(ValidateRecords):
    """ValidateRecords whose valid scans leave as ReceivedScan (bytes and origin attached)."""

    def __init__(self, cfg):
        super().__init__("scans", self._received, cfg, AnyCarrier(), for_dedup=True)
        self._row = None

    def _received(self, record: dict) -> ReceivedScan:
        row = self._row
        return ReceivedScan(scan_view(record), bytes(row["value"]), row["topic"], row["partition"], row["offset"])

    def process_element(self, row, ctx):
        self._row = row
        yield from super().process_element(row, ctx)


class IngestionTime(TimestampAssigner):
    """Plans and mappings are not part of the scans' event-time order; stamping them with
    arrival time keeps them from holding the lifecycle's watermark back."""

    def extract_timestamp(self, value, record_timestamp: int) -> int:
        return int(time.time() * 1000)


def _ingestion_time(stream, idleness_ms: int, uid: str, name: str):
    # with_idleness first: PyFlink 2.2 drops an assigner set before it.
    strategy = (WatermarkStrategy.for_monotonous_timestamps().with_idleness(Duration.of_millis(idleness_ms))
                .with_timestamp_assigner(IngestionTime()))
    return stream.assign_timestamps_and_watermarks(strategy).uid(uid).name(name)


def _validated_scans(scans, cfg: JobConfig):
    """The shared ingest stage (jobs/validate.py) with the scans' origin kept; same uids.

    Deduplicated by (carrier, event_id), the carrier folded (udfs/dedup.py): two
    carriers' ``evt-1`` are two events. A resend with other content is an
    EVENT_ID_CONFLICT dead letter."""
    checked = (scans.process(ValidateScansKeepingOrigin(cfg.validation()), output_type=Types.PICKLED_BYTE_ARRAY())
               .uid(f"{UID_SCANS_PREFIX}-validate").name("decode + validate scans"))
    unique, conflicts = unique_by_source(checked, "scans", out_of_orderness_ms=cfg.out_of_orderness_ms,
                                         idleness_ms=cfg.idleness_ms, dedup_ttl_ms=cfg.dedup_ttl_ms,
                                         uid_prefix=UID_SCANS_PREFIX)
    return unique, checked.get_side_output(DEAD_LETTERS).union(conflicts)


def _subtask_index(runtime_context) -> int:
    try:
        return runtime_context.get_index_of_this_subtask()
    except AttributeError:
        # PyFlink 2.2's thread-mode context still calls RuntimeContext.getIndexOfThisSubtask,
        # which Flink 2 moved to TaskInfo.
        return runtime_context._runtime_context.getTaskInfo().getIndexOfThisSubtask()


class NormaliseScans(BroadcastProcessFunction):
    """Carrier raw code → FleetFlow (status, detail), with mappings as broadcast state.

    State: broadcast map carrier → CarrierMapping, only what ``ff.carrier-mappings``
    changed; the files in fleetflow/carriers/ (shipped with the job) are the base, so an
    empty topic still works. Never cleared (one entry per carrier). A record is
    validated (``apply_mapping_update``) before it replaces anything; a rejected one is
    dead-lettered once (by subtask 0) and the previous mapping stays.
    """

    def __init__(self, initial: dict[str, CarrierMapping], validation_cfg):
        self._initial = initial
        self._validation_cfg = validation_cfg

    def open(self, runtime_context):
        self._subtask = _subtask_index(runtime_context)
        self._alerted: set[tuple[str, str]] = set()
        metrics = runtime_context.get_metrics_group()
        self._unknown = metrics.counter("scans_unknown_code")
        self._updates = metrics.counter("carrier_mapping_updates")
        self._rejected = metrics.counter("carrier_mapping_rejected")

    def _mapping(self, state, carrier: str) -> CarrierMapping | None:
        m = state.get(carrier)
        return m if m is not None else self._initial.get(carrier)

    def process_element(self, value: ReceivedScan, ctx):
        ck = carrier_key(value.scan.carrier)
        mapping = self._mapping(ctx.get_broadcast_state(MAPPINGS), ck)
        out = normalise({ck: mapping} if mapping is not None else {}, value.scan)
        if not isinstance(out, UnknownCode):
            yield out
            return
        self._unknown.inc()
        now_ms = ctx.current_processing_time()
        yield DEAD_LETTERS, contracts.encode("dead_letters", make_dead_letter(
            out.reason, out.detail[:MAX_DETAIL_CHARS], value.original, source_topic=value.topic,
            source_partition=value.partition, source_offset=value.offset, detected_time_ms=now_ms))
        pair = (ck, value.scan.raw_code.strip().upper())
        if out.reason == UNKNOWN_CARRIER_CODE and pair not in self._alerted:
            if len(self._alerted) >= MAX_ALERTED_CODES:
                self._alerted.clear()
            self._alerted.add(pair)
            yield ALERTS, carrier_onboarding_alert(out, mapping.version if mapping else None, now_ms)

    def process_broadcast_element(self, row, ctx):
        from fleetflow.ingest import route_record

        now_ms = ctx.current_processing_time()
        raw = bytes(row["value"])
        record, dead = route_record(raw, "carrier_mappings", now_ms, self._validation_cfg, frozenset(),
                                    source_topic=row["topic"], source_partition=row["partition"],
                                    source_offset=row["offset"])
        if dead is None:
            state = ctx.get_broadcast_state(MAPPINGS)
            ck = carrier_key(record["carrier"]) if isinstance(record.get("carrier"), str) else ""
            existing = self._mapping(state, ck)
            kept, rejected = apply_mapping_update({ck: existing} if existing is not None else {}, record)
            if rejected is None:
                if kept.get(ck) is not None and kept[ck] is not existing:
                    state.put(ck, kept[ck])
                    self._updates.inc()
                    log.info("carrier mapping %s v%s applied", ck, kept[ck].version)
                return
            self._rejected.inc()
            log.warning("carrier mapping rejected: %s", rejected)
            dead = make_dead_letter(rejected.reason, str(rejected)[:MAX_DETAIL_CHARS], raw, source_topic=row["topic"],
                                    source_partition=row["partition"], source_offset=row["offset"],
                                    detected_time_ms=now_ms)
        if self._subtask == 0:
            # Every subtask sees every broadcast record; one dead letter is enough.
            yield DEAD_LETTERS, contracts.encode("dead_letters", dead)


def _plans(plans, cfg: JobConfig):
    checked = (plans.process(ValidateRecords("plans", dict, cfg.validation(), frozenset()),
                             output_type=Types.PICKLED_BYTE_ARRAY())
               .uid(UID_PLANS_VALIDATE).name("decode + validate plans"))
    dead = checked.get_side_output(DEAD_LETTERS)
    timed = _ingestion_time(checked, cfg.idleness_ms, UID_PLANS_TIME, "plans arrival time")
    per_shipment = timed.flat_map(lifecycle.plans_from_order, output_type=Types.PICKLED_BYTE_ARRAY()).uid(
        UID_PLAN_SHIPMENTS).name("plan per shipment")
    per_order = timed.map(orders.order_planned, output_type=Types.PICKLED_BYTE_ARRAY()).uid(
        UID_PLAN_ORDERS).name("plan per order")
    index_rows = timed.flat_map(orders.plan_index_rows, output_type=Types.PICKLED_BYTE_ARRAY()).uid(
        UID_PLAN_INDEX).name("plan search rows")
    return per_shipment, per_order, index_rows, dead


# The lifecycle operator yields one EmitGroup per scan, plan or timer (see ShipmentStoreWriter).

def _order_updates(group) -> list[orders.ShipmentUpdate]:
    return [orders.ShipmentUpdate(e.order_id, e.tracking_id, e.status, e.version, e.event_time_ms)
            for e in group if isinstance(e, StateChanged) and e.order_id]


def _stuck_alerts(group) -> list[dict]:
    now_ms = int(time.time() * 1000)
    return [stuck_alert_record(e, now_ms) for e in group if isinstance(e, ShipmentAlert)]


def _state_changes(group) -> list[StateChanged]:
    return [e for e in group if isinstance(e, StateChanged)]


def _checkpointing(env: StreamExecutionEnvironment, cfg: JobConfig) -> None:
    interval_ms = (cfg.rules.get("runtime") or {}).get("checkpoint_interval_ms")
    if interval_ms:
        env.enable_checkpointing(int(interval_ms))


def build_pipeline(env: StreamExecutionEnvironment, scans, plans, mappings, sinks: Sinks,
                   cfg: JobConfig = JobConfig()) -> ShipmentOutputs:
    """Wire the job. ``scans``, ``plans`` and ``mappings`` are streams of RawRecord rows
    (jobs/sources.py). Lifecycle tunables: ``cfg.rules["lifecycle"]`` in the shape of
    ``LifecycleConfig.from_mapping``; ``cfg.rules["runtime"]["checkpoint_interval_ms"]``
    overrides the cluster's checkpoint interval."""
    _checkpointing(env, cfg)
    unique, scan_dead = _validated_scans(scans, cfg)
    broadcast = _ingestion_time(mappings, cfg.idleness_ms, UID_MAPPINGS_TIME, "carrier mappings arrival time"
                                ).broadcast(MAPPINGS)
    normalised = (unique.connect(broadcast)
                  .process(NormaliseScans(load_carrier_mappings(), cfg.validation()),
                           output_type=Types.PICKLED_BYTE_ARRAY())
                  .uid(UID_NORMALISE).name("normalise carrier codes"))
    per_shipment, per_order, index_rows, plan_dead = _plans(plans, cfg)

    rule_cfg = lifecycle.LifecycleConfig.from_mapping(cfg.rules.get("lifecycle", {}))
    shipment_emits = (normalised.union(per_shipment)
                      .key_by(lambda e: e.tracking_id, key_type=Types.STRING())
                      .process(DecisionOperator(functools.partial(lifecycle.handle, cfg=rule_cfg),
                                                functools.partial(lifecycle.on_timer, cfg=rule_cfg),
                                                state_name="lifecycle", ttl_ms=LIFECYCLE_STATE_TTL_MS,
                                                group_emits=True),
                               output_type=Types.PICKLED_BYTE_ARRAY())
                      .uid(UID_LIFECYCLE).name("shipment lifecycle"))
    updates = shipment_emits.flat_map(_order_updates, output_type=Types.PICKLED_BYTE_ARRAY()).uid(
        UID_ORDER_UPDATES).name("state changes with an order")
    rollups = (updates.union(per_order)
               .key_by(lambda e: e.order_id, key_type=Types.STRING())
               .process(DecisionOperator(orders.rollup_step, orders.rollup_on_timer, state_name="order"),
                        output_type=Types.PICKLED_BYTE_ARRAY())
               .uid(UID_ORDER_ROLLUP).name("order rollup"))

    emits = shipment_emits.union(rollups, index_rows)
    dead = scan_dead.union(normalised.get_side_output(DEAD_LETTERS), plan_dead)
    stuck = shipment_emits.flat_map(_stuck_alerts, output_type=Types.PICKLED_BYTE_ARRAY()).uid(
        UID_STUCK_ALERTS).name("stuck alerts")
    alerts = stuck.union(normalised.get_side_output(ALERTS))
    states = shipment_emits.flat_map(_state_changes, output_type=Types.PICKLED_BYTE_ARRAY()).uid(
        UID_STATE_CHANGES).name("state changes")

    base = attach(sinks, emits, dead)
    if sinks.alerts is not None:
        sinks.alerts(to_candidates(alerts, UID_ALERTS_ENCODE))
    states_sink = sinks.topics.get(topics.SHIPMENT_STATES.name)
    if states_sink is not None:
        states_sink(states.map(lambda c: contracts.encode("shipment_states", state_record(c)), output_type=BYTES)
                    .uid(UID_STATES_ENCODE).name("encode shipment states"))
    return ShipmentOutputs(emits=base.emits, dead_letters=base.dead_letters, alerts=alerts, states=states)


def main(argv: list[str] | None = None) -> None:
    run(JOB_NAME, [topics.SCANS, topics.PLANS, topics.CARRIER_MAPPINGS], build_pipeline, UIDS_SINKS, __doc__, argv,
        derived=[topics.SHIPMENT_STATES.name],
        startup_modes={topics.CARRIER_MAPPINGS.name: "earliest-offset"}, writer=ShipmentStoreWriter)


if __name__ == "__main__":
    main()
