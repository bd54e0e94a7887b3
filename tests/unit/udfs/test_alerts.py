from dataclasses import replace

import pytest

from fleetflow.contracts import decode, encode
from tests.builders import T0_MS, alert as alert_record, hours, minutes, seconds
from udfs.alerts import (
    CRITICAL,
    INFO,
    OPEN,
    RESOLVED,
    RESTRICTED_AREA,
    SUPPRESSED,
    UPDATED,
    WARNING,
    Alert,
    GateConfig,
    RoutingRule,
    alert_id,
    from_geofence_event,
    from_vehicle_event,
    gate_on_timer,
    gate_step,
    route,
    with_route,
)
from udfs.fence_membership import GeofenceEvent
from udfs.vehicle_watch import VehicleEvent

TTL_MS = GateConfig().dedup_ttl_ms


def stall(state=OPEN, *, start_ms=T0_MS, at_ms=None, vehicle="VAN001", severity=WARNING, type_="VEHICLE_STALLED"):
    return Alert(
        alert_id=alert_id(type_, "VEHICLE", vehicle, start_ms),
        type=type_, severity=severity, entity_type="VEHICLE", entity_id=vehicle,
        event_time_ms=start_ms + minutes(10) if at_ms is None else at_ms,
        detected_time_ms=(start_ms if at_ms is None else at_ms) + seconds(3),
        details={"lat": "52.52"}, state=state,
    )


def run(alerts, state=None, cfg=GateConfig()):
    passed, timers = [], []
    for a in alerts:
        d = gate_step(state, a, a.event_time_ms, cfg)
        state = d.state
        passed.extend(d.emits)
        if d.timer_ms is not None:
            timers.append(d.timer_ms)
    return state, passed, timers


# ------------------------------------------------------------------ record shape and ids

def test_alert_round_trips_through_the_alerts_avro_schema():
    a = stall()
    name, record = decode(encode("alerts", a.to_record()), expected="alerts")
    assert name == "alerts" and Alert.from_record(record) == a


def test_from_record_reads_builder_shaped_alert():
    a = Alert.from_record(alert_record("SHIPMENT_LATE", "TRK1", entity_type="PACKAGE", details={"late_by_ms": "5"}))
    assert (a.type, a.entity_type, a.entity_id, a.state, a.details) == ("SHIPMENT_LATE", "PACKAGE", "TRK1", OPEN, {"late_by_ms": "5"})


def test_alert_id_is_deterministic_and_separates_conditions():
    assert alert_id("VEHICLE_STALLED", "VEHICLE", "VAN1", T0_MS) == alert_id("VEHICLE_STALLED", "VEHICLE", "VAN1", T0_MS)
    others = {alert_id("VEHICLE_STALLED", "VEHICLE", "VAN1", T0_MS + 1), alert_id("SIGNAL_LOST", "VEHICLE", "VAN1", T0_MS),
              alert_id("VEHICLE_STALLED", "VEHICLE", "VAN2", T0_MS),
              alert_id("VEHICLE_STALLED", "VEHICLE", "VAN1", T0_MS, subject="GF1")}
    assert alert_id("VEHICLE_STALLED", "VEHICLE", "VAN1", T0_MS) not in others and len(others) == 4


def test_rejects_unknown_severity_or_state():
    with pytest.raises(ValueError):
        replace(stall(), severity="PANIC")
    with pytest.raises(ValueError):
        replace(stall(), state="CLOSED")


def test_vehicle_open_and_resolve_events_become_one_alert_id():
    opened = VehicleEvent("VEHICLE_STALLED", "VEHICLE_STALLED", "OPEN", "VAN1", T0_MS + minutes(10), T0_MS, 52.52, 13.405,
                          {"stall_radius_m": "50.0"})
    resumed = VehicleEvent("VEHICLE_RESUMED", "VEHICLE_STALLED", "RESOLVED", "VAN1", T0_MS + minutes(25), T0_MS, 52.53, 13.41)
    a, b = from_vehicle_event(opened, T0_MS + minutes(11)), from_vehicle_event(resumed, T0_MS + minutes(26))
    assert a.alert_id == b.alert_id
    assert (a.state, b.state, a.type, a.severity, a.entity_type) == (OPEN, RESOLVED, "VEHICLE_STALLED", WARNING, "VEHICLE")
    assert a.details["stall_radius_m"] == "50.0" and b.details["event_type"] == "VEHICLE_RESUMED"


def test_restricted_fence_visit_is_a_critical_alert_and_other_fences_are_not():
    enter = GeofenceEvent("e1", "ENTER", "VAN1", "GF9", "RESTRICTED", T0_MS, None, T0_MS)
    exit_ = replace(enter, event_id="e2", event_type="EXIT", event_time_ms=T0_MS + minutes(3))
    a, b = from_geofence_event(enter, T0_MS), from_geofence_event(exit_, T0_MS + minutes(3))
    assert (a.type, a.severity, a.state, b.state) == (RESTRICTED_AREA, CRITICAL, OPEN, RESOLVED)
    assert a.alert_id == b.alert_id and a.details["geofence_id"] == "GF9"
    assert from_geofence_event(replace(enter, kind="CUSTOMER_STOP"), T0_MS) is None


# ------------------------------------------------------------------ routing

RULES = [
    RoutingRule("security", type=RESTRICTED_AREA),
    RoutingRule("oncall", min_severity=CRITICAL),
    RoutingRule("hamburg-dispatch", entity_type="VEHICLE", entity_prefix="VAN-HAM-"),
]


def test_route_first_matching_rule_wins():
    restricted = replace(stall(), type=RESTRICTED_AREA, severity=CRITICAL, entity_id="VAN-HAM-1")
    assert route(restricted, RULES) == "security"
    assert route(replace(stall(), severity=CRITICAL), RULES) == "oncall"
    assert route(replace(stall(), entity_id="VAN-HAM-7"), RULES) == "hamburg-dispatch"


def test_route_falls_back_to_default():
    assert route(stall(), RULES) == "ops"
    assert route(replace(stall(), severity=INFO), RULES, default="fleet-desk") == "fleet-desk"
    assert with_route(replace(stall(), severity=CRITICAL), RULES).route_to == "oncall"


def test_routing_rules_from_config_dicts():
    rules = [RoutingRule.from_dict({"route_to": "night-shift", "min_severity": "WARNING", "entity_prefix": "VAN-BER-"})]
    assert route(replace(stall(), entity_id="VAN-BER-3"), rules) == "night-shift"
    assert route(replace(stall(), entity_id="VAN-BER-3", severity=INFO), rules) == "ops"
    with pytest.raises(ValueError):
        RoutingRule.from_dict({"route_to": "x", "min_severity": "LOUD"})


# ------------------------------------------------------------------ dedup (Traccar duplicate notifications)

def test_same_condition_never_opens_twice():
    state, passed, _ = run([stall(), stall(), replace(stall(), detected_time_ms=T0_MS + hours(1))])
    assert passed == [stall()] and state.duplicate_count == 2


def test_replayed_open_after_resolve_is_not_reopened():
    state, passed, _ = run([stall(), stall(RESOLVED, at_ms=T0_MS + minutes(20)), stall()])
    assert [a.state for a in passed] == [OPEN, RESOLVED]


def test_resolved_arriving_before_its_open_still_closes_and_open_stays_dropped():
    # Out-of-order twin of the test above.
    _, passed, _ = run([stall(RESOLVED, at_ms=T0_MS + minutes(20)), stall()])
    assert [a.state for a in passed] == [RESOLVED]


def test_repeated_resolved_passes_once():
    _, passed, _ = run([stall(), stall(RESOLVED, at_ms=T0_MS + minutes(20)), stall(RESOLVED, at_ms=T0_MS + minutes(20))])
    assert [a.state for a in passed] == [OPEN, RESOLVED]


def test_event_time_and_processing_time_silence_alerts_dedup_to_one():
    lost_by_wall = stall(type_="SIGNAL_LOST")
    lost_by_watermark = replace(lost_by_wall, detected_time_ms=lost_by_wall.detected_time_ms + minutes(7),
                                details={"detected_by": "EVENT_TIME"})
    _, passed, _ = run([lost_by_wall, lost_by_watermark])
    assert passed == [lost_by_wall]


# ------------------------------------------------------------------ throttle

def test_flapping_condition_pages_once_per_5_min_but_every_resolve_passes():
    alerts = []
    for i in range(5):  # a van stalling and resuming every two minutes
        start = T0_MS + minutes(2 * i)
        alerts += [stall(start_ms=start, at_ms=start), stall(RESOLVED, start_ms=start, at_ms=start + minutes(1))]
    state, passed, _ = run(alerts)
    assert [(a.state, a.event_time_ms) for a in passed if a.state == OPEN] == [(OPEN, T0_MS), (OPEN, T0_MS + minutes(6))]
    assert sum(a.state == RESOLVED for a in passed) == 5
    assert state.suppressed_count == 3


def test_throttle_holds_when_alerts_arrive_out_of_order():
    # Out-of-order twin: the later stall arrives first; the earlier one is within 5 min of it.
    early, late = stall(start_ms=T0_MS, at_ms=T0_MS), stall(start_ms=T0_MS + minutes(3), at_ms=T0_MS + minutes(3))
    _, passed, _ = run([late, early])
    assert passed == [late]


def test_throttle_is_per_type_and_per_entity():
    _, passed, _ = run([stall(), stall(type_="SIGNAL_LOST")])
    assert len(passed) == 2
    # Another entity has its own gate state (the operator keys by entity), so nothing is shared.
    _, other, _ = run([stall(vehicle="VAN002")])
    assert len(other) == 1


def test_throttled_open_is_not_raised_later():
    first, second = stall(start_ms=T0_MS, at_ms=T0_MS), stall(start_ms=T0_MS + minutes(1), at_ms=T0_MS + minutes(1))
    state, passed, _ = run([first, second])
    assert dict((aid, st) for aid, st, _ in state.seen)[second.alert_id] == SUPPRESSED
    state, later, _ = run([replace(second, detected_time_ms=T0_MS + hours(1))], state)
    assert passed == [first] and later == []


def test_updates_are_throttled_like_opens():
    opened = stall(start_ms=T0_MS, at_ms=T0_MS)
    update = replace(opened, state=UPDATED, severity=CRITICAL, event_time_ms=T0_MS + minutes(2))
    later_update = replace(update, event_time_ms=T0_MS + minutes(8))
    _, passed, _ = run([opened, update, later_update])
    assert [(a.state, a.event_time_ms) for a in passed] == [(OPEN, T0_MS), (UPDATED, T0_MS + minutes(8))]


def test_max_per_window_is_configurable():
    alerts = [stall(start_ms=T0_MS + seconds(i), at_ms=T0_MS + seconds(i)) for i in range(5)]
    _, passed, _ = run(alerts, cfg=GateConfig(max_per_window=3))
    assert len(passed) == 3


# ------------------------------------------------------------------ state and timers

def test_gate_arms_one_expiry_timer_and_clears_state_after_quiet_ttl():
    state, _, timers = run([stall(), stall(RESOLVED, at_ms=T0_MS + minutes(20))])
    assert timers == [T0_MS + minutes(10) + TTL_MS]
    rearmed = gate_on_timer(state, timers[0])
    assert rearmed.state is not None and rearmed.timer_ms == T0_MS + minutes(20) + TTL_MS
    cleared = gate_on_timer(rearmed.state, rearmed.timer_ms)
    assert cleared.state is None and cleared.emits == ()


def test_late_alert_cannot_set_expiry_in_the_past():
    d = gate_step(None, stall(), now_ms=T0_MS + hours(30))
    assert d.timer_ms == T0_MS + hours(30) + TTL_MS


def test_stale_gate_timer_is_ignored():
    state, _, _ = run([stall()])
    assert gate_on_timer(state, T0_MS).state == state
    assert gate_on_timer(None, T0_MS).state is None


def test_gate_memory_is_pruned_on_a_busy_entity():
    alerts = [stall(start_ms=T0_MS + hours(i), at_ms=T0_MS + hours(i)) for i in range(60)]
    state, passed, _ = run(alerts)
    assert len(passed) == 60
    assert len(state.seen) <= 25 and len(state.passed) == 1
