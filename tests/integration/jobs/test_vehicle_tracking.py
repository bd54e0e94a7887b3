"""The vehicle tracking job on a MiniCluster at parallelism 2.

Ordering. In production each Kafka partition is read by one source subtask, so one
van's pings reach the vehicle operator in partition order. ``from_collection`` has one
subtask and Flink would rebalance its rows, so the tests route rows by their
``partition`` field (as Kafka would: a keyed identity map). The ingest stage dedups by
(vehicle_id, event_id), a second shuffle that can swap two of a van's pings emitted in the same
instant, so pings are let through one every 150 ms, as a live van's would be (its
pings are seconds apart). Timing between the three inputs (fences and assignments
before the pings they matter for, a fence change between two batches of pings) is
made with sleeps in front of the sources, seconds apart.
"""
import time

import pytest

from fleetflow import contracts
from tests.builders import assignment, geofence, minutes, offset, ping, seconds

pytestmark = pytest.mark.minicluster

LAT, LON = 52.5200, 13.4000


def at(base, north_m=0.0, east_m=0.0):
    return offset(base[0], base[1], north_m=north_m, east_m=east_m)


A = (LAT, LON)
B = at(A, north_m=3000)
C = at(A, north_m=-3000)
D = at(A, north_m=6000)


# ----------------------------------------------------------------------- scenario

def scenario(t0):
    """(fences, fence batch-2 start, assignments, pings, ping batch-2 start) as Avro dicts."""
    fences = [
        geofence("GF-STOP-A", "CUSTOMER_STOP", circle=(*A, 60.0), min_pings=2, dwell_ms=minutes(1),
                 exit_buffer_m=30.0, facility_id="STP-A", at_ms=t0),
        geofence("GF-RESTRICT-B", "RESTRICTED", circle=(*B, 100.0), facility_id="ZONE-B", at_ms=t0),
        geofence("GF-GONE-D", "CUSTOMER_STOP", circle=(*D, 100.0), facility_id="STP-GONE", at_ms=t0),
        geofence("GF-BROKEN", "HUB", circle=None, polygon_wkt="POLYGON((13 52, 13.1 52.1, 13.1 52, 13 52.1, 13 52))",
                 at_ms=t0),
    ]
    batch2 = len(fences)
    fences += [
        geofence("GF-GONE-D", "CUSTOMER_STOP", deleted=True, at_ms=t0 + minutes(30)),
        geofence("GF-NEW-D", "HUB", circle=(*D, 100.0), facility_id="HUB-D", at_ms=t0 + minutes(30)),
    ]
    assignments = [
        assignment("VAN-A", "TRK-A", "LOADED", at_ms=t0, route_id="RT-A", stop_id="STP-A", stop_lat=A[0],
                   stop_lon=A[1]),
        assignment("VAN-D", "TRK-D", "LOADED", at_ms=t0, route_id="RT-D", stop_id="STP-X", stop_lat=D[0],
                   stop_lon=D[1]),
    ]
    pings = []

    def add(van, points, start_ms, step_ms=seconds(20)):
        for i, (lat, lon) in enumerate(points):
            pings.append((van, lat, lon, start_ms + i * step_ms))
        return start_ms + len(points) * step_ms

    # VAN-A: approach, three fixes inside, then 10 fixes jittering across the edge (50 m / 70 m
    # from the centre: the fence is 60 m, its exit buffer 90 m), then away.
    approach = [at(A, east_m=-500 + 100 * i) for i in range(5)]
    inside = [at(A, east_m=e) for e in (40, 45, 50)]
    jitter = [at(A, east_m=50 if i % 2 else 70) for i in range(10)]
    away = [at(A, east_m=e) for e in (200, 400, 600, 800)]
    add("VAN-A", approach + inside + jitter + away, t0 + minutes(1))
    # VAN-B: two fixes two minutes apart either side of a restricted zone, then onwards.
    add("VAN-B", [at(B, east_m=-1000), at(B, east_m=1000), at(B, east_m=1200)], t0 + minutes(1), minutes(2))
    # VAN-C: drives, parks on the road for 15 min (GPS drift of a few metres), drives on.
    t = add("VAN-C", [at(C, east_m=200 * i) for i in range(10)], t0 + minutes(1))
    t = add("VAN-C", [at(C, east_m=2000 + (i % 3) * 3) for i in range(31)], t, seconds(30))
    add("VAN-C", [at(C, east_m=2300 + 200 * i) for i in range(5)], t)
    # VAN-D: sits in GF-GONE-D (phase 1) ...
    t = add("VAN-D", [at(D, east_m=i * 5) for i in range(5)], t0 + minutes(1))
    phase2 = len(pings)
    # ... and after the fence change (seconds later in wall time) stays there (phase 2).
    add("VAN-D", [at(D, east_m=i * 5) for i in range(5)], t)
    return fences, batch2, assignments, pings, phase2


class DelayBefore:
    """Sleeps before each row: ``delays_s`` by offset, else ``default_s``."""

    def __init__(self, delays_s: dict[int, float], default_s: float = 0.0):
        self.delays_s = delays_s
        self.default_s = default_s

    def __call__(self, row):
        time.sleep(self.delays_s.get(row["offset"], self.default_s))
        return row


def collect_all(out):
    from pyflink.common.typeinfo import Types

    def decoded(tag):
        return lambda d: (tag, contracts.decode(bytes(b & 0xFF for b in d))[1])

    P = Types.PICKLED_BYTE_ARRAY()
    merged = out.emits.map(lambda e: ("emit", e), output_type=P).union(
        out.fence_events.map(decoded("fence"), output_type=P),
        out.scans.map(decoded("scan"), output_type=P),
        out.alerts.map(decoded("alert"), output_type=P),
        out.dead_letters.map(decoded("dead"), output_type=P))
    got = {"emit": [], "fence": [], "scan": [], "alert": [], "dead": []}
    for tag, value in merged.execute_and_collect():
        got[tag].append(value)
    return got


@pytest.fixture(scope="module")
def run_result():
    from pyflink.common import Configuration
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import StreamExecutionEnvironment

    from jobs.common import Sinks
    from jobs.sources import RAW_RECORD_TYPE, collection_stream
    from jobs.vehicle_tracking import JobConfig, build_pipeline
    from jobs.runtime import python_path
    import sys

    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.pythonpath", python_path())
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(2)

    t0 = int(time.time() * 1000) - minutes(120)
    fences, batch2, assignments, pings, phase2 = scenario(t0)
    ping_rows = [(contracts.encode("pings", ping(v, lat, lon, at_ms=t, event_id=f"png-{i:04d}")), "ff.pings", 0, i)
                 for i, (v, lat, lon, t) in enumerate(pings)]
    fence_rows = [(contracts.encode("geofences", f), "ff.geofences", 0, i) for i, f in enumerate(fences)]
    asg_rows = [(contracts.encode("assignments", a), "ff.assignments", 0, i) for i, a in enumerate(assignments)]

    def routed(rows, delays, default_s=0.0):
        return (collection_stream(env, rows).map(DelayBefore(delays, default_s), output_type=RAW_RECORD_TYPE)
                .set_parallelism(1)
                .key_by(lambda r: r["partition"], key_type=Types.INT())
                .map(lambda r: r, output_type=RAW_RECORD_TYPE)
                # Fused with the job's ProcessFunction, this keyed map would hand it a keyed
                # context without currentProcessingTime (thread mode).
                .disable_chaining())

    env.set_buffer_timeout(5)
    # Pings from 6 s on, 150 ms apart (~12 s for phase 1); the fence change at ~22 s; phase 2 at ~30 s.
    out = build_pipeline(env, routed(ping_rows, {0: 6.0, phase2: 12.0}, 0.15), routed(asg_rows, {}),
                         routed(fence_rows, {batch2: 22.0}), Sinks(), JobConfig())
    got = collect_all(out)
    got["t0"] = t0
    got["pings"] = pings
    return got


def observed(fence_events, vehicle_id):
    return [(e["event_type"], e["geofence_id"]) for e in sorted(fence_events, key=lambda e: e["event_time_ms"])
            if e["vehicle_id"] == vehicle_id and e["reason"] != "STATE_EXPIRED"]


def test_edge_jitter_gives_one_enter_and_one_exit(run_result):
    assert observed(run_result["fence"], "VAN-A") == [("ENTER", "GF-STOP-A"), ("EXIT", "GF-STOP-A")]


def test_sparse_pings_still_see_the_zone_crossed(run_result):
    events = [e for e in run_result["fence"] if e["vehicle_id"] == "VAN-B"]
    assert sorted((e["event_type"], e["interpolated"]) for e in events) == [("ENTER", True), ("EXIT", True)]
    restricted = [a for a in run_result["alert"] if a["type"] == "RESTRICTED_AREA"]
    assert {a["alert_id"] for a in restricted} == {restricted[0]["alert_id"]}
    assert {a["state"] for a in restricted} == {"OPEN", "RESOLVED"}


def test_fifteen_minutes_parked_on_the_road_is_one_stall_candidate(run_result):
    alerts = [a for a in run_result["alert"] if a["type"] == "VEHICLE_STALLED"]
    resumed = [a for a in alerts if a["details"]["event_type"] == "VEHICLE_RESUMED"]
    assert [a["entity_id"] for a in resumed] == ["VAN-C"]
    assert [a["state"] for a in alerts if a["alert_id"] == resumed[0]["alert_id"]].count("OPEN") == 1
    # The final watermark of the finite input fires every pending timer; since a stall now
    # needs a good ping near its deadline (stall_max_ping_gap_ms), it can stall a van only
    # where its last fixes were. Any other stall must have begun there, not while its pings
    # were still coming.
    last_ping = {}
    for v, _, _, t in run_result["pings"]:
        last_ping[v] = max(last_ping.get(v, 0), t)
    early = [a for a in alerts if a["state"] == "OPEN" and a["alert_id"] != resumed[0]["alert_id"]
             and int(a["details"]["condition_start_ms"]) < last_ping[a["entity_id"]] - minutes(2)]
    assert early == []


def test_van_carrying_a_parcel_scans_it_at_its_stop_and_at_a_hub(run_result):
    scans = sorted((s["tracking_id"], s["raw_code"], s["facility_id"], s["carrier"], s["source"], s["leg"])
                   for s in run_result["scan"])
    assert scans == [("TRK-A", "GEO_NEAR_DESTINATION", "STP-A", "FLEETFLOW", "GEOFENCE", 0),
                     ("TRK-D", "GEO_ARRIVED_HUB", "HUB-D", "FLEETFLOW", "GEOFENCE", 0)]
    enter_a = [e for e in run_result["fence"] if e["vehicle_id"] == "VAN-A" and e["event_type"] == "ENTER"][0]
    assert f"geo|{enter_a['event_id']}|TRK-A" in {s["event_id"] for s in run_result["scan"]}


def test_geofence_change_mid_stream_takes_effect_without_restart(run_result):
    events = sorted((e for e in run_result["fence"] if e["vehicle_id"] == "VAN-D" and e["reason"] != "STATE_EXPIRED"),
                    key=lambda e: (e["event_time_ms"], e["event_type"] != "EXIT"))
    assert [(e["event_type"], e["geofence_id"], e["reason"]) for e in events] == [
        ("ENTER", "GF-GONE-D", "OBSERVED"), ("EXIT", "GF-GONE-D", "FENCE_REMOVED"), ("ENTER", "GF-NEW-D", "OBSERVED")]


def test_bad_geofence_is_dead_lettered_and_every_ping_is_history(run_result):
    from udfs.vehicle_position import PositionRow
    assert [d["reason"] for d in run_result["dead"]] == ["BAD_GEOFENCE"]
    rows = [e for e in run_result["emit"] if isinstance(e, PositionRow)]
    assert len(rows) == len(run_result["pings"])
    snapshots = [e for e in run_result["emit"] if type(e).__name__ == "VehicleSnapshot"]
    assert {s.vehicle_id for s in snapshots} == {"VAN-A", "VAN-B", "VAN-C", "VAN-D"}


def test_positions_deduplicated_and_bad_pings_dead_lettered(flink_env):
    from jobs.common import Sinks
    from jobs.sources import collection_stream
    from jobs.vehicle_tracking import JobConfig, build_pipeline

    t0 = int(time.time() * 1000) - minutes(30)
    good = [ping(f"VAN{v}", 52.5 + i * 0.001, 13.4, at_ms=t0 + minutes(i), event_id=f"VAN{v}-{i}")
            for v in range(3) for i in range(5)]
    bad = [ping("VAN9", 0.0, 0.0, at_ms=t0), ping("VAN9", 95.0, 13.4, at_ms=t0), ping("", 52.5, 13.4, at_ms=t0),
           ping("V" * 100_000, 52.5, 13.4, at_ms=t0), ping("VAN\x1b[2J", 52.5, 13.4, at_ms=t0)]
    # Two vans' trackers both number a fix p-1: two events. VAN0 then sends p-1 again from
    # another place: a conflict, dead-lettered (whichever of the two arrives second).
    shared = [ping("VAN0", 52.6, 13.4, at_ms=t0 + minutes(10), event_id="p-1"),
              ping("VAN1", 52.6, 13.5, at_ms=t0 + minutes(10), event_id="p-1")]
    conflicting = ping("VAN0", 52.7, 13.4, at_ms=t0 + minutes(10), event_id="p-1")
    stream = good + good[:4] + bad + shared + [conflicting]
    raw = [(contracts.encode("pings", r), "ff.pings", i % 2, i) for i, r in enumerate(stream)]
    asg = [assignment("VAN0", "TRK1", at_ms=t0, event_id="asg-1"), assignment("VAN0", "T" * 129, at_ms=t0)]
    asg_raw = [(contracts.encode("assignments", r), "ff.assignments", 0, i) for i, r in enumerate(asg)]
    fences = [geofence("GF-OK", at_ms=t0), geofence(" GF-PAD", at_ms=t0), geofence("G" * 129, at_ms=t0)]
    fence_raw = [(contracts.encode("geofences", f), "ff.geofences", 0, i) for i, f in enumerate(fences)]

    env = flink_env()
    out = build_pipeline(env, collection_stream(env, raw), collection_stream(env, asg_raw),
                         collection_stream(env, fence_raw), Sinks(), JobConfig())
    got = collect_all(out)
    rows = sorted((e.vehicle_id, e.event_id) for e in got["emit"] if type(e).__name__ == "PositionRow")
    assert rows == sorted((p["vehicle_id"], p["event_id"]) for p in good + shared)
    dead = sorted((d["reason"], d["source_topic"]) for d in got["dead"])
    assert dead == [("BAD_COORDINATES", "ff.pings"), ("BAD_COORDINATES", "ff.pings"), ("BAD_ID", "ff.geofences"),
                    ("BAD_ID", "ff.pings"), ("EVENT_ID_CONFLICT", "ff.pings"), ("ID_TOO_LONG", "ff.assignments"),
                    ("ID_TOO_LONG", "ff.geofences"), ("ID_TOO_LONG", "ff.pings"), ("MISSING_ID", "ff.pings")]
    (conflict,) = [d for d in got["dead"] if d["reason"] == "EVENT_ID_CONFLICT"]
    van0_versions = {raw[stream.index(shared[0])][0], raw[-1][0]}
    assert conflict["original"] in van0_versions
    assert all(len(d["detail"]) <= 500 for d in got["dead"])


def test_timer_driven_alerts_reach_the_alert_output(run_result):
    # The finite sources end with a final watermark that fires every event-time timer:
    # each van (none is parked in a depot) gets its silence alert from on_timer.
    lost = {a["entity_id"] for a in run_result["alert"] if a["type"] == "SIGNAL_LOST" and a["state"] == "OPEN"}
    assert lost == {"VAN-A", "VAN-B", "VAN-C", "VAN-D"}
    assert all(a["details"]["detected_by"] == "EVENT_TIME" for a in run_result["alert"]
               if a["type"] == "SIGNAL_LOST" and a["state"] == "OPEN")
