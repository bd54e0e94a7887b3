"""``fleetflow privacy export|erase|mask-export``: data-subject requests and masked dev exports."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager

from fleetflow.stack.process import StackError

IDENT_HELP = ("identifiers of ONE subject: tracking:ID, order:ID (expands to its tracking ids), "
              "driver:drv_… (pseudonym) or driver-id:RAW (pseudonymised with FLEETFLOW_HMAC_KEY)")


@contextmanager
def _stores(s):
    import redis

    from cassandra import DriverException
    from cassandra.cluster import NoHostAvailable

    from fleetflow.cassandra_session import connect
    try:
        cluster, session = connect(s, keyspace=s.keyspace, timeout_s=30)
    except (NoHostAvailable, DriverException) as exc:
        raise StackError(f"cannot reach Cassandra at {s.host}:{s.cassandra_port} ({exc}); is the stack up?") from None
    r = redis.Redis.from_url(s.redis_url)
    try:
        yield session, r
    finally:
        r.close()
        cluster.shutdown()


def _subject(args):
    from fleetflow.privacy_requests import PrivacyError, parse_subject
    try:
        return parse_subject(args.identifiers, args.window or ())
    except PrivacyError as exc:
        raise StackError(str(exc)) from None


def _write_json(doc: dict, out: str | None) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")


def cmd_export(s, args):
    from fleetflow import privacy_requests as pr
    subject = _subject(args)
    with _stores(s) as (session, r):
        doc = pr.export(session, r, s.keyspace, subject, operator=args.operator)
    _write_json(doc, args.out)
    where = args.out or "stdout"
    print(f"export {doc['request_id']}: {sum(doc['counts'].values())} items ({doc['counts']}) → {where}",
          file=sys.stderr)
    for table, why in doc["not_searched"].items():
        print(f"warning: table {table} was not searched: {why}", file=sys.stderr)


def cmd_erase(s, args):
    from fleetflow import privacy_requests as pr
    subject = _subject(args)
    with _stores(s) as (session, r):
        if not args.yes:
            found = pr.collect(session, r, s.keyspace, subject)
            print(f"dry run: would erase {found.total()} items {found.counts()}; "
                  f"run again with --yes to erase (nothing was changed)")
            return
        try:
            result = pr.erase(session, r, s.keyspace, subject, operator=args.operator)
        except pr.PrivacyError as exc:
            raise StackError(str(exc)) from None
    print(f"erase {result.request_id}: {result.outcome}; removed {result.removed}")
    for note in result.notes:
        print(f"note: {note}")
    for table, why in result.not_searched.items():
        print(f"warning: table {table} was not searched: {why}")
    if result.outcome != "COMPLETE":
        raise StackError(f"erasure {result.request_id} left {result.remaining} (a job may have written again "
                         "meanwhile); run it again")


def cmd_mask_export(s, args):
    from fleetflow import privacy_requests as pr
    with _stores(s) as (session, _):
        try:
            counts = pr.write_masked_export(session, s.keyspace, args.out, limit_per_table=args.limit,
                                            precision_decimals=args.precision, tables=args.table or None)
        except pr.PrivacyError as exc:
            raise StackError(str(exc)) from None
    print(f"masked export → {args.out}: {sum(counts.values())} rows {counts}")


def register(subparsers) -> None:
    p = subparsers.add_parser("privacy", help="data-subject export/erase and masked exports (docs/privacy.md)")
    sub = p.add_subparsers(dest="privacy_action", required=True)

    def subject_args(sp):
        sp.add_argument("identifiers", nargs="+", metavar="SUBJECT", help=IDENT_HELP)
        sp.add_argument("--window", action="append", metavar="VEHICLE:FROM_MS:TO_MS",
                        help="a shift the driver drove (repeatable); positions are found by vehicle and time")
        sp.add_argument("--operator", help="who handles the request (audit); default: the login name")

    ex = sub.add_parser("export", help="write everything held about a subject as JSON")
    subject_args(ex)
    ex.add_argument("--out", help="file to write (default: stdout)")
    ex.set_defaults(fn=cmd_export)

    er = sub.add_parser("erase", help="delete a subject's data from Cassandra and Redis and audit it")
    subject_args(er)
    er.add_argument("--yes", action="store_true", help="really erase; without it, only count what would go")
    er.set_defaults(fn=cmd_erase)

    mk = sub.add_parser("mask-export", help="export tables with ids pseudonymised and locations coarsened (JSONL)")
    mk.add_argument("--out", required=True)
    mk.add_argument("--limit", type=int, default=10_000, help="rows per table (default 10000)")
    mk.add_argument("--precision", type=int, default=2, help="decimals kept in lat/lon (2 ≈ 1.1 km)")
    mk.add_argument("--table", action="append", help="only these tables (repeatable)")
    mk.set_defaults(fn=cmd_mask_export)
