"""End-to-end pipeline benchmark on the local stack (issue 8).

    .venv/bin/python -m bench.pipeline.run --rates 250,500,1000,2000,4000,8000 --step-s 120

Needs a running stack (`fleetflow up`) with the jobs submitted (it submits any that are
missing) and, for the latency phase through the API, `fleetflow api` plus a dispatcher
key (`--api-key`). Publishes 10,000 synthetic geofences first and retires them at the end.

Reports, in one run: for each input rate, whether every job's consumer lag stayed bounded
for the whole step; event → queryable latency (p50/p99/max) at the latency rate; CPU
(cores) and memory of each service during each step.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import threading
import time
from pathlib import Path

from bench.pipeline import fences
from bench.pipeline.lag import LagReader, slope_per_s
from bench.pipeline.load import Prober, ProbeResult, RateSender, recording
from bench.pipeline.procstats import sample_group, stack_pids
from fleetflow import flinkjobs, kafka_io, settings, topics
from fleetflow import stack as stack_mod

# Which topics each job consumes (its Kafka consumer group is the job name).
JOB_INPUTS = {
    "fleetflow-shipment-status": [topics.SCANS.name, topics.PLANS.name],
    "fleetflow-vehicle-tracking": [topics.PINGS.name, topics.ASSIGNMENTS.name],
    "fleetflow-eta": [topics.PINGS.name, topics.ASSIGNMENTS.name, topics.SHIPMENT_STATES.name],
    "fleetflow-alerts": [topics.ALERT_CANDIDATES.name],
}
# A step is "bounded" when the lag grows by less than this share of the input rate.
BOUNDED_SLOPE_SHARE = 0.02


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def _lags(reader: LagReader, jobs: list[str]) -> dict[str, int]:
    return {j: reader.lag(j, JOB_INPUTS[j]).records for j in jobs}


def _proc(pids: dict[str, int]) -> dict[str, tuple[float, int]]:
    return {name: (lambda smp: (smp.cpu_s, smp.rss_bytes))(sample_group(pid)) for name, pid in pids.items()}


def step(sender: RateSender, reader: LagReader, jobs: list[str], pids: dict[str, int], rate: float,
         seconds: float, probe: Prober | None = None) -> dict:
    points: dict[str, list[tuple[float, int]]] = {j: [] for j in jobs}
    stop = threading.Event()
    t0 = time.monotonic()

    def watch():
        while not stop.is_set():
            now = time.monotonic() - t0
            for j, lag in _lags(reader, jobs).items():
                points[j].append((now, lag))
            stop.wait(5)

    probes = ProbeResult()
    threads = [threading.Thread(target=watch, daemon=True)]
    if probe is not None:
        threads.append(threading.Thread(target=probe.run, args=(seconds, probes, stop), daemon=True))
    before = _proc(pids)
    for t in threads:
        t.start()
    sent = sender.run(rate, seconds)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    after = _proc(pids)
    wall = time.monotonic() - t0
    result = {"target_eps": rate, "achieved_eps": round(sent.rate, 1), "sent": sent.sent, "jobs": {}, "procs": {}}
    for j in jobs:
        tail = [p for p in points[j] if p[0] >= seconds * 0.4]
        slope = slope_per_s(tail)
        result["jobs"][j] = {"lag_end": points[j][-1][1] if points[j] else None,
                             "lag_max": max((v for _, v in points[j]), default=None),
                             "lag_slope_eps": round(slope, 1),
                             "bounded": slope < BOUNDED_SLOPE_SHARE * max(rate, 1)}
    for name in pids:
        cpu = (after[name][0] - before[name][0]) / wall
        result["procs"][name] = {"cores": round(cpu, 2), "rss_mb": round(after[name][1] / 2**20)}
    result["bounded"] = all(v["bounded"] for v in result["jobs"].values())
    if probe is not None:
        lat = probes.latencies_ms
        result["latency_ms"] = {"n": len(lat), "timeouts": probes.timeouts,
                                "p50": round(percentile(lat, 50), 1), "p99": round(percentile(lat, 99), 1),
                                "max": round(max(lat), 1) if lat else None,
                                "median": round(statistics.median(lat), 1) if lat else None}
    return result


def drain(reader: LagReader, jobs: list[str], limit_s: float = 180, threshold: int = 2000) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if max(_lags(reader, jobs).values()) <= threshold:
            return time.monotonic() - t0
        time.sleep(5)
    return -1.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="250,500,1000,2000,4000,8000", help="input events/s, ascending")
    p.add_argument("--step-s", type=float, default=120)
    p.add_argument("--latency-rate", type=float, default=8000,
                   help="also measure latency at this rate; 0 = only at the highest bounded rate")
    p.add_argument("--latency-s", type=float, default=120)
    p.add_argument("--vans", type=int, default=1500)
    p.add_argument("--hours", type=float, default=10)
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--fences", type=int, default=10_000)
    p.add_argument("--via", choices=["api", "redis"], default="api")
    p.add_argument("--api-key", default="", help="dispatcher key for the latency probe through the API")
    p.add_argument("--jobs", default=",".join(JOB_INPUTS))
    p.add_argument("--out", default="bench/results/pipeline.json")
    args = p.parse_args(argv)

    s = settings.load()
    if not stack_mod.is_up(s):
        print("the stack is not up: run `fleetflow up` first", file=sys.stderr)
        return 2
    jobs = [j for j in args.jobs.split(",") if j]
    for j in jobs:
        flinkjobs.submit(s, j)
    pids = stack_pids(s.home / "run")

    print(f"publishing {args.fences} geofences", flush=True)
    fence_recs = fences.records(args.fences)
    kafka_io.publish_encoded(s.kafka_bootstrap, fences.TOPIC, fences.encoded(fence_recs))

    rates = [float(r) for r in args.rates.split(",")]
    need = int(sum(rates) * args.step_s + args.latency_rate * args.latency_s * 1.1)
    print(f"generating a recording of >= {need} events", flush=True)
    records, _ = recording(args.vans, args.hours, args.seed)
    if len(records) < need:
        print(f"note: recording has {len(records)} events, fewer than {need}; later steps end early", flush=True)

    run_id = str(int(time.time()))
    visible = _visible(s, args)
    sender = RateSender(s.kafka_bootstrap, records)
    reader = LagReader(s.kafka_bootstrap)
    # The key is a credential: the report keeps the command without it.
    command = re.sub(r"(--api-key[ =])\S+", r"\1<key>", " ".join(sys.argv))
    report = {"command": command, "steps": [], "latency": None}
    try:
        drain(reader, jobs)
        best = None
        for rate in rates:
            print(f"step {rate:.0f} ev/s for {args.step_s:.0f}s", flush=True)
            r = step(sender, reader, jobs, pids, rate, args.step_s)
            print(json.dumps(r), flush=True)
            report["steps"].append(r)
            r["drain_s"] = drain(reader, jobs)
            if r["bounded"] and r["achieved_eps"] >= 0.95 * rate:
                best = rate
            else:
                break
        report["max_bounded_eps"] = best
        # --latency-rate 0 measures latency only at the highest bounded rate: above it the
        # backlog, and so the latency, grows for as long as the load lasts.
        lat_rates = {best or rates[0]} | ({args.latency_rate} if args.latency_rate > 0 else set())
        for lat_rate in sorted(lat_rates):
            print(f"latency at {lat_rate:.0f} ev/s for {args.latency_s:.0f}s", flush=True)
            prober = Prober(s.kafka_bootstrap, visible, sender, run_id)
            r = step(sender, reader, jobs, pids, lat_rate, args.latency_s, probe=prober)
            prober.close()
            print(json.dumps(r), flush=True)
            report.setdefault("latency_steps", []).append(r)
            r["drain_s"] = drain(reader, jobs)
    finally:
        sender.close()
        reader.close()
        kafka_io.publish_encoded(s.kafka_bootstrap, fences.TOPIC, fences.encoded(fences.tombstones(fence_recs)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


def _visible(s, args):
    if args.via == "redis":
        import redis
        r = redis.Redis.from_url(s.redis_url)
        return lambda tid: r.hexists(f"ff:shipment:{tid}", "status")
    import httpx
    client = httpx.Client(base_url=s.api_url, timeout=5.0, headers={"X-API-Key": args.api_key})
    return lambda tid: client.get(f"/v1/track/{tid}").status_code == 200


if __name__ == "__main__":
    raise SystemExit(main())
