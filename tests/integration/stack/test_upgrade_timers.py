"""An event-time timer that is pending when the shipment job is upgraded fires after the upgrade, once, on time.

``fleetflow jobs upgrade`` stops the job with a savepoint without draining, so pending
event-time timers stay in the savepoint instead of firing, and resubmits from it. This
test parks SHIPMENT_STUCK timers across an upgrade of the running
``fleetflow-shipment-status`` job without touching its config or stuck limits:

* fresh shipments, one keyed onto each ``ff.scans`` partition, get one IN_TRANSIT scan
  each at ``T = target_ms - limit``, so their STUCK timers (``stuck_since_ms + limit``,
  udfs/lifecycle.py) are due at ``target_ms``, a little ahead of the wall clock and of
  the job's current watermark. Before the upgrade there is no candidate for them;
* the job is upgraded. Watermarks are not part of a savepoint, so the new job starts
  from no watermark at all, and there is still no candidate;
* "clock" scans for other fresh shipments, one on every ``ff.scans`` partition (idle
  inputs are ignored after 30 s, but this does not rely on it), carry an event time of
  ``target_ms`` + the 60 s out-of-orderness + 30 s, sent no more than 4 min ahead of the
  wall clock (validation dead-letters scans over 5 min ahead). The watermark follows
  them past ``target_ms``;
* exactly one SHIPMENT_STUCK candidate per shipment reaches ``ff.alert-candidates``,
  with the alert id and timer time the restored state implies, raised only after the
  clock scans were sent. The shipments' Redis state is unchanged.

A job that lost its keyed state or timers (submitted fresh instead of from the
savepoint) raises no alert: its committed Kafka offsets are past the shipments' scans.

Side effect on the shared stack: the job's watermark ends up at ``target_ms`` + 30 s, up
to 2 min ahead of the wall clock (more if it started ahead), so timers due in the next
minutes of event time fire that much early. Event times are validated against the wall
clock, so this cannot accumulate beyond the 5 min tolerance.

The shared job is left RUNNING at its original parallelism.
"""
from __future__ import annotations

import time
import uuid

import pytest

from fleetflow import flinkjobs, topics
from jobs.common import JobConfig
from tests.builders import scan
from tests.integration.stack.test_job_upgrade import (JOB, _publish, _redis, _restore_parallelism,
                                                      _wait_for_committed_offsets, _wait_for_final_state)
from tests.integration.stack.test_vehicle_alerts import _end_offsets, _partition, _read_since
from udfs.lifecycle import SERVICE_STANDARD, SHIPMENT_STUCK, LifecycleConfig
from udfs.taxonomy import Status

pytestmark = pytest.mark.stack

# FedEx "PU" (Picked up) maps to IN_TRANSIT in fleetflow/carriers/fedex.yaml.
CARRIER, IN_TRANSIT_CODE = "FEDEX", "PU"
# The timers are due this far past both the wall clock and the job's watermark when the
# test starts: nothing passes them before the upgrade, even with the REST watermark 10 s stale.
LEAD_MS = 90_000
# The clock scans' event time past the timers, on top of the watermark's out-of-orderness.
CLOCK_PAST_TARGET_MS = 30_000
# The clock scans are sent at most the future tolerance (5 min) less this ahead of the wall
# clock, so they still pass validation when the job is slow to read them.
CLOCK_SLACK_MS = 60_000
# Longest the clock scans may have to wait for the wall clock before the test gives up.
MAX_CLOCK_WAIT_MS = 5 * 60_000
WAIT_S = 180
# Long enough to take in a checkpoint (10 s) after the alert, and any repeat of it.
SETTLE_S = 15


def _job_config(stack) -> JobConfig:
    """The config the running job was submitted with (the fixture submits the defaults)."""
    return JobConfig(**(flinkjobs.last_submission(stack, JOB).get("config") or {}))


def _lifecycle_watermark_ms(stack, job_id: str) -> int | None:
    """The shipment lifecycle operator's input watermark (lowest subtask) from Flink's REST API.

    None until the JobManager has fetched the new job's metrics (every 10 s). The value
    may lag the operator by that much; the margins below allow for it.
    """
    vertices = flinkjobs._get(stack, f"/jobs/{job_id}")["vertices"]
    [vertex] = [v for v in vertices if v["name"].startswith("shipment lifecycle")]
    marks = flinkjobs._get(stack, f"/jobs/{job_id}/vertices/{vertex['id']}/watermarks")
    values = [int(m["value"]) for m in marks if m["id"].endswith(".currentInputWatermark")]
    return min(values) if len(values) == vertex["parallelism"] else None


def _wait_for_watermark(stack, job_id: str) -> int:
    deadline = time.monotonic() + 60
    while (wm := _lifecycle_watermark_ms(stack, job_id)) is None:
        assert time.monotonic() < deadline, f"no watermark metric for {job_id}'s lifecycle operator after 60s"
        time.sleep(2)
    return wm


def _stuck_candidates(stack, start_offsets, tracking_ids) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {tid: [] for tid in tracking_ids}
    for c in _read_since(stack.kafka_bootstrap, start_offsets, topics.ALERT_CANDIDATES.name):
        if c["type"] == SHIPMENT_STUCK and c["entity_id"] in found:
            found[c["entity_id"]].append(c)
    return found


def _scan_per_partition(prefix: str, at_ms: int, partitions: int) -> list[dict]:
    """One IN_TRANSIT scan at ``at_ms`` per ``ff.scans`` partition, each for a fresh shipment keyed onto it.

    Every partition gets a record, so the job commits an offset for each (an empty
    partition never gets one, and _wait_for_committed_offsets would wait for it).
    """
    by_partition: dict[int, str] = {}
    n = 0
    while len(by_partition) < partitions:
        tid = f"{prefix}{n:03d}"
        by_partition.setdefault(_partition(tid, partitions), tid)
        n += 1
    return [scan(tid, IN_TRANSIT_CODE, at_ms=at_ms, carrier=CARRIER, event_id=f"{tid}-0")
            for _, tid in sorted(by_partition.items())]


def test_stuck_timer_pending_at_upgrade_fires_after_it_once_and_on_time(stack, shipment_status_job):
    job = flinkjobs.running(stack, JOB)
    assert job is not None, f"{JOB} is not running"
    parallelism = flinkjobs.job_parallelism(stack, job.job_id)
    cfg = _job_config(stack)
    limit_ms = LifecycleConfig.from_mapping(cfg.rules.get("lifecycle", {})).stuck_limit_ms(
        Status.IN_TRANSIT, SERVICE_STANDARD)
    assert limit_ms, "IN_TRANSIT has no stuck limit in the job's config"

    # Earlier tests in the session (or an earlier run of this one) may have left the job's
    # watermark ahead of the wall clock: by up to 4 min, as validation admits event times
    # up to 5 min ahead and the watermark trails the newest by 60 s. A timer at or below
    # the watermark would fire at once, before the upgrade, so the target goes LEAD_MS past
    # whichever is later. The clock scans are then held back, if need be, until their
    # event time is inside the future tolerance (at most ~3 min; more means the watermark
    # is somewhere validation cannot have put it, and the test skips).
    now_ms = int(time.time() * 1000)
    watermark_ms = _wait_for_watermark(stack, job.job_id)
    target_ms = max(now_ms, watermark_ms) + LEAD_MS
    clock_ms = target_ms + cfg.out_of_orderness_ms + CLOCK_PAST_TARGET_MS
    clock_send_at_ms = clock_ms - (cfg.future_tolerance_ms - CLOCK_SLACK_MS)
    if clock_send_at_ms - now_ms > MAX_CLOCK_WAIT_MS:
        pytest.skip(f"{JOB}'s watermark is {(watermark_ms - now_ms) / 1000:.0f}s ahead of the wall clock; "
                    f"scans that pass it would be dead-lettered for another "
                    f"{(clock_send_at_ms - now_ms) / 1000:.0f}s")

    prefix = f"UPT{uuid.uuid4().hex[:8].upper()}"
    stuck_since_ms = target_ms - limit_ms
    scan_partitions = len(_end_offsets(stack.kafka_bootstrap, [topics.SCANS.name]))
    stuck = _scan_per_partition(f"{prefix}S", stuck_since_ms, scan_partitions)
    tids = [s["tracking_id"] for s in stuck]
    start = _end_offsets(stack.kafka_bootstrap, [topics.ALERT_CANDIDATES.name])
    nothing_yet = {tid: [] for tid in tids}

    try:
        _publish(stack, stuck)
        states_before = _wait_for_final_state(stack, {s["tracking_id"]: [s] for s in stuck})
        for tid, state in states_before.items():
            assert state["status"] == Status.IN_TRANSIT.value, tid
            assert int(state["status_since_ms"]) == stuck_since_ms, tid
        # The scans' offsets must be committed: a job that lost its state would otherwise
        # re-read them from older offsets, re-register the timers and hide the loss.
        _wait_for_committed_offsets(stack)

        watermark_ms = _wait_for_watermark(stack, job.job_id)
        assert watermark_ms < target_ms, f"watermark {watermark_ms} already passed the timers at {target_ms}"
        assert _stuck_candidates(stack, start, tids) == nothing_yet, "SHIPMENT_STUCK raised before it was due"

        upgraded = flinkjobs.upgrade(stack, JOB)

        # The restored job has no watermark yet (watermarks are not in savepoints) and
        # nothing has been sent since, so the timers must still be pending.
        assert _wait_for_watermark(stack, upgraded.job_id) < target_ms
        assert _stuck_candidates(stack, start, tids) == nothing_yet, "SHIPMENT_STUCK raised by the upgrade itself"

        time.sleep(max(0, clock_send_at_ms - time.time() * 1000) / 1000)
        clock_sent_ms = int(time.time() * 1000)
        _publish(stack, _scan_per_partition(f"{prefix}C", clock_ms, scan_partitions))

        deadline = time.monotonic() + WAIT_S
        while not all((alerts := _stuck_candidates(stack, start, tids)).values()):
            missing = sorted(tid for tid, found in alerts.items() if not found)
            assert time.monotonic() < deadline, (
                f"no SHIPMENT_STUCK candidate for {missing} {WAIT_S}s after the watermark was sent past their "
                f"timers at {target_ms}: the timers did not survive the upgrade")
            time.sleep(2)
        time.sleep(SETTLE_S)
        alerts = _stuck_candidates(stack, start, tids)

        for tid in tids:
            assert len(alerts[tid]) == 1, f"expected one SHIPMENT_STUCK candidate for {tid}, got {alerts[tid]}"
            [alert] = alerts[tid]
            assert alert["alert_id"] == f"{SHIPMENT_STUCK}:{tid}:{stuck_since_ms}"
            assert alert["state"] == "OPEN"
            assert alert["event_time_ms"] == target_ms
            assert alert["details"]["since_ms"] == str(stuck_since_ms)
            assert alert["details"]["limit_ms"] == str(limit_ms)
            assert alert["details"]["status"] == Status.IN_TRANSIT.value
            # Raised by the new job once the clock scans moved its watermark, not on restore.
            assert alert["detected_time_ms"] >= clock_sent_ms

            assert _redis(stack).hgetall(f"ff:shipment:{tid}") == states_before[tid]
        assert upgraded.job_id != job.job_id
        assert flinkjobs.job_parallelism(stack, upgraded.job_id) == parallelism
        restored = flinkjobs._get(stack, f"/jobs/{upgraded.job_id}/checkpoints")["latest"].get("restored") or {}
        assert restored.get("is_savepoint") is True
    finally:
        _restore_parallelism(stack, parallelism)
