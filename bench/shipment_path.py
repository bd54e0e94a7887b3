"""Per-event cost of the shipment job's Python path, stage by stage, without Flink.

Scans and plans come from the simulator (now-relative, so validation admits them), with
every tracking id given a fresh prefix per run so the store sees new shipments. Each
record goes through what the job's operators do per element: decode + validate
(fleetflow.ingest.route_record), dedup by (carrier, event_id) with a content hash
(udfs.dedup), carrier normalisation (udfs.normalise), the lifecycle rule (udfs.lifecycle.handle), the keyed state's pickle
round trip as DecisionOperator does it, and finally ShipmentStoreWriter against the REAL
Cassandra and Redis of the running local stack.

The writer runs in three modes, on separate prefixes, in the same run:
  per-emit  one write per emit, each waiting for its own round trips (how the job
            called the writer before emits were grouped);
  grouped   one write per input with an EmitGroup of all its emits;
  batched   one write_batch per BATCH inputs' groups (how the job calls it now, through
            jobs/batching.py; BatchConfig.max_batch is the same 128).

Timers are not fired and order rollups / plan index rows are not written (neither is on
the per-scan path). Prints a markdown table: median µs per input record over --runs.

Usage:
    .venv/bin/python bench/shipment_path.py [--vans N] [--hours H] [--runs N] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import pickle
import pstats
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetflow import contracts, settings  # noqa: E402
from fleetflow.carrier_mappings import load_all  # noqa: E402
from fleetflow.ingest import route_record  # noqa: E402
from fleetflow.simulate.config import SimConfig  # noqa: E402
from fleetflow.simulate.engine import generate  # noqa: E402
from jobs.common import JobConfig  # noqa: E402
from jobs.operators import EmitGroup  # noqa: E402
from jobs.shipment_sinks import ShipmentStoreWriter  # noqa: E402
from jobs.shipment_status import AnyCarrier, scan_view  # noqa: E402
from jobs.sinks import StoreConfig  # noqa: E402
from udfs import dedup, lifecycle  # noqa: E402
from udfs.normalise import UnknownCode, carrier_key, normalise  # noqa: E402

STAGES = ("decode + validate", "dedup step", "normalise", "lifecycle step", "state pickle round trip", "store writer")
MODES = ("per-emit", "grouped", "batched")
BATCH = 128


def simulated_inputs(vans: int, hours: float) -> list[tuple[str, bytes]]:
    """(schema, Avro bytes) of the scans and plans, in produce order, ending an hour ago."""
    duration_s = hours * 3600
    start_ms = int(time.time() * 1000) - int(duration_s * 1000) - 3_600_000
    sim = generate(SimConfig(vans=vans, start_ms=start_ms, duration_s=duration_s))
    wanted = {"ff.scans": "scans", "ff.plans": "plans"}
    return [(wanted[r.topic], r.value) for r in sim.records if r.topic in wanted]


def with_prefix(inputs: list[tuple[str, bytes]], prefix: str) -> list[tuple[str, bytes]]:
    """The same records for new shipments: every tracking id (and event id) gets ``prefix``.
    Undecodable records (the simulator's malformed ones) are kept as they are."""
    out = []
    for schema, raw in inputs:
        try:
            _, record = contracts.decode(raw)
        except contracts.ContractError:
            out.append((schema, raw))
            continue
        if schema == "scans":
            if isinstance(record.get("tracking_id"), str):
                record["tracking_id"] = prefix + record["tracking_id"]
            if isinstance(record.get("event_id"), str):
                record["event_id"] = prefix + record["event_id"]
        else:
            for shipment in record.get("shipments") or ():
                for package in shipment.get("packages") or ():
                    package["tracking_id"] = prefix + package["tracking_id"]
        out.append((schema, contracts.encode(schema, record)))
    return out


class KeyedState:
    """A keyed ValueState of pickled bytes, as DecisionOperator keeps it."""

    def __init__(self):
        self.raw: dict[str, bytes] = {}

    def load(self, key):
        raw = self.raw.get(key)
        return None if raw is None else pickle.loads(raw)

    def store(self, key, state):
        if state is None:
            self.raw.pop(key, None)
        else:
            self.raw[key] = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def run_path(inputs: list[tuple[str, bytes]], writer: ShipmentStoreWriter, mode: str) -> tuple[dict, Counter]:
    """Seconds spent per stage over all inputs, and what came out."""
    spent = defaultdict(float)
    counts: Counter = Counter()
    validation = JobConfig().validation()
    # As the job admits them: scans of any carrier (the mappings decide), plans as they come.
    carriers = {"scans": AnyCarrier(), "plans": frozenset()}
    mappings = load_all()
    rule_cfg = lifecycle.DEFAULT_CONFIG
    dedup_state, shipment_state = KeyedState(), KeyedState()
    clock = time.perf_counter
    pending: list = []

    def flush():
        t = clock()
        writer.write_batch(pending)
        spent["store writer"] += clock() - t
        pending.clear()

    def lifecycle_on(event, now_ms):
        t = clock()
        st = shipment_state.load(event.tracking_id)
        t1 = clock()
        d = lifecycle.handle(st, event, now_ms, rule_cfg)
        t2 = clock()
        shipment_state.store(event.tracking_id, d.state)
        t3 = clock()
        spent["state pickle round trip"] += (t1 - t) + (t3 - t2)
        spent["lifecycle step"] += t2 - t1
        counts["emits"] += len(d.emits)
        if not d.emits:
            return
        if mode == "batched":
            pending.append(EmitGroup(d.emits))
            if len(pending) >= BATCH:
                flush()
            return
        t = clock()
        if mode == "grouped":
            writer.flat_map(EmitGroup(d.emits))
        else:
            for e in d.emits:
                writer.flat_map(e)
        spent["store writer"] += clock() - t

    for schema, raw in inputs:
        counts["inputs"] += 1
        now_ms = int(time.time() * 1000)
        t = clock()
        record, dead = route_record(raw, schema, now_ms, validation, carriers[schema], source_topic=f"ff.{schema}")
        event = scan_view(record) if dead is None and schema == "scans" else record
        spent["decode + validate"] += clock() - t
        if dead is not None:
            counts["dead letters"] += 1
            continue
        if schema == "plans":
            for p in lifecycle.plans_from_order(event):
                lifecycle_on(p, now_ms)
            continue
        t = clock()
        # The key and hash are computed at validation in the job; counted with the dedup step here.
        arrival = dedup.Arrival(dedup.dedup_key(schema, record), dedup.content_hash(schema, record), event, raw,
                                f"ff.{schema}")
        t0 = clock()
        st = dedup_state.load(arrival.key)
        t1 = clock()
        d = dedup.step(st, arrival, now_ms)
        t2 = clock()
        dedup_state.store(arrival.key, d.state)
        t3 = clock()
        spent["state pickle round trip"] += (t1 - t0) + (t3 - t2)
        spent["dedup step"] += (t2 - t1) + (t0 - t)
        if not d.emits:
            counts["duplicates"] += 1
            continue
        if isinstance(d.emits[0], dedup.Conflict):
            counts["dead letters"] += 1
            continue
        t = clock()
        ck = carrier_key(event.carrier)
        mapping = mappings.get(ck)
        out = normalise({ck: mapping} if mapping is not None else {}, event)
        spent["normalise"] += clock() - t
        if isinstance(out, UnknownCode):
            counts["unknown codes"] += 1
            continue
        lifecycle_on(out, now_ms)
    if pending:
        flush()
    return spent, counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vans", type=int, default=6)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile one extra run per mode, top 12 by tottime")
    args = ap.parse_args(argv)

    inputs = simulated_inputs(args.vans, args.hours)
    store_cfg = StoreConfig.from_settings(settings.load())
    writer = ShipmentStoreWriter(store_cfg)
    writer.open(None)
    try:
        # Warm-up: connections, prepared statements, the Redis script cache.
        run_path(with_prefix(inputs[:200], f"bw{uuid.uuid4().hex[:8]}-"), writer, "grouped")
        per_mode: dict[str, list[dict]] = {m: [] for m in MODES}
        counts = Counter()
        for r in range(args.runs):
            for mode in MODES:
                batch = with_prefix(inputs, f"b{uuid.uuid4().hex[:8]}-")
                spent, counts = run_path(batch, writer, mode)
                per_mode[mode].append({s: spent[s] / counts["inputs"] * 1e6 for s in STAGES})
        if args.profile:
            for mode in MODES:
                prof = cProfile.Profile()
                prof.runcall(run_path, with_prefix(inputs, f"bp{uuid.uuid4().hex[:8]}-"), writer, mode)
                print(f"\n## cProfile, {mode} (top 12 by tottime)\n```")
                pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(12)
                print("```")
    finally:
        writer.close()

    print(f"\n{counts['inputs']} inputs (scans + plans) from {args.vans} vans over {args.hours} h; "
          f"{counts['emits']} lifecycle emits ({counts['emits'] / counts['inputs']:.2f} per input), "
          f"{counts['duplicates']} duplicates, {counts['dead letters']} dead letters, "
          f"{counts['unknown codes']} unknown codes. Median of {args.runs} runs, µs per input record.\n")
    print("| stage | " + " | ".join(MODES) + " |")
    print("| --- | " + " | ".join("---" for _ in MODES) + " |")
    totals = {}
    for stage in STAGES:
        cells = [statistics.median(run[stage] for run in per_mode[m]) for m in MODES]
        print(f"| {stage} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    for m in MODES:
        totals[m] = statistics.median(sum(run.values()) for run in per_mode[m])
    print("| **total** | " + " | ".join(f"**{totals[m]:.1f}**" for m in MODES) + " |")
    def writer_median(m):
        return statistics.median(r["store writer"] for r in per_mode[m])
    print(f"\nstore writer per-emit / grouped: {writer_median('per-emit') / writer_median('grouped'):.2f}x, "
          f"grouped / batched: {writer_median('grouped') / writer_median('batched'):.2f}x; whole path "
          f"per-emit / grouped: {totals['per-emit'] / totals['grouped']:.2f}x, "
          f"grouped / batched: {totals['grouped'] / totals['batched']:.2f}x")


if __name__ == "__main__":
    main()
