"""Acks, gate verdicts, admission checks and config bounds in udfs/alerts.py."""
import itertools

import pytest

from tests.builders import T0_MS, alert as alert_record, alert_ack, hours, minutes
from udfs.alerts import (
    ACK,
    ASSIGN,
    DEDUPED,
    OPEN,
    PASSED,
    RESOLVED,
    THROTTLED,
    AckConfig,
    Alert,
    AlertAck,
    GateConfig,
    ack_on_timer,
    ack_step,
    gate_step,
    gate_verdict,
    validate_ack,
    validate_alert,
)
from udfs.validation import BAD_EVENT_TIME, FUTURE_EVENT, MISSING_ID, TOO_OLD

NOW_MS = T0_MS + hours(1)


def days(n):
    return hours(24 * n)


def ack(ack_id, action=ACK, *, actor="key-1", at_ms=T0_MS, assignee=None, alert="A1"):
    return AlertAck.from_record(alert_ack(alert, action=action, assignee=assignee, actor=actor, at_ms=at_ms,
                                          ack_id=ack_id))


def apply_all(acks, state=None, cfg=AckConfig()):
    emits = []
    for a in acks:
        d = ack_step(state, a, a.event_time_ms, cfg)
        state = d.state
        emits.extend(d.emits)
    return state, emits


# ------------------------------------------------------------------ acks

def test_first_ack_records_actor_and_time():
    s, emits = apply_all([ack("k1", actor="alice", at_ms=T0_MS)])
    assert (s.acked_by, s.acked_ms) == ("alice", T0_MS)
    assert [(e.ack.ack_id, e.acked_by, e.acked_ms) for e in emits] == [("k1", "alice", T0_MS)]


def test_later_ack_is_audited_but_earliest_ack_stays():
    s, emits = apply_all([ack("k1", actor="alice", at_ms=T0_MS), ack("k2", actor="bob", at_ms=T0_MS + minutes(1))])
    assert (s.acked_by, s.acked_ms) == ("alice", T0_MS)
    assert [e.ack.actor for e in emits] == ["alice", "bob"]
    assert emits[-1].acked_by == "alice"


def test_earliest_ack_wins_when_acks_arrive_out_of_order():
    s, emits = apply_all([ack("k2", actor="bob", at_ms=T0_MS + minutes(1)), ack("k1", actor="alice", at_ms=T0_MS)])
    assert (s.acked_by, s.acked_ms) == ("alice", T0_MS)
    assert (emits[-1].acked_by, emits[-1].acked_ms) == ("alice", T0_MS)


def test_replayed_ack_id_changes_nothing_and_emits_nothing():
    s1, _ = apply_all([ack("k1", actor="alice")])
    d = ack_step(s1, ack("k1", actor="alice"), T0_MS)
    assert d.emits == () and d.state.duplicate_count == 1
    assert (d.state.acked_by, d.state.ack_ids) == (s1.acked_by, s1.ack_ids)


def test_newest_assignment_wins_in_any_arrival_order():
    assigns = [ack("k1", ASSIGN, assignee="carol", at_ms=T0_MS),
               ack("k2", ASSIGN, assignee="dave", at_ms=T0_MS + minutes(2)),
               ack("k3", ASSIGN, assignee="erin", at_ms=T0_MS + minutes(1))]
    for order in itertools.permutations(assigns):
        s, _ = apply_all(order)
        assert (s.assignee, s.assigned_ms) == ("dave", T0_MS + minutes(2)), order


def test_assign_without_assignee_unassigns():
    s, emits = apply_all([ack("k1", ASSIGN, assignee="carol", at_ms=T0_MS),
                          ack("k2", ASSIGN, assignee=None, at_ms=T0_MS + minutes(1))])
    assert s.assignee is None and s.assigned_ms == T0_MS + minutes(1)
    assert emits[-1].assignee is None


def test_ack_naming_an_assignee_also_assigns_but_plain_ack_keeps_assignment():
    s, _ = apply_all([ack("k1", ACK, actor="alice", assignee="alice", at_ms=T0_MS),
                      ack("k2", ACK, actor="bob", at_ms=T0_MS + minutes(1))])
    assert (s.acked_by, s.assignee) == ("alice", "alice")


def test_ack_and_assign_are_independent():
    s, _ = apply_all([ack("k1", ASSIGN, assignee="carol", at_ms=T0_MS + minutes(1)),
                      ack("k2", ACK, actor="alice", at_ms=T0_MS + minutes(5))])
    assert (s.acked_by, s.acked_ms, s.assignee) == ("alice", T0_MS + minutes(5), "carol")


def test_ack_state_arms_one_timer_and_clears_after_quiet_ttl():
    cfg = AckConfig(state_ttl_ms=days(30))
    d1 = ack_step(None, ack("k1", at_ms=T0_MS), T0_MS, cfg)
    assert d1.timer_ms == T0_MS + days(30)
    d2 = ack_step(d1.state, ack("k2", at_ms=T0_MS + days(1)), T0_MS + days(1), cfg)
    assert d2.timer_ms is None and d2.state.expires_ms == T0_MS + days(31)
    rearm = ack_on_timer(d2.state, d1.timer_ms, cfg)
    assert rearm.state is not None and rearm.timer_ms == T0_MS + days(31)
    assert ack_on_timer(rearm.state, T0_MS + days(31), cfg).state is None


def test_stale_ack_timer_is_ignored():
    d = ack_step(None, ack("k1"), T0_MS)
    assert ack_on_timer(d.state, d.timer_ms - 1).state == d.state


def test_late_ack_cannot_set_expiry_before_the_watermark():
    cfg = AckConfig(state_ttl_ms=days(1))
    d = ack_step(None, ack("k1", at_ms=T0_MS), T0_MS + days(5), cfg)
    assert d.timer_ms == T0_MS + days(6)


def test_ack_memory_is_bounded_oldest_first():
    s, _ = apply_all([ack(f"k{i}", at_ms=T0_MS + i) for i in range(10)], cfg=AckConfig(max_ack_ids=3))
    assert [aid for aid, _ in s.ack_ids] == ["k7", "k8", "k9"]
    assert (s.acked_by, s.acked_ms) == ("key-1", T0_MS)


def test_unknown_ack_action_is_rejected():
    with pytest.raises(ValueError):
        AlertAck("k", "A1", "DELETE", "key-1", T0_MS)


# ------------------------------------------------------------------ gate verdicts

def _alert(state=OPEN, at_ms=T0_MS, alert_id="c1", type_="VEHICLE_STALLED"):
    return Alert(alert_id=alert_id, type=type_, severity="WARNING", entity_type="VEHICLE", entity_id="VAN1",
                 event_time_ms=at_ms, detected_time_ms=at_ms, state=state)


def test_gate_verdict_names_each_outcome_once():
    cfg = GateConfig(window_ms=minutes(5))
    verdicts, state = [], None
    for a in [_alert(), _alert(), _alert(alert_id="c2", at_ms=T0_MS + minutes(1)),
              _alert(RESOLVED, T0_MS + minutes(2))]:
        d = gate_step(state, a, a.event_time_ms, cfg)
        verdicts.append(gate_verdict(state, d))
        state = d.state
    assert verdicts == [PASSED, DEDUPED, THROTTLED, PASSED]


def test_gate_verdict_for_a_throttled_open_on_a_fresh_entity_state():
    cfg = GateConfig(max_per_window=1, window_ms=minutes(5))
    d1 = gate_step(None, _alert(), T0_MS, cfg)
    d2 = gate_step(d1.state, _alert(alert_id="c2", at_ms=T0_MS + minutes(4)), T0_MS, cfg)
    assert gate_verdict(d1.state, d2) == THROTTLED and gate_verdict(None, d1) == PASSED


# ------------------------------------------------------------------ admission checks

def test_valid_alert_and_ack_pass():
    assert validate_alert(alert_record(at_ms=NOW_MS - minutes(1)), NOW_MS) is None
    assert validate_ack(alert_ack(at_ms=NOW_MS), NOW_MS) is None


@pytest.mark.parametrize("field", ["alert_id", "type", "entity_type", "entity_id"])
def test_alert_with_blank_id_field_is_missing_id(field):
    rec = alert_record(at_ms=NOW_MS)
    rec[field] = "  "
    assert validate_alert(rec, NOW_MS) == MISSING_ID


@pytest.mark.parametrize("at_ms, reason", [(NOW_MS + minutes(6), FUTURE_EVENT), (NOW_MS - days(8), TOO_OLD)])
def test_alert_outside_the_admission_window_is_refused(at_ms, reason):
    assert validate_alert(alert_record(at_ms=at_ms, detected_ms=NOW_MS), NOW_MS) == reason


def test_alert_with_negative_detection_time_is_bad_event_time():
    assert validate_alert(alert_record(at_ms=NOW_MS, detected_ms=-1), NOW_MS) == BAD_EVENT_TIME


@pytest.mark.parametrize("field", ["ack_id", "alert_id", "actor"])
def test_ack_with_blank_id_field_is_missing_id(field):
    rec = alert_ack(at_ms=NOW_MS)
    rec[field] = ""
    assert validate_ack(rec, NOW_MS) == MISSING_ID


def test_ack_from_the_future_is_refused():
    assert validate_ack(alert_ack(at_ms=NOW_MS + hours(1)), NOW_MS) == FUTURE_EVENT


# ------------------------------------------------------------------ config bounds

@pytest.mark.parametrize("kwargs", [{"max_per_window": 0}, {"window_ms": -1}, {"dedup_ttl_ms": 0},
                                    {"window_ms": "5m"}, {"max_per_window": True}])
def test_gate_config_refuses_nonsense(kwargs):
    with pytest.raises(ValueError, match="GateConfig"):
        GateConfig(**kwargs)


def test_gate_config_allows_zero_window_to_disable_throttling():
    cfg = GateConfig(window_ms=0)
    d1 = gate_step(None, _alert(), T0_MS, cfg)
    d2 = gate_step(d1.state, _alert(alert_id="c2"), T0_MS, cfg)
    assert len(d2.emits) == 1


@pytest.mark.parametrize("kwargs", [{"state_ttl_ms": 0}, {"max_ack_ids": 0}])
def test_ack_config_refuses_nonsense(kwargs):
    with pytest.raises(ValueError, match="AckConfig"):
        AckConfig(**kwargs)
