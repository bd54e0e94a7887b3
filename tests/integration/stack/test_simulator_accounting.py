"""Simulator → Kafka → both jobs: every injected duplicate and malformed record is accounted for.

The check is ``fleetflow accounting TRUTH`` (fleetflow/simulate/accounting.py), the same
command a user runs after ``fleetflow simulate --truth T``.
"""
import json
import subprocess
import sys
import time

import pytest

from fleetflow.simulate import accounting

pytestmark = pytest.mark.stack


def test_simulated_run_counts_match_history_positions_and_dead_letters(
        stack, shipment_status_job, vehicle_tracking_job, cql, tmp_path):
    seed = int(time.time()) % 100_000
    truth_path, rec_path = tmp_path / "truth.json", tmp_path / "run.jsonl"
    start_ms = int(time.time() // 60 * 60_000) - 60_000
    cli = [sys.executable, "-m", "fleetflow.cli"]
    subprocess.run(cli + ["simulate", "--seed", str(seed), "--duration", "60", "--vans", "4",
                          "--start-ms", str(start_ms), "--dup-rate", "0.10", "--malformed-rate", "0.01",
                          "--out", str(rec_path), "--truth", str(truth_path), "--no-progress"], check=True)
    subprocess.run(cli + ["replay", str(rec_path), "--truth", str(truth_path), "--bootstrap",
                          stack.kafka_bootstrap, "--no-progress"], check=True)
    truth = json.loads(truth_path.read_text())
    counts, faults = truth["counts"], truth["counts"]["faults"]
    assert faults["duplicates"] >= 0.1 * counts["valid_unique_by_topic"]["ff.scans"] * 0.5
    assert faults["malformed"] > 0, "the run injected no malformed record; raise the rate or the duration"

    checked = subprocess.run(cli + ["accounting", str(truth_path), "--wait-s", "180"], capture_output=True, text=True)
    session = cql()
    got, want = accounting.observe(session, stack.kafka_bootstrap, truth), accounting.expected(truth)
    assert checked.returncode == 0, f"{checked.stdout}\n{checked.stderr}\nstores {got} != truth {want}"
    assert got == want
    assert "DIFFERS" not in checked.stdout and "ok" in checked.stdout
