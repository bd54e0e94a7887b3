"""Data-subject requests (export, erase) and masked exports for test and dev.

A subject is a customer (known by order ids and/or tracking ids) or a driver (known by
an HMAC pseudonym, plus the vehicle and time windows they drove: positions are stored
per vehicle and never name the driver).

What to search is derived from the live schema, not from a hand-kept list: a table whose
partition key is ``tracking_id``, ``order_id`` or ``driver_pseudonym`` holds that
subject's rows, and a table partitioned by ``(vehicle_id, day)`` and clustered by
``event_time_ms`` holds the rows of a driver's windows. A table that fits no rule must
be reviewed and listed in ``REVIEWED_WITHOUT_LOOKUP``; until then every export names it
under ``not_searched`` (and tests/unit/privacy fails), so a new table is never skipped
silently. Redis keys per identifier are in ``REDIS_HASHES``.
"""
from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable, Iterator

from fleetflow import privacy

DAY_MS = 24 * 3600 * 1000
# A window longer than this is almost certainly a typo (ms vs s) and would scan for hours.
MAX_WINDOW_MS = 92 * DAY_MS

ALERTS_STREAM = "ff:alerts:stream"
VEHICLE_KEY_PATTERN = "ff:vehicle:*"
# Redis hashes per identifier kind; ``{}`` is the identifier.
REDIS_HASHES: dict[str, tuple[str, ...]] = {
    "tracking": ("ff:shipment:{}",),
}

# Partition key -> identifier kind whose value is that key.
PARTITION_RULES: dict[tuple[str, ...], str] = {
    ("tracking_id",): "tracking",
    ("order_id",): "order",
    ("driver_pseudonym",): "driver",
}
WINDOW_PARTITION = ("vehicle_id", "day")
WINDOW_CLUSTERING = "event_time_ms"
# Per-entity timelines (alerts): shipments and parcels by tracking id, vans by window.
ENTITY_PARTITION = ("entity_type", "entity_id")
CUSTOMER_ENTITY_TYPES = ("SHIPMENT", "PACKAGE")
VEHICLE_ENTITY_TYPE = "VEHICLE"
# Tables keyed by one of these are searched with the values found in the subject's other rows.
FOLLOW_KEYS = frozenset({"alert_id"})

# Tables reviewed and found to need no per-subject lookup, with the reason.
REVIEWED_WITHOUT_LOOKUP: dict[str, str] = {
    "schema_migrations": "migration bookkeeping, no personal data",
    "privacy_requests": "the request audit itself: subjects appear only as HMAC references",
    "api_keys": "API clients (partners, dispatch tools), not data subjects; name labels the key",
    # Neither the postcode nor the order time is stored with the shipment, so these
    # partitions cannot be found from a subject; their rows hold only tracking ids, the
    # API re-checks every hit against current state (gone after an erasure), and they
    # expire with raw retention (180 days).
    "shipments_by_postcode": "index without a reachable key (postcode not stored per shipment); expires in 180 d",
    "shipments_by_order_day": "index without a reachable key (order time not stored per shipment); expires in 180 d",
}
# Never copied into a masked export.
MASK_EXCLUDE_TABLES = frozenset({"schema_migrations", "privacy_requests"})
# Text columns that are codes or enums, not free text; kept as they are in a masked export.
# Any other text column is dropped (addresses, raw carrier text, names, notes, ...).
MASK_KEEP_TEXT = frozenset({
    "status", "status_detail", "prev_status", "carrier", "raw_code", "source", "service_level",
    "action", "type", "severity", "state", "entity_type", "reason", "eta_basis", "late_risk",
    "outcome", "route_to", "kind", "transition", "schema",
})
NUMERIC_TYPES = frozenset({"int", "bigint", "smallint", "tinyint", "varint", "double", "float", "decimal",
                           "boolean", "counter", "timestamp", "date", "time"})


class PrivacyError(Exception):
    """A request that cannot be carried out as asked; the message says why."""


# ---------------------------------------------------------------- subjects

@dataclass(frozen=True)
class Window:
    vehicle_id: str
    from_ms: int
    to_ms: int

    def days(self) -> range:
        return range(self.from_ms // DAY_MS, (self.to_ms - 1) // DAY_MS + 1)


@dataclass
class Subject:
    tracking_ids: set[str] = field(default_factory=set)
    order_ids: set[str] = field(default_factory=set)
    driver_pseudonyms: set[str] = field(default_factory=set)
    windows: list[Window] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "driver" if self.driver_pseudonyms else "customer"

    def identifiers(self) -> list[tuple[str, str]]:
        return ([("tracking", t) for t in sorted(self.tracking_ids)]
                + [("order", o) for o in sorted(self.order_ids)]
                + [("driver", d) for d in sorted(self.driver_pseudonyms)])

    def as_json(self) -> dict:
        return {"tracking_ids": sorted(self.tracking_ids), "order_ids": sorted(self.order_ids),
                "driver_pseudonyms": sorted(self.driver_pseudonyms),
                "windows": [{"vehicle_id": w.vehicle_id, "from_ms": w.from_ms, "to_ms": w.to_ms}
                            for w in self.windows]}


def parse_window(text: str) -> Window:
    """``VEHICLE:FROM_MS:TO_MS`` (epoch ms, end exclusive)."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise PrivacyError(f"window {text!r}: expected VEHICLE:FROM_MS:TO_MS")
    try:
        from_ms, to_ms = int(parts[1]), int(parts[2])
    except ValueError:
        raise PrivacyError(f"window {text!r}: FROM_MS and TO_MS must be epoch milliseconds") from None
    if from_ms >= to_ms:
        raise PrivacyError(f"window {text!r}: FROM_MS must be before TO_MS")
    if to_ms - from_ms > MAX_WINDOW_MS:
        raise PrivacyError(f"window {text!r}: longer than {MAX_WINDOW_MS // DAY_MS} days; split it")
    return Window(parts[0], from_ms, to_ms)


def parse_subject(identifiers: Iterable[str], windows: Iterable[str] = (), hmac_key: bytes | None = None) -> Subject:
    """``tracking:ID``, ``order:ID``, ``driver:drv_…`` or ``driver-id:RAW`` (pseudonymised here)."""
    s = Subject()
    for text in identifiers:
        kind, sep, value = text.partition(":")
        value = value.strip()
        if not sep or not value:
            raise PrivacyError(f"identifier {text!r}: expected KIND:VALUE with KIND one of "
                               "tracking, order, driver, driver-id")
        if kind == "tracking":
            s.tracking_ids.add(value)
        elif kind == "order":
            s.order_ids.add(value)
        elif kind == "driver":
            if not value.startswith(privacy.PSEUDONYM_PREFIX):
                raise PrivacyError(f"driver {value!r} is not a pseudonym ({privacy.PSEUDONYM_PREFIX}…); "
                                   "use driver-id:RAW to pseudonymise a raw driver id with FLEETFLOW_HMAC_KEY")
            s.driver_pseudonyms.add(value)
        elif kind == "driver-id":
            key = hmac_key if hmac_key is not None else privacy.hmac_key_from_env()
            s.driver_pseudonyms.add(privacy.pseudonymise_driver(value, key))
        else:
            raise PrivacyError(f"identifier {text!r}: unknown kind {kind!r}")
    s.windows = [parse_window(w) for w in windows]
    if s.windows and not s.driver_pseudonyms:
        raise PrivacyError("--window belongs to a driver subject: add driver:drv_… or driver-id:RAW")
    if not s.identifiers():
        raise PrivacyError("no identifiers given")
    return s


# ---------------------------------------------------------------- schema-driven lookup

@dataclass(frozen=True)
class TableShape:
    name: str
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...]
    columns: dict[str, str]


def locate(shape: TableShape) -> str | None:
    """The rule a table is searched by on its own keys, or None if it needs ``plan_lookups``."""
    if shape.partition_key in PARTITION_RULES:
        return PARTITION_RULES[shape.partition_key]
    if shape.partition_key == WINDOW_PARTITION and shape.clustering[:1] == (WINDOW_CLUSTERING,):
        return "window"
    if shape.partition_key == ENTITY_PARTITION:
        return "entity"
    if len(shape.partition_key) == 1 and shape.partition_key[0] in FOLLOW_KEYS:
        return "follow"
    return None


def _derivable(columns: Iterable[str]) -> set[str]:
    cols = set(columns)
    return cols | ({"day"} if WINDOW_CLUSTERING in cols else set())


def plan_lookups(shapes: Iterable[TableShape]) -> dict[str, str | None]:
    """Table -> rule. ``index``: a table whose whole primary key can be built from rows the
    other rules find (``day`` from ``event_time_ms``), e.g. a by-day listing of alerts.
    None: reviewed (``REVIEWED_WITHOUT_LOOKUP``) or not searchable, which must be reviewed."""
    shapes = list(shapes)
    plan = {s.name: locate(s) for s in shapes}
    reachable = [_derivable(s.columns) for s in shapes if plan[s.name]]
    for s in shapes:
        if plan[s.name] is None and s.name not in REVIEWED_WITHOUT_LOOKUP:
            key = set(s.partition_key) | set(s.clustering)
            if any(key <= cols for cols in reachable):
                plan[s.name] = "index"
    return plan


def table_shapes(session, keyspace: str) -> list[TableShape]:
    cols: dict[str, dict] = {}
    for r in session.execute("SELECT table_name, column_name, kind, position, type FROM system_schema.columns "
                             "WHERE keyspace_name = %s", (keyspace,)):
        t = cols.setdefault(r.table_name, {"pk": [], "ck": [], "cols": {}})
        t["cols"][r.column_name] = r.type
        if r.kind == "partition_key":
            t["pk"].append((r.position, r.column_name))
        elif r.kind == "clustering":
            t["ck"].append((r.position, r.column_name))
    return [TableShape(name, tuple(c for _, c in sorted(t["pk"])), tuple(c for _, c in sorted(t["ck"])),
                       t["cols"]) for name, t in sorted(cols.items())]


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, dict) or hasattr(v, "items"):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)) or hasattr(v, "__iter__"):
        return [_jsonable(x) for x in v]
    return str(v)


def _row(r) -> dict:
    return {k: _jsonable(v) for k, v in r._asdict().items()}


@dataclass
class Found:
    """Everything held about a subject, and how to find it again for erasure."""
    cassandra: dict[str, list[dict]] = field(default_factory=dict)
    # table -> the WHERE clauses (cql, params) that select exactly the subject's rows
    selectors: dict[str, list[tuple[str, tuple]]] = field(default_factory=dict)
    redis: dict[str, dict] = field(default_factory=dict)
    vehicles: dict[str, dict] = field(default_factory=dict)
    alerts: list[tuple[str, dict]] = field(default_factory=list)
    not_searched: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {f"cassandra.{t}": len(rows) for t, rows in self.cassandra.items() if rows}
        if self.redis:
            out["redis.hashes"] = len(self.redis)
        if self.vehicles:
            out["redis.vehicles"] = len(self.vehicles)
        if self.alerts:
            out["redis.alerts"] = len(self.alerts)
        return out

    def total(self) -> int:
        return sum(self.counts().values())


def _window_selectors(w: Window) -> list[tuple[str, tuple]]:
    return [("vehicle_id = %s AND day = %s AND event_time_ms >= %s AND event_time_ms < %s",
             (w.vehicle_id, day, w.from_ms, w.to_ms)) for day in w.days()]


def _selectors(kind: str, subject: Subject, shape: TableShape) -> list[tuple[str, tuple]]:
    if kind == "tracking":
        return [("tracking_id = %s", (t,)) for t in sorted(subject.tracking_ids)]
    if kind == "order":
        return [("order_id = %s", (o,)) for o in sorted(subject.order_ids)]
    if kind == "driver":
        return [("driver_pseudonym = %s", (d,)) for d in sorted(subject.driver_pseudonyms)]
    if kind == "window":
        return [sel for w in subject.windows for sel in _window_selectors(w)]
    if kind == "entity":
        sels = [("entity_type = %s AND entity_id = %s", (et, t))
                for t in sorted(subject.tracking_ids) for et in CUSTOMER_ENTITY_TYPES]
        if shape.clustering[:1] == (WINDOW_CLUSTERING,):
            sels += [("entity_type = %s AND entity_id = %s AND event_time_ms >= %s AND event_time_ms < %s",
                      (VEHICLE_ENTITY_TYPE, w.vehicle_id, w.from_ms, w.to_ms)) for w in subject.windows]
        return sels
    raise ValueError(kind)


INT_TYPES = frozenset({"int", "bigint", "smallint", "tinyint", "varint"})
TEXT_TYPES = frozenset({"text", "varchar", "ascii"})


def _fits(value: Any, cql_type: str | None) -> bool:
    if cql_type in INT_TYPES:
        return isinstance(value, int) and not isinstance(value, bool)
    if cql_type in TEXT_TYPES:
        return isinstance(value, str)
    return cql_type is not None


def _row_keys(rows: Iterable[dict], key: tuple[str, ...], types: dict[str, str] | None = None) -> list[tuple]:
    """Distinct values of ``key`` in ``rows`` that have all of it with the column's type.

    An int ``day`` missing from a row is derived from its ``event_time_ms`` (days since
    the epoch, as every ``day`` partition in the migrations is defined).
    """
    types = types or {}
    out = set()
    for r in rows:
        vals = dict(r)
        if ("day" not in vals and vals.get(WINDOW_CLUSTERING) is not None
                and types.get("day", "int") in INT_TYPES):
            vals["day"] = int(vals[WINDOW_CLUSTERING]) // DAY_MS
        if all(vals.get(k) is not None and (not types or _fits(vals[k], types.get(k))) for k in key):
            out.add(tuple(vals[k] for k in key))
    return sorted(out, key=repr)


def _decode_hash(raw: dict) -> dict:
    return {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in raw.items()}


def alert_matches(fields: dict, subject: Subject) -> bool:
    """Does one ``ff:alerts:stream`` entry concern the subject?"""
    entity = fields.get("entity_id", "")
    if entity in subject.tracking_ids or entity in subject.order_ids:
        return True
    if any(p in v for p in subject.driver_pseudonyms for v in fields.values()):
        return True
    if fields.get("entity_type", "").lower() == "vehicle":
        try:
            t_ms = int(fields.get("event_time_ms") or 0)
        except ValueError:
            return False
        return any(w.vehicle_id == entity and w.from_ms <= t_ms < w.to_ms for w in subject.windows)
    return False


def _scan_alerts(redis, subject: Subject, batch: int = 1000) -> list[tuple[str, dict]]:
    hits, start = [], "-"
    while True:
        entries = redis.xrange(ALERTS_STREAM, min=start, max="+", count=batch)
        for eid, raw in entries:
            eid = eid.decode() if isinstance(eid, bytes) else eid
            fields = _decode_hash(raw)
            if alert_matches(fields, subject):
                hits.append((eid, fields))
        if len(entries) < batch:
            return hits
        start = "(" + (entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else entries[-1][0])


def collect(session, redis, keyspace: str, subject: Subject) -> Found:
    """Find every row and key held about ``subject``. Order ids expand to their tracking ids first."""
    found = Found()
    shapes = table_shapes(session, keyspace)
    plan = plan_lookups(shapes)
    by_rule: dict[str, list[TableShape]] = {}
    for shape in shapes:
        rule = plan[shape.name]
        if rule is None:
            if shape.name not in REVIEWED_WITHOUT_LOOKUP:
                found.not_searched[shape.name] = "no lookup rule: review it and add one to fleetflow/privacy_requests.py"
            continue
        by_rule.setdefault(rule, []).append(shape)

    def read(shape: TableShape, sels: list[tuple[str, tuple]]) -> list[dict]:
        from cassandra import DriverException
        try:
            rows = [_row(r) for where, params in sels
                    for r in session.execute(f"SELECT * FROM {shape.name} WHERE {where}", params)]
        except DriverException as exc:
            # One table whose rule does not fit its data must not hide every other table.
            found.not_searched[shape.name] = f"lookup failed: {exc}"
            return []
        found.cassandra[shape.name] = rows
        found.selectors[shape.name] = sels
        return rows

    def found_rows() -> list[dict]:
        return [r for rows in found.cassandra.values() for r in rows]

    for shape in by_rule.get("order", []):
        for r in read(shape, _selectors("order", subject, shape)):
            if r.get("tracking_id"):
                subject.tracking_ids.add(r["tracking_id"])
    for rule in ("tracking", "driver", "window", "entity"):
        for shape in by_rule.get(rule, []):
            read(shape, _selectors(rule, subject, shape))
    for rule in ("follow", "index"):
        rows = found_rows()
        for shape in by_rule.get(rule, []):
            key = shape.partition_key if rule == "follow" else shape.partition_key + shape.clustering
            where = " AND ".join(f"{k} = %s" for k in key)
            read(shape, [(where, vals) for vals in _row_keys(rows, key, shape.columns)])
    if subject.driver_pseudonyms and not subject.windows:
        found.notes.append("positions are stored per vehicle without the driver: pass --window "
                           "VEHICLE:FROM_MS:TO_MS for the shifts the driver drove to include them")

    for kind, value in subject.identifiers():
        for pattern in REDIS_HASHES.get(kind, ()):
            key = pattern.format(value)
            raw = redis.hgetall(key)
            if raw:
                found.redis[key] = _decode_hash(raw)
    if subject.driver_pseudonyms:
        for key in redis.scan_iter(match=VEHICLE_KEY_PATTERN, count=500):
            key_type = redis.type(key)
            if (key_type.decode() if isinstance(key_type, bytes) else key_type) != "hash":
                continue
            fields = _decode_hash(redis.hgetall(key))
            if fields.get("driver_pseudonym") in subject.driver_pseudonyms:
                found.vehicles[key.decode() if isinstance(key, bytes) else key] = fields
    found.alerts = _scan_alerts(redis, subject)
    return found


# ---------------------------------------------------------------- export / erase / audit

def _now_ms() -> int:
    return int(time.time() * 1000)


def export_document(found: Found, subject: Subject, request_id: str, now_ms: int) -> dict:
    return {
        "request_id": request_id,
        "generated_ms": now_ms,
        "subject": subject.as_json(),
        "cassandra": {t: rows for t, rows in sorted(found.cassandra.items())},
        "redis": {"hashes": found.redis, "vehicles_driven_now": found.vehicles,
                  "alerts": [{"stream_id": i, **f} for i, f in found.alerts]},
        "counts": found.counts(),
        "not_searched": found.not_searched,
        "notes": found.notes,
    }


def audit(session, subject: Subject, *, request_id: str, action: str, requested_ms: int, counts: dict[str, int],
          outcome: str, operator: str, detail: str = "", hmac_key: bytes | None = None) -> int:
    """One ``privacy_requests`` row per identifier; returns how many were written."""
    key = hmac_key if hmac_key is not None else privacy.hmac_key_from_env()
    stmt = session.prepare(
        "INSERT INTO privacy_requests (subject_ref, requested_ms, request_id, action, subject_kind, identifiers,"
        " rows_by_source, outcome, operator, detail, completed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    idents = subject.identifiers()
    for kind, value in idents:
        session.execute(stmt, (privacy.subject_ref(kind, value, key), requested_ms, request_id, action, subject.kind,
                               len(idents), counts, outcome, operator, detail[:2000], _now_ms()))
    return len(idents)


def audit_rows(session, kind: str, value: str, hmac_key: bytes | None = None) -> list[dict]:
    key = hmac_key if hmac_key is not None else privacy.hmac_key_from_env()
    return [_row(r) for r in session.execute("SELECT * FROM privacy_requests WHERE subject_ref = %s",
                                             (privacy.subject_ref(kind, value, key),))]


def default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def export(session, redis, keyspace: str, subject: Subject, *, operator: str | None = None,
           hmac_key: bytes | None = None) -> dict:
    request_id, requested_ms = uuid.uuid4().hex, _now_ms()
    found = collect(session, redis, keyspace, subject)
    doc = export_document(found, subject, request_id, requested_ms)
    audit(session, subject, request_id=request_id, action="EXPORT", requested_ms=requested_ms, counts=found.counts(),
          outcome="COMPLETE", operator=operator or default_operator(), hmac_key=hmac_key)
    return doc


_HDEL_IF_EQUAL = """
if redis.call('HGET', KEYS[1], 'driver_pseudonym') == ARGV[1] then
  return redis.call('HDEL', KEYS[1], 'driver_pseudonym')
end
return 0
"""


@dataclass
class Erasure:
    request_id: str
    removed: dict[str, int]
    remaining: dict[str, int]
    outcome: str
    not_searched: dict[str, str]
    notes: list[str]


def _delete(session, redis, found: Found) -> None:
    for table, sels in found.selectors.items():
        if not found.cassandra.get(table):
            continue
        for where, params in sels:
            session.execute(f"DELETE FROM {table} WHERE {where}", params)
    if found.redis:
        redis.delete(*found.redis)
    if found.vehicles:
        hdel = redis.register_script(_HDEL_IF_EQUAL)
        for key, fields in found.vehicles.items():
            hdel(keys=[key], args=[fields["driver_pseudonym"]])
    if found.alerts:
        redis.xdel(ALERTS_STREAM, *[i for i, _ in found.alerts])


def erase(session, redis, keyspace: str, subject: Subject, *, operator: str | None = None,
          hmac_key: bytes | None = None) -> Erasure:
    """Delete the subject's rows and keys, check nothing is left, and audit the outcome.

    Shipment and position rows are deleted (a tracking id, an order id or a driver's
    positions are the identifying part of each row, so nothing useful remains once
    they are anonymised). Vehicles keep their hash but lose the driver pseudonym.
    """
    request_id, requested_ms = uuid.uuid4().hex, _now_ms()
    op = operator or default_operator()
    found = collect(session, redis, keyspace, subject)
    try:
        _delete(session, redis, found)
    except Exception as exc:
        audit(session, subject, request_id=request_id, action="ERASE", requested_ms=requested_ms,
              counts=found.counts(), outcome="FAILED", operator=op, detail=f"{type(exc).__name__}: {exc}",
              hmac_key=hmac_key)
        raise PrivacyError(f"erasure {request_id} failed part-way ({exc}); it is safe to run it again") from exc
    check_subject = Subject(set(subject.tracking_ids), set(subject.order_ids), set(subject.driver_pseudonyms),
                            list(subject.windows))
    left = collect(session, redis, keyspace, check_subject)
    remaining = left.counts()
    failed = {t: why for t, why in left.not_searched.items() if why.startswith("lookup failed")}
    remaining.update({f"cassandra.{t}": -1 for t in failed})
    outcome = "COMPLETE" if not remaining else "INCOMPLETE"
    detail = "; ".join(found.notes + [f"not searched: {', '.join(sorted(found.not_searched))}"
                                      if found.not_searched else ""]).strip("; ")
    audit(session, subject, request_id=request_id, action="ERASE", requested_ms=requested_ms, counts=found.counts(),
          outcome=outcome, operator=op, detail=detail, hmac_key=hmac_key)
    return Erasure(request_id, found.counts(), remaining, outcome, found.not_searched, found.notes)


# ---------------------------------------------------------------- masked export

def column_action(name: str, cql_type: str) -> str:
    """``pseudonymise``, ``coarsen``, ``keep`` or ``drop`` for one column of a masked export."""
    base = cql_type.split("<", 1)[0].strip().lower()
    if name == "driver_pseudonym" or name.endswith("_id") or name == "subject_ref":
        return "pseudonymise"
    if name in ("lat", "lon") or name.endswith(("_lat", "_lon")):
        return "coarsen"
    if base in NUMERIC_TYPES:
        return "keep"
    if base in ("text", "varchar", "ascii") and name in MASK_KEEP_TEXT:
        return "keep"
    return "drop"


class Masker:
    """Masks rows with a key of its own, so masked ids join within one export but never to production."""

    def __init__(self, precision_decimals: int = 2, key: bytes | None = None):
        if not 0 <= precision_decimals <= 4:
            raise PrivacyError("precision must be 0..4 decimals (2 ≈ 1.1 km)")
        self.precision = precision_decimals
        self._key = key or secrets.token_bytes(32)

    def pseudonym(self, value: Any) -> str:
        return "m_" + hmac.new(self._key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()[:16]

    def mask(self, row: dict, plan: dict[str, str]) -> dict:
        out = {}
        for col, value in row.items():
            action = plan.get(col, "drop")
            if action == "drop":
                continue
            if value is None or action == "keep":
                out[col] = _jsonable(value)
            elif action == "pseudonymise":
                out[col] = self.pseudonym(value)
            else:
                out[col] = round(float(value), self.precision)
        return out


def mask_plan(shape: TableShape) -> dict[str, str]:
    return {c: column_action(c, t) for c, t in shape.columns.items()}


def masked_rows(session, keyspace: str, masker: Masker, limit_per_table: int,
                tables: Iterable[str] | None = None) -> Iterator[dict]:
    """The header line, then ``{"table": …, "row": …}`` per row, at most ``limit_per_table`` each."""
    from cassandra.query import SimpleStatement

    shapes = [s for s in table_shapes(session, keyspace) if s.name not in MASK_EXCLUDE_TABLES]
    if tables is not None:
        wanted = set(tables)
        unknown = wanted - {s.name for s in shapes}
        if unknown:
            raise PrivacyError(f"unknown or excluded tables: {', '.join(sorted(unknown))}")
        shapes = [s for s in shapes if s.name in wanted]
    plans = {s.name: mask_plan(s) for s in shapes}
    yield {"masked_export": {"generated_ms": _now_ms(), "precision_decimals": masker.precision,
                             "limit_per_table": limit_per_table,
                             "tables": {t: {"pseudonymised": sorted(c for c, a in p.items() if a == "pseudonymise"),
                                            "coarsened": sorted(c for c, a in p.items() if a == "coarsen"),
                                            "dropped": sorted(c for c, a in p.items() if a == "drop")}
                                        for t, p in plans.items()}}}
    for shape in shapes:
        stmt = SimpleStatement(f"SELECT * FROM {shape.name} LIMIT %s", fetch_size=500)
        for r in session.execute(stmt, (limit_per_table,)):
            yield {"table": shape.name, "row": masker.mask(r._asdict(), plans[shape.name])}


def write_masked_export(session, keyspace: str, out_path, *, limit_per_table: int = 10_000,
                        precision_decimals: int = 2, tables: Iterable[str] | None = None) -> dict[str, int]:
    masker = Masker(precision_decimals)
    counts: dict[str, int] = {}
    tmp = f"{out_path}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        for line in masked_rows(session, keyspace, masker, limit_per_table, tables):
            if "table" in line:
                counts[line["table"]] = counts.get(line["table"], 0) + 1
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    os.replace(tmp, out_path)
    return counts
