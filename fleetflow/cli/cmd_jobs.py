"""``fleetflow jobs list|submit|savepoint|stop|upgrade|rescale``: the jobs on the Flink session cluster.

The work is in fleetflow/flinkjobs.py; this module parses arguments and shows progress.
"""
from __future__ import annotations

import json
import logging
import time

from fleetflow.stack.process import StackError

log = logging.getLogger("fleetflow.cli.jobs")


def _console():
    from rich.console import Console
    # Job ids and savepoint paths must print whole: people paste them into the next command.
    return Console(width=160)


def _config(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        cfg = json.loads(text)
    except ValueError as exc:
        raise StackError(f"--config is not JSON ({exc}): {text!r}") from None
    if not isinstance(cfg, dict):
        raise StackError(f"--config must be a JSON object, e.g. '{{\"out_of_orderness_ms\": 30000}}', not {text!r}")
    return cfg


def _ago(ms: int, now_ms: int) -> str:
    secs = max(0, (now_ms - ms) // 1000)
    if secs < 120:
        return f"{secs}s ago"
    if secs < 7200:
        return f"{secs // 60}m ago"
    return f"{secs // 3600}h ago"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _list(s, args, console) -> None:
    from rich.table import Table

    from fleetflow import flinkjobs
    now_ms = int(time.time() * 1000)
    jobs = sorted(flinkjobs.list_jobs(s), key=lambda j: -j.start_time_ms)
    if not args.all:
        jobs = [j for j in jobs if j.state in flinkjobs.ACTIVE_STATES]
    t = Table("name", "state", "job id", "started", "parallelism", "last checkpoint")
    for j in jobs:
        par, chk = "-", "-"
        if j.state in flinkjobs.ACTIVE_STATES:
            par = str(flinkjobs.job_parallelism(s, j.job_id))
            c = flinkjobs.checkpoints(s, j.job_id)
            if c is not None:
                chk = f"#{c.checkpoint_id} {_ago(c.end_time_ms, now_ms)}, {_size(c.state_size_bytes)}"
        t.add_row(j.name, j.state, j.job_id, _ago(j.start_time_ms, now_ms), par, chk)
    console.print(t)
    if not jobs:
        console.print("no jobs running" + ("" if args.all else " (--all shows finished ones)"))


def _progress(console, status):
    def say(msg: str) -> None:
        log.info(msg)
        status.update(msg)
        console.print(f"  {msg}", highlight=False)
    return say


def cmd_jobs(s, args):
    from fleetflow import flinkjobs
    console = _console()
    if args.action == "list":
        _list(s, args, console)
        return
    with console.status(f"{args.action} {getattr(args, 'job', '')}…") as status:
        say = _progress(console, status)
        if args.action == "submit":
            j = flinkjobs.submit(s, args.job, config=_config(args.config), from_savepoint=args.from_savepoint,
                                 parallelism=args.parallelism,
                                 allow_non_restored_state=args.allow_non_restored_state, progress=say)
            console.print(f"{j.name} {j.state} {j.job_id}  dashboard: "
                          f"{s.flink_rest_url}/#/job/running/{j.job_id}/overview", highlight=False)
        elif args.action == "savepoint":
            path = flinkjobs.savepoint(s, args.job, target_dir=args.dir, progress=say)
            console.print(f"savepoint: {path}", highlight=False)
        elif args.action == "stop":
            j = flinkjobs.resolve(s, args.job)
            path = flinkjobs.stop(s, j, savepoint=not args.no_savepoint, target_dir=args.dir, progress=say)
            if path:
                console.print(f"stopped; resume with: fleetflow jobs submit {j.name} --from {path}", highlight=False)
            else:
                console.print(f"cancelled without a savepoint. Its retained checkpoints are under "
                              f"{flinkjobs.flink_state_dirs(s)[0]}/{j.job_id}/ (submit --from a chk-N there); "
                              f"a plain submit resumes from its committed Kafka offsets with empty state",
                              highlight=False)
        elif args.action == "upgrade":
            j = flinkjobs.upgrade(s, args.job, config=_config(args.config), parallelism=args.parallelism,
                                  allow_non_restored_state=args.allow_non_restored_state, progress=say)
            console.print(f"{j.name} upgraded: {j.job_id} RUNNING", highlight=False)
        elif args.action == "rescale":
            j = flinkjobs.rescale(s, args.job, args.parallelism, progress=say)
            console.print(f"{j.name} rescaled to {args.parallelism}: {j.job_id} RUNNING", highlight=False)


def _positive(text: str) -> int:
    import argparse
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def register(subparsers) -> None:
    from fleetflow.flinkjobs import JOBS
    names = ", ".join(JOBS)
    p = subparsers.add_parser("jobs", help="list, submit, savepoint, stop, upgrade and rescale Flink jobs")
    sub = p.add_subparsers(dest="action", required=True)

    ls = sub.add_parser("list", help="jobs on the session cluster with parallelism and last checkpoint")
    ls.add_argument("--all", action="store_true", help="include finished, cancelled and failed jobs")

    sb = sub.add_parser("submit", help="submit a job (left alone if it already runs)")
    sb.add_argument("job", nargs="?", default="fleetflow-shipment-status", help=f"one of {names}")
    sb.add_argument("--from", dest="from_savepoint", metavar="PATH",
                    help="restore from a savepoint or retained checkpoint (flink run -s)")
    sb.add_argument("-p", "--parallelism", type=_positive)
    sb.add_argument("--config", help="JSON overrides for the job's JobConfig")
    sb.add_argument("--allow-non-restored-state", action="store_true",
                    help="drop savepoint state of operators the new code no longer has")

    sp = sub.add_parser("savepoint", help="write a savepoint of a running job; the job keeps running")
    sp.add_argument("job", help="job name or Flink job id")
    sp.add_argument("--dir", help="target directory (default: the cluster's savepoint dir)")

    st = sub.add_parser("stop", help="stop a job with a savepoint (or cancel it with --no-savepoint)")
    st.add_argument("job", help="job name or Flink job id")
    st.add_argument("--no-savepoint", action="store_true", help="cancel instead")
    st.add_argument("--dir", help="savepoint directory (default: the cluster's savepoint dir)")

    up = sub.add_parser("upgrade", help="stop with a savepoint and resubmit the current code from it")
    up.add_argument("job", help=f"one of {names}")
    up.add_argument("--config", help="JSON JobConfig to use instead of the one it was last submitted with")
    up.add_argument("-p", "--parallelism", type=_positive)
    up.add_argument("--allow-non-restored-state", action="store_true",
                    help="drop savepoint state of operators the new code no longer has")

    rs = sub.add_parser("rescale", help="upgrade to a new parallelism (state is redistributed)")
    rs.add_argument("job", help=f"one of {names}")
    rs.add_argument("parallelism", type=_positive)

    p.set_defaults(fn=cmd_jobs)
