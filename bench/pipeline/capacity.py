"""How fast one job drains a backlog, at parallelism 1 and 2, in one run.

The ladder in ``bench.pipeline.run`` says whether lag stays bounded at a held rate; this
says what a job can do flat out, which is what scale-out arithmetic needs. For each
parallelism in turn:

1. stop the job with a savepoint (its state is kept; nothing is lost);
2. publish the next ``--backlog`` records of a simulated fleet's scans and plans (for the
   shipment job) as fast as Kafka takes them, while the job is stopped;
3. restore the job from the savepoint at that parallelism;
4. read its consumer lag every 5 s until the backlog is gone, and report the drain rate
   over the middle of the drain (from the first lag reading below 90 % of the backlog to
   the first below 10 %: start-up and the last checkpoint's commit are left out).

The job is left running at parallelism 1. Other jobs keep running and compete for the
same cores, as they would.

    .venv/bin/python -m bench.pipeline.capacity --job fleetflow-shipment-status --backlog 30000
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from fleetflow import flinkjobs, settings, topics
from bench.pipeline.lag import LagReader
from bench.pipeline.load import RateSender, recording

JOB_INPUTS = {
    "fleetflow-shipment-status": [topics.SCANS.name, topics.PLANS.name],
    "fleetflow-vehicle-tracking": [topics.PINGS.name, topics.ASSIGNMENTS.name],
    "fleetflow-eta": [topics.PINGS.name, topics.ASSIGNMENTS.name],
}


def drain_rate(reader: LagReader, job: str, inputs: list[str], backlog: int, limit_s: float) -> dict:
    t0 = time.monotonic()
    samples = []
    while time.monotonic() - t0 < limit_s:
        lag = reader.lag(job, inputs).records
        samples.append((time.monotonic() - t0, lag))
        if lag < 0.05 * backlog:
            break
        time.sleep(5)
    start = next(((t, lag) for t, lag in samples if lag < 0.9 * backlog), None)
    end = next(((t, lag) for t, lag in samples if lag < 0.1 * backlog), None)
    rate = None
    if start and end and end[0] > start[0]:
        rate = (start[1] - end[1]) / (end[0] - start[0])
    return {"drain_eps": None if rate is None else round(rate, 1), "samples": samples,
            "drained": bool(end), "seconds": round(samples[-1][0], 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--job", default="fleetflow-shipment-status", choices=sorted(JOB_INPUTS))
    ap.add_argument("--backlog", type=int, default=30_000)
    ap.add_argument("--parallelism", default="1,2")
    ap.add_argument("--vans", type=int, default=400)
    ap.add_argument("--hours", type=float, default=4)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--limit-s", type=float, default=600)
    ap.add_argument("--out", default="bench/results/capacity.json")
    args = ap.parse_args(argv)

    s = settings.load()
    inputs = JOB_INPUTS[args.job]
    records, _ = recording(args.vans, args.hours, args.seed)
    records = [r for r in records if r[0] in inputs]
    levels = [int(p) for p in args.parallelism.split(",")]
    if len(records) < args.backlog * len(levels):
        print(f"the recording has {len(records)} records for {inputs}; need {args.backlog * len(levels)}",
              file=sys.stderr)
        return 2
    sender = RateSender(s.kafka_bootstrap, records)
    reader = LagReader(s.kafka_bootstrap)
    if flinkjobs.running(s, args.job) is None:
        flinkjobs.submit(s, args.job)
    results = []
    try:
        for p in levels:
            path = flinkjobs.stop(s, args.job)
            sent = _publish(sender, args.backlog)
            flinkjobs.submit(s, args.job, from_savepoint=path, parallelism=p, wait_running_s=300)
            r = drain_rate(reader, args.job, inputs, sent, args.limit_s)
            r.update(parallelism=p, backlog=sent)
            print(json.dumps({k: v for k, v in r.items() if k != "samples"}), flush=True)
            results.append(r)
    finally:
        job = flinkjobs.running(s, args.job)
        if job is not None and flinkjobs.job_parallelism(s, job.job_id) != 1:
            flinkjobs.rescale(s, args.job, 1)
        sender.close()
    base = results[0]["drain_eps"] if results else None
    for r in results:
        r["vs_first"] = round(r["drain_eps"] / base, 2) if base and r["drain_eps"] else None
    with open(args.out, "w") as f:
        json.dump({"job": args.job, "backlog": args.backlog, "vans": args.vans, "seed": args.seed,
                   "results": results}, f, indent=1)
    print(json.dumps([{k: r[k] for k in ("parallelism", "drain_eps", "vs_first", "seconds")} for r in results]))
    return 0


def _publish(sender: RateSender, n: int) -> int:
    """Send the next ``n`` records as fast as the producer goes."""
    return sender.run(rate_eps=200_000, seconds=600, stop=None, limit=n).sent


if __name__ == "__main__":
    sys.exit(main())
