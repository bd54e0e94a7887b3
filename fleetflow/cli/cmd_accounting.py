"""``fleetflow accounting TRUTH``: check a simulated run against the stores (fleetflow/simulate/accounting.py).

Exit status 0 when history rows, position rows and dead letters match the truth file,
1 when they still differ after ``--wait-s``.
"""
from __future__ import annotations

import time

from fleetflow.stack.process import StackError


def cmd_accounting(s, args) -> int:
    from rich.console import Console
    from rich.table import Table

    from fleetflow.cassandra_session import connect
    from fleetflow.simulate import accounting
    from fleetflow.simulate.sinks import read_truth

    try:
        truth = read_truth(args.truth)
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read truth file {args.truth}: {exc}") from None
    if accounting.OFFSETS_KEY not in truth:
        raise StackError(f"{args.truth} has no Kafka start offsets: it comes from a run that did not send to "
                         f"Kafka. Send with `fleetflow simulate --truth FILE` or `fleetflow replay REC --truth FILE`.")
    want = accounting.expected(truth)
    cluster, session = connect(s, keyspace=s.keyspace)
    try:
        deadline = time.monotonic() + args.wait_s
        got = accounting.observe(session, s.kafka_bootstrap, truth)
        # The jobs may still be catching up: poll until the counts agree or time is up.
        while got != want and time.monotonic() < deadline:
            time.sleep(3)
            got = accounting.observe(session, s.kafka_bootstrap, truth)
    finally:
        cluster.shutdown()

    t = Table(title=f"simulated run seed={truth['seed']}: truth vs stores")
    for col in ("what", "truth", "stores", ""):
        t.add_column(col, justify="left" if col == "what" else "right")
    for (label, w), (_, g) in zip(want.rows(), got.rows()):
        t.add_row(label, str(w), str(g), "ok" if w == g else "DIFFERS")
    faults = truth["counts"]["faults"]
    t.add_row("duplicates injected (must leave no row)", str(faults["duplicates"]), "", "", end_section=True)
    Console().print(t)
    return 0 if got == want else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("accounting", help="check a simulated run's truth file against Cassandra and "
                                                 "the dead-letter topic")
    p.add_argument("truth", help="truth file of a run sent to Kafka (simulate --truth / replay --truth)")
    p.add_argument("--wait-s", type=float, default=0.0,
                   help="keep checking until the counts match or this many seconds pass (default 0)")
    p.set_defaults(fn=cmd_accounting)
