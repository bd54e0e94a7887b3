"""`fleetflow privacy` on real Cassandra and Redis: export shows a subject's data, erase removes
exactly that (another subject's rows stay), and both are audited under an HMAC reference."""
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import redis as redis_lib

from fleetflow import privacy
from fleetflow.privacy_requests import DAY_MS, audit_rows

pytestmark = pytest.mark.stack

HMAC_KEY = "privacy-stack-test-key"


def fleetflow(*args, check=True):
    env = {**os.environ, "FLEETFLOW_HMAC_KEY": HMAC_KEY}
    out = subprocess.run([sys.executable, "-m", "fleetflow.cli", *args], capture_output=True, text=True, env=env,
                         timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"fleetflow {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture
def world(stack, cql):
    """A customer with two shipments and an alert, a driver with positions, and bystanders."""
    run = uuid.uuid4().hex[:8].upper()
    now_ms = int(time.time() * 1000)
    session = cql()
    r = redis_lib.Redis.from_url(stack.redis_url)
    w = {"t1": f"PV{run}1", "t2": f"PV{run}2", "other": f"PV{run}9", "van": f"VAN-PV{run}",
         "driver_raw": f"D-{run}", "driver": privacy.pseudonymise_driver(f"D-{run}", HMAC_KEY.encode()),
         "now_ms": now_ms,
         "alert": f"alert-{run}", "session": session, "redis": r}
    for tid in (w["t1"], w["t2"], w["other"]):
        for i in range(3):
            session.execute("INSERT INTO shipment_history (tracking_id, event_time_ms, event_id, status, carrier,"
                            " raw_text, leg, late) VALUES (%s, %s, %s, 'IN_TRANSIT', 'UPS', 'left hub', 1, false)",
                            (tid, now_ms - 3_600_000 + i * 60_000, f"{tid}-e{i}"))
        session.execute("INSERT INTO shipment_current (tracking_id, status, carrier, last_event_id, last_event_time_ms,"
                        " updated_ms) VALUES (%s, 'IN_TRANSIT', 'UPS', %s, %s, %s)",
                        (tid, f"{tid}-e2", now_ms - 3_480_000, now_ms))
        r.hset(f"ff:shipment:{tid}", mapping={"status": "IN_TRANSIT", "order_id": f"O-{run}"})
    t_alert = now_ms - 1_800_000
    session.execute("INSERT INTO alerts_by_entity (entity_type, entity_id, event_time_ms, alert_id, type, state)"
                    " VALUES ('SHIPMENT', %s, %s, %s, 'SHIPMENT_STUCK', 'OPEN')", (w["t1"], t_alert, w["alert"]))
    session.execute("INSERT INTO alerts_by_id (alert_id, type, state, entity_type, entity_id, event_time_ms)"
                    " VALUES (%s, 'SHIPMENT_STUCK', 'OPEN', 'SHIPMENT', %s, %s)", (w["alert"], w["t1"], t_alert))
    session.execute("INSERT INTO alerts_by_day_type (day, type, event_time_ms, alert_id, entity_type, entity_id)"
                    " VALUES (%s, 'SHIPMENT_STUCK', %s, %s, 'SHIPMENT', %s)",
                    (t_alert // DAY_MS, t_alert, w["alert"], w["t1"]))
    session.execute("INSERT INTO alert_audit (alert_id, at_ms, action_id, action, actor, state)"
                    " VALUES (%s, %s, 'OPEN', 'TRANSITION', 'fleetflow', 'OPEN')", (w["alert"], t_alert))
    w["stream_id"] = r.xadd("ff:alerts:stream", {"alert_id": w["alert"], "entity_type": "SHIPMENT",
                                                 "entity_id": w["t1"], "event_time_ms": str(t_alert)}).decode()
    # The driver drove the van during [shift_from, shift_to); positions before belong to someone else.
    w["shift_from"], w["shift_to"] = now_ms - 7_200_000, now_ms - 3_600_000
    for i, t in enumerate(range(now_ms - 9_000_000, now_ms - 3_000_000, 600_000)):
        session.execute("INSERT INTO vehicle_positions (vehicle_id, day, event_time_ms, event_id, lat, lon, source)"
                        " VALUES (%s, %s, %s, %s, 52.520008, 13.404954, 'GPS')",
                        (w["van"], t // DAY_MS, t, f"{w['van']}-p{i}"))
    r.hset(f"ff:vehicle:{w['van']}", mapping={"lat": "52.52", "lon": "13.40", "driver_pseudonym": w["driver"],
                                              "status": "MOVING"})
    yield w
    for tid in (w["t1"], w["t2"], w["other"]):
        session.execute("DELETE FROM shipment_history WHERE tracking_id = %s", (tid,))
        session.execute("DELETE FROM shipment_current WHERE tracking_id = %s", (tid,))
        r.delete(f"ff:shipment:{tid}")
    r.delete(f"ff:vehicle:{w['van']}")
    r.xdel("ff:alerts:stream", w["stream_id"])
    r.close()


def positions(w):
    return sorted(row.event_time_ms for day in {w["shift_from"] // DAY_MS, w["now_ms"] // DAY_MS,
                                                (w["now_ms"] - 9_000_000) // DAY_MS}
                  for row in w["session"].execute("SELECT event_time_ms FROM vehicle_positions WHERE vehicle_id = %s"
                                                  " AND day = %s", (w["van"], day)))


def count(session, table, where, params):
    return len(list(session.execute(f"SELECT * FROM {table} WHERE {where}", params)))


def test_customer_export_then_erase(world, tmp_path):
    w, session, r = world, world["session"], world["redis"]
    out = tmp_path / "export.json"
    fleetflow("privacy", "export", f"tracking:{w['t1']}", f"tracking:{w['t2']}", "--out", str(out),
              "--operator", "dpo@test")
    doc = json.loads(out.read_text())
    assert sorted(e["event_id"] for e in doc["cassandra"]["shipment_history"]) == sorted(
        f"{t}-e{i}" for t in (w["t1"], w["t2"]) for i in range(3))
    assert {row["tracking_id"] for row in doc["cassandra"]["shipment_current"]} == {w["t1"], w["t2"]}
    assert set(doc["redis"]["hashes"]) == {f"ff:shipment:{w['t1']}", f"ff:shipment:{w['t2']}"}
    assert [a["alert_id"] for a in doc["redis"]["alerts"]] == [w["alert"]]
    for table in ("alerts_by_entity", "alerts_by_id", "alerts_by_day_type", "alert_audit"):
        assert [row["alert_id"] for row in doc["cassandra"][table]] == [w["alert"]], table

    dry = fleetflow("privacy", "erase", f"tracking:{w['t1']}", f"tracking:{w['t2']}")
    assert "dry run" in dry.stdout
    assert count(session, "shipment_history", "tracking_id = %s", (w["t1"],)) == 3

    erased = fleetflow("privacy", "erase", f"tracking:{w['t1']}", f"tracking:{w['t2']}", "--yes",
                       "--operator", "dpo@test")
    assert "COMPLETE" in erased.stdout
    for tid in (w["t1"], w["t2"]):
        assert count(session, "shipment_history", "tracking_id = %s", (tid,)) == 0
        assert count(session, "shipment_current", "tracking_id = %s", (tid,)) == 0
        assert not r.exists(f"ff:shipment:{tid}")
    assert count(session, "alerts_by_id", "alert_id = %s", (w["alert"],)) == 0
    assert count(session, "alert_audit", "alert_id = %s", (w["alert"],)) == 0
    assert count(session, "alerts_by_entity", "entity_type = 'SHIPMENT' AND entity_id = %s", (w["t1"],)) == 0
    assert r.xrange("ff:alerts:stream", min=w["stream_id"], max=w["stream_id"]) == []
    # The bystander is untouched.
    assert count(session, "shipment_history", "tracking_id = %s", (w["other"],)) == 3
    assert r.exists(f"ff:shipment:{w['other']}")

    audit = audit_rows(session, "tracking", w["t1"], HMAC_KEY.encode())
    assert [(a["action"], a["outcome"]) for a in audit] == [("ERASE", "COMPLETE"), ("EXPORT", "COMPLETE")]
    assert audit[0]["operator"] == "dpo@test" and audit[0]["rows_by_source"]["cassandra.shipment_history"] == 6
    assert w["t1"] not in json.dumps(audit)


def test_driver_erase_removes_only_the_shift(world, tmp_path):
    w, session, r = world, world["session"], world["redis"]
    before = positions(w)
    in_shift = [t for t in before if w["shift_from"] <= t < w["shift_to"]]
    assert in_shift and len(in_shift) < len(before)
    window = f"{w['van']}:{w['shift_from']}:{w['shift_to']}"
    out = tmp_path / "driver.json"
    fleetflow("privacy", "export", f"driver-id:{w['driver_raw']}", "--window", window, "--out", str(out))
    doc = json.loads(out.read_text())
    assert doc["subject"]["driver_pseudonyms"] == [w["driver"]]
    assert sorted(p["event_time_ms"] for p in doc["cassandra"]["vehicle_positions"]) == in_shift
    assert doc["redis"]["vehicles_driven_now"][f"ff:vehicle:{w['van']}"]["driver_pseudonym"] == w["driver"]

    fleetflow("privacy", "erase", f"driver:{w['driver']}", "--window", window, "--yes")
    assert positions(w) == [t for t in before if t not in in_shift]
    vehicle = {k.decode(): v.decode() for k, v in r.hgetall(f"ff:vehicle:{w['van']}").items()}
    assert "driver_pseudonym" not in vehicle and vehicle["status"] == "MOVING"
    assert audit_rows(session, "driver", w["driver"], HMAC_KEY.encode())[0]["outcome"] == "COMPLETE"


def test_bad_subject_is_a_clear_error_not_a_crash():
    out = fleetflow("privacy", "export", "email:someone@example.com", check=False)
    assert out.returncode == 1 and "unknown kind" in out.stdout + out.stderr


def test_masked_export_hides_ids_and_coarsens_positions(world, tmp_path):
    w = world
    out = tmp_path / "masked.jsonl"
    fleetflow("privacy", "mask-export", "--out", str(out), "--table", "vehicle_positions", "--table",
              "shipment_history", "--limit", "100000")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    header, rows = lines[0]["masked_export"], lines[1:]
    assert "raw_text" in header["tables"]["shipment_history"]["dropped"]
    assert {row["table"] for row in rows} == {"vehicle_positions", "shipment_history"}
    text = out.read_text()
    for raw in (w["t1"], w["van"], "left hub"):
        assert raw not in text
    van_rows = [row["row"] for row in rows if row["table"] == "vehicle_positions" and row["row"]["lat"] == 52.52]
    assert van_rows and all(row["vehicle_id"].startswith("m_") for row in van_rows)
    assert all(round(row["row"]["lat"], 2) == row["row"]["lat"] for row in rows if row["row"].get("lat") is not None)
