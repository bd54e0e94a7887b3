"""ETA and promise-risk job: arrival estimates per parcel, LATE_RISK alerts, SLA outcomes.

Kafka ``ff.pings``, ``ff.assignments``, ``ff.shipment-states`` → decode + validate
(→ ``ff.dead-letters``) → event-time watermarks → dedup by source (udfs/dedup.py) →

1. parcel tracker, keyed by tracking_id (assignments + shipment states): which van a
   parcel is on, its lane, when it is done → ParcelDone to the van, lane queries and
   observations, shipment views with their lane for the promise rule;
2. van rule, keyed by vehicle_id (pings + assignments + ParcelDone): route, arrival
   detection, the van's own speed model (MapState, one entry per slot), throttled
   ROUTE estimates;
3. lane model, keyed by lane (origin>destination|carrier|service level): LANE
   estimates for parcels in the network, learned from deliveries;
4. promise rule, keyed by tracking_id (estimates + shipment views): EtaRecord per
   applied estimate, LATE_RISK alerts (→ ``ff.alert-candidates``), SLA outcomes.

Everything after 4 goes to Redis (ETA fields of ``ff:shipment:*``) and Cassandra
(``fleetflow/cql/005_eta.cql``) through jobs/eta_sinks.py.

Why the speed model is per van: the ETA of a van only ever asks about the roads of its
own district, which its own pings teach it within minutes of a shift; keyed state then
needs no cross-key reads. A model keyed by cell would have to be broadcast to every
subtask (each holding the whole service area) to be read by the van operator. The van's
slots survive restarts with the rest of its keyed state and expire by state TTL.
"""
from __future__ import annotations

import time

from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.state import MapStateDescriptor

from fleetflow import topics
from jobs.alerting import to_candidates
from jobs.common import JobConfig, Outputs, Sinks, attach, run
from jobs.eta_sinks import EtaStoreWriter
from jobs.operators import DecisionOperator
from jobs.state_ttl import ttl_config
from jobs.validate import validated_unique
from udfs import speed_model
from udfs.eta import Assignment, EtaConfig, ParcelDone, assignment_problem, hold_ping, van_on_timer, van_step
from udfs.events import Ping
from udfs.lanes import (LaneConfig, LaneObservation, LaneQuery, ShipmentView, TrackerConfig, lane_step, parcel_on_timer,
                        parcel_step, shipment_state_problem)
from udfs.promise import ParcelPromiseConfig, PromiseAlert, PromiseConfig, promise_on_timer, promise_step

JOB_NAME = "fleetflow-eta"
# Stable operator ids. The ingest stages add eta-pings-*, eta-assignments-*, eta-states-*.
UID_TRACKER = "eta-parcel-tracker"
UID_VAN = "eta-van-route"
UID_LANES = "eta-lane-model"
UID_PROMISE = "eta-promise-risk"
UID_ALERTS = "eta-alert-candidates"
UIDS_SINKS = {"store": "eta-store-writer", "store_sink": "eta-store-sink", "dead_letters": "eta-dead-letter-sink",
              "alerts": "eta-alert-candidates-sink"}
# Only for wiring. Operator methods call Types.PICKLED_BYTE_ARRAY() themselves: when the
# job runs as __main__, cloudpickle ships these classes by value with the globals they
# use, and a TypeInformation holds a JVM handle that cannot be pickled.
PICKLED = Types.PICKLED_BYTE_ARRAY()

# Backstops for state the rules cannot expire themselves (see docs/state.md).
SPEED_SLOT_TTL_DAYS = 120
LANE_TTL_DAYS = 90


_DAY_MS = 24 * 3600 * 1000


def _ttl(days: int):
    # jobs/state_ttl.py says why PyFlink's own TTL defaults cannot be used on a TaskManager.
    return ttl_config(days * _DAY_MS)


def _event_now(ctx, value) -> int:
    """The rule's clock: the element's timestamp, else its own event time.

    Thread-mode PyFlink does not always hand the record timestamp to Python
    (``ctx.timestamp()`` may be None or Long.MIN_VALUE); every event here carries its
    time, so the clock never falls back to the wall clock for an event.
    """
    ts = ctx.timestamp()
    if ts is not None and ts > 0:
        return ts
    for name in ("event_time_ms", "as_of_ms"):
        t = getattr(value, name, None)
        if t is not None:
            return t
    return ctx.timer_service().current_processing_time()


class EventTimeOperator(DecisionOperator):
    """DecisionOperator whose ``now_ms`` is the element's event time, so estimates and
    alerts are the same in a replay as live. Optionally puts a state TTL on the rule state."""

    def __init__(self, step, on_timer=None, state_name: str = "rule-state", ttl_days: int | None = None):
        super().__init__(step, on_timer, state_name, ttl_ms=ttl_days * _DAY_MS if ttl_days else None)

    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        yield from self._apply(self._step(self._load(), value, _event_now(ctx, value)), ctx)


class _SlotView:
    """The speed model read through MapState: the lookup reads only the slots it needs."""

    def __init__(self, slots):
        self._slots = slots

    def get(self, key):
        return self._slots.get(key)


class VanEtaOperator(DecisionOperator):
    """The van rule (udfs.eta.van_step) plus the van's speed model.

    Pings are learned from at once and held until the watermark passes them
    (``hold_ping``), then applied in event-time order by ``van_on_timer``; assignments
    and outcomes apply at once (they take effect at their own event time anyway).

    State: ``van-eta`` (route, arrival, throttle, held pings and idle-timer fields;
    cleared by ``van_on_timer`` 6 h after the van's last event) and ``speed-slots`` (MapState slot →
    (count, mean, m2), four slots written per learnable ping; never cleared by the rule,
    expires by state TTL ``SPEED_SLOT_TTL_DAYS`` after a slot's last write).
    """

    def __init__(self, eta_cfg: EtaConfig, speed_cfg: speed_model.SpeedModelConfig):
        # The rule needs the slot lookup, so process_element calls it directly, not via ``_step``.
        super().__init__(step=None, state_name="van-eta")
        self.eta_cfg = eta_cfg
        self.speed_cfg = speed_cfg

    def open(self, runtime_context: RuntimeContext):
        super().open(runtime_context)
        slots = MapStateDescriptor("speed-slots", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        slots.enable_time_to_live(_ttl(SPEED_SLOT_TTL_DAYS))
        self._slots = runtime_context.get_map_state(slots)
        self._model = _SlotView(self._slots)

    def _lookup(self, lat: float, lon: float, at_ms: int) -> tuple[float, float]:
        return speed_model.expected_speed_mps(self._model, speed_model.cell_for(lat, lon, self.speed_cfg),
                                              speed_model.hour_of_week(at_ms), self.speed_cfg)

    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        if isinstance(value, Ping):
            for key, stats in speed_model.slot_updates(self._model, value, self.speed_cfg).items():
                self._slots.put(key, stats)
            yield from self._apply(hold_ping(self._load(), value, self.eta_cfg), ctx)
            return
        yield from self._apply(van_step(self._load(), value, _event_now(ctx, value), self._lookup, self.eta_cfg), ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        yield from self._apply(van_on_timer(self._load(), timestamp, self.eta_cfg, self._lookup), ctx)


def _only_record(problem):
    """The ETA rules' record checks as an ingest ``check`` (they need no clock or config)."""
    return lambda record, now_ms, cfg: problem(record)


def _alert_record(alert: PromiseAlert) -> dict:
    return alert.to_alert_record(int(time.time() * 1000))


def build_pipeline(env: StreamExecutionEnvironment, pings, assignments, shipment_states, sinks: Sinks,
                   cfg: JobConfig = JobConfig()) -> Outputs:
    """Wire the job. Each source is a stream of RawRecord rows (see jobs/sources.py)."""
    eta_cfg = cfg.rule("eta", EtaConfig())
    speed_cfg = cfg.rule("speed", speed_model.SpeedModelConfig())
    lane_cfg = cfg.rule("lanes", LaneConfig())
    tracker_cfg = cfg.rule("tracker", TrackerConfig())
    promise_cfg = ParcelPromiseConfig(risk=cfg.rule("promise", PromiseConfig()))
    ingest = dict(validation_cfg=cfg.validation(), known_carriers=frozenset(),
                  out_of_orderness_ms=cfg.out_of_orderness_ms, idleness_ms=cfg.idleness_ms,
                  dedup_ttl_ms=cfg.dedup_ttl_ms)

    pings_u, dead_p = validated_unique(pings, "pings", Ping.from_record, uid_prefix="eta-pings", **ingest)
    asg_u, dead_a = validated_unique(assignments, "assignments", Assignment.from_record, uid_prefix="eta-assignments",
                                     check=_only_record(assignment_problem), **ingest)
    states_u, dead_s = validated_unique(shipment_states, "shipment_states", ShipmentView.from_record,
                                        uid_prefix="eta-states", check=_only_record(shipment_state_problem), **ingest)

    tracked = (asg_u.union(states_u).key_by(lambda e: e.tracking_id, key_type=Types.STRING())
               .process(EventTimeOperator(lambda st, ev, now: parcel_step(st, ev, now, tracker_cfg),
                                          lambda st, t: parcel_on_timer(st, t, tracker_cfg), "parcel"),
                        output_type=PICKLED)
               .uid(UID_TRACKER).name("parcel tracker (van, lane, outcome)"))
    done = tracked.filter(lambda e: isinstance(e, ParcelDone)).name("parcel done → van")
    lane_events = tracked.filter(lambda e: isinstance(e, (LaneQuery, LaneObservation))).name("lane events")
    views = tracked.filter(lambda e: isinstance(e, ShipmentView)).name("shipment views")

    route_etas = (pings_u.union(asg_u, done).key_by(lambda e: e.vehicle_id, key_type=Types.STRING())
                  .process(VanEtaOperator(eta_cfg, speed_cfg), output_type=PICKLED)
                  .uid(UID_VAN).name("van route ETA"))
    lane_etas = (lane_events.key_by(lambda e: e.lane_key, key_type=Types.STRING())
                 .process(EventTimeOperator(lambda st, ev, now: lane_step(st, ev, now, lane_cfg), None, "lane",
                                            ttl_days=LANE_TTL_DAYS), output_type=PICKLED)
                 .uid(UID_LANES).name("lane ETA"))
    emits = (route_etas.union(lane_etas, views).key_by(lambda e: e.tracking_id, key_type=Types.STRING())
             .process(EventTimeOperator(lambda st, ev, now: promise_step(st, ev, now, promise_cfg),
                                        lambda st, t: promise_on_timer(st, t, promise_cfg), "promise"),
                      output_type=PICKLED)
             .uid(UID_PROMISE).name("promise risk"))

    if sinks.alerts is not None:
        alerts = emits.filter(lambda e: isinstance(e, PromiseAlert)).map(_alert_record, output_type=PICKLED)
        sinks.alerts(to_candidates(alerts, UID_ALERTS))
    dead = dead_p.union(dead_a, dead_s)
    return attach(sinks, emits, dead)


def main(argv: list[str] | None = None) -> None:
    run(JOB_NAME, [topics.PINGS, topics.ASSIGNMENTS, topics.SHIPMENT_STATES], build_pipeline, UIDS_SINKS, __doc__,
        argv, writer=EtaStoreWriter)


if __name__ == "__main__":
    main()
