"""Parcel tracker (van outcome join, lane derivation) and the per-lane step."""
from tests.builders import T0_MS, assignment, hours, minutes, shipment_state
from udfs.eta import Assignment, ParcelDone
from udfs.lanes import (BASIS_LANE, LaneObservation, LaneQuery, ShipmentView, TrackerConfig, lane_step,
                        parcel_on_timer, parcel_step, shipment_state_problem)

CFG = TrackerConfig()


def view(version, status="IN_TRANSIT", *, at_ms, facility=None, detail="", promised_end_ms=None, terminal=False,
         leg=1, carrier="DHL"):
    return ShipmentView.from_record(shipment_state("P1", status, detail, version=version, at_ms=at_ms,
                                                   facility_id=facility, promised_end_ms=promised_end_ms,
                                                   terminal=terminal, leg=leg, carrier=carrier))


def load(action="LOADED", at_ms=T0_MS, vehicle="VAN1"):
    return Assignment.from_record(assignment(vehicle, "P1", action, at_ms=at_ms))


def run(events, state=None):
    emits, timers = [], []
    for ev in events:
        d = parcel_step(state, ev, 0, CFG)
        state = d.state
        emits += d.emits
        if d.timer_ms is not None:
            timers.append(d.timer_ms)
    return state, emits, timers


def of(kind, emits):
    return [e for e in emits if isinstance(e, kind)]


def test_delivery_of_a_loaded_parcel_is_sent_to_its_van():
    _, emits, _ = run([load(), view(1, "OUT_FOR_DELIVERY", at_ms=T0_MS + 1),
                       view(2, "DELIVERED", at_ms=T0_MS + minutes(30), terminal=True)])
    assert of(ParcelDone, emits) == [ParcelDone("VAN1", "P1", T0_MS + minutes(30), "DELIVERED")]


def test_out_of_order_twin_delivery_before_the_loaded_is_sent_when_the_loaded_arrives():
    _, emits, _ = run([view(2, "DELIVERED", at_ms=T0_MS + minutes(30), terminal=True), load()])
    assert of(ParcelDone, emits) == [ParcelDone("VAN1", "P1", T0_MS + minutes(30), "DELIVERED")]


def test_reload_after_a_failed_attempt_is_not_done():
    _, emits, _ = run([view(2, "ATTEMPT_FAIL", at_ms=T0_MS - hours(20)), load(at_ms=T0_MS)])
    assert of(ParcelDone, emits) == []


def test_in_transit_parcel_not_on_a_van_asks_its_lane_and_a_loaded_one_does_not():
    _, emits, _ = run([view(1, at_ms=T0_MS, facility="HUB-A"), view(2, at_ms=T0_MS + hours(1), facility="HUB-A"),
                       view(3, at_ms=T0_MS + hours(5), facility="HUB-B")])
    queries = of(LaneQuery, emits)
    assert [q.lane_key for q in queries] == ["HUB-A>*|DHL|STANDARD", "HUB-A>*|DHL|STANDARD",
                                             "HUB-A>HUB-B|DHL|STANDARD"]
    # since_ms follows the parcel at its origin hub until it leaves: its departure.
    assert [q.since_ms for q in queries] == [T0_MS, T0_MS + hours(1), T0_MS + hours(1)]
    _, emits, _ = run([load(at_ms=T0_MS), view(1, at_ms=T0_MS + 1, facility="HUB-A")])
    assert of(LaneQuery, emits) == []


def test_delivery_teaches_every_lane_the_parcel_travelled_once():
    events = [view(1, at_ms=T0_MS, facility="HUB-A"), view(2, at_ms=T0_MS + hours(5), facility="HUB-B"),
              view(3, at_ms=T0_MS + hours(8), facility="DEPOT-B"),
              view(4, "DELIVERED", at_ms=T0_MS + hours(20), terminal=True)]
    state, emits, _ = run(events)
    obs = of(LaneObservation, emits)
    assert sorted(o.lane_key for o in obs) == ["HUB-A>*|DHL|STANDARD", "HUB-A>DEPOT-B|DHL|STANDARD",
                                               "HUB-A>HUB-B|DHL|STANDARD"]
    assert {o.transit_ms for o in obs} == {hours(20)}
    _, again, _ = run([view(5, "DELIVERED", at_ms=T0_MS + hours(21), terminal=True)], state)
    assert of(LaneObservation, again) == []


def test_a_new_leg_starts_a_new_lane():
    _, emits, _ = run([view(1, at_ms=T0_MS, facility="HUB-A"),
                       view(2, at_ms=T0_MS + hours(5), facility="HUB-X", leg=2, carrier="UPS")])
    assert of(LaneQuery, emits)[-1].lane_key == "HUB-X>*|UPS|STANDARD"


def test_shipment_views_are_forwarded_with_their_lane_and_stale_versions_dropped():
    state, emits, _ = run([view(2, at_ms=T0_MS + 1, facility="HUB-A")])
    assert of(ShipmentView, emits)[0].lane == "HUB-A>*|DHL|STANDARD"
    _, emits, _ = run([view(1, at_ms=T0_MS, facility="HUB-Z"), view(2, at_ms=T0_MS + 1, facility="HUB-A")], state)
    assert emits == []


def test_tracker_clears_after_idle_ttl_and_sooner_once_terminal():
    state, _, timers = run([view(1, at_ms=T0_MS, facility="HUB-A")])
    assert timers == [T0_MS + CFG.idle_ttl_ms]
    d = parcel_step(state, view(2, "DELIVERED", at_ms=T0_MS + hours(1), terminal=True), 0, CFG)
    assert d.timer_ms == T0_MS + hours(1) + CFG.terminal_ttl_ms and d.cancel_timers_ms == (timers[0],)
    assert parcel_on_timer(d.state, d.timer_ms, CFG).state is None


def test_lane_step_learns_from_observations_and_answers_queries():
    lane_key = "HUB-A>*|DHL|STANDARD"
    state = None
    for i in range(40):
        state = lane_step(state, LaneObservation(lane_key, f"T{i}", hours(20) + minutes(i)), 0).state
    query = of(LaneQuery, run([view(1, at_ms=T0_MS, facility="HUB-A")])[1])[0]
    d = lane_step(state, query, 0)
    (est,) = d.emits
    assert est.basis == BASIS_LANE and est.as_of_ms == T0_MS
    assert T0_MS + hours(19) < est.eta_ms < T0_MS + hours(21)
    assert est.earliest_ms <= est.eta_ms <= est.latest_ms
    assert d.state is state


def test_unusable_shipment_states_have_a_dead_letter_reason():
    assert shipment_state_problem(shipment_state()) is None
    assert shipment_state_problem(shipment_state(tracking_id="")) == "MISSING_ID"
    assert shipment_state_problem(shipment_state(version=0)) == "BAD_VERSION"
