"""Deterministic delivery-fleet simulator: vans, packages, carrier scans, faults and ground truth.

``simulate(cfg)`` generates one run and writes it to the outputs ``cfg`` names;
``generate(cfg)`` returns it in memory. The CLI mounts ``add_simulate_args`` /
``run_simulate`` and ``add_replay_args`` / ``run_replay``.
"""
from fleetflow.simulate.cli import add_replay_args, add_simulate_args, run_replay, run_simulate
from fleetflow.simulate.config import SimConfig
from fleetflow.simulate.engine import Simulation, Summary, generate, simulate

__all__ = ["SimConfig", "Simulation", "Summary", "generate", "simulate", "add_simulate_args", "add_replay_args",
           "run_simulate", "run_replay"]
