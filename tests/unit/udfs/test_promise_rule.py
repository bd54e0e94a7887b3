"""The promise rule as the ETA job runs it: estimates + held shipment states per parcel."""
from tests.builders import T0_MS, hours, minutes, shipment_state
from udfs.eta import BASIS_ROUTE, EtaUpdate
from udfs.lanes import ShipmentView
from udfs.promise import (DEFAULT_PARCEL_CONFIG as CFG, LATE_RISK_CLEAR, LATE_RISK_OPEN, EtaRecord, PromiseAlert,
                          SlaOutcome, promise_on_timer, promise_step)

END = T0_MS + hours(2)


def eta(as_of_ms, latest_ms, tid="P1"):
    return EtaUpdate(tid, latest_ms - minutes(10), latest_ms - minutes(20), latest_ms, 0.8, BASIS_ROUTE, as_of_ms)


def view(version, status="OUT_FOR_DELIVERY", *, at_ms, end_ms=END, terminal=False):
    return ShipmentView.from_record(shipment_state("P1", status, "", version=version, at_ms=at_ms,
                                                   promised_end_ms=end_ms, terminal=terminal, carrier="DHL"))


class Harness:
    """Runs the rule like the operator: timers fire in order once the 'watermark' passes."""

    def __init__(self):
        self.state, self.timers, self.emits = None, set(), []

    def _apply(self, d):
        self.state = d.state
        self.emits += d.emits
        self.timers -= set(d.cancel_timers_ms)
        if d.timer_ms is not None:
            self.timers.add(d.timer_ms)
        if d.state is None:
            self.timers.clear()

    def send(self, *events):
        for ev in events:
            self._apply(promise_step(self.state, ev, 0, CFG))
        return self

    def advance(self, watermark_ms):
        while self.timers and min(self.timers) <= watermark_ms:
            t = min(self.timers)
            self.timers.discard(t)
            self._apply(promise_on_timer(self.state, t, CFG))
        return self

    def of(self, kind):
        return [e for e in self.emits if isinstance(e, kind)]


def test_shipment_state_waits_for_the_watermark_and_an_early_estimate_is_rescored_on_it():
    h = Harness().send(view(1, at_ms=T0_MS), eta(T0_MS + 1, END + minutes(45)))
    assert h.of(PromiseAlert) == []  # promise not applied yet
    assert h.of(EtaRecord)[0].late_risk == LATE_RISK_CLEAR
    h.advance(T0_MS + 1)
    (alert,) = h.of(PromiseAlert)
    assert alert.state == "OPEN" and alert.severity == "CRITICAL"
    assert h.of(EtaRecord)[-1].late_risk == LATE_RISK_OPEN and h.of(EtaRecord)[-1].late_by_ms == minutes(45)


def test_late_risk_raised_once_and_resolved_on_delivery_with_sla_outcome():
    h = Harness().send(view(1, at_ms=T0_MS)).advance(T0_MS)
    h.send(eta(T0_MS + minutes(1), END + minutes(10)), eta(T0_MS + minutes(2), END + minutes(11)),
           eta(T0_MS + minutes(3), END + minutes(12)))
    assert [a.state for a in h.of(PromiseAlert)] == ["OPEN"]
    delivered_ms = END + minutes(8)
    h.send(view(2, "DELIVERED", at_ms=delivered_ms, terminal=True)).advance(delivered_ms)
    alerts = h.of(PromiseAlert)
    assert [(a.state, a.reason) for a in alerts] == [("OPEN", None), ("RESOLVED", "DELIVERED")]
    assert alerts[0].alert_id == alerts[1].alert_id
    (outcome,) = h.of(SlaOutcome)
    assert outcome == SlaOutcome("P1", "DHL", "UNKNOWN", "2026-03-02", False, minutes(8))
    assert h.of(EtaRecord)[-1] == EtaRecord("P1", delivered_ms, LATE_RISK_CLEAR, 0)


def test_out_of_order_twin_delivery_received_before_the_estimates_is_judged_after_them():
    delivered_ms = END + minutes(8)
    h = Harness().send(view(1, at_ms=T0_MS), view(2, "DELIVERED", at_ms=delivered_ms, terminal=True))
    h.advance(T0_MS)
    h.send(eta(T0_MS + minutes(1), END + minutes(10)))
    h.advance(delivered_ms)
    assert [(a.state, a.reason) for a in h.of(PromiseAlert)] == [("OPEN", None), ("RESOLVED", "DELIVERED")]
    assert len(h.of(SlaOutcome)) == 1


def test_estimate_after_delivery_is_ignored():
    h = Harness().send(view(1, "DELIVERED", at_ms=T0_MS, terminal=True)).advance(T0_MS)
    before = list(h.emits)
    h.send(eta(T0_MS + minutes(1), END + hours(3)))
    assert h.emits == before


def test_older_estimate_is_not_applied_or_stored():
    h = Harness().send(eta(T0_MS + minutes(5), END - hours(1)))
    h.send(eta(T0_MS + minutes(1), END + hours(1)))
    assert [r.as_of_ms for r in h.of(EtaRecord)] == [T0_MS + minutes(5)]


def test_cancellation_resolves_the_alert_without_an_sla_outcome():
    h = Harness().send(view(1, at_ms=T0_MS)).advance(T0_MS).send(eta(T0_MS + 1, END + minutes(10)))
    h.send(view(2, "CANCELLED", at_ms=T0_MS + minutes(5), terminal=True)).advance(T0_MS + minutes(5))
    assert [(a.state, a.reason) for a in h.of(PromiseAlert)] == [("OPEN", None), ("RESOLVED", "CANCELLED")]
    assert h.of(SlaOutcome) == []


def test_never_delivered_parcel_is_forgotten_and_its_alert_expires():
    h = Harness().send(view(1, at_ms=T0_MS)).advance(T0_MS).send(eta(T0_MS + 1, END + minutes(10)))
    h.advance(END + CFG.risk.forget_after_ms - 1)
    assert h.state is not None
    h.advance(END + CFG.risk.forget_after_ms)
    assert h.state is None and not h.timers
    assert [(a.state, a.reason) for a in h.of(PromiseAlert)] == [("OPEN", None), ("RESOLVED", "EXPIRED")]


def test_delivered_parcel_is_remembered_for_delivered_ttl_then_cleared():
    h = Harness().send(view(1, at_ms=T0_MS)).advance(T0_MS).send(eta(T0_MS + 1, END - hours(1)))
    h.send(view(2, "DELIVERED", at_ms=T0_MS + hours(1), terminal=True)).advance(T0_MS + hours(1))
    assert h.timers == {T0_MS + hours(1) + CFG.delivered_ttl_ms}
    h.advance(T0_MS + hours(1) + CFG.delivered_ttl_ms)
    assert h.state is None


def test_repeated_shipment_state_version_is_ignored():
    h = Harness().send(view(1, at_ms=T0_MS), view(1, at_ms=T0_MS)).advance(T0_MS)
    assert h.state["version"] == 1 and h.state["pending"] == []
    h.send(view(1, at_ms=T0_MS))
    assert h.state["pending"] == []


def test_delivery_state_that_first_brings_the_promise_still_scores_the_last_estimate():
    # The OUT_FOR_DELIVERY state with the promise was superseded upstream; only the delivery got here.
    delivered_ms = END + minutes(8)
    h = Harness().send(eta(T0_MS + minutes(1), END + minutes(10)))
    h.send(view(2, "DELIVERED", at_ms=delivered_ms, terminal=True)).advance(delivered_ms)
    assert [(a.state, a.reason) for a in h.of(PromiseAlert)] == [("OPEN", None), ("RESOLVED", "DELIVERED")]
    assert len(h.of(SlaOutcome)) == 1
