"""Just enough CQL to read FleetFlow's migrations: tables, their keys and their TTLs.

The migrations are applied in version order (fleetflow/schema.py), so the effective
shape of a table is what its CREATE says as amended by later ALTERs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from fleetflow.schema import cql_files, split_statements

_CREATE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:\w+\.)?(\w+)\s*\((.*)\)\s*(WITH\s+.*)?$",
                     re.IGNORECASE | re.DOTALL)
_ALTER = re.compile(r"ALTER\s+TABLE\s+(?:\w+\.)?(\w+)\s+(.*)$", re.IGNORECASE | re.DOTALL)
_DROP = re.compile(r"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:\w+\.)?(\w+)", re.IGNORECASE)
_TTL = re.compile(r"default_time_to_live\s*=\s*(\d+)", re.IGNORECASE)
_COMPACTION = re.compile(r"compaction\s*=\s*\{[^}]*'class'\s*:\s*'([\w.]+)'", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Table:
    name: str
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...]
    columns: dict[str, str] = field(default_factory=dict)
    ttl_s: int = 0
    compaction: str | None = None
    migration: str = ""


def _split_top_level(body: str) -> list[str]:
    """Split on commas outside (), <> so ``map<text, int>`` and ``PRIMARY KEY ((a, b), c)`` stay whole."""
    parts, depth, cur = [], 0, []
    for ch in body:
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def parse_create(stmt: str, migration: str = "") -> Table | None:
    m = _CREATE.match(stmt.strip())
    if not m:
        return None
    name, body, with_clause = m.group(1), m.group(2), m.group(3) or ""
    columns: dict[str, str] = {}
    partition: tuple[str, ...] = ()
    clustering: tuple[str, ...] = ()
    for part in _split_top_level(body):
        pk = re.match(r"PRIMARY\s+KEY\s*\((.*)\)$", part, re.IGNORECASE | re.DOTALL)
        if pk:
            inner = pk.group(1).strip()
            if inner.startswith("("):
                close = inner.index(")")
                partition = _names(inner[1:close])
                clustering = _names(inner[close + 1:].lstrip(", "))
            else:
                keys = _names(inner)
                partition, clustering = keys[:1], keys[1:]
            continue
        words = part.split(None, 1)
        col, ctype = words[0], words[1]
        if re.search(r"\bPRIMARY\s+KEY\b", ctype, re.IGNORECASE):
            ctype = re.sub(r"\s*PRIMARY\s+KEY\s*", "", ctype, flags=re.IGNORECASE)
            partition = (col,)
        columns[col] = ctype.strip()
    ttl = _TTL.search(with_clause)
    comp = _COMPACTION.search(with_clause)
    return Table(name, partition, clustering, columns, int(ttl.group(1)) if ttl else 0,
                 comp.group(1) if comp else None, migration)


def load_tables(paths: list[Path] | None = None) -> dict[str, Table]:
    """The effective tables after applying every migration (or ``paths``) in order."""
    files = [p for _, _, p in cql_files()] if paths is None else paths
    tables: dict[str, Table] = {}
    for path in files:
        for stmt in split_statements(path.read_text()):
            created = parse_create(stmt, path.name)
            if created is not None:
                tables.setdefault(created.name, created)
                continue
            dropped = _DROP.match(stmt.strip())
            if dropped:
                tables.pop(dropped.group(1), None)
                continue
            altered = _ALTER.match(stmt.strip())
            if altered and altered.group(1) in tables:
                t = tables[altered.group(1)]
                rest = altered.group(2)
                ttl = _TTL.search(rest)
                comp = _COMPACTION.search(rest)
                add = re.match(r"ADD\s+(?:IF\s+NOT\s+EXISTS\s+)?\(?(.*?)\)?$", rest.strip(), re.IGNORECASE | re.DOTALL)
                cols = dict(t.columns)
                if add:
                    for part in _split_top_level(add.group(1)):
                        col, ctype = part.split(None, 1)
                        cols[col] = ctype
                tables[t.name] = replace(t, columns=cols, ttl_s=int(ttl.group(1)) if ttl else t.ttl_s,
                                         compaction=comp.group(1) if comp else t.compaction)
    return tables
