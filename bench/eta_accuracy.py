"""ETA accuracy against the simulator's true arrival times, versus the naive baseline.

Runs the fleet simulator (``fleetflow.simulate.generate``, deterministic per seed) and
replays its recording, faults included, in produce order through the same rules the
``fleetflow-eta`` job runs (no Flink): decode + validate + dedup by source identity (``udfs.dedup.dedup_key``), the
per-van speed model (``udfs.speed_model.slot_updates``), the van rule
(``udfs.eta.hold_ping`` / ``van_on_timer`` / ``van_step``, pings applied once a
60 s bounded-out-of-orderness watermark passes them) and the parcel tracker (``udfs.lanes.parcel_step``) that turns
delivery outcomes into ParcelDone for the van. Shipment states, which the shipment
job would publish, are stood in for by the scans' normalised statuses from the truth
file (late scans do not regress the status, as in the lifecycle rule).

Scoring: for every stop the simulator's truth says a van really reached (``observed``
arrivals of DELIVERED/ATTEMPT_FAIL shipments), at 60, 30 and 10 minutes before its
true ``arrival_ms``, take the latest ETA the job had emitted for a parcel of that stop
(what Redis would show then) and the naive estimate from the van's last GPS fix
(``udfs.eta.naive_eta``: straight line at constant speed). Reports MAE, bias and the
share of true arrivals inside the [earliest, latest] window. The naive estimate gets
the same calibrated window (``window_half_width_ms`` at full confidence), so the
coverage comparison isolates the point estimate.

Usage:
    .venv/bin/python bench/eta_accuracy.py --seeds 7 11 23 [--vans 20] [--hours 6]
        [--config '{"circuity": 1.3}']
"""
from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetflow.ingest import route_record  # noqa: E402
from fleetflow.simulate.config import SimConfig  # noqa: E402
from fleetflow.simulate.engine import generate  # noqa: E402
from udfs import speed_model  # noqa: E402
from udfs.dedup import dedup_key  # noqa: E402
from udfs.eta import (Assignment, EtaConfig, ParcelDone, hold_ping, naive_eta, van_on_timer,  # noqa: E402
                      van_step, window_half_width_ms)
from udfs.events import Ping  # noqa: E402
from udfs.lanes import ShipmentView, parcel_step  # noqa: E402
from udfs.validation import ValidationConfig  # noqa: E402

HORIZONS_MIN = (60, 30, 10)
MIN_MS = 60_000
SCORED_OUTCOMES = ("DELIVERED", "ATTEMPT_FAIL")


@dataclasses.dataclass
class Replay:
    """What the replay saw: emitted estimates per parcel and GPS fixes per van."""
    # tracking_id -> [(visible from, eta, earliest, latest)]; visible = when the job emits it
    estimates: dict[str, list[tuple[int, int, int, int]]]
    fixes: dict[str, list[tuple[int, float, float]]]  # vehicle_id -> [(time, lat, lon)], event-time order


def _shipment_views(truth: dict) -> dict[str, tuple[str, dict]]:
    """scan event_id -> (tracking_id, the fields of the shipment state it causes)."""
    promise = {}
    for a in truth["arrivals"]:
        for tid in a["tracking_ids"]:
            promise[tid] = a["promised_window_end_ms"]
    out = {}
    for p in truth["packages"]:
        for s in p["scans"]:
            out[s["event_id"]] = (p["tracking_id"], {
                "status": s["status"], "detail": s["detail"], "event_time_ms": s["event_time_ms"],
                "carrier": s["carrier"], "leg": s["leg"], "facility_id": s["facility_id"],
                "promised_end_ms": promise.get(p["tracking_id"]),
                "terminal": s["status"] in ("DELIVERED", "RETURN_TO_SENDER", "CANCELLED")})
    return out


def replay(sim, eta_cfg: EtaConfig, speed_cfg: speed_model.SpeedModelConfig,
           out_of_orderness_ms: int = 60_000) -> Replay:
    vcfg = ValidationConfig()
    views = _shipment_views(sim.truth)
    seen: set[tuple[str, str]] = set()
    vans: dict[str, dict] = {}
    models: dict[str, dict] = defaultdict(dict)
    parcels: dict[str, dict] = {}
    versions: dict[str, tuple[int, int]] = {}
    estimates: dict[str, list] = defaultdict(list)
    fixes: dict[str, list] = defaultdict(list)

    timers: list[tuple[int, str]] = []  # (time, vehicle_id): the job's event-time timers
    watermark_ms = -1
    # When an estimate becomes visible: the newest event time seen when it is emitted
    # (the watermark trails it by the out-of-orderness bound).
    clock = {"ms": 0}

    def apply(vehicle_id: str, d) -> None:
        vans[vehicle_id] = d.state
        if d.timer_ms is not None:
            heapq.heappush(timers, (d.timer_ms, vehicle_id))
        for u in d.emits:
            visible_ms = max(u.as_of_ms, clock["ms"])
            estimates[u.tracking_id].append((visible_ms, u.eta_ms, u.earliest_ms, u.latest_ms))

    def to_van(vehicle_id: str, event, now_ms: int) -> None:
        lookup = speed_model.make_speed_lookup(models[vehicle_id], speed_cfg)
        if isinstance(event, Ping):
            apply(vehicle_id, hold_ping(vans.get(vehicle_id), event, eta_cfg))
        else:
            apply(vehicle_id, van_step(vans.get(vehicle_id), event, now_ms, lookup, eta_cfg))

    def fire_until(t_ms: int) -> None:
        while timers and timers[0][0] <= t_ms:
            t, vehicle_id = heapq.heappop(timers)
            if vans.get(vehicle_id) is not None:
                lookup = speed_model.make_speed_lookup(models[vehicle_id], speed_cfg)
                apply(vehicle_id, van_on_timer(vans[vehicle_id], t, eta_cfg, lookup))

    def to_parcel(tracking_id: str, event) -> None:
        d = parcel_step(parcels.get(tracking_id), event, event.event_time_ms)
        parcels[tracking_id] = d.state
        for e in d.emits:
            if isinstance(e, ParcelDone):
                to_van(e.vehicle_id, e, e.event_time_ms)

    for rec in sorted(sim.records, key=lambda r: (r.produce_ms, r.seq)):
        schema = {"ff.pings": "pings", "ff.assignments": "assignments", "ff.scans": "scans"}.get(rec.topic)
        if schema is None:
            continue
        record, dead = route_record(rec.value, schema, rec.produce_ms, vcfg, frozenset(sim.truth["config"]["carriers"]),
                                    source_topic=rec.topic)
        key = None if dead is not None else (schema, dedup_key(schema, record))
        if key is None or key in seen:
            continue
        seen.add(key)
        if schema == "pings":
            ping = Ping.from_record(record)
            slots = speed_model.slot_updates(models[ping.vehicle_id], ping, speed_cfg)
            models[ping.vehicle_id].update(slots)
            if ping.source == "GPS" and (ping.accuracy_m or 0) <= eta_cfg.max_accuracy_m:
                fixes[ping.vehicle_id].append((ping.event_time_ms, ping.lat, ping.lon))
            to_van(ping.vehicle_id, ping, ping.event_time_ms)
            # Bounded out-of-orderness watermark, as the job's ingest stage sets it.
            watermark_ms = max(watermark_ms, ping.event_time_ms - out_of_orderness_ms)
            clock["ms"] = watermark_ms + out_of_orderness_ms
            fire_until(watermark_ms)
        elif schema == "assignments":
            a = Assignment.from_record(record)
            to_parcel(a.tracking_id, a)
            to_van(a.vehicle_id, a, a.event_time_ms)
        else:
            tid, fields = views[record["event_id"]]
            version, last_ms = versions.get(tid, (0, -1))
            if fields["event_time_ms"] < last_ms:
                continue  # the lifecycle rule does not regress on a late scan
            versions[tid] = (version + 1, fields["event_time_ms"])
            view = ShipmentView(tracking_id=tid, version=version + 1, status_detail=fields.pop("detail"),
                                service_level="STANDARD", **fields)
            to_parcel(tid, view)
    clock["ms"] = 0  # end of input: what is left is emitted as of its own evidence
    fire_until(max(watermark_ms, 0) + 10 * 86_400_000)  # idle timers included: shift over
    for v in fixes.values():
        v.sort()
    return Replay(dict(estimates), dict(fixes))


def _latest_before(rows: list, t_ms: int):
    best = None
    for row in rows:
        if row[0] <= t_ms and (best is None or row[0] >= best[0]):
            best = row
    return best


def score(sim, rep: Replay, eta_cfg: EtaConfig) -> dict:
    stops = {}
    for a in sim.truth["arrivals"]:
        if a["observed"] and a["outcome"] in SCORED_OUTCOMES:
            stops.setdefault((a["vehicle_id"], a["stop_id"]), (a, a["tracking_ids"][0]))
    out = {}
    for h in HORIZONS_MIN:
        ours, naive, cov_ours, cov_naive, widths, bias = [], [], 0, 0, [], []
        for (vehicle_id, _stop_id), (a, tid) in stops.items():
            t_ms = a["arrival_ms"] - h * MIN_MS
            est = _latest_before(rep.estimates.get(tid, []), t_ms)
            fix = _latest_before(rep.fixes.get(vehicle_id, []), t_ms)
            if est is None or fix is None:
                continue
            truth_ms = a["arrival_ms"]
            _, eta_ms, earliest_ms, latest_ms = est
            ours.append(abs(eta_ms - truth_ms))
            bias.append(eta_ms - truth_ms)
            cov_ours += earliest_ms <= truth_ms <= latest_ms
            widths.append(latest_ms - earliest_ms)
            n_eta = naive_eta(t_ms, fix[1], fix[2], a["stop"]["lat"], a["stop"]["lon"], eta_cfg.naive_speed_mps)
            naive.append(abs(n_eta - truth_ms))
            half = window_half_width_ms(n_eta - t_ms, 1.0, eta_cfg)
            cov_naive += n_eta - half <= truth_ms <= n_eta + half
        n = len(ours)
        out[h] = {
            "n": n,
            "mae_min": statistics.fmean(ours) / MIN_MS if n else None,
            "bias_min": statistics.fmean(bias) / MIN_MS if n else None,
            "coverage": cov_ours / n if n else None,
            "width_min": statistics.median(widths) / MIN_MS if n else None,
            "naive_mae_min": statistics.fmean(naive) / MIN_MS if n else None,
            "naive_coverage": cov_naive / n if n else None,
        }
    return out


def run_seed(seed: int, vans: int, hours: float, eta_cfg: EtaConfig, speed_cfg) -> dict:
    sim = generate(SimConfig(seed=seed, vans=vans, duration_s=hours * 3600))
    t0 = time.perf_counter()
    rep = replay(sim, eta_cfg, speed_cfg)
    result = score(sim, rep, eta_cfg)
    result["replay_s"] = time.perf_counter() - t0
    result["records"] = len(sim.records)
    return result


def markdown(results: dict[int, dict]) -> str:
    lines = ["| seed | horizon | samples | MAE (min) | naive MAE (min) | MAE vs naive | bias (min) | "
             "coverage | naive coverage | median window (min) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seed, res in results.items():
        for h in HORIZONS_MIN:
            r = res[h]
            if not r["n"]:
                continue
            gain = 1 - r["mae_min"] / r["naive_mae_min"]
            lines.append(f"| {seed} | {h} min | {r['n']} | {r['mae_min']:.1f} | {r['naive_mae_min']:.1f} | "
                         f"-{gain:.0%} | {r['bias_min']:+.1f} | {r['coverage']:.0%} | {r['naive_coverage']:.0%} | "
                         f"{r['width_min']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23])
    p.add_argument("--vans", type=int, default=20)
    p.add_argument("--hours", type=float, default=6.0, help="simulated duration; routes take 3-4.5 h")
    p.add_argument("--config", default="{}", help="JSON overrides for udfs.eta.EtaConfig")
    p.add_argument("--json", action="store_true", help="print raw results as JSON too")
    args = p.parse_args(argv)
    eta_cfg = dataclasses.replace(EtaConfig(), **json.loads(args.config))
    speed_cfg = speed_model.SpeedModelConfig()
    results = {}
    for seed in args.seeds:
        results[seed] = run_seed(seed, args.vans, args.hours, eta_cfg, speed_cfg)
        print(f"seed {seed}: {results[seed]['records']} records replayed in {results[seed]['replay_s']:.1f} s",
              file=sys.stderr)
    print(markdown(results))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
