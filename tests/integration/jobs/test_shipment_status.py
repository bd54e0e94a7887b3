"""The shipment status job on a MiniCluster at parallelism 2 with its real watermark strategy.

Collection sources hand records to two subtasks round-robin, so arrival order per
shipment is arbitrary here: every assertion is about the converged result.
"""
import time

import pytest

from fleetflow import contracts
from fleetflow.carrier_mappings import load_all, to_record
from tests.builders import minutes, plan, scan

pytestmark = pytest.mark.minicluster


def _java_bytes(value) -> bytes:
    # Collected byte[] arrive as signed Java bytes.
    return value if isinstance(value, bytes) else bytes(b & 0xFF for b in value)


def _raw(topic, schema, records, first_offset=0):
    return [(contracts.encode(schema, r), topic, i % 2, first_offset + i) for i, r in enumerate(records)]


def _run(flink_env, scans, plans=(), mappings=(), delay_scans_s=0.0):
    """Execute once; return (emits, alert records, dead letter dicts)."""
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import MapFunction

    from jobs.common import JobConfig, Sinks
    from jobs.shipment_status import build_pipeline
    from jobs.sources import RAW_RECORD_TYPE, collection_stream

    class DelayStart(MapFunction):
        """Holds the scans back until the mapping records have surely been broadcast."""

        def open(self, runtime_context):
            time.sleep(delay_scans_s)

        def map(self, row):
            return row

    env = flink_env()
    scan_stream = collection_stream(env, list(scans))
    if delay_scans_s:
        scan_stream = scan_stream.map(DelayStart(), output_type=RAW_RECORD_TYPE)
    out = build_pipeline(env, scan_stream, collection_stream(env, list(plans)),
                         collection_stream(env, list(mappings)), Sinks(), JobConfig())
    # The lifecycle's emits reach the store as one EmitGroup per input; rollups and index rows alone.
    tagged = out.emits.flat_map(lambda e: [("emit", x) for x in (e if isinstance(e, tuple) else (e,))],
                                output_type=Types.PICKLED_BYTE_ARRAY()).union(
        out.alerts.map(lambda a: ("alert", a), output_type=Types.PICKLED_BYTE_ARRAY()),
        out.dead_letters.map(lambda d: ("dead", bytes(d)), output_type=Types.PICKLED_BYTE_ARRAY()))
    collected = list(tagged.execute_and_collect())
    emits = [v for k, v in collected if k == "emit"]
    alerts = [v for k, v in collected if k == "alert"]
    dead = [contracts.decode(_java_bytes(v))[1] for k, v in collected if k == "dead"]
    return emits, alerts, dead


def _final_states(emits):
    """Newest state per shipment from scans and plans. The final watermark of a finite
    source fires every pending timer, so timer-made changes (EXPIRED) are left out."""
    final = {}
    for e in emits:
        if type(e).__name__ != "StateChanged" or e.event_id.startswith("FLEETFLOW_TIMER"):
            continue
        if e.tracking_id not in final or e.version > final[e.tracking_id].version:
            final[e.tracking_id] = e
    return final


def test_lifecycle_statuses_late_scans_unknown_codes_and_plans(flink_env):
    t0 = int(time.time() * 1000) - minutes(180)
    at = lambda m: t0 + minutes(m)  # noqa: E731
    delivered = [scan("JA", c, at_ms=at(m), event_id=f"JA-{c}") for c, m in
                 [("OC", 0), ("PU", 10), ("AR", 30), ("OD", 90), ("DL", 100)]]
    late_in_transit = [scan("JA", "DP", at_ms=at(40), event_id="JA-late-DP"),
                       scan("JA", "IT", at_ms=at(110), event_id="JA-after-DL")]
    out_for_delivery = [scan("JB", "OD", at_ms=at(90), event_id="JB-OD"), scan("JB", "PU", at_ms=at(10), event_id="JB-PU")]
    geofence = [scan("JE", "PU", at_ms=at(10), event_id="JE-PU"), scan("JE", "OD", at_ms=at(90), event_id="JE-OD"),
                scan("JE", "GEO_NEAR_DESTINATION", at_ms=at(95), carrier="FLEETFLOW", leg=0, source="GEOFENCE",
                     event_id="geo|1|JE")]
    unknown = [scan("JC", "ZZ9", at_ms=at(5), event_id="JC-1"), scan("JC2", "zz9 ", at_ms=at(6), event_id="JC-2"),
               scan("JC3", "PU", at_ms=at(5), carrier="NOPE", event_id="JC-3")]
    planned = [scan("JD", "PU", at_ms=at(10), event_id="JD-PU")]
    scans = delivered + late_in_transit + out_for_delivery + geofence + unknown + planned
    raw = _raw("ff.scans", "scans", scans + delivered[:2]) + [(b"\x00garbage", "ff.scans", 0, 999)]
    plans = _raw("ff.plans", "plans", [plan("ORD-J1", ("JD",), at_ms=at(-60), window_start_ms=at(600),
                                            window_end_ms=at(840), service_level="EXPRESS", postcode="10115")])

    emits, alerts, dead = _run(flink_env, raw, plans)

    final = _final_states(emits)
    got = {tid: (c.status.value, c.detail.value, c.carrier) for tid, c in final.items()}
    assert got == {"JA": ("DELIVERED", "DELIVERED", "FEDEX"),
                   "JB": ("OUT_FOR_DELIVERY", "OUT_FOR_DELIVERY", "FEDEX"),
                   "JE": ("OUT_FOR_DELIVERY", "NEAR_DESTINATION", "FEDEX"),
                   "JD": ("IN_TRANSIT", "PICKED_UP", "FEDEX")}
    # Arrival order is arbitrary, so whether the in-transit scan after delivery was refused
    # or applied first and then overtaken by the (late) delivery depends on the run; every
    # unique scan is either in history once or refused with a data-quality record.
    history = [e.event_id for e in emits if type(e).__name__ == "HistoryRow"]
    refused = {e.event_id for e in emits if type(e).__name__ == "DataQuality" and e.type == "INVALID_TRANSITION"
               and e.details.get("parked") != "true"}
    accepted = delivered + late_in_transit + out_for_delivery + geofence + planned
    assert len(history) == len(set(history)), "duplicates never reach history"
    assert sorted(set(history) | refused) == sorted(s["event_id"] for s in accepted)
    assert not set(history) & refused
    assert {s["event_id"] for s in delivered + out_for_delivery + geofence + planned} <= set(history)

    d = final["JD"]
    assert (d.order_id, d.service_level, d.promised_start_ms, d.promised_end_ms) == ("ORD-J1", "EXPRESS", at(600),
                                                                                      at(840))
    rollups = [e for e in emits if type(e).__name__ == "OrderRollup"]
    assert ("JD", d.status, d.version) in {r.shipments[0] for r in rollups if r.order_id == "ORD-J1"}
    assert {(r.tracking_id, r.postcode) for r in emits if type(r).__name__ == "PlannedShipmentIndex"} == {
        ("JD", "10115")}

    by_reason = sorted((x["reason"], x["source_offset"]) for x in dead)
    offsets = {s["event_id"]: i for i, s in enumerate(scans)}
    assert by_reason == sorted([("UNKNOWN_CARRIER_CODE", offsets["JC-1"]), ("UNKNOWN_CARRIER_CODE", offsets["JC-2"]),
                                ("UNKNOWN_CARRIER", offsets["JC-3"]), ("UNDECODABLE", 999)])
    (jc1,) = [x for x in dead if x["source_offset"] == offsets["JC-1"]]
    assert jc1["original"] == raw[offsets["JC-1"]][0] and jc1["source_topic"] == "ff.scans"
    onboarding = [a for a in alerts if a["type"] == "CARRIER_ONBOARDING"]
    assert {a["alert_id"] for a in onboarding} == {"CARRIER_ONBOARDING:FEDEX:ZZ9"}
    assert {(a["entity_type"], a["entity_id"]) for a in onboarding} == {("CARRIER", "FEDEX")}
    # The final watermark fires every stuck timer: the alerts are shipment-scoped and keep one id.
    stuck = [a for a in alerts if a["type"] == "SHIPMENT_STUCK"]
    assert stuck and {a["entity_type"] for a in stuck} == {"SHIPMENT"}


def test_mapping_update_through_the_broadcast_applies_without_a_restart(flink_env):
    t0 = int(time.time() * 1000) - minutes(60)
    fedex = to_record(load_all()["FEDEX"], t0)
    bundled = fedex["version"]
    v2 = dict(fedex, version=bundled + 1, codes=fedex["codes"] + [
        {"raw_code": "ZQ", "status": "OUT_FOR_DELIVERY", "detail": "OUT_FOR_DELIVERY", "text": "On the van"}])
    broken = dict(fedex, version=bundled + 2, codes=[{"raw_code": "X", "status": "NOT_A_STATUS", "detail": "",
                                                      "text": ""}])
    # The bundled mapping is already loaded. Republishing it here would race the next version
    # through the round-robin collection source and be rejected as stale whenever it lands
    # second; the next version and the broken one after it give the same outcome in either order.
    mappings = _raw("ff.carrier-mappings", "carrier_mappings", [v2, broken])
    scans = _raw("ff.scans", "scans", [scan("MU1", "PU", at_ms=t0, event_id="MU1-PU"),
                                       scan("MU1", "ZQ", at_ms=t0 + minutes(5), event_id="MU1-ZQ"),
                                       scan("MU2", "PU", at_ms=t0, event_id="MU2-PU")])

    emits, alerts, dead = _run(flink_env, scans, mappings=mappings, delay_scans_s=6.0)

    final = _final_states(emits)
    assert final["MU1"].status.value == "OUT_FOR_DELIVERY", "the code published at runtime is in force"
    assert final["MU2"].status.value == "IN_TRANSIT", "codes of v1 still work"
    assert [(x["reason"], x["source_topic"]) for x in dead] == [("INVALID_MAPPING", "ff.carrier-mappings")], \
        "the broken v3 is dead-lettered once and v2 stays in force"
    assert not [a for a in alerts if a["type"] == "CARRIER_ONBOARDING"]


def test_two_carriers_same_event_id_both_reach_history_and_a_conflicting_resend_is_dead_lettered(flink_env):
    t0 = int(time.time() * 1000) - minutes(60)
    fedex = scan("KA", "PU", at_ms=t0, carrier="FEDEX", event_id="evt-1")
    ups = scan("KB", "P", at_ms=t0 + minutes(1), carrier="UPS", event_id="evt-1")
    # FedEx sends evt-1 again with another time: not a duplicate, and not silently dropped.
    resend = {**fedex, "event_time_ms": t0 + minutes(5)}
    # UPS's webhook retry: the same bytes, an exact duplicate.
    raw = _raw("ff.scans", "scans", [fedex, ups, resend, ups])

    emits, _, dead = _run(flink_env, raw)

    history = sorted((e.tracking_id, e.event_id, e.carrier) for e in emits if type(e).__name__ == "HistoryRow")
    assert history == [("KA", "evt-1", "FEDEX"), ("KB", "evt-1", "UPS")]
    # At parallelism 2 either FedEx version can arrive first: that one is history, the other a dead letter.
    (conflict,) = dead
    assert conflict["reason"] == "EVENT_ID_CONFLICT"
    assert (conflict["source_topic"], conflict["source_offset"], conflict["original"]) in {
        ("ff.scans", offset, value) for value, _, _, offset in raw[0:3:2]}
    (ka,) = [e for e in emits if type(e).__name__ == "HistoryRow" and e.tracking_id == "KA"]
    assert contracts.decode(conflict["original"])[1]["event_time_ms"] != ka.event_time_ms
    assert "evt-1" in conflict["detail"] and "FEDEX" in conflict["detail"]
