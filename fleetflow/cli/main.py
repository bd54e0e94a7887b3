"""The ``fleetflow`` command."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time

from rich.console import Console

from fleetflow import logs, settings
from fleetflow.stack.process import StackError

console = Console(stderr=False)
log = logging.getLogger("fleetflow.cli")


def command_groups() -> list[str]:
    """Command groups that live in their own module ``fleetflow/cli/cmd_<group>.py``.

    Each such module defines ``register(subparsers)``; its handlers may raise StackError
    for a clean one-line failure. Discovered by name so a new group is one new file.
    """
    import pkgutil

    import fleetflow.cli as pkg
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("cmd_"))


def _say(msg: str) -> None:
    console.print(msg, highlight=False)
    log.info(msg)


def cmd_setup(s, args):
    from fleetflow import setup
    setup.setup(s, _say)
    _say("setup done")


def cmd_up(s, args):
    from fleetflow import schema, stack
    with console.status("starting the stack…"):
        stack.up(s, progress=_say)
        if not args.no_init:
            _say(f"init: {schema.init(s)}")
    cmd_status(s, args)


def cmd_down(s, args):
    from fleetflow import stack
    stopped = stack.down(s, progress=_say)
    _say(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def cmd_status(s, args):
    from rich.table import Table

    from fleetflow import stack
    t = Table("service", "pid", "ready", "log")
    for st in stack.status(s):
        t.add_row(st.name, str(st.pid or "-"), "yes" if st.ready else "no", st.log_file)
    console.print(t)


def cmd_logs(s, args):
    from fleetflow import stack
    path = stack.log_path(s, args.service)
    with open(path, errors="replace") as f:
        lines = f.readlines()[-args.lines:]
    sys.stdout.writelines(lines)


def cmd_init(s, args):
    from fleetflow import schema
    _say(json.dumps(schema.init(s)))


def cmd_demo(s, args):
    from fleetflow import demo
    with console.status("bringing up the demo…"):
        tid = demo.run(s, n_shipments=args.shipments, progress=_say)
    console.print()
    console.print(f"Flink dashboard : {s.flink_rest_url}")
    console.print(f"API             : {s.api_url}/docs")
    console.print(f"Try             : curl -s {s.api_url}/v1/shipments/{tid}")
    console.print("Stop everything : fleetflow down")


def cmd_simulate(s, args):
    from fleetflow.simulate import config as sim_config
    from fleetflow.simulate.cli import run_simulate
    if not args.out and not args.bootstrap:
        args.bootstrap = s.kafka_bootstrap
    if args.bootstrap and args.start_ms == sim_config.DEFAULT_START_MS:
        # Live runs end "now": the job rejects events from the future or older than retention.
        args.start_ms = int(time.time() // 60 * 60_000 - args.duration * 1000)
    run_simulate(args)


def cmd_replay(s, args):
    from fleetflow.simulate.cli import run_replay
    run_replay(args)


def cmd_ingest(s, args):
    from fleetflow import kafka_io, topics
    from fleetflow.carrier_mappings import load_all
    from fleetflow.partner_files import parse_partner_file
    from fleetflow import contracts

    result = parse_partner_file(args.file, partner=args.partner, now_ms=int(time.time() * 1000),
                                known_carriers=frozenset(load_all()))
    sent = kafka_io.publish(s.kafka_bootstrap, topics.SCANS.name, "scans", result.records, "tracking_id")
    dead = kafka_io.publish_encoded(s.kafka_bootstrap, topics.DEAD_LETTERS.name,
                                    [(None, contracts.encode("dead_letters", d)) for d in result.dead_letters])
    _say(f"{args.file}: {result.lines_read} lines, {sent} scans published, {dead} dead letters "
         f"({result.blank_lines} blank, {result.header_lines} header). Re-ingesting is harmless: "
         f"event ids are derived from the lines.")


def cmd_api(s, args):
    import uvicorn
    uvicorn.run("api.main:app", host=s.host, port=args.port or s.api_port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleetflow", description="FleetFlow: real-time delivery tracking on Flink.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="fetch Kafka/Cassandra/connector jars (Maven) and redis-server (apt)").set_defaults(
        fn=cmd_setup)
    up = sub.add_parser("up", help="start Kafka, Cassandra, Redis and a Flink session cluster on loopback")
    up.add_argument("--no-init", action="store_true", help="do not create topics and tables")
    up.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop everything fleetflow started").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="show which services run and answer").set_defaults(fn=cmd_status)
    lg = sub.add_parser("logs", help="print the tail of a service log")
    lg.add_argument("service", help="kafka, cassandra, redis, flink-jobmanager, flink-taskmanager[-N], api")
    lg.add_argument("-n", "--lines", type=int, default=50)
    lg.set_defaults(fn=cmd_logs)
    sub.add_parser("init", help="create Kafka topics and apply Cassandra migrations (idempotent)").set_defaults(
        fn=cmd_init)
    demo = sub.add_parser("demo", help="stack + job + API + demo shipments, then print a curl that works")
    demo.add_argument("--shipments", type=int, default=8)
    demo.set_defaults(fn=cmd_demo)
    from fleetflow.simulate.cli import add_replay_args, add_simulate_args
    sim = sub.add_parser("simulate", help="run the deterministic fleet simulator (to the local stack by default)")
    add_simulate_args(sim)
    sim.set_defaults(fn=cmd_simulate)
    rep = sub.add_parser("replay", help="send a recording made by `simulate --out` to Kafka")
    add_replay_args(rep)
    rep.set_defaults(fn=cmd_replay)
    ing = sub.add_parser("ingest", help="validate a partner CSV/JSONL drop and publish its scans")
    ing.add_argument("file")
    ing.add_argument("--partner", required=True, help="partner id; part of derived event ids")
    ing.set_defaults(fn=cmd_ingest)
    api = sub.add_parser("api", help="serve the API in the foreground")
    api.add_argument("--port", type=int)
    api.set_defaults(fn=cmd_api)
    for name in command_groups():
        importlib.import_module(f"fleetflow.cli.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    s = settings.load()
    logs.configure(s)
    try:
        # A handler may return a non-zero status (a check that found differences).
        rc = args.fn(s, args)
    except StackError as exc:
        log.error(str(exc))
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130
    return rc if type(rc) is int else 0
