"""``fleetflow keys create|list|revoke``: API keys (stored hashed; see fleetflow/apikeys.py)."""
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
                                      rate_limit_per_min=args.rate_limit, now_ms=now_ms)
            console.print(f"created {key.role} key {key.key_id}"
                          + (f" for carrier {key.carrier}" if key.carrier else "")
                          + f", {key.rate_limit_per_min} requests/min. The key is shown only once:", highlight=False)
            print(raw)
        elif args.action == "list":
            t = Table("key_id", "role", "carrier", "name", "rate/min", "created", "revoked")
            for k in apikeys.list_keys(session):
                t.add_row(k.key_id, k.role, k.carrier or "-", k.name, str(k.rate_limit_per_min),
                          time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created_ms / 1000)),
                          "-" if k.revoked_ms is None else time.strftime("%Y-%m-%d %H:%M",
                                                                         time.gmtime(k.revoked_ms / 1000)))
            console.print(t)
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
    p = subparsers.add_parser("keys", help="create, list and revoke API keys (stored hashed)")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="create a key and print it once")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--carrier", help="partner keys only: the one carrier the key may submit and read")
    c.add_argument("--name", default="", help="who the key is for")
    c.add_argument("--rate-limit", type=int, help="requests per minute (default by role)")
    sub.add_parser("list", help="list keys (never the keys themselves)")
    r = sub.add_parser("revoke", help="revoke a key by id")
    r.add_argument("key_id")
    p.set_defaults(fn=cmd_keys)
