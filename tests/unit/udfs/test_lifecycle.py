import itertools
import pickle
import random
from dataclasses import replace

import pytest

from tests.builders import T0_MS, hours, minutes, plan, scan
from udfs.events import Scan
from udfs.lifecycle import (ALERT_OPEN, ALERT_RESOLVED, DAY_MS, INVALID_TRANSITION, LATE_EVENT, SHIPMENT_STUCK,
                            SOURCE_PLAN, SOURCE_TIMER, TIMER_EXPIRE, TIMER_RETAIN, TIMER_STUCK, AuditRow, DataQuality,
                            Handoff, HistoryRow, LifecycleConfig, ShipmentAlert, ShipmentPlan, ShipmentState,
                            StateChanged, apply_plan, on_timer, plans_from_order, step)
from udfs.normalise import NormalisedScan
from udfs.taxonomy import Detail as D
from udfs.taxonomy import Status as S

CFG = LifecycleConfig()
NOW_MS = T0_MS + DAY_MS * 365  # processing time; the rules must not depend on it
TRK = "TRK0001"

LABEL = (S.INFO_RECEIVED, D.LABEL_CREATED)
PICKUP = (S.IN_TRANSIT, D.PICKED_UP)
ARRIVED = (S.IN_TRANSIT, D.ARRIVED_AT_FACILITY)
DEPARTED = (S.IN_TRANSIT, D.DEPARTED_FACILITY)
TRANSIT = (S.IN_TRANSIT, D.IN_TRANSIT)
HANDOFF = (S.IN_TRANSIT, D.HANDOFF_TO_CARRIER)
OFD = (S.OUT_FOR_DELIVERY, D.OUT_FOR_DELIVERY)
ATTEMPT = (S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_RECIPIENT_ABSENT)
DELIVERED = (S.DELIVERED, D.DELIVERED)
NEIGHBOUR = (S.DELIVERED, D.DELIVERED_TO_NEIGHBOUR)
DAMAGED = (S.EXCEPTION, D.DAMAGED)
WEATHER = (S.EXCEPTION, D.WEATHER_DELAY)
RTS = (S.RETURN_TO_SENDER, D.RETURN_TO_SENDER)
RETURNED = (S.RETURN_TO_SENDER, D.RETURNED)
CANCEL = (S.CANCELLED, D.CANCELLED)
NEAR = (S.OUT_FOR_DELIVERY, D.NEAR_DESTINATION)


def ev(pair, at_ms, *, leg=1, carrier="FEDEX", event_id=None, source="CARRIER", tracking_id=TRK) -> NormalisedScan:
    status, detail = pair
    s = Scan.from_record(scan(tracking_id, raw_code=detail.value, at_ms=at_ms, carrier=carrier,
                              event_id=event_id, leg=leg, source=source))
    # Scan.from_record reads leg 0 as the default 1; the job's scan view keeps the 0.
    return replace(NormalisedScan.of(s, status, detail), leg=leg)


def t(n_hours: float) -> int:
    return T0_MS + hours(n_hours)


class Operator:
    """What the jobs/ adapter does with Decisions: keep the state, keep the event-time
    timers (registered and deleted as told) and fire them as the watermark passes."""

    def __init__(self, cfg: LifecycleConfig = CFG):
        self.cfg = cfg
        self.state: ShipmentState | None = None
        self.timers: set[int] = set()
        self.emits: list = []

    def _apply(self, d):
        self.state = d.state
        for ms in d.cancel_timers_ms:
            self.timers.discard(ms)
        if d.timer_ms is not None:
            self.timers.add(d.timer_ms)
        self.emits.extend(d.emits)
        return d

    def scan(self, event):
        return self._apply(step(self.state, event, NOW_MS, self.cfg))

    def scans(self, events):
        for e in events:
            self.scan(e)
        return self

    def plan(self, p):
        return self._apply(apply_plan(self.state, p, NOW_MS, self.cfg))

    def advance_to(self, watermark_ms):
        fired = []
        while due := sorted(ms for ms in self.timers if ms <= watermark_ms):
            self.timers.discard(due[0])
            fired.append(self._apply(on_timer(self.state, due[0], self.cfg)))
        return fired

    def of(self, kind):
        return [e for e in self.emits if isinstance(e, kind)]


def run(events, cfg=CFG) -> Operator:
    return Operator(cfg).scans(events)


def final(events, cfg=CFG):
    s = run(events, cfg).state
    return None if s is None else (s.status, s.detail)


def shuffles(events, limit=150, seed=7):
    """Every order for short journeys, a fixed random sample for longer ones."""
    if len(events) <= 6:
        return list(itertools.permutations(events))
    rng = random.Random(seed)
    out = []
    for _ in range(limit):
        order = list(events)
        rng.shuffle(order)
        out.append(tuple(order))
    return out


# ---------------------------------------------------------------- journeys and their out-of-order twins

JOURNEYS = {
    "delivered": [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(ARRIVED, t(5)), ev(DEPARTED, t(6)), ev(OFD, t(20)),
                  ev(DELIVERED, t(22))],
    "still_in_transit": [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(ARRIVED, t(5)), ev(DEPARTED, t(6))],
    "damaged": [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(TRANSIT, t(3)), ev(DAMAGED, t(4))],
    "returned": [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(OFD, t(20)), ev(ATTEMPT, t(21)), ev(RTS, t(30)),
                 ev(TRANSIT, t(40)), ev(RETURNED, t(50))],
    "cancelled_before_pickup": [ev(LABEL, t(0)), ev(CANCEL, t(2))],
    "attempt_then_delivered": [ev(PICKUP, t(1)), ev(OFD, t(20)), ev(ATTEMPT, t(21)), ev(OFD, t(44)),
                               ev(NEIGHBOUR, t(45))],
    "two_carriers_delivered": [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(HANDOFF, t(10)),
                               ev(LABEL, t(9), leg=2, carrier="USPS"), ev(ARRIVED, t(12), leg=2, carrier="USPS"),
                               ev(OFD, t(30), leg=2, carrier="USPS"), ev(DELIVERED, t(32), leg=2, carrier="USPS")],
    "manifest_after_pickup": [ev(PICKUP, t(1)), ev(TRANSIT, t(2)), ev(LABEL, t(3))],
    "returning": [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(TRANSIT, t(2)), ev(RTS, t(10)), ev(TRANSIT, t(12)),
                  ev(ARRIVED, t(14))],
    # Journeys that stop before a final status: these diverged before refused scans were parked.
    "out_for_delivery": [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(ARRIVED, t(5)), ev(OFD, t(20))],
    "attempt_failed": [ev(PICKUP, t(1)), ev(OFD, t(20)), ev(ATTEMPT, t(21))],
    "geofence_near_destination": [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(OFD, t(20)),
                                  ev(NEAR, t(21), leg=0, carrier="FLEETFLOW", source="GEOFENCE")],
}


@pytest.mark.parametrize("name", JOURNEYS)
def test_shuffled_journey_reaches_the_same_final_status(name):
    events = JOURNEYS[name]
    in_order = run(sorted(events, key=lambda e: e.event_time_ms)).state
    for order in shuffles(events):
        state = run(order).state
        assert state.status is in_order.status, [e.detail.value for e in order]
        assert state.deleted is in_order.deleted


@pytest.mark.parametrize("name", ["out_for_delivery", "attempt_failed", "geofence_near_destination"])
def test_shuffled_unfinished_journey_converges_in_status_detail_and_history(name):
    events = JOURNEYS[name]
    in_order = run(sorted(events, key=lambda e: e.event_time_ms))
    for order in shuffles(events):
        op = run(order)
        assert (op.state.status, op.state.detail) == (in_order.state.status, in_order.state.detail), [
            e.detail.value for e in order]
        assert sorted(h.event_id for h in op.of(HistoryRow)) == sorted(e.event_id for e in events)
        assert op.state.parked == ()


@pytest.mark.parametrize("name, expected", [
    ("delivered", DELIVERED), ("still_in_transit", DEPARTED), ("damaged", DAMAGED), ("returned", RETURNED),
    ("cancelled_before_pickup", CANCEL), ("attempt_then_delivered", NEIGHBOUR),
    ("two_carriers_delivered", DELIVERED), ("manifest_after_pickup", TRANSIT), ("returning", RTS),
    ("out_for_delivery", OFD), ("attempt_failed", ATTEMPT), ("geofence_near_destination", NEAR),
])
def test_in_order_journey_final_status(name, expected):
    assert final(JOURNEYS[name]) == expected


def test_first_scan_creates_the_shipment_with_history_state_change_and_audit():
    d = step(None, ev(LABEL, t(0), event_id="e1"), NOW_MS, CFG)
    history, changed, audit = d.emits
    assert isinstance(history, HistoryRow) and not history.late and history.event_id == "e1"
    assert isinstance(changed, StateChanged)
    assert (changed.status, changed.prev_status, changed.version) == (S.INFO_RECEIVED, None, 1)
    assert audit == AuditRow(TRK, t(0), "e1", None, S.INFO_RECEIVED, None, D.LABEL_CREATED, "CARRIER", 1)
    assert d.state.last_event_time_ms == t(0)


def test_each_change_gets_one_audit_row_with_previous_and_new_status():
    op = run(JOURNEYS["delivered"])
    audits = op.of(AuditRow)
    assert [(a.prev_status, a.new_status) for a in audits] == [
        (None, S.INFO_RECEIVED), (S.INFO_RECEIVED, S.IN_TRANSIT), (S.IN_TRANSIT, S.IN_TRANSIT),
        (S.IN_TRANSIT, S.IN_TRANSIT), (S.IN_TRANSIT, S.OUT_FOR_DELIVERY), (S.OUT_FOR_DELIVERY, S.DELIVERED)]
    assert [a.version for a in audits] == [1, 2, 3, 4, 5, 6]
    assert len(op.of(HistoryRow)) == 6


def test_new_detail_in_the_same_status_keeps_time_in_status():
    op = run([ev(PICKUP, t(1)), ev(ARRIVED, t(5))])
    assert op.state.detail is D.ARRIVED_AT_FACILITY
    assert op.state.status_since_ms == t(1)
    assert op.state.stuck_since_ms == t(5)


# ---------------------------------------------------------------- duplicates

def test_duplicate_event_id_is_ignored():
    first = step(None, ev(PICKUP, t(1), event_id="dup"), NOW_MS, CFG)
    again = step(first.state, ev(PICKUP, t(1), event_id="dup"), NOW_MS, CFG)
    assert again.state is first.state
    assert again.emits == () and again.timer_ms is None and again.cancel_timers_ms == ()


def test_duplicate_arriving_after_newer_scans_is_still_ignored():
    op = run([ev(PICKUP, t(1), event_id="dup"), ev(DELIVERED, t(3))])
    before = len(op.emits)
    op.scan(ev(PICKUP, t(1), event_id="dup"))
    assert len(op.emits) == before
    assert op.state.status is S.DELIVERED


def _two_carriers_same_id():
    # A leg handover: FedEx carries leg 1, USPS leg 2, and both happen to use "evt-1".
    return [ev(PICKUP, t(1), event_id="evt-1"), ev(TRANSIT, t(5), event_id="evt-2"),
            ev(LABEL, t(9), leg=2, carrier="USPS", event_id="evt-1"),
            ev(ARRIVED, t(12), leg=2, carrier="USPS", event_id="evt-3")]


def test_the_same_event_id_from_two_carriers_is_two_scans():
    op = run(_two_carriers_same_id())
    assert op.state.legs[2].status is not None and op.state.legs[2].last_event_time_ms == t(12)
    assert sum(1 for e in op.emits if isinstance(e, HistoryRow) and e.event_id == "evt-1") == 2


def test_the_same_event_id_from_two_carriers_is_two_scans_in_any_order():
    forward = run(_two_carriers_same_id())
    backward = run(list(reversed(_two_carriers_same_id())))
    assert backward.state.status == forward.state.status
    assert sum(1 for e in backward.emits if isinstance(e, HistoryRow) and e.event_id == "evt-1") == 2


def test_state_from_before_per_carrier_ids_still_drops_a_redelivery():
    op = run([ev(PICKUP, t(1), event_id="old"), ev(TRANSIT, t(3))])
    # Written by the earlier version: bare event ids.
    op.state = replace(op.state, recent_event_ids=("old",) + op.state.recent_event_ids[1:])
    before = len(op.emits)
    op.scan(ev(PICKUP, t(1), event_id="old"))
    assert len(op.emits) == before


def test_dedup_remembers_only_the_last_n_event_ids():
    cfg = LifecycleConfig(dedup_window=3)
    op = run([ev(TRANSIT, t(i), event_id=f"e{i}") for i in range(5)], cfg)
    assert op.state.recent_event_ids == ("FEDEX\x1fe2", "FEDEX\x1fe3", "FEDEX\x1fe4")
    # Forgotten ids are no longer duplicates; being older, they are recorded as late.
    op.scan(ev(TRANSIT, t(0), event_id="e0"))
    assert op.emits[-2].late and op.emits[-2].event_id == "e0"


# ---------------------------------------------------------------- late scans

def test_late_scan_does_not_regress_status():
    op = run([ev(PICKUP, t(1)), ev(DEPARTED, t(6))])
    d = op.scan(ev(ARRIVED, t(5), event_id="late"))
    assert (op.state.status, op.state.detail) == DEPARTED
    history, dq = d.emits
    assert history.late and history.event_id == "late" and history.detail is D.ARRIVED_AT_FACILITY
    assert dq.type == LATE_EVENT and dq.details["lateness_ms"] == str(hours(1))
    assert d.timer_ms is None and d.cancel_timers_ms == ()


def test_late_scan_does_not_regress_status_twin_in_order():
    assert final([ev(PICKUP, t(1)), ev(ARRIVED, t(5)), ev(DEPARTED, t(6))]) == DEPARTED


def test_late_in_transit_after_delivered_never_regresses():
    op = run([ev(PICKUP, t(1)), ev(DELIVERED, t(10))])
    d = op.scan(ev(TRANSIT, t(5)))
    assert op.state.status is S.DELIVERED
    assert [type(e) for e in d.emits] == [HistoryRow, DataQuality]
    assert not any(isinstance(e, StateChanged) for e in d.emits)


def test_late_in_transit_after_delivered_never_regresses_twin_in_order():
    assert final([ev(PICKUP, t(1)), ev(TRANSIT, t(5)), ev(DELIVERED, t(10))]) == DELIVERED


def test_late_delivered_wins_over_a_newer_scan_as_it_would_in_order():
    op = run([ev(PICKUP, t(1)), ev(TRANSIT, t(12))])
    d = op.scan(ev(DELIVERED, t(10), event_id="pod"))
    assert op.state.status is S.DELIVERED
    assert op.state.status_since_ms == t(10)
    assert op.state.last_event_time_ms == t(12)
    history = d.emits[0]
    assert history.late and history.event_id == "pod"
    assert any(isinstance(e, StateChanged) and e.prev_status is S.IN_TRANSIT for e in d.emits)
    # The stuck timer gives way to the retention timer from the delivery's own time.
    assert d.timer_ms == t(10) + CFG.terminal_retention_ms
    assert d.cancel_timers_ms == (t(12) + hours(48),)


def test_late_delivered_wins_over_a_newer_scan_twin_in_order():
    op = run([ev(PICKUP, t(1)), ev(DELIVERED, t(10)), ev(TRANSIT, t(12))])
    assert op.state.status is S.DELIVERED
    assert op.of(DataQuality)[-1].type == INVALID_TRANSITION


def test_late_movement_beats_a_newer_label_scan():
    # Manifests often arrive after the parcel has been picked up.
    assert final([ev(LABEL, t(3)), ev(PICKUP, t(1))]) == PICKUP
    assert final([ev(PICKUP, t(1)), ev(LABEL, t(3))]) == PICKUP


def test_cancellation_older_than_a_movement_scan_is_recorded_not_applied():
    """Deliberately order-dependent: in order the cancel refuses the pickup, but once
    the pickup is known the parcel evidently moved, and a late cancel does not hide it."""
    late_cancel = run([ev(LABEL, t(0)), ev(PICKUP, t(2)), ev(CANCEL, t(1))])
    assert late_cancel.state.status is S.IN_TRANSIT and not late_cancel.state.deleted
    assert late_cancel.emits[-2].late and late_cancel.emits[-1].type == LATE_EVENT
    in_order = run([ev(LABEL, t(0)), ev(CANCEL, t(1)), ev(PICKUP, t(2))])
    assert in_order.state.status is S.CANCELLED


def test_late_cancellation_before_any_movement_is_applied():
    assert final([ev(LABEL, t(2)), ev(CANCEL, t(1))]) == CANCEL
    assert final([ev(CANCEL, t(1)), ev(LABEL, t(2))]) == CANCEL


# ---------------------------------------------------------------- illegal transitions

ILLEGAL = [
    # (id, events in arrival order, illegal event id, from, to, final, a shuffled twin order giving the same final)
    ("in_transit_after_delivered",
     [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(DELIVERED, t(3)), ev(TRANSIT, t(4), event_id="bad")],
     S.DELIVERED, S.IN_TRANSIT, DELIVERED, [3, 2, 1, 0]),
    ("out_for_delivery_before_in_transit",
     [ev(LABEL, t(0)), ev(OFD, t(2), event_id="bad")],
     S.INFO_RECEIVED, S.OUT_FOR_DELIVERY, LABEL, [1, 0]),
    ("scan_after_cancel",
     [ev(LABEL, t(0)), ev(CANCEL, t(2)), ev(PICKUP, t(3), event_id="bad")],
     S.CANCELLED, S.IN_TRANSIT, CANCEL, [1, 2, 0]),
    ("label_after_movement_with_newer_time",
     [ev(PICKUP, t(1)), ev(TRANSIT, t(2)), ev(LABEL, t(3), event_id="bad")],
     S.IN_TRANSIT, S.INFO_RECEIVED, TRANSIT, [2, 1, 0]),
    ("cancel_after_pickup",
     [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(CANCEL, t(2), event_id="bad")],
     S.IN_TRANSIT, S.CANCELLED, PICKUP, [1, 2, 0]),
    ("anything_after_returned",
     [ev(PICKUP, t(1)), ev(RTS, t(2)), ev(RETURNED, t(3)), ev(DAMAGED, t(4), event_id="bad")],
     S.RETURN_TO_SENDER, S.EXCEPTION, RETURNED, [2, 3, 0, 1]),
    ("attempt_before_movement",
     [ev(LABEL, t(0)), ev(ATTEMPT, t(1), event_id="bad")],
     S.INFO_RECEIVED, S.ATTEMPT_FAIL, LABEL, [1, 0]),
]


@pytest.mark.parametrize("events, bad_from, bad_to, expected", [c[1:5] for c in ILLEGAL], ids=[c[0] for c in ILLEGAL])
def test_illegal_transition_is_a_data_quality_record_not_an_overwrite(events, bad_from, bad_to, expected):
    op = run(events[:-1])
    before = op.state
    d = op.scan(events[-1])
    (dq,) = d.emits
    assert dq.type == INVALID_TRANSITION and dq.event_id == "bad" and dq.tracking_id == TRK
    assert (dq.details["from_status"], dq.details["to_status"]) == (bad_from.value, bad_to.value)
    assert dq.details["reason"]
    assert (op.state.status, op.state.detail) == expected
    assert op.state.last_event_time_ms == before.last_event_time_ms
    assert d.timer_ms is None and d.cancel_timers_ms == ()
    # Remembered, so a redelivery does not raise the same record twice.
    assert op.scan(events[-1]).emits == ()


@pytest.mark.parametrize("events, expected, twin", [(c[1], c[4], c[5]) for c in ILLEGAL], ids=[c[0] for c in ILLEGAL])
def test_illegal_transition_twin_out_of_order_gives_the_same_final_status(events, expected, twin):
    assert final([events[i] for i in twin]) == expected


def test_refused_first_scan_is_parked_in_a_state_that_is_discarded_after_the_park_timeout():
    op = Operator()
    d = op.scan(ev(OFD, t(1), event_id="ofd"))
    (dq,) = d.emits
    assert dq.type == INVALID_TRANSITION and dq.details["parked"] == "true"
    assert op.state.version == 0 and [e.event_id for e in op.state.parked] == ["ofd"]
    assert op.timers == {t(1) + CFG.park_timeout_ms}
    assert op.scan(ev(OFD, t(1), event_id="ofd")).emits == (), "a redelivery of a parked scan is silent"
    (fired,) = op.advance_to(t(1) + CFG.park_timeout_ms)
    assert fired.state is None and op.timers == set()
    (given_up,) = fired.emits
    assert (given_up.type, given_up.event_id, given_up.details["parked"]) == (INVALID_TRANSITION, "ofd", "false")


def test_parked_out_for_delivery_is_applied_when_the_in_transit_scan_arrives():
    op = run([ev(LABEL, t(0)), ev(OFD, t(20), event_id="ofd")])
    assert op.state.status is S.INFO_RECEIVED and len(op.state.parked) == 1
    d = op.scan(ev(PICKUP, t(1), event_id="pu"))
    assert [h.event_id for h in d.emits if isinstance(h, HistoryRow)] == ["pu", "ofd"]
    assert not any(h.late for h in d.emits if isinstance(h, HistoryRow))
    assert (op.state.status, op.state.parked, op.state.last_event_id) == (S.OUT_FOR_DELIVERY, (), "ofd")
    assert [c.version for c in d.emits if isinstance(c, StateChanged)] == [2, 3]
    assert len(op.timers) == 1 and op.state.timer_ms in op.timers


def test_parked_out_for_delivery_twin_in_order():
    op = run([ev(LABEL, t(0)), ev(PICKUP, t(1), event_id="pu"), ev(OFD, t(20), event_id="ofd")])
    assert (op.state.status, op.state.parked, op.state.last_event_id) == (S.OUT_FOR_DELIVERY, (), "ofd")


def test_parked_scan_older_than_the_in_transit_that_releases_it_is_only_recorded_late():
    op = run([ev(OFD, t(2), event_id="ofd"), ev(TRANSIT, t(5), event_id="it")])
    assert (op.state.status, op.state.parked) == (S.IN_TRANSIT, ())
    (late,) = [h for h in op.of(HistoryRow) if h.event_id == "ofd"]
    assert late.late


def test_a_plan_starts_a_shipment_that_holds_parked_scans():
    op = Operator()
    op.scan(ev(OFD, t(20), event_id="ofd"))
    op.plan(ShipmentPlan(TRK, order_id="O1", plan_time_ms=t(0)))
    assert op.state.version == 1 and op.state.status is S.PENDING and len(op.state.parked) == 1
    assert op.of(StateChanged)[0].prev_status is None
    assert len(op.timers) == 1 and op.state.timer_kind == TIMER_STUCK
    op.scan(ev(PICKUP, t(1)))
    assert op.state.status is S.OUT_FOR_DELIVERY


def test_parked_scans_are_capped_and_the_oldest_is_given_up():
    cfg = LifecycleConfig(max_parked=2)
    op = run([ev(LABEL, t(0)), ev(OFD, t(20), event_id="a"), ev(ATTEMPT, t(21), event_id="b"),
              ev(OFD, t(22), event_id="c")], cfg)
    assert [e.event_id for e in op.state.parked] == ["b", "c"]
    given_up = [q for q in op.of(DataQuality) if q.details.get("parked") == "false"]
    assert [q.event_id for q in given_up] == ["a"]


def test_parked_scans_still_waiting_when_the_state_is_cleared_are_given_up():
    op = run([ev(LABEL, t(0)), ev(OFD, t(20), event_id="ofd")])
    op.advance_to(t(0) + DAY_MS * 60)
    assert op.state is None
    assert [q.event_id for q in op.of(DataQuality) if q.details.get("parked") == "false"] == ["ofd"]


def test_delivered_then_return_to_sender_is_allowed():
    op = run([ev(PICKUP, t(1)), ev(DELIVERED, t(2)), ev(RTS, t(30))])
    assert (op.state.status, op.state.detail) == RTS
    assert not op.of(DataQuality)


def test_movement_during_a_return_is_the_return_trip():
    op = run([ev(PICKUP, t(1)), ev(ATTEMPT, t(2)), ev(RTS, t(3)), ev(TRANSIT, t(4)), ev(OFD, t(5))])
    assert (op.state.status, op.state.detail) == RTS
    assert [h.status for h in op.of(HistoryRow)][-2:] == [S.RETURN_TO_SENDER, S.RETURN_TO_SENDER]
    op.scan(ev(DELIVERED, t(6)))
    assert (op.state.status, op.state.detail) == RETURNED
    assert op.of(HistoryRow)[-1].detail is D.RETURNED


def test_late_return_under_newer_movement_turns_it_into_the_return_trip():
    op = run([ev(PICKUP, t(1)), ev(TRANSIT, t(12))])
    d = op.scan(ev(RTS, t(10)))
    assert (op.state.status, op.state.detail) == RTS
    assert d.emits[0].late and op.state.legs[1].returning


def test_late_return_under_newer_movement_twin_in_order():
    assert final([ev(PICKUP, t(1)), ev(RTS, t(10)), ev(TRANSIT, t(12))]) == RTS


def test_late_return_under_a_newer_delivery_means_it_reached_the_sender():
    assert final([ev(PICKUP, t(1)), ev(DELIVERED, t(20)), ev(RTS, t(10))]) == RETURNED
    assert final([ev(PICKUP, t(1)), ev(RTS, t(10)), ev(DELIVERED, t(20))]) == RETURNED


def test_late_return_under_a_newer_exception_is_only_recorded():
    op = run([ev(PICKUP, t(1)), ev(DAMAGED, t(20)), ev(RTS, t(10))])
    assert (op.state.status, op.state.detail) == DAMAGED
    assert op.emits[-1].type == LATE_EVENT
    assert final([ev(PICKUP, t(1)), ev(RTS, t(10)), ev(DAMAGED, t(20))]) == DAMAGED


def test_movement_during_a_return_twin_out_of_order():
    events = [ev(PICKUP, t(1)), ev(ATTEMPT, t(2)), ev(RTS, t(3)), ev(TRANSIT, t(4)), ev(OFD, t(5))]
    assert final([events[i] for i in (2, 0, 4, 1, 3)]) == RTS


# ---------------------------------------------------------------- multi-leg

def test_handoff_scan_announces_the_handoff_once():
    op = run([ev(PICKUP, t(1)), ev(HANDOFF, t(2), event_id="ho"), ev(ARRIVED, t(3), leg=2, carrier="USPS")])
    (handoff,) = op.of(Handoff)
    assert handoff == Handoff(TRK, "ho", t(2), 1, 2, "FEDEX", None)
    assert (op.state.status, op.state.leg, op.state.carrier) == (S.IN_TRANSIT, 2, "USPS")


def test_first_scan_on_the_next_leg_announces_the_handoff():
    op = run([ev(PICKUP, t(1)), ev(ARRIVED, t(3), leg=2, carrier="USPS", event_id="l2")])
    (handoff,) = op.of(Handoff)
    assert (handoff.from_leg, handoff.to_leg, handoff.from_carrier, handoff.to_carrier) == (1, 2, "FEDEX", "USPS")
    assert handoff.event_id == "l2"


def test_first_scan_on_the_next_leg_twin_out_of_order():
    events = [ev(PICKUP, t(1)), ev(ARRIVED, t(3), leg=2, carrier="USPS")]
    assert final(events[::-1]) == final(events) == ARRIVED


def test_next_carriers_label_does_not_make_its_leg_current():
    op = run([ev(TRANSIT, t(2)), ev(LABEL, t(3), leg=2, carrier="DHL")])
    assert (op.state.status, op.state.leg) == (S.IN_TRANSIT, 1)
    assert op.state.legs[2].status is S.INFO_RECEIVED


def test_next_carriers_label_twin_out_of_order():
    assert final([ev(LABEL, t(3), leg=2, carrier="DHL"), ev(TRANSIT, t(2))]) == TRANSIT


def _two_leg_plan(**kw):
    return ShipmentPlan(TRK, order_id="ORD1", leg_carriers=((1, "FEDEX"), (2, "USPS")), plan_time_ms=t(0), **kw)


def test_delivered_on_a_non_final_leg_means_handed_over():
    op = Operator()
    op.plan(_two_leg_plan())
    op.scans([ev(PICKUP, t(1)), ev(DELIVERED, t(5))])
    assert (op.state.status, op.state.detail) == HANDOFF
    op.scan(ev(DELIVERED, t(9), leg=2, carrier="USPS"))
    assert op.state.status is S.DELIVERED


def test_delivered_on_a_non_final_leg_twin_out_of_order():
    op = Operator()
    op.plan(_two_leg_plan())
    op.scans([ev(DELIVERED, t(9), leg=2, carrier="USPS"), ev(DELIVERED, t(5)), ev(PICKUP, t(1))])
    assert op.state.status is S.DELIVERED


def test_without_a_plan_a_later_leg_reopens_a_provisional_delivery():
    op = run([ev(PICKUP, t(1)), ev(DELIVERED, t(5))])
    retain_ms = t(5) + CFG.terminal_retention_ms
    assert op.timers == {retain_ms}
    d = op.scan(ev(ARRIVED, t(6), leg=2, carrier="USPS"))
    assert (op.state.status, op.state.detail) == ARRIVED
    assert d.cancel_timers_ms == (retain_ms,)
    assert op.timers == {t(6) + hours(48)}


def test_with_a_plan_a_scan_beyond_the_final_leg_after_delivery_is_rejected():
    op = Operator()
    op.plan(_two_leg_plan())
    op.scans([ev(PICKUP, t(1)), ev(DELIVERED, t(5), leg=2, carrier="USPS")])
    d = op.scan(ev(ARRIVED, t(6), leg=3, carrier="DHL"))
    assert d.emits[0].type == INVALID_TRANSITION
    assert op.state.status is S.DELIVERED


def test_exception_on_an_earlier_leg_shows_until_a_later_leg_progresses():
    op = run([ev(TRANSIT, t(1)), ev(ARRIVED, t(2), leg=2, carrier="USPS"), ev(DAMAGED, t(3))])
    assert (op.state.status, op.state.detail, op.state.leg) == (S.EXCEPTION, D.DAMAGED, 1)
    op.scan(ev(DEPARTED, t(4), leg=2, carrier="USPS"))
    assert (op.state.status, op.state.detail, op.state.leg) == (S.IN_TRANSIT, D.DEPARTED_FACILITY, 2)


def test_exception_on_an_earlier_leg_twin_out_of_order():
    events = [ev(TRANSIT, t(1)), ev(ARRIVED, t(2), leg=2, carrier="USPS"), ev(DAMAGED, t(3)),
              ev(DEPARTED, t(4), leg=2, carrier="USPS")]
    for order in itertools.permutations(events):
        assert final(order) == DEPARTED, [e.detail.value for e in order]


# ---------------------------------------------------------------- time in status

def test_stuck_timer_is_status_change_time_plus_limit_for_the_service_level():
    d = step(None, ev(PICKUP, t(1)), NOW_MS, CFG)
    assert d.timer_ms == t(1) + hours(48)
    assert (d.state.timer_kind, d.state.timer_ms) == (TIMER_STUCK, t(1) + hours(48))
    express = apply_plan(d.state, ShipmentPlan(TRK, service_level="EXPRESS", plan_time_ms=t(2)), NOW_MS, CFG)
    assert express.timer_ms == t(1) + hours(24)
    assert express.cancel_timers_ms == (t(1) + hours(48),)


@pytest.mark.parametrize("pair, limit_ms", [
    (LABEL, hours(72)), (TRANSIT, hours(48)), (OFD, hours(12)), (ATTEMPT, hours(24)), (DAMAGED, hours(24)),
])
def test_default_stuck_limits(pair, limit_ms):
    events = [ev(PICKUP, t(0))] if pair in (OFD, ATTEMPT) else []
    op = run(events + [ev(pair, t(1))])
    assert op.state.timer_ms == t(1) + limit_ms


def test_new_status_cancels_the_superseded_stuck_timer():
    op = run([ev(PICKUP, t(1))])
    d = op.scan(ev(OFD, t(2)))
    assert d.cancel_timers_ms == (t(1) + hours(48),)
    assert d.timer_ms == t(2) + hours(12)
    assert op.timers == {t(2) + hours(12)}


def test_repeated_scan_with_the_same_status_and_detail_keeps_the_stuck_timer():
    op = run([ev(TRANSIT, t(1))])
    d = op.scan(ev(TRANSIT, t(2)))
    assert d.timer_ms is None and d.cancel_timers_ms == ()
    assert op.timers == {t(1) + hours(48)}


def test_new_facility_scan_restarts_the_stuck_clock():
    op = run([ev(ARRIVED, t(1))])
    d = op.scan(ev(DEPARTED, t(30)))
    assert (d.timer_ms, d.cancel_timers_ms) == (t(30) + hours(48), (t(1) + hours(48),))


def test_no_stuck_alert_before_the_limit():
    op = run([ev(TRANSIT, t(1))])
    assert op.advance_to(t(1) + hours(48) - 1) == []
    assert not op.of(ShipmentAlert)


def test_stuck_alert_fires_once_when_the_timer_matches():
    op = run([ev(TRANSIT, t(1))])
    op.advance_to(t(1) + hours(48))
    (alert,) = op.of(ShipmentAlert)
    assert (alert.type, alert.state, alert.status, alert.since_ms) == (SHIPMENT_STUCK, ALERT_OPEN, S.IN_TRANSIT, t(1))
    assert (alert.timer_ms, alert.limit_ms, alert.service_level) == (t(1) + hours(48), hours(48), "STANDARD")
    # The next timer is the idle expiry, not another stuck alert.
    assert op.state.timer_kind == TIMER_EXPIRE
    op.advance_to(t(1) + hours(200))
    assert len(op.of(ShipmentAlert)) == 1


def test_superseded_timer_that_fires_anyway_is_ignored():
    op = run([ev(TRANSIT, t(1)), ev(OFD, t(2))])
    d = on_timer(op.state, t(1) + hours(48), CFG)
    assert d.state is op.state and d.emits == () and d.timer_ms is None


def test_stuck_alert_resolves_when_the_shipment_moves_on():
    op = run([ev(TRANSIT, t(1))])
    op.advance_to(t(49))
    d = op.scan(ev(OFD, t(50)))
    opened, resolved = op.of(ShipmentAlert)
    assert resolved.state == ALERT_RESOLVED and resolved.alert_id == opened.alert_id
    assert d.timer_ms == t(50) + hours(12)
    assert op.timers == {t(50) + hours(12)}


def test_terminal_status_retains_state_then_clears_it():
    op = run([ev(PICKUP, t(1))])
    d = op.scan(ev(DELIVERED, t(5)))
    retain_ms = t(5) + CFG.terminal_retention_ms
    assert (d.timer_ms, d.cancel_timers_ms) == (retain_ms, (t(1) + hours(48),))
    assert op.state.timer_kind == TIMER_RETAIN
    op.advance_to(retain_ms - 1)
    assert op.state is not None
    op.advance_to(retain_ms)
    assert op.state is None and op.timers == set()


def test_late_scans_during_retention_are_still_deduplicated_and_recorded():
    op = run([ev(PICKUP, t(1), event_id="pu"), ev(DELIVERED, t(5))])
    op.advance_to(t(5) + DAY_MS)
    before = len(op.emits)
    op.scan(ev(PICKUP, t(1), event_id="pu"))
    assert len(op.emits) == before
    op.scan(ev(TRANSIT, t(2)))
    assert op.emits[-2].late
    assert op.state.status is S.DELIVERED


def test_shipment_with_no_news_expires_then_clears():
    op = run([ev(TRANSIT, t(1))])
    expire_ms = t(1) + CFG.idle_expiry_ms
    op.advance_to(expire_ms)
    assert (op.state.status, op.state.detail) == (S.EXPIRED, D.EXPIRED)
    audit = op.of(AuditRow)[-1]
    assert (audit.source, audit.prev_status, audit.new_status, audit.changed_time_ms) == (
        SOURCE_TIMER, S.IN_TRANSIT, S.EXPIRED, expire_ms)
    assert [a.state for a in op.of(ShipmentAlert)] == [ALERT_OPEN, ALERT_RESOLVED]
    assert op.timers == {expire_ms + CFG.terminal_retention_ms}
    op.advance_to(expire_ms + CFG.terminal_retention_ms)
    assert op.state is None and op.timers == set()


def test_scan_after_expiry_revives_the_shipment():
    op = run([ev(TRANSIT, t(1))])
    op.advance_to(t(1) + CFG.idle_expiry_ms)
    d = op.scan(ev(OFD, t(1) + CFG.idle_expiry_ms + hours(1)))
    assert op.state.status is S.OUT_FOR_DELIVERY
    assert d.cancel_timers_ms == (t(1) + CFG.idle_expiry_ms + CFG.terminal_retention_ms,)


def test_without_a_stuck_limit_the_idle_expiry_follows_the_latest_scan():
    cfg = LifecycleConfig.from_mapping({"stuck_limits_ms": {"IN_TRANSIT": {"*": 0, "STANDARD": None}}})
    op = run([ev(ARRIVED, t(1))], cfg)
    assert (op.state.timer_kind, op.state.timer_ms) == (TIMER_EXPIRE, t(1) + cfg.idle_expiry_ms)
    d = op.scan(ev(TRANSIT, t(3)))
    assert (d.timer_ms, d.cancel_timers_ms) == (t(3) + cfg.idle_expiry_ms, (t(1) + cfg.idle_expiry_ms,))


def test_config_overrides_merge_into_the_defaults():
    cfg = LifecycleConfig.from_mapping({"terminal_retention_ms": DAY_MS,
                                        "stuck_limits_ms": {"OUT_FOR_DELIVERY": {"SAME_DAY": hours(4)}}})
    assert cfg.terminal_retention_ms == DAY_MS
    assert cfg.stuck_limit_ms(S.OUT_FOR_DELIVERY, "SAME_DAY") == hours(4)
    assert cfg.stuck_limit_ms(S.OUT_FOR_DELIVERY, "STANDARD") == hours(12)
    assert cfg.stuck_limit_ms(S.IN_TRANSIT, "EXPRESS") == hours(24)
    assert cfg.stuck_limit_ms(S.DELIVERED, "STANDARD") is None


# ---------------------------------------------------------------- soft delete

def test_cancelled_shipment_is_soft_deleted_hidden_and_kept_for_audit():
    op = run([ev(LABEL, t(0)), ev(CANCEL, t(2), event_id="ca")])
    assert op.state.deleted
    changed = op.of(StateChanged)[-1]
    assert changed.hidden_from_customers and changed.deleted and changed.terminal
    assert op.of(AuditRow)[-1].new_status is S.CANCELLED
    op.scan(ev(LABEL, t(1)))
    assert op.of(HistoryRow)[-1].hidden_from_customers
    op.advance_to(t(2) + CFG.terminal_retention_ms)
    assert op.state is None and op.timers == set()


def test_cancelled_shipment_twin_out_of_order():
    op = run([ev(CANCEL, t(2)), ev(LABEL, t(0))])
    assert op.state.deleted and op.state.status is S.CANCELLED


# ---------------------------------------------------------------- plans

def test_plan_before_any_scan_creates_a_pending_shipment_with_its_promise():
    (p,) = plans_from_order(plan("ORD9", (TRK,), at_ms=t(0), service_level="EXPRESS"))
    d = apply_plan(None, p, NOW_MS, CFG)
    s = d.state
    assert (s.status, s.service_level, s.order_id, s.plan_version) == (S.PENDING, "EXPRESS", "ORD9", 1)
    assert (s.promised_start_ms, s.promised_end_ms) == (t(24), t(28))
    assert s.legs[1].carrier == "FEDEX" and s.legs[1].status is None
    changed, audit = [e for e in d.emits if isinstance(e, (StateChanged, AuditRow))]
    assert changed.prev_status is None and audit.source == SOURCE_PLAN
    assert d.timer_ms == t(0) + hours(72)


def test_plan_then_scans_and_scans_then_plan_end_in_the_same_state():
    p = _two_leg_plan(service_level="EXPRESS")
    events = [ev(PICKUP, t(1)), ev(ARRIVED, t(2), leg=2, carrier="USPS")]
    a = Operator()
    a.plan(p)
    a.scans(events)
    b = Operator()
    b.scans(events)
    b.plan(p)
    assert (a.state.status, a.state.detail, a.state.service_level, a.state.timer_ms) == (
        b.state.status, b.state.detail, b.state.service_level, b.state.timer_ms)


def test_older_plan_is_ignored_and_replayed_plan_changes_nothing():
    op = Operator()
    op.plan(ShipmentPlan(TRK, plan_version=2, service_level="EXPRESS", plan_time_ms=t(0)))
    assert op.plan(ShipmentPlan(TRK, plan_version=1, service_level="ECONOMY", plan_time_ms=t(0))).emits == ()
    replay = op.plan(ShipmentPlan(TRK, plan_version=2, service_level="EXPRESS", plan_time_ms=t(0)))
    assert replay.emits == () and replay.timer_ms is None
    assert op.state.service_level == "EXPRESS"


def test_plan_record_shape_is_accepted():
    d = apply_plan(None, {"tracking_id": TRK, "order_id": "O1", "service_level": "NEXT_DAY",
                          "legs": [{"leg": 2, "carrier": "DHL"}, {"leg": 1, "carrier": "UPS"}]}, t(0), CFG)
    assert d.state.planned_leg_count == 2 and d.state.legs[2].carrier == "DHL"
    assert d.state.status_since_ms == t(0)


# ---------------------------------------------------------------- state hygiene

def test_state_survives_pickling_as_the_flink_adapter_stores_it():
    op = run(JOURNEYS["two_carriers_delivered"])
    assert pickle.loads(pickle.dumps(op.state)) == op.state


def test_rules_do_not_depend_on_processing_time():
    events = JOURNEYS["delivered"]
    a = b = None
    for e in events:
        a = step(a, e, NOW_MS, CFG).state
        b = step(b, e, 0, CFG).state
    assert a == b


def test_state_stays_bounded_over_a_long_noisy_journey():
    cfg = LifecycleConfig(dedup_window=16)
    op = run([ev(ARRIVED if i % 2 else DEPARTED, t(i) + minutes(i)) for i in range(500)], cfg)
    assert len(op.state.recent_event_ids) == 16
    assert len(op.state.legs) == 1
    assert len(op.timers) == 1


# ---------------------------------------------------------------- geofence-derived scans (leg 0)

def geo(pair, at_ms, event_id=None):
    return ev(pair, at_ms, leg=0, carrier="FLEETFLOW", source="GEOFENCE", event_id=event_id)


def test_geofence_scan_applies_to_the_current_leg_under_its_carrier_and_audits_geofence():
    op = run([ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(HANDOFF, t(10)), ev(ARRIVED, t(12), leg=2, carrier="USPS"),
              ev(OFD, t(20), leg=2, carrier="USPS")])
    d = op.scan(geo(NEAR, t(21), event_id="geo"))
    (history,) = [e for e in d.emits if isinstance(e, HistoryRow)]
    assert (history.leg, history.carrier, history.source) == (2, "USPS", "GEOFENCE")
    (audit,) = [e for e in d.emits if isinstance(e, AuditRow)]
    assert (audit.source, audit.new_detail) == ("GEOFENCE", D.NEAR_DESTINATION)
    assert (op.state.leg, op.state.carrier, op.state.detail) == (2, "USPS", D.NEAR_DESTINATION)
    assert set(op.state.legs) == {1, 2}


def test_geofence_scan_twin_out_of_order_is_parked_until_the_carrier_scans_arrive():
    events = [ev(LABEL, t(0)), ev(PICKUP, t(1)), ev(OFD, t(20)), geo(NEAR, t(21), event_id="geo")]
    op = run([events[3], events[0], events[2], events[1]])
    assert (op.state.status, op.state.detail, op.state.carrier) == (S.OUT_FOR_DELIVERY, D.NEAR_DESTINATION, "FEDEX")
    (history,) = [h for h in op.of(HistoryRow) if h.event_id == "geo"]
    assert history.leg == 1


def test_late_geofence_scan_after_delivery_never_regresses():
    op = run([ev(PICKUP, t(1)), ev(OFD, t(20)), ev(DELIVERED, t(22))])
    op.scan(geo(NEAR, t(21), event_id="geo"))
    assert op.state.status is S.DELIVERED
    (history,) = [h for h in op.of(HistoryRow) if h.event_id == "geo"]
    assert history.late and history.carrier == "FEDEX"


def test_late_geofence_scan_after_delivery_twin_in_order():
    op = run([ev(PICKUP, t(1)), ev(OFD, t(20)), geo(NEAR, t(21)), ev(DELIVERED, t(22))])
    assert op.state.status is S.DELIVERED


def test_geofence_hub_arrival_is_progress_in_transit():
    op = run([ev(PICKUP, t(1), leg=1), geo(ARRIVED, t(3), event_id="hub")])
    assert (op.state.status, op.state.detail, op.state.stuck_since_ms) == (S.IN_TRANSIT, D.ARRIVED_AT_FACILITY, t(3))


def test_state_change_reports_its_event_time_and_the_last_facility():
    s = Scan.from_record(scan(TRK, "AR", at_ms=t(3), facility_id="HUB-1", lat=52.5, lon=13.4, event_id="ar"))
    op = run([ev(PICKUP, t(1)), NormalisedScan.of(s, *ARRIVED), ev(DEPARTED, t(4))])
    last = op.of(StateChanged)[-1]
    assert (last.event_time_ms, last.last_event_id, last.last_facility_id, last.last_lat) == (t(4), last.event_id,
                                                                                             "HUB-1", 52.5)


def test_handle_routes_plans_and_scans_to_the_same_state():
    from udfs.lifecycle import handle
    d = handle(None, ShipmentPlan(TRK, order_id="O1", plan_time_ms=t(0)), NOW_MS, CFG)
    d = handle(d.state, ev(PICKUP, t(1)), NOW_MS, CFG)
    assert (d.state.order_id, d.state.status) == ("O1", S.IN_TRANSIT)
