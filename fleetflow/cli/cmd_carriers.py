"""``fleetflow carriers list|publish [FILE...]``: the carrier mappings and their topic.

``publish`` validates, then sends each mapping to the compacted ``ff.carrier-mappings``
topic keyed by carrier. The running shipment job applies it as broadcast state without
a restart (fleetflow/carriers/README.md). Files that fail validation publish nothing.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from fleetflow.stack.process import StackError


def _load(files: list[str]) -> dict:
    from fleetflow.carrier_mappings import CarrierMappingError, load_all, load_file

    try:
        if not files:
            return load_all()
        mappings = [load_file(Path(f)) for f in files]
    except CarrierMappingError as exc:
        raise StackError(str(exc)) from None
    except OSError as exc:
        raise StackError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return {m.carrier: m for m in mappings}


def published_versions(bootstrap: str) -> dict[str, int]:
    """Highest valid version per carrier on the topic (what a fresh job would hold)."""
    from fleetflow import contracts, topics
    from fleetflow.contracts import ContractError
    from fleetflow.kafka_io import read_all
    from udfs.normalise import apply_mapping_update

    held: dict = {}
    for raw in read_all(bootstrap, topics.CARRIER_MAPPINGS.name):
        try:
            _, record = contracts.decode(raw, expected="carrier_mappings")
        except ContractError:
            continue
        held, _ = apply_mapping_update(held, record)
    return {carrier: m.version for carrier, m in held.items()}


def cmd_list(s, args):
    from fleetflow.carrier_mappings import coverage

    mappings = _load(args.files)
    published = published_versions(s.kafka_bootstrap) if args.published else {}
    for carrier in sorted(mappings):
        m = mappings[carrier]
        cov = coverage(m)
        line = f"{carrier:<10} v{m.version:<4} {cov['codes']:>3} codes  {len(cov['statuses']):>2} statuses"
        if args.published:
            line += f"  topic: {('v' + str(published[carrier])) if carrier in published else 'not published'}"
        print(line)


def cmd_publish(s, args):
    from fleetflow import contracts, topics
    from fleetflow.carrier_mappings import to_record
    from fleetflow.kafka_io import publish_encoded

    mappings = _load(args.files)
    now_ms = int(time.time() * 1000)
    items = [(carrier.encode(), contracts.encode("carrier_mappings", to_record(m, now_ms)))
             for carrier, m in sorted(mappings.items())]
    sent = publish_encoded(s.kafka_bootstrap, topics.CARRIER_MAPPINGS.name, items)
    for carrier, m in sorted(mappings.items()):
        print(f"published {carrier} v{m.version} to {topics.CARRIER_MAPPINGS.name}")
    print(f"{sent} mapping(s) published; the shipment job applies them without a restart", file=sys.stderr)


def register(subparsers) -> None:
    p = subparsers.add_parser("carriers", help="list carrier mappings or publish them to ff.carrier-mappings")
    sub = p.add_subparsers(dest="carriers_action", required=True)
    ls = sub.add_parser("list", help="the mapping files with their version and coverage")
    ls.add_argument("files", nargs="*", metavar="FILE", help="mapping files (default: fleetflow/carriers/*.yaml)")
    ls.add_argument("--published", action="store_true", help="also show the version held on the topic")
    ls.set_defaults(fn=cmd_list)
    pub = sub.add_parser("publish", help="validate and publish mappings (all files when none is given)")
    pub.add_argument("files", nargs="*", metavar="FILE", help="mapping files (default: fleetflow/carriers/*.yaml)")
    pub.set_defaults(fn=cmd_publish)
