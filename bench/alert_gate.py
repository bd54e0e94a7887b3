"""Per-alert cost of the alerts job's keyed rules, as the operator runs them.

Each step does what AlertGate / the ack operator does per record: unpickle the key's
state, call the rule, pickle the new state. Alerts come from a fixed-seed fleet of
flapping vans (a stall condition opening, updating and resolving every few minutes,
each candidate sent twice as the two silence paths would), so most of them are dropped
by dedup or throttle, and every entity's state carries a realistic day of ids.

Prints a markdown table. Usage:
    .venv/bin/python bench/alert_gate.py [--entities N] [--alerts N] [--runs N]
"""
from __future__ import annotations

import argparse
import pickle
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetflow.alert_routing import load  # noqa: E402
from udfs.alerts import (  # noqa: E402
    OPEN, RESOLVED, UPDATED, Alert, AlertAck, GateConfig, ack_step, alert_id, gate_and_route, gate_verdict)

T0_MS = 1_772_438_400_000


def flapping_alerts(entities: int, n: int, seed: int = 7) -> list[Alert]:
    rng = random.Random(seed)
    clock = {e: T0_MS for e in range(entities)}
    out: list[Alert] = []
    while len(out) < n:
        e = rng.randrange(entities)
        start = clock[e] = clock[e] + rng.randint(60_000, 600_000)
        aid = alert_id("VEHICLE_STALLED", "VEHICLE", f"VAN{e:05d}", start)
        for state, at in ((OPEN, start), (UPDATED, start + 120_000), (RESOLVED, start + 240_000)):
            a = Alert(aid, "VEHICLE_STALLED", "WARNING", "VEHICLE", f"VAN{e:05d}", at, at, {"lat": "52.5"}, state=state)
            out += [a, a]
    return out[:n]


def run_gate(alerts: list[Alert], cfg: GateConfig, routing) -> tuple[float, dict[str, int], int]:
    states: dict[str, bytes] = {}
    verdicts: dict[str, int] = {}
    t = time.perf_counter()
    for a in alerts:
        raw = states.get(a.entity_key)
        before = None if raw is None else pickle.loads(raw)
        d = gate_and_route(before, a, a.event_time_ms, cfg, routing.rules, routing.default)
        v = gate_verdict(before, d)
        verdicts[v] = verdicts.get(v, 0) + 1
        states[a.entity_key] = pickle.dumps(d.state, protocol=pickle.HIGHEST_PROTOCOL)
    elapsed = time.perf_counter() - t
    return elapsed, verdicts, max(len(s) for s in states.values())


def run_acks(n: int) -> float:
    states: dict[str, bytes] = {}
    acks = [AlertAck(f"k{i}", f"A{i % 1000}", "ACK" if i % 3 else "ASSIGN", "key-1", T0_MS + i, "ana") for i in range(n)]
    t = time.perf_counter()
    for a in acks:
        raw = states.get(a.alert_id)
        d = ack_step(None if raw is None else pickle.loads(raw), a, a.event_time_ms)
        states[a.alert_id] = pickle.dumps(d.state, protocol=pickle.HIGHEST_PROTOCOL)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--entities", type=int, default=1000)
    p.add_argument("--alerts", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    alerts = flapping_alerts(args.entities, args.alerts)
    routing = load()
    gate_us, ack_us = [], []
    for _ in range(args.runs):
        elapsed, verdicts, max_state = run_gate(alerts, GateConfig(), routing)
        gate_us.append(elapsed / len(alerts) * 1e6)
        ack_us.append(run_acks(50_000) / 50_000 * 1e6)
    print(f"{len(alerts):,} alerts over {args.entities:,} vans; verdicts {verdicts}; "
          f"largest pickled gate state {max_state:,} B\n")
    print("| rule | median µs/record | min µs/record |")
    print("| --- | --- | --- |")
    print(f"| gate_and_route (+ state pickle round trip) | {statistics.median(gate_us):.1f} | {min(gate_us):.1f} |")
    print(f"| ack_step (+ state pickle round trip) | {statistics.median(ack_us):.1f} | {min(ack_us):.1f} |")


if __name__ == "__main__":
    main()
