"""Simulator → Kafka → both jobs: every injected duplicate and malformed record is accounted for."""
import json
import subprocess
import sys
import time

import pytest

from fleetflow import contracts, topics

pytestmark = pytest.mark.stack


def _end_offsets(bootstrap, topic_names):
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(t, p) for t in topic_names for p in c.partitions_for_topic(t)]
        return c.end_offsets(parts)
    finally:
        c.close()


def _dead_letters_since(bootstrap, start_offsets):
    """Dead letters whose source record was published after ``start_offsets``."""
    from fleetflow.kafka_io import read_all
    out = []
    for raw in read_all(bootstrap, topics.DEAD_LETTERS.name):
        _, dl = contracts.decode(raw)
        start = start_offsets.get((dl["source_topic"], dl["source_partition"]))
        if start is not None and dl["source_offset"] >= start:
            out.append(dl)
    return out


def test_simulated_run_counts_match_history_positions_and_dead_letters(
        stack, shipment_status_job, vehicle_tracking_job, cql, tmp_path):
    seed = int(time.time()) % 100_000
    truth_path, rec_path = tmp_path / "truth.json", tmp_path / "run.jsonl"
    before = {(tp.topic, tp.partition): off
              for tp, off in _end_offsets(stack.kafka_bootstrap, [topics.SCANS.name, topics.PINGS.name]).items()}
    start_ms = int(time.time() // 60 * 60_000) - 60_000
    subprocess.run([sys.executable, "-m", "fleetflow.cli", "simulate", "--seed", str(seed), "--duration", "60",
                    "--vans", "4", "--start-ms", str(start_ms), "--dup-rate", "0.10", "--malformed-rate", "0.01",
                    "--out", str(rec_path), "--truth", str(truth_path), "--no-progress"], check=True)
    subprocess.run([sys.executable, "-m", "fleetflow.cli", "replay", str(rec_path), "--bootstrap",
                    stack.kafka_bootstrap, "--no-progress"], check=True)
    truth = json.loads(truth_path.read_text())
    counts, faults = truth["counts"], truth["counts"]["faults"]
    assert faults["duplicates"] >= 0.1 * counts["valid_unique_by_topic"]["ff.scans"] * 0.5

    session = cql()
    tracking_ids = sorted({p["tracking_id"] for p in truth["packages"]})
    vehicles = sorted(v["vehicle_id"] for v in truth["vehicles"])
    days = sorted({(truth["recording_start_ms"] // 86_400_000) + d for d in range(0, 5)})

    def observed():
        history = sum(session.execute("SELECT count(*) FROM shipment_history WHERE tracking_id = %s", (t,)).one()[0]
                      for t in tracking_ids)
        positions = sum(session.execute("SELECT count(*) FROM vehicle_positions WHERE vehicle_id = %s AND day = %s",
                                        (v, d)).one()[0] for v in vehicles for d in days)
        # Every job that reads a topic dead-letters what it cannot trust (pings are read by
        # the vehicle and the ETA jobs), so a bad record is accounted for by its origin.
        origins = {(dl["source_topic"], dl["source_partition"], dl["source_offset"])
                   for dl in _dead_letters_since(stack.kafka_bootstrap, before)}
        return history, positions, len(origins)

    expected = (counts["valid_unique_by_topic"]["ff.scans"], counts["valid_unique_by_topic"]["ff.pings"],
                faults["malformed"])
    deadline = time.monotonic() + 180
    got = observed()
    while got != expected and time.monotonic() < deadline:
        time.sleep(3)
        got = observed()
    assert got == expected, f"(history rows, position rows, dead letters) {got} != truth {expected}"
