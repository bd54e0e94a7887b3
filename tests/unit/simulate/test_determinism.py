import time

from fleetflow.simulate import generate, simulate
from tests.unit.simulate.helpers import sim_config


def _files(tmp_path, name, **overrides):
    cfg = sim_config(out_path=str(tmp_path / f"{name}.jsonl"), truth_path=str(tmp_path / f"{name}.json"), **overrides)
    simulate(cfg)
    return (tmp_path / f"{name}.jsonl").read_bytes(), (tmp_path / f"{name}.json").read_bytes()


def test_same_seed_writes_byte_identical_recording_and_truth(tmp_path):
    assert _files(tmp_path, "a") == _files(tmp_path, "b")


def test_different_seed_writes_a_different_recording(tmp_path):
    rec_a, truth_a = _files(tmp_path, "a", seed=7)
    rec_b, truth_b = _files(tmp_path, "b", seed=8)
    assert rec_a != rec_b
    assert truth_a != truth_b


def test_a_van_drives_the_same_route_whatever_the_fleet_size():
    small = generate(sim_config(vans=2)).truth["arrivals"]
    large = generate(sim_config(vans=5)).truth["arrivals"]
    first_van = [(a["stop_id"], a["arrival_ms"]) for a in small if a["vehicle_id"] == "VAN-W-001"]
    assert first_van
    assert first_van == [(a["stop_id"], a["arrival_ms"]) for a in large if a["vehicle_id"] == "VAN-W-001"]


def test_longer_duration_extends_the_same_timeline():
    short = generate(sim_config(duration_s=900)).truth
    long = generate(sim_config(duration_s=1800)).truth
    assert short["arrivals"] == [{**a, "observed": a["arrival_ms"] <= short["end_ms"]} for a in long["arrivals"]]


def test_fifty_vans_for_a_simulated_minute_take_well_under_ten_cpu_seconds():
    started = time.process_time()
    sim = generate(sim_config(vans=50, duration_s=60, stops_per_van=30))
    assert time.process_time() - started < 5.0
    assert sim.summary.records_by_topic["ff.pings"] > 0
