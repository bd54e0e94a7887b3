"""The shipment job on the real stack: order independence, and recovery from a lost TaskManager.

Each test feeds one deterministic simulator day (fleetflow.simulate) more than once, under
a fresh tracking-id prefix per feed, and compares what the feeds left in Redis and
Cassandra with the prefix taken off.
"""
import json
import os
import random
import signal
import time
import urllib.request
import uuid

import pytest

from fleetflow import contracts, kafka_io, topics
from jobs.eta_sinks import ETA_FIELDS

pytestmark = pytest.mark.stack

WATERMARK_BOUND_MS = 60_000  # JobConfig.out_of_orderness_ms
# The ETA job writes its fields into the same hash; its lane model learns from every
# feed's deliveries, so those fields depend on how the feeds interleave, not on this job.
VOLATILE = {"updated_ms", *ETA_FIELDS}


def _day(seed: int):
    """One small simulated day that ended an hour ago: its clean scans and plans, decoded."""
    from fleetflow.simulate.config import SimConfig
    from fleetflow.simulate.engine import generate

    now_ms = int(time.time() // 60 * 60_000)
    sim = generate(SimConfig(seed=seed, vans=2, stops_per_van=4, duration_s=3 * 3600,
                             start_ms=now_ms - 4 * 3600_000, duplicate_rate=0, out_of_order_rate=0, late_rate=0,
                             malformed_rate=0))
    scans = [contracts.decode(r.value)[1] for r in sim.records if r.topic == topics.SCANS.name]
    plans = [contracts.decode(r.value)[1] for r in sim.records if r.topic == topics.PLANS.name]
    return scans, plans


def _prefixed(scans, plans, prefix):
    scans = [dict(s, tracking_id=prefix + s["tracking_id"], event_id=prefix + s["event_id"]) for s in scans]
    out_plans = []
    for p in plans:
        shipments = [dict(sh, packages=[dict(pk, tracking_id=prefix + pk["tracking_id"]) for pk in sh["packages"]])
                     for sh in p["shipments"]]
        out_plans.append(dict(p, order_id=prefix + p["order_id"], shipments=shipments))
    return scans, out_plans


def _shuffled_within_bound(scans, rng, dup_rate=0.10):
    """Event-time order, then shuffled inside buckets no wider than the watermark bound,
    with dup_rate of the scans sent twice (same bytes, as a partner retry would)."""
    ordered = sorted(scans, key=lambda s: s["event_time_ms"])
    buckets, current = [], []
    for s in ordered:
        if current and s["event_time_ms"] - current[0]["event_time_ms"] > WATERMARK_BOUND_MS:
            buckets.append(current)
            current = []
        current.append(s)
    buckets.append(current)
    out = []
    for b in buckets:
        b = b + [s for s in b if rng.random() < dup_rate]
        rng.shuffle(b)
        out.extend(b)
    return out


def _publish(stack, scans, plans):
    kafka_io.publish(stack.kafka_bootstrap, topics.PLANS.name, "plans", plans, "order_id")
    kafka_io.publish(stack.kafka_bootstrap, topics.SCANS.name, "scans", scans, "tracking_id")


def _strip(value, prefix):
    return value.replace(prefix, "") if isinstance(value, str) else value


def _observed(stack, session, prefix, base_ids):
    """(redis hash, shipment_current row, history rows) per base tracking id, prefix removed."""
    import redis
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    out = {}
    for tid in base_ids:
        full = prefix + tid
        h = {k: _strip(v, prefix) for k, v in r.hgetall(f"ff:shipment:{full}").items() if k not in VOLATILE}
        row = session.execute("SELECT * FROM shipment_current WHERE tracking_id = %s", (full,)).one()
        current = {k: _strip(v, prefix) for k, v in row._asdict().items() if k not in VOLATILE} if row else None
        history = sorted((_strip(x.event_id, prefix), x.event_time_ms, x.status, x.status_detail) for x in session.execute(
            "SELECT event_id, event_time_ms, status, status_detail FROM shipment_history WHERE tracking_id = %s",
            (full,)))
        audit = sorted((a.version, a.prev_status, a.new_status, _strip(a.event_id, prefix)) for a in session.execute(
            "SELECT version, prev_status, new_status, event_id FROM shipment_audit WHERE tracking_id = %s", (full,)))
        out[tid] = (h, current, history, audit)
    return out


def _differences(a, b):
    """Per tracking id, the parts (redis, current, history, audit) that differ, for the failure message."""
    names = ("redis", "current", "history", "audit")
    out = {}
    for tid in sorted(set(a) | set(b)):
        if a.get(tid) != b.get(tid):
            x, y = a.get(tid) or (None,) * 4, b.get(tid) or (None,) * 4
            out[tid] = {n: (p, q) for n, p, q in zip(names, x, y) if p != q}
    return out


def _settled(stack, session, prefixes, base_ids, timeout_s=240):
    """Poll until every feed has a state for every shipment and nothing changed for two polls."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        now = [_observed(stack, session, p, base_ids) for p in prefixes]
        # Every feed carries the same unique scans, so its history must reach the same size;
        # a stable but incomplete picture (a job still recovering) is not settled.
        sizes = {sum(len(v[2]) for v in obs.values()) for obs in now}
        complete = len(sizes) == 1 and all(v[0].get("version") and v[1] for obs in now for v in obs.values())
        if complete and now == last:
            return now
        last = now
        time.sleep(5)
    return last


def test_shuffled_stream_with_duplicates_ends_in_the_same_state_as_the_ordered_one(stack, shipment_status_job, cql):
    scans, plans = _day(seed=4242)
    base_ids = sorted({s["tracking_id"] for s in scans})
    run = uuid.uuid4().hex[:6].upper()
    ordered_prefix, shuffled_prefix = f"EQA{run}-", f"EQB{run}-"
    a_scans, a_plans = _prefixed(sorted(scans, key=lambda s: s["event_time_ms"]), plans, ordered_prefix)
    b_scans, b_plans = _prefixed(_shuffled_within_bound(scans, random.Random(7)), plans, shuffled_prefix)
    assert len(b_scans) > len(a_scans), "the shuffled feed carries duplicates"
    _publish(stack, a_scans, a_plans)
    _publish(stack, b_scans, b_plans)

    ordered, shuffled = _settled(stack, cql(), [ordered_prefix, shuffled_prefix], base_ids)

    assert ordered == shuffled, _differences(ordered, shuffled)
    for tid, (h, current, history, _) in ordered.items():
        assert h["status"] == current["status"] and int(h["version"]) == current["version"]
        assert len(history) == len({e for e, *_ in history}), f"{tid}: a history row is duplicated"
    assert {h["status"] for h, *_ in ordered.values()} - {"PENDING"}, "the day moved shipments along"


# ---------------------------------------------------------------- TaskManager loss

def _rest(stack, path):
    with urllib.request.urlopen(f"{stack.flink_rest_url}{path}", timeout=10) as r:
        return json.loads(r.read())


def _latest_checkpoint_trigger_ms(stack) -> int:
    """Trigger time of the running shipment job's newest completed checkpoint (0 if none).
    Looked up each time: on a shared cluster the job may have been resubmitted meanwhile."""
    from fleetflow import flinkjobs
    job = flinkjobs.running(stack, "fleetflow-shipment-status")
    if job is None:
        return 0
    latest = (_rest(stack, f"/jobs/{job.job_id}/checkpoints").get("latest") or {}).get("completed") or {}
    return int(latest.get("trigger_timestamp") or 0)


def _wait(what, check, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _kill_taskmanagers(stack):
    """Every TaskManager, so the job restarts wherever it ran."""
    from fleetflow.stack.services import FlinkTaskManager, taskmanager_names
    tms = [FlinkTaskManager(name, stack) for name in taskmanager_names(stack)]
    pids = [tm.daemon.pid() for tm in tms]
    assert all(pids), f"not every TaskManager is running: {pids}"
    for pid in pids:
        os.killpg(pid, signal.SIGKILL)
    _wait("the TaskManagers to die", lambda: all(tm.daemon.pid() is None for tm in tms), 30)


@pytest.mark.disruptive
def test_job_recovers_from_a_killed_taskmanager_with_the_same_final_state_and_no_duplicate_history(
        stack, shipment_status_job, cql):
    """Kills every TaskManager (every running job restarts), then restarts them as
    ``fleetflow up`` does. Run alone and rarely: ``-m disruptive``."""
    from fleetflow import flinkjobs
    from fleetflow import stack as stack_mod

    scans, plans = _day(seed=777)
    base_ids = sorted({s["tracking_id"] for s in scans})
    run = uuid.uuid4().hex[:6].upper()
    ref_prefix, kill_prefix = f"TKR{run}-", f"TKK{run}-"
    ordered = sorted(scans, key=lambda s: s["event_time_ms"])
    ref_scans, ref_plans = _prefixed(ordered, plans, ref_prefix)
    kill_scans, kill_plans = _prefixed(ordered, plans, kill_prefix)
    session = cql()

    def written():
        return sum(session.execute("SELECT count(*) FROM shipment_history WHERE tracking_id = %s",
                                   (kill_prefix + t,)).one()[0] for t in base_ids)

    _publish(stack, ref_scans, ref_plans)
    half = len(kill_scans) // 2
    _publish(stack, kill_scans[:half], kill_plans)
    _wait("the first half to be written", lambda: written() >= half, 180)

    # Kill while written data is not yet covered by a checkpoint, so recovery must replay
    # writes that already landed. Right after a checkpoint completes, publish a slice and
    # kill as soon as part of it is in Cassandra: records published after the newest
    # completed checkpoint was triggered cannot be in it. If a checkpoint still slipped in
    # before the kill, the next slice tries again.
    rest = kill_scans[half:]
    size = -(-len(rest) // 5)
    # Contiguous slices keep the feed in event-time order, as in the reference run.
    slices = [rest[i:i + size] for i in range(0, len(rest), size)]
    replayed = False
    for i, piece in enumerate(slices[:-1]):
        before = _latest_checkpoint_trigger_ms(stack)
        _wait("a fresh checkpoint", lambda: _latest_checkpoint_trigger_ms(stack) > before, 120)
        count_before = written()
        published_ms = int(time.time() * 1000)
        _publish(stack, piece, [])
        _wait("part of the slice to be written", lambda: written() > count_before, 60)
        if _latest_checkpoint_trigger_ms(stack) < published_ms:
            _kill_taskmanagers(stack)
            replayed = True
            break
    assert replayed, "every attempt was overtaken by a checkpoint; nothing would be replayed"
    # Published while nothing runs: the job must pick these up from the offsets in its checkpoint.
    _publish(stack, [s for piece in slices[i + 1:] for s in piece], [])
    stack_mod.up(stack)
    _wait("the job to run again", lambda: (lambda j: j is not None and all(
        v["status"] == "RUNNING" for v in _rest(stack, f"/jobs/{j.job_id}")["vertices"]))(
        flinkjobs.running(stack, "fleetflow-shipment-status")), 300)

    reference, recovered = _settled(stack, session, [ref_prefix, kill_prefix], base_ids, timeout_s=300)
    # Same Redis hash (version included), current row, history and audit rows as the run
    # without the kill: the replayed writes were upserts of the same natural keys.
    assert recovered == reference, _differences(reference, recovered)
    for tid, (_, _, history, audit) in recovered.items():
        assert len(history) == len({e for e, *_ in history}), f"{tid}: a history row is duplicated"
        assert [a[0] for a in audit] == list(range(1, len(audit) + 1)), f"{tid}: audit versions skip or repeat"
