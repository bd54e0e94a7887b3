"""Geofence ENTER/EXIT and stall accuracy of the vehicle rules against the simulator's truth.

Runs the fleet simulator (``fleetflow.simulate.generate``, deterministic per seed) and
replays its recording, faults included, in produce order through the same per-vehicle
rule the ``fleetflow-vehicle-tracking`` job runs (no Flink): decode + validate + dedup
by event_id (``fleetflow.ingest.route_record``), geofence records into one
``GeofenceIndex`` (the broadcast side), and per van ``udfs.vehicle_state`` on_ping /
on_assignment / on_timer through ``tests.drivers.VehicleRun``, the driver the unit
tests use. Event-time timers fire when a bounded-out-of-orderness watermark (the
job's 60 s default, from the newest ping seen) passes them.

Scoring (the functions below are unit-tested in tests/unit/bench/):

* Fences: the truth's ``fence_visits`` (each van's noise-free path inside each fence,
  simulate/visits.py) against the visits the job reports (ENTER, then the next EXIT of
  the same van and fence). A reported visit matches the first unmatched true visit of
  that van and fence whose interval, widened by ``--tolerance-s`` (60 s), overlaps it.
  Precision = matched reported visits / reported visits; unmatched reported visits are
  false ENTERs. Recall is given over every true visit and over *stays* (true visits of
  60 s or more, or still open at the end): a van that cuts through a 60 m stop circle
  in a few seconds between two 10-30 s pings is, by design, not a visit unless the
  pings are sparse (fence_membership's min_pings / sparse-segment rules).
  A flapping pair is an EXIT followed by an ENTER of the same van and fence within
  2 minutes (interpolated events included).
* Stalls: every injected stall (truth ``stalls``) should give exactly one
  VEHICLE_STALLED alert whose condition start lies in [start - 2 min, end]. Alerts
  matching a driver break (truth ``breaks``: a 15-30 min halt on the road, which no
  GPS rule can tell from a breakdown) are counted apart and left out of precision.
  The remaining unmatched alerts are false stalls; those within 150 m of one of the
  van's own stops are reported as false stalls at customer stops.

Usage:
    .venv/bin/python bench/geofence_accuracy.py --seeds 42 43 [--vans 20] [--hours 6]
        [--scenarios default edge-jitter sparse late-ooo] [--stall-rate 1.0]
        [--out bench/results/geofence_accuracy]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetflow.ingest import route_record  # noqa: E402
from fleetflow.simulate.config import SimConfig  # noqa: E402
from fleetflow.simulate.engine import generate  # noqa: E402
from tests.drivers import VehicleRun  # noqa: E402
from udfs import vehicle_state as vs  # noqa: E402
from udfs.events import Ping  # noqa: E402
from udfs.fence_membership import ENTER, EXIT, GeofenceEvent  # noqa: E402
from udfs.geofence import GeofenceIndex, distance_m  # noqa: E402
from udfs.validation import ValidationConfig  # noqa: E402

MIN_MS = 60_000
FLAP_WINDOW_MS = 2 * MIN_MS
STAY_MIN_MS = 60_000
STALL_EARLY_MS = 2 * MIN_MS
STOP_RADIUS_M = 150.0
OUT_OF_ORDERNESS_MS = 60_000

# Scenario -> SimConfig overrides. Every scenario also gets --stall-rate.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    # Every customer stop parked 0.5-8 m inside the edge of its fence: GPS noise crosses it.
    "edge-jitter": {"edge_park_rate": 1.0},
    # Power-save trackers (a ping every 60-120 s) that go dark at 20% of pings for 1-5 min.
    "sparse": {"dropout_rate": 0.2, "ping_interval_min_s": 60.0, "ping_interval_max_s": 120.0},
    # Buffered uploads: 20% of pings produced after the van's next ping, 5% 5-30 min late.
    "late-ooo": {"out_of_order_rate": 0.2, "late_rate": 0.05},
}


# --------------------------------------------------------------------------- scoring (pure)

def ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def reported_visits(events: Iterable[GeofenceEvent]) -> list[dict]:
    """ENTER + following EXIT per (van, fence), in emission order; exit_ms None if still open."""
    open_: dict[tuple[str, str], dict] = {}
    out = []
    for e in events:
        key = (e.vehicle_id, e.geofence_id)
        if e.event_type == ENTER:
            v = {"vehicle_id": e.vehicle_id, "geofence_id": e.geofence_id, "kind": e.kind,
                 "enter_ms": e.event_time_ms, "exit_ms": None, "interpolated": e.interpolated}
            open_[key] = v
            out.append(v)
        elif e.event_type == EXIT and key in open_:
            open_.pop(key)["exit_ms"] = e.event_time_ms
    return out


def match_visits(reported: list[dict], truth: list[dict], tolerance_ms: int) -> list[tuple[int, int | None]]:
    """For each reported visit (by index), the index of the true visit it matches, or None.

    Same van and fence; the reported interval overlaps the true one widened by
    ``tolerance_ms`` on both sides (open ends run to infinity); one-to-one, each reported
    visit (in ENTER order) takes the earliest unmatched true visit it overlaps."""
    inf = float("inf")
    by_pair: dict[tuple[str, str], list[int]] = defaultdict(list)
    for j, t in enumerate(truth):
        by_pair[(t["vehicle_id"], t["geofence_id"])].append(j)
    for js in by_pair.values():
        js.sort(key=lambda j: truth[j]["enter_ms"])
    used: set[int] = set()
    out = []
    for i in sorted(range(len(reported)), key=lambda i: reported[i]["enter_ms"]):
        r = reported[i]
        r_out = inf if r["exit_ms"] is None else r["exit_ms"]
        hit = None
        for j in by_pair.get((r["vehicle_id"], r["geofence_id"]), ()):
            t = truth[j]
            t_out = inf if t["exit_ms"] is None else t["exit_ms"]
            if j not in used and r["enter_ms"] <= t_out + tolerance_ms and r_out >= t["enter_ms"] - tolerance_ms:
                hit = j
                break
        if hit is not None:
            used.add(hit)
        out.append((i, hit))
    return sorted(out)


def flapping_pairs(events: Iterable[GeofenceEvent], window_ms: int = FLAP_WINDOW_MS) -> int:
    """EXIT followed by an ENTER of the same van and fence less than ``window_ms`` later."""
    last_exit: dict[tuple[str, str], int] = {}
    flaps = 0
    for e in events:
        key = (e.vehicle_id, e.geofence_id)
        if e.event_type == EXIT:
            last_exit[key] = e.event_time_ms
        elif e.event_type == ENTER and key in last_exit and e.event_time_ms - last_exit.pop(key) < window_ms:
            flaps += 1
    return flaps


def is_stay(visit: dict, min_ms: int = STAY_MIN_MS) -> bool:
    return visit["exit_ms"] is None or visit["exit_ms"] - visit["enter_ms"] >= min_ms


def score_fences(events: list[GeofenceEvent], truth_visits: list[dict], tolerance_ms: int) -> dict:
    reported = reported_visits(events)
    matches = match_visits(reported, truth_visits, tolerance_ms)
    matched_truth = {j for _, j in matches if j is not None}
    stays = [j for j, t in enumerate(truth_visits) if is_stay(t)]
    false = [reported[i] for i, j in matches if j is None]
    enter_err = [abs(reported[i]["enter_ms"] - truth_visits[j]["enter_ms"]) / 1000 for i, j in matches
                 if j is not None]
    exit_pairs = [(reported[i]["exit_ms"], truth_visits[j]["exit_ms"]) for i, j in matches if j is not None]
    exit_err = [abs(r - t) / 1000 for r, t in exit_pairs if r is not None and t is not None]
    exits_true = sum(1 for _, t in exit_pairs if t is not None)
    exits_ok = sum(1 for r, t in exit_pairs if r is not None and t is not None and abs(r - t) <= tolerance_ms)
    return {
        "true_visits": len(truth_visits), "true_stays": len(stays), "reported_visits": len(reported),
        "interpolated_visits": sum(1 for r in reported if r["interpolated"]),
        "precision": ratio(len(reported) - len(false), len(reported)),
        "recall": ratio(len(matched_truth), len(truth_visits)),
        "recall_stays": ratio(sum(1 for j in stays if j in matched_truth), len(stays)),
        "false_enters": len(false),
        "false_enters_by_kind": dict(sorted(_count(r["kind"] for r in false).items())),
        "missed_stays": sum(1 for j in stays if j not in matched_truth),
        "exit_recall": ratio(exits_ok, exits_true),
        "flapping_pairs": flapping_pairs(events),
        "median_enter_error_s": statistics.median(enter_err) if enter_err else None,
        "median_exit_error_s": statistics.median(exit_err) if exit_err else None,
    }


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for x in items:
        out[x] += 1
    return out


def score_stalls(alerts: list[dict], stalls: list[dict], breaks: list[dict],
                 stops_by_van: dict[str, list[tuple[float, float]]], early_ms: int = STALL_EARLY_MS,
                 stop_radius_m: float = STOP_RADIUS_M) -> dict:
    """``alerts``: distinct OPEN VEHICLE_STALLED alerts as dicts with vehicle_id, alert_id,
    condition_start_ms, lat, lon (lat/lon may be None)."""
    def within(a: dict, h: dict) -> bool:
        return a["vehicle_id"] == h["vehicle_id"] and h["start_ms"] - early_ms <= a["condition_start_ms"] <= h["end_ms"]

    per_stall = [sum(1 for a in alerts if within(a, s)) for s in stalls]
    on_stall = [a for a in alerts if any(within(a, s) for s in stalls)]
    on_break = [a for a in alerts if a not in on_stall and any(within(a, b) for b in breaks)]
    false = [a for a in alerts if a not in on_stall and a not in on_break]
    at_stops = [a for a in false if a["lat"] is not None and any(
        distance_m(a["lat"], a["lon"], lat, lon) < stop_radius_m for lat, lon in stops_by_van.get(a["vehicle_id"], ()))]
    scored = len(on_stall) + len(false)
    return {
        "stalls": len(stalls), "alerts": len(alerts),
        "detected": sum(1 for n in per_stall if n >= 1), "exactly_one": sum(1 for n in per_stall if n == 1),
        "duplicated": sum(1 for n in per_stall if n > 1),
        "recall": ratio(sum(1 for n in per_stall if n >= 1), len(stalls)),
        "precision": ratio(len(on_stall), scored),
        "break_alerts": len(on_break), "false_stalls": len(false), "false_stalls_at_stops": len(at_stops),
    }


# --------------------------------------------------------------------------- replay

@dataclasses.dataclass
class Replay:
    fence_events: list[GeofenceEvent]
    stall_alerts: list[dict]
    pings: int
    out_of_order_pings: int


def replay(sim, rules: vs.Rules = vs.DEFAULT_RULES, out_of_orderness_ms: int = OUT_OF_ORDERNESS_MS) -> Replay:
    vcfg = ValidationConfig()
    carriers = frozenset(sim.truth["config"]["carriers"])
    idx = GeofenceIndex()
    vans: dict[str, VehicleRun] = {}
    seen: set[str] = set()
    watermark_ms = None
    pings = 0
    schemas = {"ff.pings": "pings", "ff.assignments": "assignments", "ff.geofences": "geofences"}

    def van(vehicle_id: str) -> VehicleRun:
        if vehicle_id not in vans:
            vans[vehicle_id] = VehicleRun(idx, rules)
        return vans[vehicle_id]

    for rec in sorted(sim.records, key=lambda r: (r.produce_ms, r.seq)):
        schema = schemas.get(rec.topic)
        if schema is None:
            continue
        record, dead = route_record(rec.value, schema, rec.produce_ms, vcfg, carriers, source_topic=rec.topic)
        if dead is not None:
            continue
        if schema == "geofences":
            idx.apply_record(record)
            continue
        if record["event_id"] in seen:
            continue
        seen.add(record["event_id"])
        if schema == "pings":
            ping = Ping.from_record(record)
            pings += 1
            # The operator sees the element, then the watermark that follows it.
            van(ping.vehicle_id).ping(ping, wall_ms=rec.produce_ms)
            wm = ping.event_time_ms - out_of_orderness_ms
            if watermark_ms is None or wm > watermark_ms:
                watermark_ms = wm
                for v in vans.values():
                    v.advance_watermark(watermark_ms)
        else:
            a = vs.Assignment.from_record(record)
            van(a.vehicle_id).assign(a)
    # End of input: the final watermark fires what is due (an idle fleet's timers included).
    end_ms = (watermark_ms or 0) + out_of_orderness_ms + 30 * MIN_MS
    for v in vans.values():
        v.advance_watermark(end_ms)

    fence_events = [e for v in vans.values() for e in v.of(GeofenceEvent)]
    alerts = {}
    for v in vans.values():
        for a in v.alerts("VEHICLE_STALLED", "OPEN"):
            d = a.details
            alerts[a.alert_id] = {"alert_id": a.alert_id, "vehicle_id": a.entity_id,
                                  "condition_start_ms": int(d["condition_start_ms"]),
                                  "lat": float(d["lat"]) if "lat" in d else None,
                                  "lon": float(d["lon"]) if "lon" in d else None}
    ooo = sum(v.state.membership.out_of_order_pings for v in vans.values()
              if v.state is not None and v.state.membership is not None)
    return Replay(fence_events, list(alerts.values()), pings, ooo)


def run_one(scenario: str, seed: int, vans: int, hours: float, stall_rate: float, tolerance_ms: int) -> dict:
    cfg = SimConfig(seed=seed, vans=vans, duration_s=hours * 3600, stall_rate_per_hour=stall_rate,
                    **SCENARIOS[scenario])
    sim = generate(cfg)
    t0 = time.perf_counter()
    rep = replay(sim)
    truth = sim.truth
    stops: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for a in truth["arrivals"]:
        stops[a["vehicle_id"]].append((a["stop"]["lat"], a["stop"]["lon"]))
    result = {
        "scenario": scenario, "seed": seed, "sim_overrides": SCENARIOS[scenario],
        "fences": score_fences(rep.fence_events, truth["fence_visits"], tolerance_ms),
        "stalls": score_stalls(rep.stall_alerts, truth["stalls"], truth["breaks"], stops),
        "pings": rep.pings, "out_of_order_pings_ignored": rep.out_of_order_pings,
        "records": len(sim.records), "replay_s": round(time.perf_counter() - t0, 2),
    }
    return result


def _median(values: list) -> Any:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Median over seeds of each figure, per scenario."""
    out = {}
    for scenario in dict.fromkeys(r["scenario"] for r in runs):
        rs = [r for r in runs if r["scenario"] == scenario]
        out[scenario] = {
            "seeds": [r["seed"] for r in rs],
            **{f"fence_{k}": _median([r["fences"][k] for r in rs])
               for k in ("precision", "recall", "recall_stays", "false_enters", "flapping_pairs", "exit_recall",
                         "median_enter_error_s", "true_visits", "reported_visits", "interpolated_visits")},
            **{f"stall_{k}": _median([r["stalls"][k] for r in rs])
               for k in ("stalls", "precision", "recall", "exactly_one", "duplicated", "break_alerts",
                         "false_stalls", "false_stalls_at_stops")},
        }
    return out


def _f(v: Any, pct: bool = False) -> str:
    if v is None:
        return "–"
    if pct:
        return f"{v:.1%}"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def markdown(runs: list[dict]) -> str:
    lines = ["| scenario | seed | true visits (stays) | reported (interp.) | fence precision | recall | "
             "recall, stays | false ENTERs | flapping pairs | EXIT recall | median ENTER error (s) | "
             "stalls | stall precision | stall recall | exactly one | break alerts | false stalls "
             "(at stops) |",
             "| --- " * 18 + "|"]
    for r in runs:
        f, s = r["fences"], r["stalls"]
        lines.append(
            f"| {r['scenario']} | {r['seed']} | {f['true_visits']} ({f['true_stays']}) | "
            f"{f['reported_visits']} ({f['interpolated_visits']}) | {_f(f['precision'], True)} | "
            f"{_f(f['recall'], True)} | {_f(f['recall_stays'], True)} | {f['false_enters']} | {f['flapping_pairs']} | "
            f"{_f(f['exit_recall'], True)} | {_f(f['median_enter_error_s'])} | {s['stalls']} | "
            f"{_f(s['precision'], True)} | {_f(s['recall'], True)} | {s['exactly_one']}/{s['stalls']} | "
            f"{s['break_alerts']} | {s['false_stalls']} ({s['false_stalls_at_stops']}) |")
    return "\n".join(lines)


def markdown_medians(summary: dict[str, dict]) -> str:
    lines = ["| scenario | seeds | fence precision | recall | recall, stays | false ENTERs | flapping pairs | "
             "EXIT recall | stall precision | stall recall | false stalls (at stops) |",
             "| --- " * 11 + "|"]
    for scenario, m in summary.items():
        lines.append(
            f"| {scenario} | {', '.join(map(str, m['seeds']))} | {_f(m['fence_precision'], True)} | "
            f"{_f(m['fence_recall'], True)} | {_f(m['fence_recall_stays'], True)} | {_f(m['fence_false_enters'])} | "
            f"{_f(m['fence_flapping_pairs'])} | {_f(m['fence_exit_recall'], True)} | "
            f"{_f(m['stall_precision'], True)} | {_f(m['stall_recall'], True)} | "
            f"{_f(m['stall_false_stalls'])} ({_f(m['stall_false_stalls_at_stops'])}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--vans", type=int, default=20)
    p.add_argument("--hours", type=float, default=6.0, help="simulated duration; routes take 3-4.5 h")
    p.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    p.add_argument("--stall-rate", type=float, default=1.0,
                   help="injected breakdowns per van per driving hour (simulator default 0.1 gives ~2 a run)")
    p.add_argument("--tolerance-s", type=float, default=60.0, help="visit matching tolerance")
    p.add_argument("--out", help="write <out>.md and <out>.json")
    args = p.parse_args(argv)
    runs = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            r = run_one(scenario, seed, args.vans, args.hours, args.stall_rate, int(args.tolerance_s * 1000))
            print(f"{scenario} seed {seed}: {r['records']} records replayed in {r['replay_s']:.1f} s", file=sys.stderr)
            runs.append(r)
    summary = summarise(runs)
    table = markdown(runs)
    medians = markdown_medians(summary)
    print(table)
    print()
    print(medians)
    if args.out:
        cmd = "bench/geofence_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(f"{args.out}.json").write_text(json.dumps({"command": cmd, "runs": runs, "medians": summary},
                                                       indent=2, sort_keys=True) + "\n")
        Path(f"{args.out}.md").write_text(f"# Geofence and stall accuracy\n\nCommand: `.venv/bin/python {cmd}`\n\n"
                                          f"## Per run\n\n{table}\n\n## Medians over seeds\n\n{medians}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
