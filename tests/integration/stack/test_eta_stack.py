"""The ETA job on the real stack: Kafka → fleetflow-eta on the session cluster → Redis + Cassandra."""
import time
import uuid

import pytest

from fleetflow import kafka_io, topics
from tests.builders import assignment, minutes, offset, ping, seconds, shipment_state

pytestmark = pytest.mark.stack

DEPOT = (52.4400, 13.2500)
SPEED_MPS = 8.0
STOPS = [(1, 2000.0), (2, 4000.0), (3, 6000.0)]
DWELL_MS = minutes(3)


def drive(vehicle_id, t0_ms):
    pings, arrivals = [], {}
    t, pos = t0_ms, 0.0
    for order, north_m in STOPS:
        while pos < north_m:
            pings.append(ping(vehicle_id, *offset(*DEPOT, north_m=pos), at_ms=t, speed_mps=SPEED_MPS,
                              event_id=f"{vehicle_id}-{t}"))
            t += seconds(20)
            pos = min(north_m, pos + SPEED_MPS * 20)
        arrivals[order] = t
        for k in range(0, DWELL_MS, seconds(20)):
            pings.append(ping(vehicle_id, *offset(*DEPOT, north_m=north_m + 5), at_ms=t + k, speed_mps=0.0,
                              event_id=f"{vehicle_id}-{t + k}"))
        t += DWELL_MS
    return pings, arrivals


def wait_for(check, timeout_s=240, every_s=2, tick=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        result = check()
        if result:
            return result
        time.sleep(every_s)
    return check()


def test_published_route_gives_converging_etas_in_redis_and_cassandra(stack, eta_job, cql):
    import redis

    run = uuid.uuid4().hex[:8].upper()
    van = f"VANETA{run}"
    tids = {order: f"ETA{run}{order}" for order, _ in STOPS}
    t0 = int(time.time() * 1000) - minutes(30)
    pings, arrivals = drive(van, t0 + minutes(2))
    assignments, states = [], []
    for order, north_m in STOPS:
        lat, lon = offset(*DEPOT, north_m=north_m)
        assignments.append(assignment(van, tids[order], at_ms=t0 + order * 1000, route_id=f"RT{run}",
                                      stop_order=order, stop_id=f"S{run}{order}", stop_lat=lat, stop_lon=lon,
                                      event_id=f"asg-{run}-{order}"))
        end_ms = t0 + (minutes(5) if order == 3 else minutes(240))
        states.append(shipment_state(tids[order], "OUT_FOR_DELIVERY", "OUT_FOR_DELIVERY", version=1, at_ms=t0,
                                     promised_end_ms=end_ms, carrier="DHL"))
    states.append(shipment_state(tids[1], "DELIVERED", "DELIVERED", version=2, at_ms=arrivals[1] + minutes(1),
                                 promised_end_ms=t0 + minutes(240), carrier="DHL", terminal=True))

    kafka_io.publish(stack.kafka_bootstrap, topics.ASSIGNMENTS.name, "assignments", assignments, "vehicle_id")
    kafka_io.publish(stack.kafka_bootstrap, topics.SHIPMENT_STATES.name, "shipment_states", states, "tracking_id")
    kafka_io.publish(stack.kafka_bootstrap, topics.PINGS.name, "pings", pings, "vehicle_id")
    parked = offset(*DEPOT, north_m=STOPS[-1][1] + 5)

    def keep_pinging():
        # A live van keeps pinging, and that moves the watermark that releases held pings
        # and shipment states; this one stands at its last stop, so it changes no estimate.
        now_ms = int(time.time() * 1000)
        kafka_io.publish(stack.kafka_bootstrap, topics.PINGS.name, "pings",
                         [ping(van, *parked, at_ms=now_ms, speed_mps=0.0, event_id=f"{van}-{now_ms}")], "vehicle_id")

    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    session = cql()

    def history(tid):
        return list(session.execute("SELECT as_of_ms, eta_ms, eta_earliest_ms, eta_latest_ms, eta_basis "
                                    "FROM eta_history WHERE tracking_id = %s", (tid,)))

    def p3_converged():
        # Estimates are emitted when they move by more than 2 min, so the last one can be
        # a few minutes before the arrival; wait until it is close to the true arrival.
        rows = sorted(history(tids[3]), key=lambda x: x.as_of_ms)
        return rows if len(rows) >= 2 and abs(rows[-1].eta_ms - arrivals[3]) <= minutes(3) else None

    rows = wait_for(p3_converged, tick=keep_pinging)
    assert rows, f"estimates for {tids[3]} did not converge within 240 s: {history(tids[3])}, arrival {arrivals[3]}"
    rows = sorted(rows, key=lambda x: x.as_of_ms)
    errors = [abs(x.eta_ms - arrivals[3]) for x in rows]
    assert errors[-1] < errors[0] and errors[-1] <= minutes(3), errors
    assert all(x.eta_basis == "ROUTE" and x.eta_earliest_ms <= x.eta_ms <= x.eta_latest_ms for x in rows)

    fields = wait_for(lambda: (lambda f: f if f.get("late_risk") == "OPEN" else None)(
        r.hgetall(f"ff:shipment:{tids[3]}")), timeout_s=60, tick=keep_pinging)
    assert fields, f"late_risk never OPEN for {tids[3]}: {r.hgetall(f'ff:shipment:{tids[3]}')}"
    rows = sorted(history(tids[3]), key=lambda x: x.as_of_ms)
    assert int(fields["eta_as_of_ms"]) == rows[-1].as_of_ms
    assert int(fields["eta_ms"]) == rows[-1].eta_ms and fields["eta_basis"] == "ROUTE"
    assert fields["late_risk"] == "OPEN" and int(fields["late_by_ms"]) > 0
    assert 0 < float(fields["eta_confidence"]) <= 1
    assert "status" not in fields  # the shipment job's fields are not ours to write

    late = wait_for(lambda: list(session.execute(
        "SELECT day, tracking_id, state FROM late_risk_by_day WHERE day = %s AND tracking_id = %s",
        (time.strftime("%Y-%m-%d", time.gmtime((t0 + minutes(5)) / 1000)), tids[3]))), timeout_s=30,
        tick=keep_pinging)
    assert late and late[0].state in ("OPEN", "UPDATED")

    outcome = wait_for(lambda: list(session.execute(
        "SELECT carrier, on_time, lateness_ms FROM sla_outcomes WHERE tracking_id = %s", (tids[1],))), timeout_s=60,
        tick=keep_pinging)
    assert outcome and outcome[0].carrier == "DHL" and outcome[0].on_time
    assert wait_for(lambda: r.hget(f"ff:shipment:{tids[1]}", "late_risk") == "CLEAR", timeout_s=30,
                    tick=keep_pinging)
