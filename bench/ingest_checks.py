"""Per-record cost of the ingest stage's checks on simulated scans and pings, without Flink.

Each valid record is timed through what every job's ingest stage now does per element:
``fleetflow.ingest.route_record`` (decode, the shared id checks, the topic's admission
rules), then the dedup stage's ``udfs.dedup.dedup_key`` and ``content_hash``. For
comparison, the same run also times the admission rules as they were composed before the
id checks were split out of them: ``validate_scan``/``validate_ping`` after
``topic_id_problem``, so every id was checked twice.

Usage:
    .venv/bin/python bench/ingest_checks.py [--vans N] [--hours H] [--runs N]

Prints a markdown table of median µs per record over --runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetflow import contracts  # noqa: E402
from fleetflow.carrier_mappings import load_all  # noqa: E402
from fleetflow.ingest import route_record, validate_record  # noqa: E402
from fleetflow.simulate.config import SimConfig  # noqa: E402
from fleetflow.simulate.engine import generate  # noqa: E402
from udfs import dedup  # noqa: E402
from udfs.validation import DEFAULT_CONFIG, topic_id_problem, validate_ping, validate_scan  # noqa: E402

SCHEMAS = {"ff.scans": "scans", "ff.pings": "pings"}


def valid_inputs(vans: int, hours: float, now_ms: int, carriers: frozenset[str]) -> dict[str, list]:
    """(raw bytes, decoded record) of the valid scans and pings of a simulated run ending an hour ago."""
    duration_s = hours * 3600
    sim = generate(SimConfig(vans=vans, start_ms=now_ms - int(duration_s * 1000) - 3_600_000, duration_s=duration_s))
    out: dict[str, list] = {s: [] for s in SCHEMAS.values()}
    for r in sim.records:
        schema = SCHEMAS.get(r.topic)
        if schema is None:
            continue
        record, dead = route_record(r.value, schema, now_ms, DEFAULT_CONFIG, carriers)
        if dead is None:
            out[schema].append((r.value, record))
    return out


def _us_per_record(fn, items) -> float:
    t0 = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - t0) / len(items) * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vans", type=int, default=10)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)

    now_ms = int(time.time() * 1000)
    carriers = frozenset(load_all())
    inputs = valid_inputs(args.vans, args.hours, now_ms, carriers)
    twice = {"scans": lambda rec: topic_id_problem("scans", rec) or validate_scan(rec, now_ms, DEFAULT_CONFIG, carriers),
             "pings": lambda rec: topic_id_problem("pings", rec) or validate_ping(rec, now_ms, DEFAULT_CONFIG)}
    rows: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for schema, items in inputs.items():
            raws = [raw for raw, _ in items]
            records = [rec for _, rec in items]
            measured = {
                "decode only": _us_per_record(contracts.decode, raws),
                "route_record (decode + checks)": _us_per_record(
                    lambda raw: route_record(raw, schema, now_ms, DEFAULT_CONFIG, carriers), raws),
                "checks, ids once (now)": _us_per_record(
                    lambda rec: validate_record(schema, rec, now_ms, DEFAULT_CONFIG, carriers), records),
            }
            measured["checks, ids twice (before)"] = _us_per_record(twice[schema], records)
            measured["dedup_key + content_hash"] = _us_per_record(
                lambda rec: (dedup.dedup_key(schema, rec), dedup.content_hash(schema, rec)), records)
            for stage, us in measured.items():
                rows.setdefault((schema, stage), []).append(us)

    print(f"Command: `.venv/bin/python bench/ingest_checks.py --vans {args.vans} --hours {args.hours} "
          f"--runs {args.runs}` ({', '.join(f'{len(v)} {k}' for k, v in inputs.items())}; median of {args.runs} runs)\n")
    print("| topic | stage | median µs per record |")
    print("| --- | --- | --- |")
    for (schema, stage), values in rows.items():
        print(f"| {schema} | {stage} | {statistics.median(values):.2f} |")
    for schema in inputs:
        once = statistics.median(rows[(schema, "checks, ids once (now)")])
        twice_us = statistics.median(rows[(schema, "checks, ids twice (before)")])
        print(f"\n{schema}: checks before / now = {twice_us / once:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
