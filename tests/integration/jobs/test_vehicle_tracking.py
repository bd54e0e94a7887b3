"""The vehicle tracking job on a MiniCluster at parallelism 2."""
import time

import pytest

from fleetflow import contracts
from tests.builders import minutes, ping

pytestmark = pytest.mark.minicluster


def test_positions_deduplicated_and_bad_pings_dead_lettered(flink_env):
    from jobs.common import Sinks
    from jobs.sources import collection_stream
    from jobs.vehicle_tracking import JobConfig, build_pipeline

    t0 = int(time.time() * 1000) - minutes(30)
    good = [ping(f"VAN{v}", 52.5 + i * 0.001, 13.4, at_ms=t0 + minutes(i), event_id=f"VAN{v}-{i}")
            for v in range(3) for i in range(5)]
    bad = [ping("VAN9", 0.0, 0.0, at_ms=t0), ping("VAN9", 95.0, 13.4, at_ms=t0), ping("", 52.5, 13.4, at_ms=t0)]
    stream = good + good[:4] + bad
    raw = [(contracts.encode("pings", r), "ff.pings", i % 2, i) for i, r in enumerate(stream)]

    env = flink_env()
    out = build_pipeline(env, collection_stream(env, raw), Sinks(), JobConfig())
    emits = list(out.emits.execute_and_collect())
    rows = sorted(e.event_id for e in emits if type(e).__name__ == "PositionRow")
    assert rows == sorted(p["event_id"] for p in good)
    latest = {}
    for e in emits:
        if type(e).__name__ == "VehiclePosition":
            latest[e.vehicle_id] = max(latest.get(e.vehicle_id, 0), e.event_time_ms)
    assert latest == {f"VAN{v}": t0 + minutes(4) for v in range(3)}

    env2 = flink_env()
    dead = list(build_pipeline(env2, collection_stream(env2, raw), Sinks(), JobConfig()).dead_letters
                .execute_and_collect())
    reasons = sorted(contracts.decode(bytes(b & 0xFF for b in d))[1]["reason"] for d in dead)
    assert reasons == ["BAD_COORDINATES", "BAD_COORDINATES", "MISSING_ID"]
