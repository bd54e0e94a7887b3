"""``fleetflow init``: Kafka topics and the Cassandra schema, both idempotent.

CQL lives in versioned files ``fleetflow/cql/NNN_name.cql``; each file is applied once
and recorded in ``schema_migrations``. Statements use IF NOT EXISTS so a half-applied
file can simply be applied again.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from fleetflow import topics
from fleetflow.settings import StackSettings

CQL_DIR = Path(__file__).resolve().parent / "cql"


def create_topics(s: StackSettings) -> list[str]:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        new = []
        for t in topics.ALL:
            if t.name in existing:
                continue
            cfg = {"cleanup.policy": "compact" if t.compacted else "delete"}
            if t.retention_ms is not None:
                cfg["retention.ms"] = str(t.retention_ms)
            new.append(NewTopic(t.name, num_partitions=t.partitions, replication_factor=1, topic_configs=cfg))
        if new:
            admin.create_topics(new, validate_only=False)
        return [t.name for t in new]
    finally:
        admin.close()


def cql_files() -> list[tuple[int, str, Path]]:
    out = []
    for p in sorted(CQL_DIR.glob("*.cql")):
        m = re.match(r"(\d+)_(.+)\.cql$", p.name)
        if m:
            out.append((int(m.group(1)), m.group(2), p))
    return out


def split_statements(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def migrate(s: StackSettings) -> list[str]:
    from fleetflow.cassandra_session import connect

    cluster, session = connect(s, timeout_s=30)
    try:
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {s.keyspace} "
            "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        session.set_keyspace(s.keyspace)
        session.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(version int PRIMARY KEY, name text, applied_ms bigint)")
        done = {r.version for r in session.execute("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, path in cql_files():
            if version in done:
                continue
            for stmt in split_statements(path.read_text()):
                session.execute(stmt, timeout=60)
            session.execute("INSERT INTO schema_migrations (version, name, applied_ms) VALUES (%s, %s, %s)",
                            (version, name, int(time.time() * 1000)))
            applied.append(f"{version:03d}_{name}")
        return applied
    finally:
        cluster.shutdown()


def init(s: StackSettings) -> dict[str, list[str]]:
    return {"topics_created": create_topics(s), "migrations_applied": migrate(s)}
