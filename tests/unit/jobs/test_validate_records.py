"""The shared ingest stage: exactly one of (view, dead letter) per input, never an exception."""
import time

from fleetflow import contracts
from jobs.validate import DEAD_LETTERS, INVALID_RECORD, DedupOperator, ValidateRecords
from tests.builders import ping
from tests.unit.jobs.fakes import ValueState
from udfs.dedup import KEY_SEPARATOR, Arrival, content_hash
from udfs.events import Ping
from udfs.validation import ValidationConfig


class _Counter:
    def __init__(self):
        self.count = 0

    def inc(self):
        self.count += 1


class _Metrics:
    def __init__(self):
        self.counters = {}

    def counter(self, name):
        return self.counters.setdefault(name, _Counter())


class _Runtime:
    def __init__(self):
        self.metrics = _Metrics()

    def get_metrics_group(self):
        return self.metrics


class _Timers:
    def current_processing_time(self):
        return int(time.time() * 1000)


class _Ctx:
    def timer_service(self):
        return _Timers()


def _run(op, rows):
    runtime = _Runtime()
    op.open(runtime)
    out = [x for row in rows for x in op.process_element(row, _Ctx())]
    return out, runtime.metrics.counters


def _row(value, offset=0):
    return {"value": value, "topic": "ff.pings", "partition": 1, "offset": offset}


def _dead(out):
    return [contracts.decode(bytes(x[1]))[1] for x in out if isinstance(x, tuple) and x[0] is DEAD_LETTERS]


def _fresh_ping(**kw):
    return contracts.encode("pings", ping(at_ms=int(time.time() * 1000) - 1000, **kw))


def test_valid_record_leaves_as_its_view_and_garbage_as_a_dead_letter():
    out, counters = _run(ValidateRecords("pings", Ping.from_record, ValidationConfig()),
                         [_row(_fresh_ping()), _row(b"\x00junk", offset=7)])
    assert [type(x) for x in out if not isinstance(x, tuple)] == [Ping]
    (dead,) = _dead(out)
    assert (dead["reason"], dead["source_topic"], dead["source_partition"], dead["source_offset"]) == (
        "UNDECODABLE", "ff.pings", 1, 7)
    assert counters["pings_in"].count == 2 and counters["pings_valid"].count == 1


def test_java_signed_bytes_decode_like_python_bytes():
    raw = _fresh_ping()
    signed = [b - 256 if b > 127 else b for b in raw]
    out, _ = _run(ValidateRecords("pings", Ping.from_record, ValidationConfig()), [_row(signed)])
    assert len(out) == 1 and isinstance(out[0], Ping)


def test_a_check_refusal_is_a_dead_letter_with_the_checks_reason_and_the_original_bytes():
    raw = _fresh_ping(vehicle_id="VAN-BANNED")
    check = lambda record, now_ms, cfg: "BANNED_VAN" if record["vehicle_id"] == "VAN-BANNED" else None  # noqa: E731
    out, counters = _run(ValidateRecords("pings", Ping.from_record, ValidationConfig(), check=check,
                                         describe=lambda r: f"van {r['vehicle_id']}"),
                         [_row(raw), _row(_fresh_ping(vehicle_id="VAN-OK"), offset=1)])
    (dead,) = _dead(out)
    assert (dead["reason"], dead["detail"], dead["original"]) == ("BANNED_VAN", "van VAN-BANNED", raw)
    assert counters["dead_letters_BANNED_VAN"].count == 1
    assert sum(1 for x in out if isinstance(x, Ping)) == 1


def test_a_view_that_raises_dead_letters_the_record_instead_of_failing_the_job():
    def view(record):
        raise ValueError("heading out of range")

    out, counters = _run(ValidateRecords("pings", view, ValidationConfig()), [_row(_fresh_ping())])
    (dead,) = _dead(out)
    assert dead["reason"] == INVALID_RECORD and "heading out of range" in dead["detail"]
    assert counters["pings_valid"].count == 0


def test_bad_ids_are_dead_letters_counted_per_reason_and_never_reach_the_view_or_check():
    seen = []

    def check(record, now_ms, cfg):
        seen.append(record["vehicle_id"])
        return None

    rows = [_row(_fresh_ping(vehicle_id="V" * 1_000_000), offset=0), _row(_fresh_ping(vehicle_id="VAN\x00"), offset=1),
            _row(_fresh_ping(vehicle_id="V" * 128), offset=2), _row(_fresh_ping(event_id="e" * 513), offset=3)]
    out, counters = _run(ValidateRecords("pings", Ping.from_record, ValidationConfig(), check=check), rows)
    dead = _dead(out)
    assert [(d["reason"], d["source_offset"]) for d in dead] == [("ID_TOO_LONG", 0), ("BAD_ID", 1), ("ID_TOO_LONG", 3)]
    assert [d["detail"].split(" ")[:2] for d in dead] == [["pings:", "vehicle_id"], ["pings:", "vehicle_id"],
                                                          ["pings:", "event_id"]]
    assert all(len(d["detail"]) <= 500 for d in dead)
    assert counters["dead_letters_ID_TOO_LONG"].count == 2 and counters["dead_letters_BAD_ID"].count == 1
    assert [p.vehicle_id for p in out if isinstance(p, Ping)] == ["V" * 128] and seen == ["V" * 128]


# ------------------------------------------------------------------ the dedup adapter (jobs/validate.py DedupOperator)

class _KeyedRuntime(_Runtime):
    """One key's value state per runtime: the tests feed one dedup key at a time."""

    def __init__(self):
        super().__init__()
        self.state = ValueState()

    def get_state(self, descriptor):
        return self.state


class _TimerService(_Timers):
    def __init__(self):
        self.timers = set()

    def register_event_time_timer(self, t):
        self.timers.add(t)

    def delete_event_time_timer(self, t):
        self.timers.discard(t)


class _KeyedCtx:
    def __init__(self, timers):
        self._timers = timers

    def timer_service(self):
        return self._timers


def _arrivals(rows, schema="pings"):
    out, _ = _run(ValidateRecords(schema, Ping.from_record, ValidationConfig(), for_dedup=True), rows)
    return out


def _dedup(arrivals):
    op = DedupOperator("pings", ttl_ms=24 * 3_600_000)
    runtime, timers = _KeyedRuntime(), _TimerService()
    op.open(runtime)
    out = [x for a in arrivals for x in op.process_element(a, _KeyedCtx(timers))]
    return out, runtime, timers


def test_for_dedup_a_valid_record_leaves_as_an_arrival_with_key_hash_bytes_and_origin():
    raw = _fresh_ping(vehicle_id="VAN007", event_id="p1")
    (a,) = _arrivals([_row(raw, offset=42)])
    assert isinstance(a, Arrival) and isinstance(a.event, Ping)
    assert a.key == f"VAN007{KEY_SEPARATOR}p1"
    assert a.content_hash == content_hash("pings", contracts.decode(raw)[1])
    assert (a.original, a.source_topic, a.source_partition, a.source_offset) == (raw, "ff.pings", 1, 42)
    assert a.event_time_ms == a.event.event_time_ms


def test_dedup_operator_passes_the_first_drops_and_counts_an_exact_repeat():
    raw = _fresh_ping(event_id="p1")
    out, runtime, timers = _dedup(_arrivals([_row(raw, offset=1), _row(raw, offset=2)]))
    assert [type(x) for x in out] == [Ping]
    assert runtime.metrics.counters["pings_duplicates"].count == 1
    assert runtime.metrics.counters["dead_letters_EVENT_ID_CONFLICT"].count == 0
    assert len(timers.timers) == 1 and runtime.state.raw is not None


def test_dedup_operator_dead_letters_a_conflicting_repeat_with_its_original_bytes():
    at_ms = int(time.time() * 1000) - 1000
    first = contracts.encode("pings", ping(event_id="p1", lat=52.52, at_ms=at_ms))
    other = contracts.encode("pings", ping(event_id="p1", lat=52.53, at_ms=at_ms))
    out, runtime, _ = _dedup(_arrivals([_row(first, offset=1), _row(other, offset=2)]))
    assert [p.lat for p in out if isinstance(p, Ping)] == [52.52]
    (dead,) = _dead(out)
    assert (dead["reason"], dead["original"], dead["source_topic"], dead["source_partition"],
            dead["source_offset"]) == ("EVENT_ID_CONFLICT", other, "ff.pings", 1, 2)
    assert dead["detail"].startswith("pings: event_id 'p1' from 'VAN001'")
    assert runtime.metrics.counters["dead_letters_EVENT_ID_CONFLICT"].count == 1
    assert runtime.metrics.counters["pings_duplicates"].count == 0
