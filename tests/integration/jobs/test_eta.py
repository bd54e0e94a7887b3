"""The ETA job on a MiniCluster at parallelism 2."""
import time

import pytest

from fleetflow import contracts
from tests.builders import assignment, minutes, offset, ping, seconds, shipment_state

pytestmark = pytest.mark.minicluster

DEPOT = (52.5000, 13.4000)
SPEED_MPS = 8.0
STOPS = [(1, 2000.0), (2, 4000.0), (3, 6000.0)]  # stop order, metres north of the depot
DWELL_MS = minutes(3)


def drive(t0_ms):
    """A van driving north through its three stops, dwelling at each: (pings, true arrival per stop)."""
    pings, arrivals = [], {}
    t, pos = t0_ms, 0.0
    for order, north_m in STOPS:
        while pos < north_m:
            pings.append(ping("VANETA", *offset(*DEPOT, north_m=pos), at_ms=t, speed_mps=SPEED_MPS,
                              event_id=f"VANETA-{t}"))
            t += seconds(20)
            pos = min(north_m, pos + SPEED_MPS * 20)
        arrivals[order] = t
        for k in range(0, DWELL_MS, seconds(20)):
            pings.append(ping("VANETA", *offset(*DEPOT, north_m=north_m + 5), at_ms=t + k, speed_mps=0.0,
                              event_id=f"VANETA-{t + k}"))
        t += DWELL_MS
    return pings, arrivals


def scenario():
    t0 = int(time.time() * 1000) - minutes(90)
    pings, arrivals = drive(t0 + minutes(2))
    assignments, states = [], []
    for order, north_m in STOPS:
        lat, lon = offset(*DEPOT, north_m=north_m)
        assignments.append(assignment("VANETA", f"PETA{order}", at_ms=t0 + order * 1000, route_id="RTETA",
                                      stop_order=order, stop_id=f"SETA{order}", stop_lat=lat, stop_lon=lon,
                                      event_id=f"asg-eta-{order}"))
        # Parcel 3's promise ends long before the van can get there: it must be flagged.
        end_ms = t0 + (minutes(10) if order == 3 else minutes(240))
        states.append(shipment_state(f"PETA{order}", "OUT_FOR_DELIVERY", "OUT_FOR_DELIVERY", version=1, at_ms=t0,
                                     promised_end_ms=end_ms, carrier="DHL"))
        states.append(shipment_state(f"PETA{order}", "DELIVERED", "DELIVERED", version=2,
                                     at_ms=arrivals[order] + minutes(1), promised_end_ms=end_ms, carrier="DHL",
                                     terminal=True))
    bad_assignment = dict(assignments[0], vehicle_id="", event_id="asg-eta-bad")
    return pings, assignments + [bad_assignment], states, arrivals


def raw(schema, topic, records, extra=()):
    return [(contracts.encode(schema, r), topic, i % 2, i) for i, r in enumerate(records)] + list(extra)


def test_van_approaching_its_stops_gives_converging_etas_late_risk_once_and_sla_outcomes(flink_env):
    from jobs.common import Sinks
    from jobs.eta import JobConfig, build_pipeline
    from jobs.sources import collection_stream

    pings, assignments, states, arrivals = scenario()
    env = flink_env()
    out = build_pipeline(env, collection_stream(env, raw("pings", "ff.pings", pings)),
                         collection_stream(env, raw("assignments", "ff.assignments", assignments)),
                         collection_stream(env, raw("shipment_states", "ff.shipment-states", states,
                                                    [(b"\x00garbage", "ff.shipment-states", 0, 99)])),
                         Sinks(), JobConfig())
    emits = list(out.emits.execute_and_collect())
    kinds = {}
    for e in emits:
        kinds.setdefault(type(e).__name__, []).append(e)

    # Converging ROUTE estimates for the last stop: the error shrinks as the van gets closer.
    p3 = sorted((r for r in kinds["EtaRecord"] if r.tracking_id == "PETA3" and r.eta_ms is not None),
                key=lambda r: r.as_of_ms)
    assert len(p3) >= 2 and all(r.basis == "ROUTE" for r in p3)
    errors = [abs(r.eta_ms - arrivals[3]) for r in p3]
    assert errors[-1] < errors[0] and errors[-1] <= minutes(3)
    assert all(r.earliest_ms <= r.eta_ms <= r.latest_ms for r in p3)

    # LATE_RISK: raised once for parcel 3, resolved by its delivery; nothing for the others.
    alerts = sorted(kinds["PromiseAlert"], key=lambda a: a.revision)
    assert {a.tracking_id for a in alerts} == {"PETA3"}
    assert [a.state for a in alerts if a.state == "OPEN"] == ["OPEN"]
    assert (alerts[-1].state, alerts[-1].reason) == ("RESOLVED", "DELIVERED")
    assert len({a.alert_id for a in alerts}) == 1

    outcomes = {o.tracking_id: o for o in kinds["SlaOutcome"]}
    assert set(outcomes) == {"PETA1", "PETA2", "PETA3"}
    assert outcomes["PETA1"].on_time and outcomes["PETA2"].on_time and not outcomes["PETA3"].on_time
    assert outcomes["PETA3"].carrier == "DHL"


def test_unusable_records_are_dead_lettered(flink_env):
    from jobs.common import Sinks
    from jobs.eta import JobConfig, build_pipeline
    from jobs.sources import collection_stream

    pings, assignments, states, _ = scenario()
    # Ids no key may hold: too long, padded, with a control character.
    bad_ids = [dict(assignments[1], route_id="R" * 129, event_id="asg-eta-long"),
               dict(assignments[1], stop_id="SETA\x00", event_id="asg-eta-nul")]
    bad_states = [dict(states[0], tracking_id="PETA1 "), dict(states[0], tracking_id="P" * 100_000)]
    bad_pings = [dict(pings[0], event_id="e" * 513)]
    env = flink_env()
    out = build_pipeline(env, collection_stream(env, raw("pings", "ff.pings", pings[:3] + bad_pings)),
                         collection_stream(env, raw("assignments", "ff.assignments", assignments + bad_ids)),
                         collection_stream(env, raw("shipment_states", "ff.shipment-states", states[:1] + bad_states,
                                                    [(b"\x00garbage", "ff.shipment-states", 0, 99)])),
                         Sinks(), JobConfig())
    dead = [contracts.decode(bytes(b & 0xFF for b in d))[1] for d in out.dead_letters.execute_and_collect()]
    assert sorted((d["reason"], d["source_topic"]) for d in dead) == [
        ("BAD_ID", "ff.assignments"), ("BAD_ID", "ff.shipment-states"), ("ID_TOO_LONG", "ff.assignments"),
        ("ID_TOO_LONG", "ff.pings"), ("ID_TOO_LONG", "ff.shipment-states"), ("MISSING_ID", "ff.assignments"),
        ("UNDECODABLE", "ff.shipment-states")]
    assert all(len(d["detail"]) <= 500 for d in dead)
