"""Simulated fleet → Kafka → vehicle job on the real stack: stall alerts, fence flapping, silence.

The simulator (seed 7, 8 vans, 100 simulated minutes, stalls injected at 2 per driving
hour) is sent at 60x speed, so event-time rules run at their production thresholds
(stall after 10 min, silence after 15 min). Only the wall-clock silence fallback gets a
short threshold (45 s) through JobConfig.rules, so the test takes minutes. After the
recording, the on-road vans of every partition but one keep pinging; the vans of the
silent partition must get SIGNAL_LOST from the wall-clock fallback, the others none,
and vans parked at the depot after their shift none either.

Candidates are read from ff.alert-candidates directly (no alerts job needed).
"""
from __future__ import annotations

import time

import pytest

from fleetflow import contracts, topics

pytestmark = pytest.mark.stack

JOB = "fleetflow-vehicle-tracking"
SEED, VANS, DURATION_S, STOPS, STALL_RATE = 7, 8, 100 * 60, 6, 2.0
SPEEDUP = 60.0
WALL_SILENCE_MS = 45_000
STALL_AFTER_MS = 10 * 60_000
MIN = 60_000


def _partition(vehicle_id: str, partitions: int = topics.PINGS.partitions) -> int:
    from kafka.partitioner.default import murmur2
    return (murmur2(vehicle_id.encode()) & 0x7FFFFFFF) % partitions


def _end_offsets(bootstrap, names):
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return c.end_offsets([TopicPartition(t, p) for t in names for p in c.partitions_for_topic(t)])
    finally:
        c.close()


def _read_since(bootstrap, start_offsets, topic):
    from kafka import KafkaConsumer
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                      consumer_timeout_ms=2000)
    try:
        parts = [tp for tp in start_offsets if tp.topic == topic]
        c.assign(parts)
        for tp in parts:
            c.seek(tp, start_offsets[tp])
        return [contracts.decode(m.value)[1] for m in c]
    finally:
        c.close()


@pytest.fixture
def tuned_vehicle_job(stack):
    """The vehicle job with a 45 s wall-clock silence; cancelled afterwards so the next
    user of the session fixture gets the default configuration."""
    from fleetflow import flinkjobs
    existing = flinkjobs.running(stack, JOB)
    if existing is not None:
        flinkjobs.cancel(stack, existing.job_id)
        deadline = time.monotonic() + 60
        while flinkjobs.running(stack, JOB) is not None and time.monotonic() < deadline:
            time.sleep(1)
    job = flinkjobs.submit(stack, JOB, config={"idleness_ms": 5000,
                                               "rules": {"watch": {"processing_silence_after_ms": WALL_SILENCE_MS}}})
    yield job
    flinkjobs.cancel(stack, job.job_id)


def _keepalive(bootstrap, vans: dict[str, tuple[float, float]], seconds: float) -> None:
    from fleetflow.kafka_io import producer
    from tests.builders import ping
    p = producer(bootstrap)
    try:
        end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < end:
            now_ms = int(time.time() * 1000)
            for vid, (lat, lon) in vans.items():
                rec = ping(vid, lat, lon, at_ms=now_ms, event_id=f"keepalive-{vid}-{now_ms}-{k}", speed_mps=0.0)
                p.send(topics.PINGS.name, key=vid.encode(), value=contracts.encode("pings", rec))
            p.flush()
            k += 1
            time.sleep(5)
    finally:
        p.close()


def test_injected_stalls_fence_flapping_and_silent_partition(stack, tuned_vehicle_job, tmp_path):
    from fleetflow.simulate.config import SimConfig
    from fleetflow.simulate.engine import simulate
    from fleetflow.simulate.sinks import read_truth

    bootstrap = stack.kafka_bootstrap
    start = _end_offsets(bootstrap, [topics.ALERT_CANDIDATES.name, topics.FENCE_EVENTS.name])
    now_ms = int(time.time() * 1000)
    truth_path = tmp_path / "truth.json"
    simulate(SimConfig(seed=SEED, start_ms=now_ms - DURATION_S * 1000, duration_s=DURATION_S, vans=VANS,
                       stops_per_van=STOPS, stall_rate_per_hour=STALL_RATE, bootstrap=bootstrap, speedup=SPEEDUP,
                       truth_path=str(truth_path)))
    truth = read_truth(truth_path)
    end_ms = truth["end_ms"]
    assert truth["breaks"] == [], "the run is shorter than a shift's break; breaks would need their own scoring"

    vans = {v["vehicle_id"]: v for v in truth["vehicles"]}
    on_road = {vid for vid, v in vans.items() if v["return_ms"] > end_ms}
    parked = {vid for vid, v in vans.items() if v["return_ms"] + 2 * MIN <= end_ms}
    by_partition: dict[int, set[str]] = {}
    for vid in on_road:
        by_partition.setdefault(_partition(vid), set()).add(vid)
    silent_partition = max(by_partition, key=lambda p: (len(by_partition[p]), -p))
    silent = by_partition[silent_partition]
    alive = on_road - silent
    assert silent and parked, (by_partition, parked)

    # Last true position of each kept-alive van: its last stall/visit or the route's point at the end.
    last_pos = {}
    for a in truth["arrivals"]:
        if a["vehicle_id"] in alive and a["arrival_ms"] <= end_ms:
            last_pos[a["vehicle_id"]] = (a["stop"]["lat"], a["stop"]["lon"])
    for vid in alive:
        last_pos.setdefault(vid, next((f["lat"], f["lon"]) for f in truth["facilities"]
                                      if f["facility_id"] == vans[vid]["depot"]))
    _keepalive(bootstrap, last_pos, seconds=WALL_SILENCE_MS / 1000 + 60)

    # Stalls: event-time rules at production thresholds, scored against the truth.
    detectable = [s for s in truth["stalls"] if s["start_ms"] + STALL_AFTER_MS + 2 * MIN <= end_ms]
    stops = {}
    for a in truth["arrivals"]:
        stops.setdefault(a["vehicle_id"], []).append((a["stop"]["lat"], a["stop"]["lon"]))

    def score(cands):
        opened = [c for c in cands if c["type"] == "VEHICLE_STALLED" and c["state"] == "OPEN" and c["entity_id"] in vans]
        ids_per_stall = []
        matched = set()
        for s in detectable:
            ids = {c["alert_id"] for c in opened if c["entity_id"] == s["vehicle_id"]
                   and s["start_ms"] - MIN <= int(c["details"]["condition_start_ms"]) <= s["end_ms"]}
            ids_per_stall.append(ids)
            matched |= ids
        distinct = {c["alert_id"]: c for c in opened}
        return ids_per_stall, matched, distinct

    # Generous: on a loaded 2-core machine the job can lag the keep-alive feed by minutes;
    # the loop ends as soon as every stall and the silent partition are seen.
    deadline = time.monotonic() + 360
    while True:
        cands = _read_since(bootstrap, start, topics.ALERT_CANDIDATES.name)
        ids_per_stall, matched, distinct = score(cands)
        lost = {c["entity_id"] for c in cands if c["type"] == "SIGNAL_LOST" and c["state"] == "OPEN"}
        if (all(ids_per_stall) and silent <= lost) or time.monotonic() > deadline:
            break
        time.sleep(5)

    from udfs.geofence import distance_m
    recall = sum(1 for ids in ids_per_stall if ids) / len(detectable) if detectable else 1.0
    precision = len(matched) / len(distinct) if distinct else 1.0
    false = [c for aid, c in distinct.items() if aid not in matched]
    at_stops = [c for c in false if any(distance_m(float(c["details"]["lat"]), float(c["details"]["lon"]), lat, lon) < 150
                                        for lat, lon in stops.get(c["entity_id"], []))]
    print(f"\nstalls injected {len(truth['stalls'])}, detectable {len(detectable)}, "
          f"VEHICLE_STALLED candidates {len(distinct)}; recall {recall:.2f}, precision {precision:.2f}")
    assert all(len(ids) <= 1 for ids in ids_per_stall), "a stall raised more than one VEHICLE_STALLED"
    assert at_stops == []
    assert recall >= 0.9 and precision >= 0.9, (recall, precision, false)

    # Fence edges: every (van, fence) alternates ENTER/EXIT, and no visit is re-entered
    # within two minutes of leaving it.
    # At-least-once: a failover republishes events with the same event_id; consumers upsert on it.
    fence_events = list({e["event_id"]: e for e in _read_since(bootstrap, start, topics.FENCE_EVENTS.name)
                         if e["vehicle_id"] in vans}.values())
    assert fence_events, "no fence events at all"
    flaps = 0
    per_pair: dict[tuple[str, str], list[dict]] = {}
    for e in fence_events:
        if not e["interpolated"]:
            per_pair.setdefault((e["vehicle_id"], e["geofence_id"]), []).append(e)
    for evs in per_pair.values():
        evs.sort(key=lambda e: (e["event_time_ms"], e["event_type"] != "EXIT"))
        kinds = [e["event_type"] for e in evs]
        assert all(a != b for a, b in zip(kinds, kinds[1:])), kinds
        flaps += sum(1 for a, b in zip(evs, evs[1:])
                     if a["event_type"] == "EXIT" and b["event_type"] == "ENTER"
                     and b["event_time_ms"] - a["event_time_ms"] < 2 * MIN)
    print(f"fence events {len(fence_events)}, flapping pairs {flaps}")
    assert flaps == 0

    # Silence: the quiet partition's vans are lost (wall clock); kept-alive and parked vans are not.
    lost_c = [c for c in cands if c["type"] == "SIGNAL_LOST" and c["state"] == "OPEN" and c["entity_id"] in vans]
    print(f"silent partition {silent_partition}: {sorted(silent)}; SIGNAL_LOST for {sorted({c['entity_id'] for c in lost_c})}")
    assert silent <= {c["entity_id"] for c in lost_c}
    assert all(c["details"]["detected_by"] == "PROCESSING_TIME" for c in lost_c if c["entity_id"] in silent)
    assert not {c["entity_id"] for c in lost_c} & alive
    late_parked = [c for c in lost_c if c["entity_id"] in parked
                   and int(c["details"]["condition_start_ms"]) >= vans[c["entity_id"]]["return_ms"]]
    assert late_parked == []
