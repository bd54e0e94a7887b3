"""The per-vehicle composition: fences + watch + parcels + shift + snapshots + timers."""
from tests.builders import T0_MS, assignment, geofence, minutes, offset, ping, seconds
from tests.drivers import VehicleRun
from udfs import vehicle_state as vs
from udfs.alerts import Alert
from udfs.events import Ping
from udfs.fence_membership import GeofenceEvent
from udfs.geofence import Geofence, GeofenceIndex
from udfs.vehicle_position import PositionRow
from udfs.vehicle_watch import WatchConfig

LAT, LON = 52.5200, 13.4050
DEPOT = offset(LAT, LON, east_m=-3000)
STOP = offset(LAT, LON, north_m=1000)
# Another route's customer stop, away from every path the other tests drive.
OTHER_STOP = offset(LAT, LON, north_m=-2000, east_m=2000)


def at(north_m=0.0, east_m=0.0, base=(LAT, LON)):
    return offset(base[0], base[1], north_m=north_m, east_m=east_m)


def index():
    return GeofenceIndex([
        Geofence.from_dict(geofence("GF-DEPOT", "DEPOT", circle=(*DEPOT, 120.0), facility_id="DEPOT-1",
                                    min_pings=2)),
        Geofence.from_dict(geofence("GF-STOP", "CUSTOMER_STOP", circle=(*STOP, 60.0), facility_id="STP-1",
                                    min_pings=2, dwell_ms=minutes(1))),
        Geofence.from_dict(geofence("GF-OTHER-STOP", "CUSTOMER_STOP", circle=(*OTHER_STOP, 60.0),
                                    facility_id="STP-OTHER-ROUTE", min_pings=2)),
        Geofence.from_dict(geofence("GF-HUB", "HUB", circle=(*at(north_m=-4000), 150.0), facility_id="HUB-1")),
    ])


def P(lat_lon, t_ms, **kw):
    return Ping.from_record(ping("VAN1", lat_lon[0], lat_lon[1], at_ms=t_ms, **kw))


def A(action="LOADED", tracking_id="TRK1", stop_id="STP-1", t_ms=T0_MS, stop=STOP, stop_order=1, route_id="RT1"):
    return vs.Assignment.from_record(assignment("VAN1", tracking_id, action, at_ms=t_ms, stop_id=stop_id,
                                                stop_lat=stop[0], stop_lon=stop[1], stop_order=stop_order,
                                                route_id=route_id))


class Run(VehicleRun):
    """The shared driver (tests/drivers.py) over this module's fences."""

    def __init__(self, rules=vs.DEFAULT_RULES):
        super().__init__(index(), rules)


def drive(run, start, end, t0_ms, n, step_ms=seconds(20)):
    for i in range(n):
        f = i / max(1, n - 1)
        run.ping(P((start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1])), t0_ms + i * step_ms))
    return t0_ms + n * step_ms


def test_every_ping_is_a_history_row_and_snapshots_are_throttled():
    run = Run()
    for i in range(10):
        run.ping(P(at(east_m=i * 5.0), T0_MS + i * 1000))
    assert len(run.of(PositionRow)) == 10
    snaps = run.of(vs.VehicleSnapshot)
    # Pings 1 s apart, snapshot every 5 s of event time (status unchanged).
    assert [s.event_time_ms - T0_MS for s in snaps] == [0, 5000]
    assert all(s.status == vs.MOVING for s in snaps)


def test_stall_en_route_raises_one_vehicle_stalled_alert_and_status():
    run = Run()
    t = drive(run, at(), at(east_m=1500), T0_MS, 10)
    for i in range(40):  # 13 min parked on the road, GPS drift of a few metres
        run.ping(P(at(east_m=1500 + (i % 3)), t + i * seconds(20)))
    opened = run.alerts("VEHICLE_STALLED", "OPEN")
    assert len(opened) == 1
    assert run.of(vs.VehicleSnapshot)[-1].status == vs.STALLED
    run.ping(P(at(east_m=2000), t + minutes(14)))
    assert len(run.alerts("VEHICLE_STALLED", "RESOLVED")) == 1
    assert run.alerts("VEHICLE_STALLED", "RESOLVED")[0].alert_id == opened[0].alert_id


def test_long_customer_stop_is_not_a_stall():
    run = Run()
    run.assign(A())
    t = drive(run, at(), STOP, T0_MS, 5)
    for i in range(45):  # 15 min at the door
        run.ping(P(at(east_m=10, base=STOP), t + i * seconds(20)))
    assert run.alerts("VEHICLE_STALLED") == []


def test_entering_the_parcels_stop_fence_emits_a_geofence_scan_once():
    run = Run()
    run.assign(A(tracking_id="TRK1"))
    run.assign(A(tracking_id="TRK2", stop_id="STP-OTHER", stop=at(north_m=3000), stop_order=2))
    t = drive(run, at(), STOP, T0_MS, 5)
    for i in range(6):
        run.ping(P(at(east_m=5, base=STOP), t + i * seconds(20)))
    scans = run.of(vs.GeofenceScan)
    assert [s.tracking_id for s in scans] == ["TRK1"]
    rec = scans[0].to_record()
    enter = [e for e in run.of(GeofenceEvent) if e.event_type == "ENTER"][0]
    assert rec["event_id"] == f"geo|{enter.event_id}|TRK1"
    assert (rec["carrier"], rec["raw_code"], rec["source"], rec["leg"], rec["facility_id"]) == (
        "FLEETFLOW", "GEO_NEAR_DESTINATION", "GEOFENCE", 0, "STP-1")


def test_hub_entry_scans_every_parcel_on_board():
    run = Run()
    run.assign(A(tracking_id="TRK1"))
    run.assign(A(tracking_id="TRK2"))
    run.assign(A("UNLOADED", tracking_id="TRK2", t_ms=T0_MS + 1000))
    hub = at(north_m=-4000)
    for i in range(4):
        run.ping(P(at(east_m=i * 10, base=hub), T0_MS + minutes(1) + i * seconds(20)))
    assert [(s.tracking_id, s.raw_code, s.facility_id) for s in run.of(vs.GeofenceScan)] == [
        ("TRK1", "GEO_ARRIVED_HUB", "HUB-1")]


def test_back_at_the_depot_ends_the_shift_no_silence_then_loading_starts_a_new_one():
    run = Run()
    run.assign(A())
    for i in range(4):
        run.ping(P(at(east_m=i * 5, base=DEPOT), T0_MS + i * seconds(20)))
    t = drive(run, DEPOT, STOP, T0_MS + minutes(2), 20)
    t = drive(run, STOP, DEPOT, t, 20)
    for i in range(4):
        run.ping(P(at(east_m=i * 5, base=DEPOT), t + i * seconds(20)))
    assert run.state.watch.shift_ended
    assert run.of(vs.VehicleSnapshot)[-1].status == vs.OFF_SHIFT
    assert run.state.parcels == () and run.state.route_stop_ids == frozenset()
    assert run.state.watch.plan is None
    assert run.ptimer is None  # no wall-clock silence watch for a van parked after its shift
    run.advance_watermark(t + minutes(60))
    assert run.alerts("SIGNAL_LOST") == []
    run.assign(A(tracking_id="TRK9", route_id="RT2", t_ms=t + minutes(90)))
    assert not run.state.watch.shift_ended


def test_silence_on_the_road_raises_signal_lost_by_event_time_or_wall_clock_once():
    run = Run()
    t = drive(run, at(), at(east_m=2000), T0_MS, 10)
    assert run.ptimer is not None
    assert run.wall_clock(t + minutes(10)) == []  # last ping arrived at t - 19 s; silence is 15 min
    lost = [a for a in run.wall_clock(t + minutes(16)) if isinstance(a, Alert) and a.type == "SIGNAL_LOST"]
    assert len(lost) == 1 and lost[0].details["detected_by"] == "PROCESSING_TIME"
    run.advance_watermark(t + minutes(30))
    assert len(run.alerts("SIGNAL_LOST", "OPEN")) == 1
    assert run.of(vs.VehicleSnapshot)[-1].status == vs.SIGNAL_LOST


def test_wall_clock_silence_has_its_own_threshold():
    rules = vs.Rules(watch=WatchConfig(processing_silence_after_ms=seconds(45), route_corridor="leg_boxes"))
    run = Run(rules)
    run.ping(P(at(), T0_MS), wall_ms=T0_MS + 500)
    assert run.ptimer == T0_MS + 500 + seconds(45)


def test_timers_are_synced_and_state_is_forgotten_after_ttl():
    run = Run()
    drive(run, at(), at(east_m=500), T0_MS, 3)
    assert run.timers  # watch and membership deadlines
    run.advance_watermark(T0_MS + 4 * 86_400_000)
    assert run.state is None
    assert run.timers == set()


def test_bad_assignment_is_counted_not_applied():
    run = Run()
    bad = A(stop=(float("nan"), 13.4))
    run.assign(bad)
    assert run.state.parcels == () and run.state.rejected_assignments == 1


def test_out_of_order_ping_is_history_only():
    run = Run()
    run.ping(P(at(), T0_MS + minutes(1)))
    n = len(run.out)
    run.ping(P(at(east_m=400), T0_MS))
    assert [type(e) for e in run.out[n:]] == [PositionRow]


def park(run, where, t_ms, n, step_ms=seconds(20)):
    for i in range(n):
        run.ping(P(at(east_m=i % 3, base=where), t_ms + i * step_ms))
    return t_ms + n * step_ms


def members(run):
    return {m.geofence_id for m in run.state.membership.members}


def test_breakdown_next_to_another_routes_customer_stop_raises_vehicle_stalled():
    run = Run()
    run.assign(A())  # the van's only stop is STP-1
    t = drive(run, at(), OTHER_STOP, T0_MS, 10)
    park(run, OTHER_STOP, t, 40)  # 13 min inside another route's stop fence
    assert "GF-OTHER-STOP" in members(run)
    opened = run.alerts("VEHICLE_STALLED", "OPEN")
    assert len(opened) == 1 and run.of(vs.VehicleSnapshot)[-1].status == vs.STALLED


def test_late_ping_from_own_stop_does_not_hide_breakdown_next_to_another_routes_stop():
    # Out-of-order twin: a buffered fix from the van's own stop, dated during the breakdown.
    run = Run()
    run.assign(A())
    t = drive(run, at(), OTHER_STOP, T0_MS, 10)
    t2 = park(run, OTHER_STOP, t, 20)
    run.ping(P(STOP, t + minutes(3)))
    park(run, OTHER_STOP, t2, 20)
    assert len(run.alerts("VEHICLE_STALLED", "OPEN")) == 1
    assert run.state.watch.out_of_order_pings == 1


def test_van_with_no_parcels_is_not_stalled_at_any_customer_stop():
    # No plan: the van cannot tell its stops from others', so today's rule is kept.
    run = Run()
    t = drive(run, at(), OTHER_STOP, T0_MS, 10)
    park(run, OTHER_STOP, t, 45)
    assert run.state.watch.plan is None
    assert run.alerts("VEHICLE_STALLED") == []


def test_van_lingering_at_the_stop_it_has_just_delivered_to_is_not_stalled():
    run = Run()
    run.assign(A(tracking_id="TRK1"))
    run.assign(A(tracking_id="TRK2", stop_id="STP-2", stop=at(north_m=3000), stop_order=2))
    t = drive(run, at(), STOP, T0_MS, 5)
    t = park(run, STOP, t, 6)
    run.assign(A("UNLOADED", tracking_id="TRK1", t_ms=t))
    assert run.state.watch.plan.stop_ids == {"STP-1", "STP-2"}  # delivered stops stay the van's own
    park(run, STOP, t, 45)  # 15 more minutes at the door after the unload
    assert run.alerts("VEHICLE_STALLED") == []


def test_late_ping_does_not_stall_a_van_lingering_at_its_delivered_stop():
    # Out-of-order twin: a late fix from outside every fence, dated after the unload.
    run = Run()
    run.assign(A(tracking_id="TRK1"))
    run.assign(A(tracking_id="TRK2", stop_id="STP-2", stop=at(north_m=3000), stop_order=2))
    t = drive(run, at(), STOP, T0_MS, 5)
    t = park(run, STOP, t, 6)
    run.assign(A("UNLOADED", tracking_id="TRK1", t_ms=t))
    t2 = park(run, STOP, t, 20)
    run.ping(P(at(), t + minutes(1)))
    park(run, STOP, t2, 25)
    assert run.alerts("VEHICLE_STALLED") == [] and run.state.watch.out_of_order_pings == 1


def test_after_the_last_delivery_the_route_stops_are_still_the_vans_own():
    run = Run()
    run.assign(A())
    t = drive(run, at(), STOP, T0_MS, 5)
    t = park(run, STOP, t, 6)
    run.assign(A("UNLOADED", t_ms=t))
    plan = run.state.watch.plan
    assert plan.points == () and plan.stop_ids == {"STP-1"}  # no path to deviate from, stops still known
    t = drive(run, STOP, OTHER_STOP, t, 15)
    park(run, OTHER_STOP, t, 40)
    assert len(run.alerts("VEHICLE_STALLED", "OPEN")) == 1
