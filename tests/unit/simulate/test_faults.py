"""The summary's fault counts are what an ingest actually finds in the recording."""
from collections import Counter

from fleetflow.simulate import generate
from tests.unit.simulate.helpers import SCHEMA_OF_TOPIC, identity, sim_config, strict_decode
from udfs.validation import ID_REASONS, REASONS, topic_id_problem

LATE_MS = 5 * 60_000


def _first_valid(stream):
    """Valid records, first arrival per event_id; the rest are the duplicates."""
    seen_ids, first, dups = set(), [], []
    for s in stream:
        if s.record is None:
            continue
        eid = identity(s)
        (dups if eid in seen_ids else first).append(s)
        seen_ids.add(eid)
    return first, dups


def test_rejected_records_equal_the_malformed_count(small_run):
    rejected = [s for s in small_run.stream if s.record is None]
    assert small_run.summary.malformed > 0
    assert len(rejected) == small_run.summary.malformed == len(small_run.truth["faults"]["malformed"])


def test_each_malformed_kind_is_rejected_for_its_own_reason(small_run):
    reasons = Counter(s.reason for s in small_run.stream if s.record is None)
    kinds = small_run.summary.malformed_by_kind
    assert reasons["UNDECODABLE"] == kinds["RANDOM_BYTES"] + kinds["TRUNCATED"]
    assert reasons["MISSING_ID"] == kinds["MISSING_ID"]
    assert reasons["BAD_COORDINATES"] == kinds["BAD_COORDINATES"]
    assert reasons["FUTURE_EVENT"] == kinds["FUTURE_TIME"]
    assert reasons["UNKNOWN_CARRIER"] == kinds["UNKNOWN_CARRIER"]
    assert set(reasons) <= REASONS | {"UNDECODABLE"}


def test_repeated_event_ids_equal_the_duplicate_count(small_run):
    _, dups = _first_valid(small_run.stream)
    assert small_run.summary.duplicates > 0
    assert len(dups) == small_run.summary.duplicates
    assert sorted(d.record["event_id"] for d in dups) == sorted(small_run.truth["faults"]["duplicate_event_ids"])


def test_duplicates_are_byte_identical_resends(small_run):
    first, dups = _first_valid(small_run.stream)
    by_id = {s.record["event_id"]: s.raw for s in first if "event_id" in s.record}
    assert all(by_id[d.record["event_id"]] == d.raw for d in dups)


def test_records_produced_five_minutes_after_their_event_time_equal_the_late_count(small_run):
    first, _ = _first_valid(small_run.stream)
    late = [s for s in first if "event_time_ms" in s.record and s.produce_ms - s.record["event_time_ms"] >= LATE_MS
            and s.topic in ("ff.pings", "ff.scans")]
    assert small_run.summary.late > 0
    assert len(late) == small_run.summary.late
    assert sorted(s.record["event_id"] for s in late) == sorted(small_run.truth["faults"]["late_event_ids"])


def test_per_key_event_time_regressions_equal_the_out_of_order_count(small_run):
    first, _ = _first_valid(small_run.stream)
    newest: dict[tuple[str, str], int] = {}
    regressions = []
    for s in first:
        if s.topic not in ("ff.pings", "ff.scans") or s.produce_ms - s.record["event_time_ms"] >= LATE_MS:
            continue
        k = (s.topic, s.key)
        t = s.record["event_time_ms"]
        if t < newest.get(k, t):
            regressions.append(s.record["event_id"])
        newest[k] = max(t, newest.get(k, t))
    assert small_run.summary.out_of_order > 0
    assert len(regressions) == small_run.summary.out_of_order
    assert sorted(regressions) == sorted(small_run.truth["faults"]["out_of_order_event_ids"])


def test_out_of_order_stays_within_the_bound(small_run):
    bound_ms = small_run.cfg.out_of_order_bound_s * 1000
    first, _ = _first_valid(small_run.stream)
    ooo = set(small_run.truth["faults"]["out_of_order_event_ids"])
    for s in first:
        if s.record.get("event_id") in ooo:
            # Displacement is the gap to the overtaking event plus a few seconds of normal latency.
            assert s.produce_ms - s.record["event_time_ms"] <= bound_ms + 10_000


def test_valid_unique_counts_per_topic_match_the_recording(small_run):
    first, _ = _first_valid(small_run.stream)
    assert dict(Counter(s.topic for s in first)) == small_run.summary.valid_by_topic
    assert small_run.truth["counts"]["valid_unique_by_topic"] == small_run.summary.valid_by_topic
    assert dict(Counter(s.topic for s in small_run.stream)) == small_run.summary.records_by_topic


def test_truth_counts_every_fault_type(small_run):
    faults = small_run.truth["counts"]["faults"]
    assert faults["duplicates"] == small_run.summary.duplicates
    assert faults["late"] == small_run.summary.late
    assert faults["out_of_order"] == small_run.summary.out_of_order
    assert faults["malformed"] == small_run.summary.malformed


def test_zero_rates_inject_nothing():
    s = generate(sim_config(duplicate_rate=0, out_of_order_rate=0, late_rate=0, malformed_rate=0)).summary
    assert (s.duplicates, s.out_of_order, s.late, s.malformed) == (0, 0, 0, 0)
    assert s.records_by_topic == s.valid_by_topic


def test_simulated_unknown_carriers_are_unknown_however_they_are_folded():
    from fleetflow.simulate.carriers import known_carriers
    from fleetflow.simulate.faults import UNKNOWN_CARRIERS
    from udfs.normalise import carrier_key

    assert not {carrier_key(c) for c in UNKNOWN_CARRIERS} & known_carriers()


def test_clean_simulated_records_of_every_topic_pass_the_id_checks(small_run):
    clean = [s for s in small_run.stream if s.record is not None]
    assert {s.topic for s in clean} >= {"ff.pings", "ff.scans", "ff.plans", "ff.assignments", "ff.geofences"}
    assert all(topic_id_problem(SCHEMA_OF_TOPIC[s.topic], s.record) is None for s in clean)
    # The only id rejections are the injected MISSING_ID faults: no BAD_ID or ID_TOO_LONG.
    id_rejections = Counter(s.reason for s in small_run.stream if s.reason in ID_REASONS)
    assert set(id_rejections) <= {"MISSING_ID"}
    for s in small_run.stream:
        if s.reason in ID_REASONS:
            assert topic_id_problem(SCHEMA_OF_TOPIC[s.topic], strict_decode(s)).reason == "MISSING_ID"


def test_the_dedup_stage_drops_every_duplicate_and_sees_no_conflict(small_run):
    """What the jobs' dedup stage (udfs/dedup.py) makes of the recording: the duplicate
    fault re-sends exact copies, so they are all dropped as duplicates (none becomes an
    EVENT_ID_CONFLICT dead letter), and keying by source lets no extra event through."""
    from udfs.dedup import DEDUP_TOPICS, content_hash, dedup_key
    first_hash, repeats = {}, []
    for s in small_run.stream:
        schema = SCHEMA_OF_TOPIC[s.topic]
        if s.record is None or schema not in DEDUP_TOPICS:
            continue
        key = (s.topic, dedup_key(schema, s.record))
        h = content_hash(schema, s.record)
        if key in first_hash:
            repeats.append(first_hash[key] == h)
        else:
            first_hash[key] = h
    assert len(repeats) == small_run.summary.duplicates > 0
    assert all(repeats), f"{repeats.count(False)} repeats would be EVENT_ID_CONFLICT dead letters"
    assert Counter(t for t, _ in first_hash) == Counter(
        {t: n for t, n in small_run.summary.valid_by_topic.items() if SCHEMA_OF_TOPIC[t] in DEDUP_TOPICS})
