"""The shipment status job on a MiniCluster at parallelism 2 with its real watermark strategy."""
import random
import time

import pytest

from fleetflow import contracts
from tests.builders import minutes, scan

pytestmark = pytest.mark.minicluster


def _raw(records):
    return [(contracts.encode("scans", r), "ff.scans", i % 2, i) for i, r in enumerate(records)]


def _java_bytes(value) -> bytes:
    # Collected byte[] arrive as signed Java bytes.
    return value if isinstance(value, bytes) else bytes(b & 0xFF for b in value)


def _run(flink_env, raw):
    from jobs.common import JobConfig, Sinks
    from jobs.shipment_status import build_pipeline
    from jobs.sources import collection_stream

    env = flink_env()
    out = build_pipeline(env, collection_stream(env, raw), Sinks(), JobConfig())
    emits = list(out.emits.execute_and_collect())
    env2 = flink_env()
    dead = list(build_pipeline(env2, collection_stream(env2, raw), Sinks(), JobConfig()).dead_letters.execute_and_collect())
    return emits, dead


def test_latest_status_per_shipment_with_duplicates_and_garbage(flink_env):
    # Validation rejects events older than retention, so the scenario is anchored on now.
    T0_MS = int(time.time() * 1000) - minutes(120)
    events = []
    for n in range(6):
        tid = f"TRK{n:04d}"
        events += [scan(tid, "PU", at_ms=T0_MS + minutes(1), event_id=f"{tid}-1"),
                   scan(tid, "AR", at_ms=T0_MS + minutes(30), event_id=f"{tid}-2"),
                   scan(tid, "OD", at_ms=T0_MS + minutes(90), event_id=f"{tid}-3")]
    duplicates = events[::4]
    shuffled = events + duplicates
    random.Random(3).shuffle(shuffled)
    invalid = [scan("TRK9999", "PU", at_ms=T0_MS, carrier="NOPE"), scan("", "PU", at_ms=T0_MS),
               scan("TRK9998", "PU", at_ms=T0_MS + minutes(60 * 24))]
    raw = _raw(shuffled + invalid) + [(b"\x00garbage", "ff.scans", 0, 999),
                                      (b"\xc3\x01" + b"\x11" * 8 + b"x", "ff.scans", 1, 1000)]

    emits, dead = _run(flink_env, raw)

    history = sorted((e.tracking_id, e.event_id) for e in emits if type(e).__name__ == "HistoryRow")
    assert history == sorted((e["tracking_id"], e["event_id"]) for e in events), "one history row per unique event"
    latest = {}
    for e in emits:
        if type(e).__name__ == "CurrentState":
            prev = latest.get(e.tracking_id)
            if prev is None or e.last_event_time_ms >= prev.last_event_time_ms:
                latest[e.tracking_id] = e
    assert {k: v.status for k, v in latest.items()} == {f"TRK{n:04d}": "OD" for n in range(6)}
    reasons = sorted(contracts.decode(_java_bytes(d))[1]["reason"] for d in dead)
    assert reasons == ["FUTURE_EVENT", "MISSING_ID", "UNDECODABLE", "UNKNOWN_CARRIER", "UNKNOWN_FINGERPRINT"]
    origins = sorted((contracts.decode(_java_bytes(d))[1]["source_offset"]) for d in dead)
    assert 999 in origins and 1000 in origins, "dead letters keep their source offsets"
