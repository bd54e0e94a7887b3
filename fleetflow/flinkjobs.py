"""Submit and inspect FleetFlow jobs on a Flink session cluster through its REST API and CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from fleetflow.settings import ROOT, StackSettings
from fleetflow.stack.process import StackError
from fleetflow.stack.services import flink_env, prepare_flink, pyflink_home

# job name -> python module with main()
JOBS = {
    "fleetflow-shipment-status": "jobs.shipment_status",
    "fleetflow-vehicle-tracking": "jobs.vehicle_tracking",
    "fleetflow-eta": "jobs.eta",
    "fleetflow-alerts": "jobs.alerts",
}


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    name: str
    state: str
    start_time_ms: int


def _get(s: StackSettings, path: str):
    with urllib.request.urlopen(f"{s.flink_rest_url}{path}", timeout=10) as r:
        return json.loads(r.read())


def list_jobs(s: StackSettings) -> list[JobInfo]:
    return [JobInfo(j["jid"], j["name"], j["state"], j.get("start-time", 0))
            for j in _get(s, "/jobs/overview")["jobs"]]


def running(s: StackSettings, name: str) -> JobInfo | None:
    for j in list_jobs(s):
        if j.name == name and j.state in ("RUNNING", "CREATED", "INITIALIZING", "RESTARTING"):
            return j
    return None


def submit(s: StackSettings, name: str, *, config: dict | None = None, wait_running_s: float = 120) -> JobInfo:
    """Submit job ``name`` detached; a job of that name already running is left as it is."""
    if name not in JOBS:
        raise StackError(f"unknown job {name!r}; known: {', '.join(JOBS)}")
    existing = running(s, name)
    if existing:
        return existing
    prepare_flink(s)
    argv = ["bash", str(pyflink_home() / "bin" / "flink"), "run", "-d",
            "-m", f"{s.host}:{s.flink_rest_port}",
            "-pym", JOBS[name], "-pyexec", sys.executable, "-pyclientexec", sys.executable]
    if config:
        argv += ["--config", json.dumps(config)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ, **flink_env(s)},
                         timeout=300)
    if out.returncode != 0:
        raise StackError(f"submitting {name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    deadline = time.monotonic() + wait_running_s
    while time.monotonic() < deadline:
        for j in list_jobs(s):
            if j.name == name and j.state == "RUNNING":
                vertices = _get(s, f"/jobs/{j.job_id}")["vertices"]
                if all(v["status"] == "RUNNING" for v in vertices):
                    return j
            if j.name == name and j.state in ("FAILED",):
                raise StackError(f"{name} failed after submit; see {s.logs}/flink-taskmanager.log")
        time.sleep(1)
    raise StackError(f"{name} was submitted but is not RUNNING after {wait_running_s:.0f}s; "
                     f"see {s.logs}/flink-jobmanager.log and the dashboard {s.flink_rest_url}")


def cancel(s: StackSettings, job_id: str) -> None:
    req = urllib.request.Request(f"{s.flink_rest_url}/jobs/{job_id}?mode=cancel", method="PATCH")
    urllib.request.urlopen(req, timeout=10).read()
