"""Alerts job: the one gated, routed alert stream, stored and pushed.

Kafka ``ff.alert-candidates`` (every job's raw alert proposals) → decode + validate
(→ ``ff.dead-letters``) → event-time watermarks → keyed by ``entity_type:entity_id`` →
dedup + throttle gate (udfs/alerts.py ``gate_step``), routed (fleetflow/alert_routing.yaml
or ``rules.routing``) → ``ff.alerts``, Cassandra alert tables, Redis ``ff:alerts:stream``.

Kafka ``ff.alert-acks`` (dispatcher acks/assignments from the API) → decode + validate →
watermarks → keyed by ``alert_id`` → ack rule (``ack_step``) → ``alert_audit``,
``alerts_by_id`` ack columns and an ``ALERT_ACK`` entry on the stream.

Config (``--config`` JSON): ``rules.gate`` → GateConfig, ``rules.acks`` → AckConfig,
``rules.routing`` → a routing table (``{"path": ...}`` or inline). See docs/alerts.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from pyflink.common.typeinfo import Types
from pyflink.datastream import StreamExecutionEnvironment

from fleetflow import alert_routing, topics
from jobs.alerting import encode_alert
from jobs.alerts_sinks import AlertStoreWriter
from jobs.common import JobConfig, Outputs, Sinks, attach, run
from jobs.operators import DecisionOperator
from jobs.sinks import BYTES
from jobs.validate import DEAD_LETTERS, ValidateRecords, event_time_strategy
from udfs import alerts as rules

JOB_NAME = "fleetflow-alerts"
# Stable operator ids: savepoints map state to these, so never rename them.
UID_CANDIDATES_VALIDATE = "alert-candidates-validate"
UID_CANDIDATES_WATERMARKS = "alert-candidates-watermarks"
UID_GATE = "alerts-gate"
UID_ENCODE = "alerts-encode"
UID_ACKS_VALIDATE = "alert-acks-validate"
UID_ACKS_WATERMARKS = "alert-acks-watermarks"
UID_ACKS = "alert-acks-apply"
UIDS_SINKS = {"store": "alerts-store-writer", "store_sink": "alerts-store-sink",
              "dead_letters": "alerts-dead-letter-sink", topics.ALERTS.name: "alerts-topic-sink"}

# Alert types come from producers; beyond this many, per-type metrics share one group.
MAX_METRIC_TYPES = 64
OTHER_TYPE = "OTHER"


@dataclass
class AlertOutputs(Outputs):
    # Avro-encoded ``ff.alerts`` records (the gated, routed alerts).
    alerts: object = None


def _describe(schema: str, record: Mapping[str, Any]) -> str:
    # Enough to find the record again without copying details or notes into the dead letter.
    keys = ("alert_id", "ack_id", "type", "entity_type", "entity_id", "action", "event_time_ms",
            "detected_time_ms", "error")
    return f"{schema}: {({k: record.get(k) for k in keys if k in record})}"


class EventClockOperator(DecisionOperator):
    """A DecisionOperator whose ``now_ms`` is the operator's watermark (event time).

    The alert rules set their expiry timers from ``max(now_ms, event_time_ms)``; with
    the watermark, a replay of old alerts expires them on the replay's own clock.
    Before the first watermark Flink reports Long.MIN_VALUE, which the max() ignores.
    """

    def process_element(self, value, ctx):
        yield from self._apply(self._step(self._load(), value, ctx.timer_service().current_watermark()), ctx)


class AlertGate(EventClockOperator):
    """Dedup + throttle per entity, then route what passes (``gate_and_route``/``gate_on_timer``).

    State: one GateState per ``entity_type:entity_id`` (ids seen, recent passes per
    type, one expiry timer); cleared by ``gate_on_timer`` ``dedup_ttl_ms`` after the
    entity's last alert. Metrics: ``alerts_passed``/``alerts_deduped``/``alerts_throttled``
    in total and per type (group ``alert_type.<TYPE>``: ``passed``, ``deduped``, ``throttled``).
    """

    def __init__(self, cfg: rules.GateConfig, routing: alert_routing.Routing):
        route_rules, default = routing.rules, routing.default
        super().__init__(lambda s, a, now: rules.gate_and_route(s, a, now, cfg, route_rules, default),
                         lambda s, t: rules.gate_on_timer(s, t, cfg), state_name="alert-gate")

    def open(self, runtime_context):
        super().open(runtime_context)
        self._metrics = runtime_context.get_metrics_group()
        self._totals = {v: self._metrics.counter(f"alerts_{v}")
                        for v in (rules.PASSED, rules.DEDUPED, rules.THROTTLED)}
        self._by_type = {}

    def process_element(self, alert, ctx):
        before = self._load()
        d = self._step(before, alert, ctx.timer_service().current_watermark())
        verdict = rules.gate_verdict(before, d)
        self._totals[verdict].inc()
        self._type_counter(alert.type, verdict).inc()
        yield from self._apply(d, ctx)

    def _type_counter(self, alert_type: str, verdict: str):
        full = alert_type not in self._by_type and len(self._by_type) >= MAX_METRIC_TYPES
        key = OTHER_TYPE if full else alert_type
        counters = self._by_type.get(key)
        if counters is None:
            group = self._metrics.add_group("alert_type", key)
            counters = self._by_type[key] = {v: group.counter(v) for v in (rules.PASSED, rules.DEDUPED, rules.THROTTLED)}
        return counters[verdict]


def rule_config(cfg: JobConfig, name: str, base):
    """``cfg.rule(name, base)`` with unknown keys reported as a clear config error."""
    try:
        return cfg.rule(name, base)
    except TypeError as exc:
        allowed = ", ".join(f.name for f in dataclasses.fields(base))
        raise ValueError(f"rules.{name}: {exc} (allowed keys: {allowed})") from exc


def _validated(stream, schema: str, view, check, cfg: JobConfig, uid_validate: str, uid_watermarks: str):
    checked = (stream.process(ValidateRecords(schema, view, cfg.validation(), check=check,
                                              describe=lambda record: _describe(schema, record)),
                              output_type=Types.PICKLED_BYTE_ARRAY())
               .uid(uid_validate).name(f"decode + validate {schema}"))
    strategy = event_time_strategy(cfg.out_of_orderness_ms, cfg.idleness_ms)
    timed = checked.assign_timestamps_and_watermarks(strategy).uid(uid_watermarks).name(f"{schema} event time")
    return timed, checked.get_side_output(DEAD_LETTERS)


def build_pipeline(env: StreamExecutionEnvironment, candidates, acks, sinks: Sinks,
                   cfg: JobConfig = JobConfig()) -> AlertOutputs:
    """Wire the job. ``candidates`` and ``acks`` are streams of RawRecord rows (jobs/sources.py).

    Raises ValueError (AlertRoutingError for the routing table) on bad config, before
    anything runs.
    """
    gate_cfg = rule_config(cfg, "gate", rules.GateConfig())
    ack_cfg = rule_config(cfg, "acks", rules.AckConfig())
    routing = alert_routing.from_override(cfg.rules.get("routing"))

    alerts, dead_alerts = _validated(candidates, "alerts", rules.Alert.from_record, rules.validate_alert, cfg,
                                     UID_CANDIDATES_VALIDATE, UID_CANDIDATES_WATERMARKS)
    # Routing happens inside the gate operator: a separate map after it would be fused
    # with it by PyFlink's Python operator chaining once per downstream path (ff.alerts
    # and the store), and the two fused copies would share the gate's uid.
    routed = (alerts.key_by(lambda a: a.entity_key, key_type=Types.STRING())
              .process(AlertGate(gate_cfg, routing), output_type=Types.PICKLED_BYTE_ARRAY())
              .uid(UID_GATE).name("dedup + throttle + route per entity"))

    ack_events, dead_acks = _validated(acks, "alert_acks", rules.AlertAck.from_record, rules.validate_ack, cfg,
                                       UID_ACKS_VALIDATE, UID_ACKS_WATERMARKS)
    applied = (ack_events.key_by(lambda a: a.alert_id, key_type=Types.STRING())
               .process(EventClockOperator(lambda s, a, now: rules.ack_step(s, a, now, ack_cfg),
                                           lambda s, t: rules.ack_on_timer(s, t, ack_cfg), state_name="alert-acks"),
                        output_type=Types.PICKLED_BYTE_ARRAY())
               .uid(UID_ACKS).name("apply acks per alert"))

    encoded = routed.map(lambda a: encode_alert(a.to_record()), output_type=BYTES).uid(UID_ENCODE).name(
        "encode ff.alerts")
    topic_sink = sinks.topics.get(topics.ALERTS.name)
    if topic_sink is not None:
        topic_sink(encoded)
    out = attach(sinks, routed.union(applied), dead_alerts.union(dead_acks))
    return AlertOutputs(emits=out.emits, dead_letters=out.dead_letters, alerts=encoded)


def main(argv: list[str] | None = None) -> None:
    run(JOB_NAME, [topics.ALERT_CANDIDATES, topics.ALERT_ACKS], build_pipeline, UIDS_SINKS, __doc__, argv,
        derived=[topics.ALERTS.name], writer=AlertStoreWriter)


if __name__ == "__main__":
    main()
