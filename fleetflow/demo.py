"""``fleetflow demo``: the whole walking skeleton, from an empty machine to a curl that works."""
from __future__ import annotations

import sys
import time
import urllib.request

from fleetflow import flinkjobs, kafka_io, schema, setup, stack, topics
from fleetflow.settings import StackSettings
from fleetflow.stack.process import Daemon, StackError, port_open, wait_until

# A handful of shipments walking FedEx-style codes: label, pickup, hub arrival, out for delivery.
DEMO_PATH = [("OC", "Shipment information sent to FedEx"), ("PU", "Picked up"), ("AR", "Arrived at FedEx location"),
             ("DP", "Departed FedEx location"), ("OD", "On FedEx vehicle for delivery")]


def demo_scans(n_shipments: int, now_ms: int, prefix: str = "DEMO") -> list[dict]:
    out = []
    for i in range(n_shipments):
        tid = f"{prefix}{i + 1:06d}"
        # Shipments are at different points of their journey so the demo shows several statuses.
        steps = DEMO_PATH[: 2 + i % (len(DEMO_PATH) - 1)]
        for j, (code, text) in enumerate(steps):
            out.append({"event_id": f"{tid}-{j}", "tracking_id": tid, "carrier": "FEDEX", "raw_code": code,
                        "raw_text": text, "event_time_ms": now_ms - (len(steps) - j) * 15 * 60_000,
                        "facility_id": "BER1", "location": None, "vehicle_id": None, "leg": 1, "source": "CARRIER"})
    return out


def api_daemon(s: StackSettings) -> Daemon:
    return Daemon("api", s.run / "api.pid", s.logs / "api.log", ("uvicorn",))


def start_api(s: StackSettings, progress=print) -> None:
    d = api_daemon(s)
    if not d.alive():
        if port_open(s.host, s.api_port):
            raise StackError(f"port {s.api_port} is taken by another process; set FLEETFLOW_API_PORT")
        d.start([sys.executable, "-m", "uvicorn", "api.main:app", "--host", s.host, "--port", str(s.api_port),
                 "--no-access-log"],
                env={"FLEETFLOW_API_REDIS_URL": s.redis_url, "FLEETFLOW_API_CASSANDRA_PORT": str(s.cassandra_port),
                     "FLEETFLOW_API_KAFKA_BOOTSTRAP": s.kafka_bootstrap})
        progress(f"api: starting (log {d.log_file})")
    wait_until(lambda: urllib.request.urlopen(f"{s.api_url}/healthz", timeout=2).status == 200,
               what="api", timeout_s=60, daemon=d)


def run(s: StackSettings, n_shipments: int = 8, progress=print) -> str:
    setup.setup(s, progress)
    stack.up(s, progress=progress)
    schema.init(s)
    for name in flinkjobs.JOBS:
        job = flinkjobs.submit(s, name)
        progress(f"job {name} RUNNING ({job.job_id})")
    start_api(s, progress)
    now_ms = int(time.time() * 1000)
    scans = demo_scans(n_shipments, now_ms)
    kafka_io.publish(s.kafka_bootstrap, topics.SCANS.name, "scans", scans, "tracking_id")
    progress(f"published {len(scans)} scans for {n_shipments} shipments")
    tid = scans[-1]["tracking_id"]
    url = f"{s.api_url}/v1/shipments/{tid}"
    wait_until(lambda: urllib.request.urlopen(url, timeout=2).status == 200, what=f"status of {tid} in the API",
               timeout_s=120)
    return tid
