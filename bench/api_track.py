"""Latency of ``GET /v1/track/{id}`` under load, with wrk on loopback.

    .venv/bin/python bench/api_track.py [--rate 1000] [--duration 30] [--workers 1]

Starts the API (uvicorn with uvloop + httptools, JSON access log on, as deployed) on a
free port against the running stack, creates a customer key with a limit high enough
not to be the bottleneck, writes ``--ids`` shipments in the documented hash layout,
then runs wrk twice:

1. **held rate**: Debian's wrk has no constant-rate mode (that is wrk2), so the rate is
   held with a Lua ``delay()``: each of ``--connections`` connections waits
   ``connections / rate`` seconds before each request, i.e. sends at rate/connections
   per second. wrk measures latency from send to response, so the delay is not counted;
   the achieved rate is reported next to the target.
2. **max rate**: no delay, to show the ceiling on this machine.

Prints a Markdown table and, with ``--out``, writes it with the command line.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LUA = """
local ids = {}
for i = 1, %(ids)d do ids[i] = string.format("BENCH%%06d", i) end
local n = 0
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/track/" .. ids[(n %% #ids) + 1])
end
%(delay)s
"""


def parse_wrk(text: str) -> dict:
    def ms(v: str, unit: str) -> float:
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    out = {}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if m:
            out[f"p{pct}_ms"] = ms(*m.groups())
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = m.group(1).strip() if m else "none"
    return out


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000, help="held request rate, req/s")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (each takes a core from the API)")
    ap.add_argument("--duration", type=int, default=30, help="seconds per run")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--ids", type=int, default=1000, help="distinct tracking ids")
    ap.add_argument("--out", type=Path, help="write the Markdown results here")
    args = ap.parse_args(argv)

    import redis

    from api.settings import get_settings
    from fleetflow import apikeys, settings
    from fleetflow.cassandra_session import connect

    s = settings.load()
    cluster, session = connect(s, keyspace=s.keyspace)
    key, raw = apikeys.create(session, get_settings().key_pepper.get_secret_value().encode(), role="customer",
                              name="bench/api_track.py", rate_limit_per_min=10_000_000,
                              now_ms=int(time.time() * 1000))
    r = redis.Redis.from_url(s.redis_url)
    now_ms = int(time.time() * 1000)
    pipe = r.pipeline()
    for i in range(1, args.ids + 1):
        pipe.hset(f"ff:shipment:BENCH{i:06d}", mapping={
            "status": "OUT_FOR_DELIVERY", "status_detail": "OUT_FOR_DELIVERY", "carrier": "FEDEX", "leg": 1,
            "version": 5, "last_event_time_ms": now_ms, "status_since_ms": now_ms, "terminal": "False",
            "hidden_from_customers": "False", "last_lat": 52.5 + i * 1e-4, "last_lon": 13.4 + i * 1e-4,
            "eta_ms": now_ms + 3_600_000, "eta_earliest_ms": now_ms + 1_800_000,
            "eta_latest_ms": now_ms + 5_400_000, "eta_confidence": 0.8, "eta_as_of_ms": now_ms,
            "late_risk": "CLEAR", "promised_start_ms": now_ms, "promised_end_ms": now_ms + 7_200_000})
    pipe.execute()

    port = free_port(s.host)
    url = f"http://{s.host}:{port}"
    env = {**os.environ, "FLEETFLOW_API_REDIS_URL": s.redis_url,
           "FLEETFLOW_API_CASSANDRA_PORT": str(s.cassandra_port), "FLEETFLOW_API_KAFKA_BOOTSTRAP": s.kafka_bootstrap}
    log = open(Path(tempfile.gettempdir()) / "fleetflow-bench-api.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:app", "--host", s.host, "--port", str(port),
                               "--workers", str(args.workers), "--loop", "uvloop", "--http", "httptools",
                               "--no-access-log"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    results = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("API did not start; see " + log.name)
                time.sleep(0.3)
        # Warm up: key cache, connection pools, lru caches.
        _wrk(url, args, LUA % {"ids": args.ids, "key": raw, "delay": ""}, 5)
        # Achieved rate = connections / (delay + latency): measure the latency at the naive
        # delay for a few seconds and take it off, so the held run lands near the target.
        delay_ms = args.connections / args.rate * 1000
        probe = parse_wrk(_wrk(url, args, LUA % {"ids": args.ids, "key": raw,
                                                 "delay": f"delay = function() return {delay_ms:.3f} end"}, 5))
        if probe["rps"]:
            latency_ms = max(0.0, args.connections / probe["rps"] * 1000 - delay_ms)
            delay_ms = max(0.0, delay_ms - latency_ms)
        runs = [("held", f"{args.rate} req/s target",
                 f"delay = function() return {delay_ms:.3f} end"), ("max", "no delay (ceiling)", "")]
        for name, label, delay in runs:
            text = _wrk(url, args, LUA % {"ids": args.ids, "key": raw, "delay": delay}, args.duration)
            res = parse_wrk(text)
            res.update(run=name, label=label, load=os.getloadavg()[0])
            results.append(res)
    finally:
        server.terminate()
        server.wait(15)
        apikeys.revoke(session, key.key_id, now_ms=int(time.time() * 1000))
        cluster.shutdown()
        r.delete(*[f"ff:shipment:BENCH{i:06d}" for i in range(1, args.ids + 1)])

    cmd = "python bench/api_track.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Command: `{cmd.strip()}` (wrk {args.threads} threads, {args.connections} connections, "
             f"{args.duration} s per run, {args.workers} uvicorn worker(s), {os.cpu_count()} CPUs)", "",
             "| run | achieved req/s | p50 ms | p75 ms | p90 ms | p99 ms | requests | non-2xx | socket errors "
             "| load avg (1 min) after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for x in results:
        lines.append(f"| {x['label']} | {x['rps']:.0f} | {x.get('p50_ms', float('nan')):.2f} | "
                     f"{x.get('p75_ms', float('nan')):.2f} | {x.get('p90_ms', float('nan')):.2f} | "
                     f"{x.get('p99_ms', float('nan')):.2f} | {x['requests']} | {x['non_2xx']} | "
                     f"{x['socket_errors']} | {x['load']:.1f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


def _wrk(url: str, args, lua: str, duration: int) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        return subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
                               "-s", f.name, url], check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    raise SystemExit(main())
