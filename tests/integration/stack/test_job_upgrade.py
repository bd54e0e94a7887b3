"""Upgrading and rescaling the running shipment job mid-stream loses nothing and duplicates nothing.

Part of a scan stream goes in, the job is upgraded (stop-with-savepoint, resubmitted
from it) while more scans arrive, then the rest goes in. Written against the job's
observable outputs only (Cassandra ``shipment_history``, Redis ``ff:shipment:*``), so it
holds for any version of the shipment job:

* every history row is there exactly once (the primary key includes event time, so a
  re-emitted event would add a row only if it came back with another time — see below);
* each shipment's Redis state names its newest event, with that event's status;
* keyed state survived: after the upgrade every already-applied event is sent again
  with the same event_id but a later event time. Only the restored dedup/status state
  can drop those; a job that lost its state writes them as new history rows. (The
  job's committed Kafka offsets must pass the originals first, so such a job could not
  rebuild that state by re-reading them.)

The shared job is left RUNNING at its original parallelism.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from fleetflow import flinkjobs, kafka_io, topics
from tests.builders import minutes, scan

pytestmark = pytest.mark.stack

JOB = "fleetflow-shipment-status"
CODES = ["OC", "PU", "AR", "DP", "OD"]
N_SHIPMENTS = 10
WAIT_S = 180


def _stream(prefix: str, now_ms: int) -> dict[str, list[dict]]:
    """Per shipment, its scans in event-time order (now-relative: validation rejects old events)."""
    return {f"{prefix}{n:03d}": [scan(f"{prefix}{n:03d}", code, at_ms=now_ms - minutes(50) + minutes(10 * i),
                                      event_id=f"{prefix}{n:03d}-{i}")
                                 for i, code in enumerate(CODES)]
            for n in range(N_SHIPMENTS)}


def _publish(stack, events: list[dict]) -> None:
    kafka_io.publish(stack.kafka_bootstrap, topics.SCANS.name, "scans", events, "tracking_id")


def _history(session, tids) -> list[tuple[str, int, str, str]]:
    return sorted((r.tracking_id, r.event_time_ms, r.event_id, r.status) for tid in tids for r in session.execute(
        "SELECT tracking_id, event_time_ms, event_id, status FROM shipment_history WHERE tracking_id = %s", (tid,)))


def _wait_for_rows(session, tids, expected: set[tuple[str, int, str]], what: str) -> list:
    deadline = time.monotonic() + WAIT_S
    rows = _history(session, tids)
    while not expected <= {r[:3] for r in rows} and time.monotonic() < deadline:
        time.sleep(2)
        rows = _history(session, tids)
    missing = expected - {r[:3] for r in rows}
    assert not missing, f"{what}: {len(missing)} history rows missing after {WAIT_S}s, e.g. {sorted(missing)[:3]}"
    return rows


def _redis(stack):
    import redis
    return redis.Redis.from_url(stack.redis_url, decode_responses=True)


def _wait_for_final_state(stack, stream: dict[str, list[dict]]) -> dict[str, dict]:
    r = _redis(stack)
    deadline = time.monotonic() + WAIT_S
    while True:
        states = {tid: r.hgetall(f"ff:shipment:{tid}") for tid in stream}
        behind = {tid: states[tid].get("last_event_id") for tid, events in stream.items()
                  if states[tid].get("last_event_id") != events[-1]["event_id"]}
        if not behind or time.monotonic() > deadline:
            assert not behind, f"Redis state not at the newest event after {WAIT_S}s: {behind}"
            return states
        time.sleep(1)


def _wait_for_committed_offsets(stack, timeout_s: float = 90) -> None:
    """Wait until the job's Kafka group has committed ff.scans up to its current end.

    The source commits offsets when a checkpoint completes, so this follows the
    checkpoints; it can lag them by one or two.
    """
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    try:
        parts = [TopicPartition(topics.SCANS.name, p) for p in consumer.partitions_for_topic(topics.SCANS.name)]
        end = consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout_s
        while True:
            committed = admin.list_consumer_group_offsets(JOB, partitions=parts)
            # A partition that never held a record has nothing to commit (the group's offset
            # stays -1 there), so only partitions with records can be behind.
            behind = {tp.partition: (committed[tp].offset if tp in committed else None, end[tp])
                      for tp in parts if end[tp] > 0 and (tp not in committed or committed[tp].offset < end[tp])}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{JOB} has not committed ff.scans offsets (committed, end) {behind} "
                                     f"within {timeout_s:.0f}s: are its checkpoints completing?")
            time.sleep(1)
    finally:
        admin.close()
        consumer.close()


def _run_through(stack, cql, change_job) -> None:
    """Publish a stream around ``change_job()`` (which stops and resubmits the job) and check the outputs."""
    prefix = f"UPG{uuid.uuid4().hex[:8].upper()}"
    now_ms = int(time.time() * 1000)
    stream = _stream(prefix, now_ms)
    before = [e for events in stream.values() for e in events[:2]]
    during = [e for events in stream.values() for e in events[2:4]]
    after = [events[4] for events in stream.values()]
    session = cql()

    _publish(stack, before + before[:5])  # with a few plain redeliveries
    _wait_for_rows(session, stream, {(e["tracking_id"], e["event_time_ms"], e["event_id"]) for e in before},
                   "before the upgrade")
    # Commit Kafka offsets past `before`: a job that lost its state could otherwise re-read
    # `before` from older offsets, rebuild its dedup state and hide the loss.
    _wait_for_committed_offsets(stack)

    # The middle of the stream arrives while the job is being stopped and restarted: it
    # must be picked up from the savepoint's Kafka offsets, not skipped or read twice.
    def trickle():
        for i in range(4):
            _publish(stack, during[i::4])
            time.sleep(1.5)

    publisher = threading.Thread(target=trickle)
    publisher.start()
    try:
        change_job()
    finally:
        publisher.join()

    resent = [{**e, "event_time_ms": e["event_time_ms"] + minutes(1)} for e in before]
    _publish(stack, after + resent)

    everything = before + during + after
    expected = sorted((e["tracking_id"], e["event_time_ms"], e["event_id"]) for e in everything)
    _wait_for_rows(session, stream, set(expected), "after the upgrade")
    states = _wait_for_final_state(stack, stream)
    time.sleep(10)  # give any wrongly re-emitted or resent event time to land
    rows = _history(session, stream)

    assert [r[:3] for r in rows] == expected, "history rows are not exactly the events sent, once each"
    status_of = {(r[0], r[2]): r[3] for r in rows}
    for tid, events in stream.items():
        newest = events[-1]
        assert states[tid]["last_event_id"] == newest["event_id"]
        assert states[tid]["status"] == status_of[(tid, newest["event_id"])], tid


def _restore_parallelism(stack, parallelism: int) -> None:
    job = flinkjobs.running(stack, JOB)
    if job is None:
        flinkjobs.submit(stack, JOB, parallelism=parallelism)
    elif flinkjobs.job_parallelism(stack, job.job_id) != parallelism:
        flinkjobs.rescale(stack, JOB, parallelism)


def test_upgrade_mid_stream_keeps_every_event_once_and_keeps_keyed_state(stack, shipment_status_job, cql):
    job = flinkjobs.running(stack, JOB)
    assert job is not None, f"{JOB} is not running"
    parallelism = flinkjobs.job_parallelism(stack, job.job_id)
    upgraded = []
    try:
        _run_through(stack, cql, lambda: upgraded.append(flinkjobs.upgrade(stack, JOB)))
        [new] = upgraded
        assert new.job_id != job.job_id
        assert flinkjobs.job_parallelism(stack, new.job_id) == parallelism
        restored = flinkjobs._get(stack, f"/jobs/{new.job_id}/checkpoints")["latest"].get("restored") or {}
        assert restored.get("is_savepoint") is True
    finally:
        _restore_parallelism(stack, parallelism)


def test_rescale_mid_stream_keeps_every_event_once_and_keeps_keyed_state(stack, shipment_status_job, cql):
    job = flinkjobs.running(stack, JOB)
    assert job is not None, f"{JOB} is not running"
    parallelism = flinkjobs.job_parallelism(stack, job.job_id)
    target = 2 if parallelism == 1 else 1
    free = flinkjobs._get(stack, "/overview")["slots-available"]
    if target > parallelism + free:
        pytest.skip(f"the shared cluster has {free} free task slots; rescaling to {target} needs "
                    f"{target - parallelism} more")
    rescaled = []
    try:
        _run_through(stack, cql, lambda: rescaled.append(flinkjobs.rescale(stack, JOB, target)))
        [new] = rescaled
        assert flinkjobs.job_parallelism(stack, new.job_id) == target
    finally:
        _restore_parallelism(stack, parallelism)
