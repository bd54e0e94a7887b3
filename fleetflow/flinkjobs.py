"""Submit, savepoint, stop, upgrade and rescale FleetFlow jobs on a Flink session cluster.

Everything goes through Flink's REST API except the submission itself, which needs the
``flink run`` client to build a PyFlink job graph. Long operations take a ``progress``
callback (one line per step) so the CLI can show what is happening.

An upgrade is stop-with-savepoint followed by a submission of the current code from that
savepoint: operator state, timers and Kafka offsets move across because every stateful
operator has a stable uid. The config a job was last submitted with is remembered under
``.fleetflow/run/jobs/`` so an upgrade or rescale keeps it unless told otherwise.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fleetflow.settings import ROOT, StackSettings
from fleetflow.stack.process import StackError
from fleetflow.stack.services import flink_env, flink_state_dirs, prepare_flink, pyflink_home

# job name -> python module with main()
JOBS = {
    "fleetflow-shipment-status": "jobs.shipment_status",
    "fleetflow-vehicle-tracking": "jobs.vehicle_tracking",
    "fleetflow-eta": "jobs.eta",
    "fleetflow-alerts": "jobs.alerts",
}

ACTIVE_STATES = ("RUNNING", "CREATED", "INITIALIZING", "RESTARTING", "RECONCILING")
# pipeline.max-parallelism in flink-conf/config.yaml: keyed state is split into this many
# key groups, so no job can be rescaled beyond it without losing its state.
MAX_PARALLELISM = 128
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    name: str
    state: str
    start_time_ms: int


@dataclass(frozen=True)
class CheckpointInfo:
    checkpoint_id: int
    status: str
    end_time_ms: int
    state_size_bytes: int
    external_path: str


class FlinkRestError(StackError):
    """Flink's REST API answered with an error; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def _flink_error_message(body: bytes) -> str:
    """The useful line of a Flink REST error: the innermost ``Caused by``, else the first line."""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:300]
    if not errors:
        return "(no error message)"
    text = str(errors[0])
    causes = [line for line in text.splitlines() if line.startswith("Caused by: ")]
    line = causes[-1][len("Caused by: "):] if causes else text.splitlines()[0]
    return line.strip()[:500]


def _request(s: StackSettings, method: str, path: str, body: dict | None = None, timeout_s: float = 10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{s.flink_rest_url}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        raise FlinkRestError(f"Flink REST {method} {path} → {e.code}: {_flink_error_message(e.read())}",
                             e.code) from None
    except (urllib.error.URLError, OSError) as e:
        raise FlinkRestError(f"Flink REST API not reachable at {s.flink_rest_url} ({e}); "
                             f"is the cluster up? (`fleetflow up`, then `fleetflow status`)") from None
    return json.loads(raw) if raw else {}


def _get(s: StackSettings, path: str):
    return _request(s, "GET", path)


def list_jobs(s: StackSettings) -> list[JobInfo]:
    return [JobInfo(j["jid"], j["name"], j["state"], j.get("start-time", 0))
            for j in _get(s, "/jobs/overview")["jobs"]]


def running(s: StackSettings, name: str) -> JobInfo | None:
    """The active instance of job ``name`` (newest first), or None."""
    active = [j for j in list_jobs(s) if j.name == name and j.state in ACTIVE_STATES]
    return max(active, key=lambda j: j.start_time_ms) if active else None


def resolve(s: StackSettings, job: str) -> JobInfo:
    """A running job by FleetFlow name or by Flink job id; clear errors for anything else."""
    jobs = list_jobs(s)
    if _JOB_ID.match(job):
        for j in jobs:
            if j.job_id == job:
                if j.state not in ACTIVE_STATES:
                    raise StackError(f"job {job} ({j.name}) is {j.state}, not running")
                return j
        raise StackError(f"no job with id {job} on {s.flink_rest_url}; `fleetflow jobs list` shows them")
    if job not in JOBS and not any(j.name == job for j in jobs):
        raise StackError(f"unknown job {job!r}; known: {', '.join(JOBS)}")
    found = running(s, job)
    if found is None:
        raise StackError(f"{job} is not running; start it with `fleetflow jobs submit {job}`")
    return found


def job_parallelism(s: StackSettings, job_id: str) -> int:
    """The job's parallelism: that of its widest operator (sources may be narrower)."""
    return max((v.get("parallelism", 1) for v in _get(s, f"/jobs/{job_id}").get("vertices", [])), default=1)


def checkpoints(s: StackSettings, job_id: str) -> CheckpointInfo | None:
    """The latest completed checkpoint or savepoint of a job, or None."""
    latest = (_get(s, f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("completed")
    if not latest:
        return None
    return CheckpointInfo(latest["id"], latest.get("status", "COMPLETED"), latest.get("latest_ack_timestamp", 0),
                          latest.get("state_size", latest.get("checkpointed_size", 0)),
                          latest.get("external_path", ""))


# --- remembered submissions --------------------------------------------------------------

def _record_path(s: StackSettings, name: str) -> Path:
    return s.run / "jobs" / f"{name}.json"


def last_submission(s: StackSettings, name: str) -> dict:
    """What ``name`` was last submitted with: config, parallelism, savepoint, job id."""
    try:
        return json.loads(_record_path(s, name).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _remember(s: StackSettings, name: str, **fields) -> None:
    path = _record_path(s, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**last_submission(s, name), **fields}, indent=2, sort_keys=True))


# --- submit ------------------------------------------------------------------------------

def submit_argv(s: StackSettings, name: str, *, config: dict | None = None, from_savepoint: str | None = None,
                parallelism: int | None = None, allow_non_restored_state: bool = False) -> list[str]:
    """The ``flink run`` command line for a detached submission of job ``name``."""
    if name not in JOBS:
        raise StackError(f"unknown job {name!r}; known: {', '.join(JOBS)}")
    if parallelism is not None and not 1 <= parallelism <= MAX_PARALLELISM:
        raise StackError(f"parallelism must be between 1 and {MAX_PARALLELISM}, not {parallelism}")
    argv = ["bash", str(pyflink_home() / "bin" / "flink"), "run", "-d",
            "-m", f"{s.host}:{s.flink_rest_port}"]
    if from_savepoint:
        argv += ["-s", from_savepoint]
        if allow_non_restored_state:
            argv.append("-n")
    if parallelism is not None:
        argv += ["-p", str(parallelism)]
    argv += ["-pym", JOBS[name], "-pyexec", sys.executable, "-pyclientexec", sys.executable]
    cfg = dict(config or {})
    if parallelism is not None and "parallelism" in cfg:
        # JobConfig.parallelism calls env.set_parallelism, which would override -p.
        cfg["parallelism"] = parallelism
    if cfg:
        argv += ["--config", json.dumps(cfg, sort_keys=True)]
    return argv


def submit(s: StackSettings, name: str, *, config: dict | None = None, from_savepoint: str | None = None,
           parallelism: int | None = None, allow_non_restored_state: bool = False, wait_running_s: float = 120,
           progress: Progress = _quiet) -> JobInfo:
    """Submit job ``name`` detached and wait until all its tasks run.

    A job of that name that is already running is left as it is and returned, unless a
    savepoint is given (restoring next to a running instance would run it twice).
    """
    argv = submit_argv(s, name, config=config, from_savepoint=from_savepoint, parallelism=parallelism,
                       allow_non_restored_state=allow_non_restored_state)
    existing = running(s, name)
    if existing:
        if from_savepoint:
            raise StackError(f"{name} is already running ({existing.job_id}); use `fleetflow jobs upgrade {name}` "
                             f"or stop it first")
        return existing
    local = _local_path(from_savepoint) if from_savepoint else None
    if local is not None and not local.exists():
        raise StackError(f"savepoint {from_savepoint} does not exist")
    prepare_flink(s)
    progress(f"submitting {name}" + (f" from {from_savepoint}" if from_savepoint else "")
             + (f" at parallelism {parallelism}" if parallelism else ""))
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **flink_env(s)},
                         timeout=300)
    if out.returncode != 0:
        raise StackError(f"submitting {name} failed (see {s.logs}/flink-jobmanager.log):\n"
                         f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    m = re.search(r"JobID ([0-9a-f]{32})", out.stdout + out.stderr)
    if m is None:
        raise StackError(f"`flink run` for {name} printed no JobID:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    job_id = m.group(1)
    _remember(s, name, config=dict(config or {}), parallelism=parallelism, job_id=job_id,
              restored_from=from_savepoint, submitted_ms=int(time.time() * 1000))
    progress(f"{name} submitted as {job_id}; waiting for its tasks to run")
    try:
        return wait_running(s, job_id, timeout_s=wait_running_s)
    except StackError as exc:
        # A job that cannot start would otherwise restart forever (the restart strategy has
        # no attempt limit) and hold its slots; submit leaves a RUNNING job or none.
        try:
            _request(s, "PATCH", f"/jobs/{job_id}?mode=cancel")
            note = f"; {job_id} was cancelled"
        except StackError:
            note = ""
        raise StackError(f"{exc}{note}") from None


def _local_path(uri: str) -> Path | None:
    """The local path of a file: URI or plain path; None for remote storage (s3://…)."""
    from urllib.parse import urlparse
    if uri.startswith("/"):
        return Path(uri)
    return Path(urlparse(uri).path) if uri.startswith("file:") else None


def _root_exception(s: StackSettings, job_id: str) -> str:
    try:
        exc = _get(s, f"/jobs/{job_id}/exceptions?maxExceptions=1")
    except StackError:
        return ""
    entries = (exc.get("exceptionHistory") or {}).get("entries") or []
    text = entries[0].get("stacktrace", "") if entries else exc.get("root-exception", "") or ""
    causes = [line for line in text.splitlines() if line.startswith("Caused by: ")]
    line = causes[-1][len("Caused by: "):] if causes else (text.splitlines() or [""])[0]
    return line.strip()[:500]


def wait_running(s: StackSettings, job_id: str, *, timeout_s: float = 120, interval_s: float = 1.0) -> JobInfo:
    """Wait until job ``job_id`` and all its tasks are RUNNING; fail fast when it fails or restarts."""
    deadline = time.monotonic() + timeout_s
    state = "unknown"
    while time.monotonic() < deadline:
        try:
            detail = _get(s, f"/jobs/{job_id}")
        except FlinkRestError as e:
            if e.status != 404:  # a just-submitted job can take a moment to appear
                raise
            time.sleep(interval_s)
            continue
        state = detail["state"]
        if state == "RUNNING" and all(v["status"] == "RUNNING" for v in detail.get("vertices", [])):
            return JobInfo(job_id, detail["name"], state, detail.get("start-time", 0))
        if state in ("FAILED", "CANCELED", "FINISHED") or (state == "RESTARTING" and _root_exception(s, job_id)):
            cause = _root_exception(s, job_id)
            raise StackError(f"job {job_id} is {state} instead of RUNNING"
                             + (f": {cause}" if cause else "")
                             + f"; see {s.logs}/flink-jobmanager.log and {s.logs}/flink-taskmanager*.log")
        time.sleep(interval_s)
    raise StackError(f"job {job_id} is {state}, not RUNNING after {timeout_s:.0f}s; "
                     f"see {s.logs}/flink-jobmanager.log and the dashboard {s.flink_rest_url}/#/job/running/{job_id}")


# --- savepoints and stopping ---------------------------------------------------------------

def _await_savepoint(s: StackSettings, job: JobInfo, trigger_id: str, what: str, timeout_s: float,
                     progress: Progress, interval_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    t0 = time.monotonic()
    last_note = t0
    while time.monotonic() < deadline:
        body = _get(s, f"/jobs/{job.job_id}/savepoints/{trigger_id}")
        if body.get("status", {}).get("id") == "COMPLETED":
            op = body.get("operation") or {}
            if op.get("location"):
                return op["location"]
            cause = op.get("failure-cause") or {}
            trace = cause.get("stack-trace", "") or cause.get("class", "")
            causes = [line for line in trace.splitlines() if line.startswith("Caused by: ")]
            reason = (causes[-1][len("Caused by: "):] if causes else (trace.splitlines() or ["unknown"])[0]).strip()
            raise StackError(f"{what} of {job.name} ({job.job_id}) failed: {reason[:500]}; "
                             f"see {s.logs}/flink-jobmanager.log")
        if time.monotonic() - last_note >= 5:
            progress(f"{what} of {job.name} in progress ({time.monotonic() - t0:.0f}s)")
            last_note = time.monotonic()
        time.sleep(interval_s)
    raise StackError(f"{what} of {job.name} ({job.job_id}) did not complete within {timeout_s:.0f}s; "
                     f"see {s.logs}/flink-jobmanager.log")


def savepoint(s: StackSettings, job: str | JobInfo, *, target_dir: str | None = None, timeout_s: float = 300,
              progress: Progress = _quiet, interval_s: float = 0.5) -> str:
    """Trigger a savepoint of a running job (by name or id) and return its path. The job keeps running."""
    j = job if isinstance(job, JobInfo) else resolve(s, job)
    target = target_dir or flink_state_dirs(s)[1]
    progress(f"savepoint of {j.name} ({j.job_id}) → {target}")
    trigger = _request(s, "POST", f"/jobs/{j.job_id}/savepoints", {"target-directory": target, "cancel-job": False})
    path = _await_savepoint(s, j, trigger["request-id"], "savepoint", timeout_s, progress, interval_s)
    if j.name in JOBS:
        _remember(s, j.name, last_savepoint=path)
    progress(f"savepoint written: {path}")
    return path


def stop(s: StackSettings, job: str | JobInfo, *, savepoint: bool = True, target_dir: str | None = None,
         timeout_s: float = 300, progress: Progress = _quiet, interval_s: float = 0.5) -> str | None:
    """Stop a running job (by name or id). With ``savepoint`` (the default) it is stop-with-savepoint
    without draining, so event-time timers stay pending in the savepoint rather than firing; the
    savepoint path is returned. Without, the job is cancelled and None is returned."""
    j = job if isinstance(job, JobInfo) else resolve(s, job)
    if not savepoint:
        progress(f"cancelling {j.name} ({j.job_id})")
        _request(s, "PATCH", f"/jobs/{j.job_id}?mode=cancel")
        _await_state(s, j, ("CANCELED",), timeout_s, interval_s)
        return None
    target = target_dir or flink_state_dirs(s)[1]
    progress(f"stopping {j.name} ({j.job_id}) with a savepoint → {target}")
    trigger = _request(s, "POST", f"/jobs/{j.job_id}/stop", {"targetDirectory": target, "drain": False})
    path = _await_savepoint(s, j, trigger["request-id"], "stop-with-savepoint", timeout_s, progress, interval_s)
    _await_state(s, j, ("FINISHED",), timeout_s, interval_s)
    if j.name in JOBS:
        _remember(s, j.name, last_savepoint=path)
    progress(f"{j.name} stopped; savepoint {path}")
    return path


def _await_state(s: StackSettings, j: JobInfo, wanted: tuple[str, ...], timeout_s: float, interval_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    state = "unknown"
    while time.monotonic() < deadline:
        state = _get(s, f"/jobs/{j.job_id}")["state"]
        if state in wanted:
            return
        time.sleep(interval_s)
    raise StackError(f"{j.name} ({j.job_id}) is {state}, not {'/'.join(wanted)} after {timeout_s:.0f}s; "
                     f"see {s.logs}/flink-jobmanager.log")


def cancel(s: StackSettings, job_id: str) -> None:
    _request(s, "PATCH", f"/jobs/{job_id}?mode=cancel")


# --- upgrade and rescale ---------------------------------------------------------------------

def _free_slots(s: StackSettings) -> int:
    return int(_get(s, "/overview").get("slots-available", 0))


def upgrade(s: StackSettings, name: str, *, config: dict | None = None, parallelism: int | None = None,
            allow_non_restored_state: bool = False, wait_running_s: float = 180,
            progress: Progress = _quiet) -> JobInfo:
    """Stop ``name`` with a savepoint and submit the current code from it.

    ``config`` replaces the config the job was last submitted with (kept otherwise);
    ``parallelism`` defaults to the running job's. Checks that the new parallelism fits
    the cluster before stopping anything. If the resubmission fails, the error names the
    savepoint so nothing is lost: ``fleetflow jobs submit NAME --from PATH``.
    """
    if name not in JOBS:
        raise StackError(f"unknown job {name!r}; known: {', '.join(JOBS)}")
    current = resolve(s, name)
    old_parallelism = job_parallelism(s, current.job_id)
    new_parallelism = parallelism or old_parallelism
    if not 1 <= new_parallelism <= MAX_PARALLELISM:
        raise StackError(f"parallelism must be between 1 and {MAX_PARALLELISM}, not {new_parallelism}")
    # Slot sharing: a job needs as many slots as its widest operator, and stopping frees its own.
    available = _free_slots(s) + old_parallelism
    if new_parallelism > available:
        raise StackError(f"{name} at parallelism {new_parallelism} needs {new_parallelism} task slots; the cluster "
                         f"would have {available} free after stopping it (see {s.flink_rest_url}/#/task-manager)")
    remembered = last_submission(s, name)
    new_config = dict(remembered.get("config") or {}) if config is None else dict(config)
    progress(f"upgrading {name} ({current.job_id}, parallelism {old_parallelism} → {new_parallelism})")
    path = stop(s, current, savepoint=True, progress=progress)
    try:
        job = submit(s, name, config=new_config, from_savepoint=path, parallelism=new_parallelism,
                     allow_non_restored_state=allow_non_restored_state, wait_running_s=wait_running_s,
                     progress=progress)
    except StackError as exc:
        raise StackError(f"{exc}\n{name} is stopped; its state is safe in the savepoint {path}. Fix the cause, then "
                         f"`fleetflow jobs submit {name} --from {path}`") from None
    progress(f"{name} running again as {job.job_id} from {path}")
    return job


def rescale(s: StackSettings, name: str, new_parallelism: int, *, wait_running_s: float = 180,
            progress: Progress = _quiet) -> JobInfo:
    """Upgrade ``name`` to run at ``new_parallelism``: keyed state is redistributed by key group."""
    return upgrade(s, name, parallelism=new_parallelism, wait_running_s=wait_running_s, progress=progress)
