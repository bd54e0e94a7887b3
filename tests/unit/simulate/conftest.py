"""Module-scoped run shared by the simulator tests; factories live in helpers.py."""
from __future__ import annotations

import pytest

from fleetflow.simulate import simulate
from fleetflow.simulate.sinks import read_truth
from tests.unit.simulate.helpers import Run, read_stream, sim_config


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Run:
    d = tmp_path_factory.mktemp("sim")
    cfg = sim_config(out_path=str(d / "rec.jsonl"), truth_path=str(d / "truth.json"))
    summary = simulate(cfg)
    truth = read_truth(cfg.truth_path)
    return Run(cfg, summary, truth, read_stream(cfg.out_path, truth), d / "rec.jsonl")

