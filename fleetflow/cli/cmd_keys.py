"""``fleetflow keys create|list|show|set-vehicles|revoke``: API keys (stored hashed; see fleetflow/apikeys.py)."""
from __future__ import annotations

import time

from fleetflow.stack.process import StackError


def _session(s):
    from fleetflow.cassandra_session import connect
    return connect(s, keyspace=s.keyspace)


def _pepper() -> bytes:
    # The same setting the API reads, so keys made here verify there.
    from api.settings import get_settings
    return get_settings().key_pepper.get_secret_value().encode("utf-8")


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))


def _vehicles(key) -> str:
    """What the key may submit pings for, as `keys list`/`show` print it."""
    from fleetflow.apikeys import PARTNER
    if key.role != PARTNER:
        return "any" if key.role == "admin" else "-"
    return ", ".join(key.vehicle_patterns) if key.vehicle_patterns else "none"


def cmd_keys(s, args):
    from rich.console import Console
    from rich.table import Table

    from fleetflow import apikeys

    # Key ids must print whole: people copy them into `keys revoke`.
    console = Console(width=140)
    now_ms = int(time.time() * 1000)
    cluster, session = _session(s)
    try:
        if args.action == "create":
            key, raw = apikeys.create(session, _pepper(), role=args.role, carrier=args.carrier, name=args.name,
                                      rate_limit_per_min=args.rate_limit, vehicle_patterns=args.vehicles,
                                      now_ms=now_ms)
            console.print(f"created {key.role} key {key.key_id}"
                          + (f" for carrier {key.carrier}" if key.carrier else "")
                          + f", {key.rate_limit_per_min} requests/min, pings: {_vehicles(key)}."
                          + " The key is shown only once:", highlight=False)
            print(raw)
        elif args.action in ("list", "show"):
            keys = apikeys.list_keys(session) if args.action == "list" else [apikeys.get(session, args.key_id)]
            t = Table("key_id", "role", "carrier", "vehicles", "name", "rate/min", "created", "revoked")
            for k in keys:
                t.add_row(k.key_id, k.role, k.carrier or "-", _vehicles(k), k.name, str(k.rate_limit_per_min),
                          _when(k.created_ms), "-" if k.revoked_ms is None else _when(k.revoked_ms))
            console.print(t)
        elif args.action == "set-vehicles":
            key = apikeys.set_vehicle_patterns(session, args.key_id, args.vehicles)
            console.print(f"key {key.key_id} pings: {_vehicles(key)}; running APIs apply it within their key "
                          f"cache TTL", highlight=False)
        elif args.action == "revoke":
            key = apikeys.revoke(session, args.key_id, now_ms=now_ms)
            console.print(f"revoked {key.key_id} ({key.role}); the API refuses it within its key cache TTL",
                          highlight=False)
    except apikeys.ApiKeyError as exc:
        raise StackError(str(exc)) from None
    finally:
        cluster.shutdown()


def register(subparsers) -> None:
    from fleetflow.apikeys import ROLES
    p = subparsers.add_parser("keys", help="create, list, show, scope and revoke API keys (stored hashed)")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="create a key and print it once")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--carrier", help="partner keys only: the one carrier the key may submit and read")
    c.add_argument("--name", default="", help="who the key is for")
    c.add_argument("--rate-limit", type=int, help="requests per minute (default by role)")
    c.add_argument("--vehicles", action="append", default=[], metavar="PATTERN",
                   help="partner keys only: fnmatch pattern(s) of the vehicle ids the key may submit pings for, "
                        "e.g. 'FX-VAN*' (repeat or comma-separate; without it the key may submit no pings)")
    sub.add_parser("list", help="list keys with their carrier and vehicle patterns (never the keys themselves)")
    sh = sub.add_parser("show", help="one key's role, carrier, vehicle patterns and state")
    sh.add_argument("key_id")
    sv = sub.add_parser("set-vehicles", help="replace a partner key's vehicle patterns (none given: no pings)")
    sv.add_argument("key_id")
    sv.add_argument("--vehicles", action="append", default=[], metavar="PATTERN",
                    help="fnmatch pattern(s) of vehicle ids, e.g. 'FX-VAN*'")
    r = sub.add_parser("revoke", help="revoke a key by id")
    r.add_argument("key_id")
    p.set_defaults(fn=cmd_keys)
