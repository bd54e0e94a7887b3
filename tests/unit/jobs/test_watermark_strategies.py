"""PyFlink 2.2's ``with_idleness`` returns a strategy that forgets an earlier timestamp
assigner; every record then keeps Long.MIN_VALUE and event-time timers never fire on a
cluster (a finite MiniCluster source hides it with its final watermark)."""
from __future__ import annotations

import re
from pathlib import Path

from pyflink.common import Duration, WatermarkStrategy

from jobs.validate import EventTime

JOBS = Path(__file__).resolve().parents[3] / "jobs"
ASSIGNER_THEN_IDLENESS = re.compile(r"with_timestamp_assigner\(\w[^()]*(?:\(\))?\)\s*\)?\s*\.with_idleness",
                                    re.S)


def test_with_idleness_after_the_assigner_drops_it():
    # The upstream behaviour this guards against; if PyFlink fixes it, this test says so.
    broken = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(EventTime()).with_idleness(
        Duration.of_millis(1000))
    fixed = WatermarkStrategy.for_monotonous_timestamps().with_idleness(
        Duration.of_millis(1000)).with_timestamp_assigner(EventTime())
    assert broken._timestamp_assigner is None
    assert fixed._timestamp_assigner is not None


def test_no_job_sets_idleness_after_its_timestamp_assigner():
    offenders = [p.name for p in JOBS.glob("*.py") if ASSIGNER_THEN_IDLENESS.search(p.read_text())]
    assert offenders == [], f"call with_idleness before with_timestamp_assigner in {offenders}"
