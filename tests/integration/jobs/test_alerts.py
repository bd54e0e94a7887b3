"""The alerts job on a MiniCluster at parallelism 2.

Producers key ``ff.alert-candidates`` by entity and ``ff.alert-acks`` by alert id, so
each key's records keep their order within one Kafka partition. ``kafka_like`` gives
the in-memory source the same property (records of one "partition" reach the same
validate subtask in order); without it the rebalance after a parallelism-1 collection
source would shuffle a key's records, which Kafka never does.
"""
import time

import pytest

from fleetflow import contracts
from tests.builders import alert as alert_record, alert_ack, minutes

pytestmark = pytest.mark.minicluster

CANDIDATES, ACKS = "ff.alert-candidates", "ff.alert-acks"


def kafka_like(env, records):
    # key_by + identity map, not partition_custom: the latter needs a job parameter
    # that thread mode does not set. Unchained, so the job's first operator keeps its
    # own (non-keyed) context.
    from pyflink.common.typeinfo import Types

    from jobs.sources import RAW_RECORD_TYPE, collection_stream
    return (collection_stream(env, records).key_by(lambda r: r["partition"], key_type=Types.INT())
            .map(lambda r: r, output_type=RAW_RECORD_TYPE).disable_chaining())


def raw(topic, items):
    """(bytes or record, partition) pairs → RawRecord tuples with offsets per partition."""
    schema = "alerts" if topic == CANDIDATES else "alert_acks"
    offsets, out = {}, []
    for item, partition in items:
        value = item if isinstance(item, bytes) else contracts.encode(schema, item)
        offset = offsets[partition] = offsets.get(partition, -1) + 1
        out.append((value, topic, partition, offset))
    return out


def _bytes(b):
    return b if isinstance(b, bytes) else bytes(x & 0xFF for x in b)


def run_job(flink_env, candidates, acks, cfg=None):
    """Run once; return (emits, ff.alerts records, dead letters) collected from one execution."""
    from pyflink.common.typeinfo import Types

    from jobs.alerts import JobConfig, build_pipeline
    from jobs.common import Sinks

    env = flink_env()
    out = build_pipeline(env, kafka_like(env, candidates), kafka_like(env, acks), Sinks(), cfg or JobConfig())
    pickled = Types.PICKLED_BYTE_ARRAY()
    # Tagging maps stay unchained: PyFlink's Python operator fusion would copy the job's
    # last operators into each tagging map and then find their uids twice.
    tagged = out.emits.map(lambda e: ("emit", e), output_type=pickled).disable_chaining().union(
        out.alerts.map(lambda b: ("alert", _bytes(b)), output_type=pickled).disable_chaining(),
        out.dead_letters.map(lambda b: ("dead", _bytes(b)), output_type=pickled).disable_chaining())
    emits, alerts, dead = [], [], []
    for tag, v in tagged.execute_and_collect():
        if tag == "emit":
            emits.append(v)
        elif tag == "alert":
            alerts.append(contracts.decode(v, expected="alerts")[1])
        else:
            dead.append(contracts.decode(v, expected="dead_letters")[1])
    return emits, alerts, dead


def test_gate_routes_dedups_throttles_applies_acks_and_dead_letters_exactly(flink_env):
    from udfs.alerts import AckApplied, Alert

    t0 = int(time.time() * 1000) - minutes(30)

    def cand(alert_id, state="OPEN", at=0, entity="VAN1", type_="VEHICLE_STALLED", severity="WARNING",
             entity_type="VEHICLE"):
        return alert_record(type_, entity, entity_type=entity_type, at_ms=t0 + minutes(at), severity=severity,
                            state=state, alert_id=alert_id, details={"n": str(at)})

    van1 = [cand("c1"), cand("c1"), cand("c2", at=2),               # replay of c1; c2 throttled (same type, 2 min)
            cand("c2", "RESOLVED", at=3),                             # RESOLVED passes although its OPEN was throttled
            cand("c4", at=1, type_="RESTRICTED_AREA", severity="CRITICAL"),
            cand("c1", "UPDATED", at=6), cand("c1", at=0),            # update after the window; late replay of OPEN
            cand("c1", "RESOLVED", at=12), cand("c1", "RESOLVED", at=12)]
    van2 = [cand("c3", at=1, entity="VAN2"), cand("c3", at=1, entity="VAN2")]
    parcel = [cand("c5", at=4, entity="TRK1", entity_type="PACKAGE", type_="LATE_RISK")]
    no_id = {**cand("c8", at=1), "alert_id": ""}
    bad = [(b"\x00garbage", 0), (no_id, 1), (cand("c9", at=-60 * 24 * 8), 1),
           (contracts.encode("alert_acks", alert_ack("c1", at_ms=t0)), 1)]
    candidates = raw(CANDIDATES, [(r, 0) for r in van1] + [(r, 1) for r in van2 + parcel] + bad)

    acks_in = [alert_ack("c1", actor="alice", at_ms=t0 + minutes(5), ack_id="k1"),
               alert_ack("c1", actor="bob", at_ms=t0 + minutes(4), ack_id="k2"),
               alert_ack("c1", actor="alice", at_ms=t0 + minutes(5), ack_id="k1"),
               alert_ack("c1", action="ASSIGN", assignee="carol", actor="bob", at_ms=t0 + minutes(7), ack_id="k3")]
    acks = raw(ACKS, [(r, 0) for r in acks_in] + [(alert_ack("c1", actor=" ", at_ms=t0, ack_id="k4"), 0),
                                                   (b"\xc3\x01" + bytes(8) + b"?", 0)])

    emits, published, dead = run_job(flink_env, candidates, acks)

    passed = sorted((a.alert_id, a.state, a.event_time_ms - t0) for a in emits if isinstance(a, Alert))
    assert passed == sorted([("c1", "OPEN", 0), ("c1", "UPDATED", minutes(6)), ("c1", "RESOLVED", minutes(12)),
                             ("c2", "RESOLVED", minutes(3)), ("c3", "OPEN", minutes(1)),
                             ("c4", "OPEN", minutes(1)), ("c5", "OPEN", minutes(4))])
    # ff.alerts carries exactly the stored alerts, routed by the shipped table.
    assert sorted((r["alert_id"], r["state"], r["event_time_ms"] - t0) for r in published) == passed
    routes = {(r["alert_id"], r["state"]): r["route_to"] for r in published}
    assert routes[("c4", "OPEN")] == "security"
    assert routes[("c1", "OPEN")] == routes[("c3", "OPEN")] == "dispatch"
    assert routes[("c5", "OPEN")] == "customer-care"

    applied = [e for e in emits if isinstance(e, AckApplied)]
    assert sorted(e.ack.ack_id for e in applied) == ["k1", "k2", "k3"]
    final = applied[-1]
    assert (final.acked_by, final.acked_ms, final.assignee) == ("bob", t0 + minutes(4), "carol")

    origins = sorted((d["source_topic"], d["source_partition"], d["source_offset"], d["reason"]) for d in dead)
    n0, n1 = len(van1), len(van2) + len(parcel)
    assert origins == sorted([(CANDIDATES, 0, n0, "UNDECODABLE"), (CANDIDATES, 1, n1, "MISSING_ID"),
                              (CANDIDATES, 1, n1 + 1, "TOO_OLD"), (CANDIDATES, 1, n1 + 2, "WRONG_SCHEMA"),
                              (ACKS, 0, 4, "MISSING_ID"), (ACKS, 0, 5, "UNKNOWN_FINGERPRINT")])
    assert dead[0]["original"] in {v for v, *_ in candidates + acks}


def test_out_of_order_twin_resolve_first_and_config_overrides(flink_env):
    """The same condition with RESOLVED ahead of its OPEN: it closes once and never reopens.

    Also: gate and routing come from the job config (no throttle window, inline table).
    """
    from jobs.alerts import JobConfig
    from udfs.alerts import AckApplied, Alert

    t0 = int(time.time() * 1000) - minutes(30)
    rec = lambda aid, state, at: alert_record("VEHICLE_STALLED", "VAN1", at_ms=t0 + minutes(at), state=state,
                                              alert_id=aid)
    candidates = raw(CANDIDATES, [(rec("c1", "RESOLVED", 12), 0), (rec("c1", "UPDATED", 6), 0),
                                  (rec("c1", "OPEN", 0), 0), (rec("c2", "OPEN", 1), 0)])
    acks = raw(ACKS, [(alert_ack("c1", actor="bob", at_ms=t0 + minutes(4), ack_id="k2"), 0),
                      (alert_ack("c1", actor="alice", at_ms=t0 + minutes(5), ack_id="k1"), 0)])
    cfg = JobConfig(rules={"gate": {"window_ms": 0},
                           "routing": {"default": "night", "rules": [{"route_to": "vans", "entity_prefix": "VAN"}]}})

    emits, published, dead = run_job(flink_env, candidates, acks, cfg)

    assert dead == []
    assert sorted((r["alert_id"], r["state"], r["route_to"]) for r in published) == [
        ("c1", "RESOLVED", "vans"), ("c2", "OPEN", "vans")]
    assert sorted((a.alert_id, a.state) for a in emits if isinstance(a, Alert)) == [("c1", "RESOLVED"), ("c2", "OPEN")]
    final = [e for e in emits if isinstance(e, AckApplied)][-1]
    assert (final.acked_by, final.acked_ms) == ("bob", t0 + minutes(4))


def test_bad_config_fails_before_the_job_runs(flink_env):
    from fleetflow.alert_routing import AlertRoutingError
    from jobs.alerts import JobConfig, build_pipeline
    from jobs.common import Sinks

    env = flink_env()
    src = kafka_like(env, raw(CANDIDATES, [(alert_record(), 0)]))
    with pytest.raises(ValueError, match=r"rules.gate: .*allowed keys: max_per_window, window_ms, dedup_ttl_ms"):
        build_pipeline(env, src, src, Sinks(), JobConfig(rules={"gate": {"window": 1}}))
    with pytest.raises(AlertRoutingError, match=r"rules\[0\]: route_to must be a non-empty string"):
        build_pipeline(env, src, src, Sinks(), JobConfig(rules={"routing": {"rules": [{"type": "X"}]}}))
