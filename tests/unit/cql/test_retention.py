"""Every Cassandra table has a documented retention class, and its TTL matches it.

The classes are described in docs/privacy.md ("Retention"). A new table in a migration
fails here until it is given a class below: retention is decided when a table is
designed, not discovered when the disk fills up.
"""
import pytest

from tests.unit.cql.cqlparse import load_tables, parse_create

RAW_TTL_S = 180 * 24 * 3600          # raw events: 180 days
CURATED_TTL_S = 3 * 365 * 24 * 3600  # curated data: 3 years
CLASS_TTL_S = {
    "raw": RAW_TTL_S,
    "curated": CURATED_TTL_S,
    # Configuration that lives until an operator removes it (API keys, ...): no TTL.
    "config": 0,
}

RETENTION_CLASS = {
    "shipment_history": "raw",
    "shipment_current": "curated",
    "vehicle_positions": "raw",
    "privacy_requests": "curated",
    "api_keys": "config",
    "alerts_by_entity": "curated",
    "alerts_by_day_type": "curated",
    "alerts_by_id": "curated",
    "alert_audit": "curated",
    "shipment_audit": "curated",
    "order_shipments": "curated",
    "shipment_data_quality": "raw",
    "shipments_by_status_day": "raw",
    "shipments_by_carrier_day": "raw",
    "shipments_by_postcode": "raw",
    "shipments_by_order_day": "raw",
    "fence_events_by_vehicle": "raw",
    "eta_history": "raw",
    "sla_outcomes": "raw",
    "sla_by_carrier_day": "raw",
    "late_risk_by_day": "raw",
}


def test_ttl_classes_are_the_documented_durations():
    assert RAW_TTL_S == 15_552_000
    assert CURATED_TTL_S == 94_608_000


def test_every_table_has_a_retention_class():
    missing = sorted(set(load_tables()) - set(RETENTION_CLASS))
    assert not missing, (f"tables without a retention class: {missing}; add them to RETENTION_CLASS in "
                         f"{__file__} and to the table in docs/privacy.md")


@pytest.mark.parametrize("table", sorted(load_tables()))
def test_table_ttl_matches_its_class(table):
    t = load_tables()[table]
    cls = RETENTION_CLASS.get(table)
    if cls is None:
        pytest.skip("no class yet (reported by test_every_table_has_a_retention_class)")
    assert t.ttl_s == CLASS_TTL_S[cls], (f"{table} ({t.migration}) has default_time_to_live={t.ttl_s}, "
                                         f"its class {cls!r} needs {CLASS_TTL_S[cls]}")


def test_expired_positions_drop_whole_sstables():
    t = load_tables()["vehicle_positions"]
    assert t.compaction is not None and t.compaction.endswith("TimeWindowCompactionStrategy")


def test_parser_reads_keys_ttl_and_later_alters(tmp_path):
    (tmp_path / "001_a.cql").write_text(
        "-- a comment; with a semicolon-free body\n"
        "CREATE TABLE IF NOT EXISTS a (x text, d int, t bigint, m map<text, int>, PRIMARY KEY ((x, d), t))\n"
        "  WITH CLUSTERING ORDER BY (t DESC) AND default_time_to_live = 60;\n"
        "CREATE TABLE b (k text PRIMARY KEY, v text);\n")
    (tmp_path / "002_b.cql").write_text("ALTER TABLE a WITH default_time_to_live = 120;\n"
                                        "ALTER TABLE b ADD (w int, z text);\nDROP TABLE IF EXISTS c;\n")
    tables = load_tables(sorted(tmp_path.glob("*.cql")))
    assert tables["a"].partition_key == ("x", "d") and tables["a"].clustering == ("t",)
    assert tables["a"].ttl_s == 120 and tables["a"].columns["m"] == "map<text, int>"
    assert tables["b"].partition_key == ("k",) and tables["b"].ttl_s == 0
    assert set(tables["b"].columns) == {"k", "v", "w", "z"}


def test_parser_reads_add_if_not_exists(tmp_path):
    (tmp_path / "001_a.cql").write_text("CREATE TABLE a (k text PRIMARY KEY);\n"
                                        "ALTER TABLE a ADD IF NOT EXISTS (x bigint, y map<text, int>);\n")
    assert load_tables([tmp_path / "001_a.cql"])["a"].columns == {"k": "text", "x": "bigint", "y": "map<text, int>"}


def test_parser_ignores_statements_that_are_not_tables():
    assert parse_create("CREATE INDEX IF NOT EXISTS i ON a (v)") is None
