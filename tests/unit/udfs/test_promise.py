from datetime import date, datetime, timezone

import pytest

from tests.builders import T0_MS, hours, minutes
from udfs.eta import EtaUpdate
from udfs.lanes import Lane
from udfs.promise import (
    CRITICAL,
    LATE_RISK,
    OPEN,
    RESOLVED,
    UPDATED,
    WARNING,
    PromiseAlert,
    PromiseConfig,
    SlaOutcome,
    alert_id,
    civil_from_days,
    on_delivered,
    risk_on_timer,
    risk_step,
    utc_day,
)

CFG = PromiseConfig()
TRK = "TRK0001"
PROMISE_END_MS = T0_MS + hours(4)  # 12:00 UTC on 2026-03-02
LANE = Lane("HUB-BER", "HUB-MUC", "FEDEX", "NEXT_DAY")


def eta(latest_late_by_ms, as_of_ms, tracking_id=TRK, basis="ROUTE"):
    """An estimate whose late edge is ``latest_late_by_ms`` past the promise end."""
    latest_ms = PROMISE_END_MS + latest_late_by_ms
    return EtaUpdate(tracking_id, latest_ms - minutes(10), latest_ms - minutes(20), latest_ms, 0.8, basis, as_of_ms)


def run(updates, state=None):
    """Feed (late_by_ms, as_of_ms) pairs in order; return final state and all emits."""
    emits = []
    for late_by_ms, as_of_ms in updates:
        d = risk_step(state, eta(late_by_ms, as_of_ms), PROMISE_END_MS, as_of_ms, CFG)
        state = d.state
        emits.extend(d.emits)
    return state, emits


def test_on_track_parcel_raises_nothing():
    state, emits = run([(-minutes(30), T0_MS), (-minutes(1), T0_MS + minutes(5))])
    assert emits == []
    assert state.get("open") is None


def test_raises_late_risk_once_when_latest_passes_promise_end():
    _, emits = run([(-minutes(5), T0_MS), (minutes(10), T0_MS + minutes(5)), (minutes(12), T0_MS + minutes(6))])
    [alert] = emits
    assert isinstance(alert, PromiseAlert)
    assert (alert.type, alert.state, alert.severity) == (LATE_RISK, OPEN, WARNING)
    assert alert.late_by_ms == minutes(10)
    assert alert.raised_ms == alert.event_time_ms == T0_MS + minutes(5)
    assert alert.revision == 1


def test_severity_is_critical_from_30_minutes_late():
    _, [alert] = run([(minutes(30), T0_MS)])
    assert alert.severity == CRITICAL
    _, [alert] = run([(minutes(29), T0_MS)])
    assert alert.severity == WARNING


def test_updates_only_when_lateness_grows_by_a_step():
    _, emits = run([
        (minutes(5), T0_MS),
        (minutes(15), T0_MS + minutes(1)),  # +10 min: not enough
        (minutes(19), T0_MS + minutes(2)),  # +14 min: still not
        (minutes(20), T0_MS + minutes(3)),  # +15 min over the last report: update
    ])
    assert [a.state for a in emits] == [OPEN, UPDATED]
    assert emits[1].late_by_ms == minutes(20)
    assert emits[1].revision == 2


def test_updates_when_severity_rises_even_by_less_than_a_step():
    _, emits = run([(minutes(25), T0_MS), (minutes(31), T0_MS + minutes(1))])
    assert [(a.state, a.severity) for a in emits] == [(OPEN, WARNING), (UPDATED, CRITICAL)]


def test_improvement_that_stays_late_is_not_reported():
    _, emits = run([(minutes(40), T0_MS), (minutes(10), T0_MS + minutes(1)), (minutes(45), T0_MS + minutes(2))])
    assert [a.state for a in emits] == [OPEN]


def test_resolves_once_back_inside_the_promise_by_the_margin():
    _, emits = run([
        (minutes(10), T0_MS),
        (-minutes(2), T0_MS + minutes(1)),  # inside, but within the hysteresis margin
        (-minutes(6), T0_MS + minutes(2)),
    ])
    assert [a.state for a in emits] == [OPEN, RESOLVED]
    assert emits[1].reason == "ON_TRACK"
    assert emits[1].alert_id == emits[0].alert_id


def test_eta_hovering_at_the_promise_end_does_not_flap():
    updates = [(minutes(1) if i % 2 else -minutes(1), T0_MS + minutes(i)) for i in range(10)]
    _, emits = run(updates)
    assert [a.state for a in emits] == [OPEN]


def test_all_alerts_of_one_episode_share_a_deterministic_id():
    _, emits = run([(minutes(5), T0_MS), (minutes(40), T0_MS + minutes(1)), (-minutes(10), T0_MS + minutes(2))])
    assert {a.alert_id for a in emits} == {alert_id(LATE_RISK, TRK, T0_MS)}
    assert [a.revision for a in emits] == [1, 2, 3]


def test_replaying_the_same_updates_reproduces_the_same_alerts():
    updates = [(minutes(5), T0_MS), (minutes(40), T0_MS + minutes(1))]
    assert run(updates)[1] == run(updates)[1]


def test_redelivered_update_raises_nothing_new():
    state, first = run([(minutes(5), T0_MS)])
    _, again = run([(minutes(5), T0_MS)], state)
    assert len(first) == 1 and again == []


def test_new_episode_after_resolution_gets_a_new_id():
    _, emits = run([(minutes(5), T0_MS), (-minutes(10), T0_MS + minutes(1)), (minutes(5), T0_MS + minutes(2))])
    assert [a.state for a in emits] == [OPEN, RESOLVED, OPEN]
    assert emits[2].alert_id != emits[0].alert_id


def test_stale_estimate_arriving_late_cannot_raise_risk():
    # The fresh estimate (minute 5) says on time; the stale one (minute 1) said late.
    state, emits = run([(-minutes(20), T0_MS + minutes(5)), (minutes(20), T0_MS + minutes(1))])
    assert emits == []
    assert state["as_of_ms"] == T0_MS + minutes(5)


def test_in_order_twin_of_the_stale_estimate_raises_then_resolves():
    _, emits = run([(minutes(20), T0_MS + minutes(1)), (-minutes(20), T0_MS + minutes(5))])
    assert [a.state for a in emits] == [OPEN, RESOLVED]


def test_parcel_without_a_promise_raises_nothing():
    d = risk_step(None, eta(hours(5), T0_MS), None, T0_MS, CFG)
    assert d.emits == ()


def test_first_update_arms_one_forget_timer_after_the_promise_end():
    d1 = risk_step(None, eta(-minutes(20), T0_MS), PROMISE_END_MS, T0_MS, CFG)
    assert d1.timer_ms == PROMISE_END_MS + CFG.forget_after_ms
    d2 = risk_step(d1.state, eta(-minutes(20), T0_MS + minutes(1)), PROMISE_END_MS, T0_MS + minutes(1), CFG)
    assert d2.timer_ms is None


def test_delivered_on_time_emits_outcome_and_clears_state():
    state, _ = run([(-minutes(20), T0_MS)])
    d = on_delivered(state, TRK, PROMISE_END_MS - minutes(30), PROMISE_END_MS, "FEDEX", LANE)
    assert d.state is None
    assert d.emits == (SlaOutcome(TRK, "FEDEX", LANE.key, "2026-03-02", True, 0),)
    assert d.cancel_timers_ms == (state["timer_ms"],)


def test_delivered_late_closes_open_alert_then_reports_lateness():
    state, [opened] = run([(minutes(40), T0_MS)])
    d = on_delivered(state, TRK, PROMISE_END_MS + minutes(25), PROMISE_END_MS, "FEDEX", "BER>MUC|FEDEX|NEXT_DAY")
    resolved, outcome = d.emits
    assert (resolved.state, resolved.reason, resolved.alert_id) == (RESOLVED, "DELIVERED", opened.alert_id)
    assert outcome == SlaOutcome(TRK, "FEDEX", "BER>MUC|FEDEX|NEXT_DAY", "2026-03-02", False, minutes(25))
    assert d.state is None


def test_late_delivery_counts_against_the_day_it_was_due_unless_told_otherwise():
    d = on_delivered(None, TRK, PROMISE_END_MS + hours(48), PROMISE_END_MS, "FEDEX", LANE)
    assert d.emits[0].day == "2026-03-02"
    d = on_delivered(None, TRK, PROMISE_END_MS + hours(48), PROMISE_END_MS, "FEDEX", LANE, day="2026-03-04")
    assert d.emits[0].day == "2026-03-04"


def test_delivery_without_state_or_promise_only_clears():
    d = on_delivered(None, TRK, T0_MS, None, "FEDEX", LANE)
    assert d.state is None and d.emits == () and d.cancel_timers_ms == ()


def test_forget_timer_rearms_while_estimates_keep_coming():
    state, _ = run([(-minutes(20), T0_MS)])
    later = PROMISE_END_MS + CFG.forget_after_ms - hours(1)
    state, _ = run([(-minutes(20), later)], state)
    d = risk_on_timer(state, PROMISE_END_MS + CFG.forget_after_ms, CFG)
    assert d.state is not None
    assert d.timer_ms == later + CFG.forget_after_ms


def test_forget_timer_clears_a_parcel_never_delivered_and_expires_its_alert():
    state, [opened] = run([(minutes(40), T0_MS)])
    d = risk_on_timer(state, state["timer_ms"], CFG)
    assert d.state is None
    [expired] = d.emits
    assert (expired.state, expired.reason, expired.alert_id) == (RESOLVED, "EXPIRED", opened.alert_id)


def test_alert_maps_onto_the_alerts_topic_record():
    _, [alert] = run([(minutes(40), T0_MS)])
    record = alert.to_alert_record(detected_time_ms=T0_MS + 1500)
    assert record["alert_id"] == alert.alert_id
    assert (record["type"], record["severity"], record["state"]) == (LATE_RISK, CRITICAL, OPEN)
    assert (record["entity_type"], record["entity_id"]) == ("PACKAGE", TRK)
    assert record["detected_time_ms"] - record["event_time_ms"] == 1500
    assert all(isinstance(v, str) for v in record["details"].values())


# 0001-01-01, 1970-01-01, 2000-02-29, 2000-03-01, 2100-03-01 (no leap day), 9999-12-31.
@pytest.mark.parametrize("days", [-719_162, 0, 11_016, 11_017, 47_541, 2_932_896])
def test_civil_from_days_agrees_with_the_calendar(days):
    expected = date.fromordinal(date(1970, 1, 1).toordinal() + days)
    assert civil_from_days(days) == (expected.year, expected.month, expected.day)


def test_civil_from_days_over_four_centuries_of_consecutive_days():
    epoch = date(1970, 1, 1).toordinal()
    for days in range(-60_000, 90_000, 1):
        d = date.fromordinal(epoch + days)
        assert civil_from_days(days) == (d.year, d.month, d.day)


def test_utc_day_formats_the_utc_date_around_midnight():
    midnight_ms = int(datetime(2024, 2, 29, tzinfo=timezone.utc).timestamp() * 1000)
    assert utc_day(midnight_ms) == "2024-02-29"
    assert utc_day(midnight_ms - 1) == "2024-02-28"
    assert utc_day(T0_MS) == "2026-03-02"
