from udfs.dedup import DEFAULT_DEDUP_TTL_MS, DedupState, on_timer, step
from udfs.events import Scan
from tests.builders import T0_MS, hours, minutes, scan

TTL_MS = hours(24)


def run(events_with_now, state=None, ttl_ms=TTL_MS):
    """Feed (event, now_ms) pairs for one event_id key; return (state, emitted events, timers)."""
    emitted, timers = [], []
    for event, now_ms in events_with_now:
        d = step(state, event, now_ms, ttl_ms)
        state = d.state
        emitted.extend(d.emits)
        if d.timer_ms is not None:
            timers.append(d.timer_ms)
    return state, emitted, timers


def test_default_ttl_is_one_day():
    assert DEFAULT_DEDUP_TTL_MS == hours(24)


def test_first_event_is_emitted_and_state_expires_a_ttl_later():
    first = scan(event_id="e1", at_ms=T0_MS)
    d = step(None, first, T0_MS)
    assert d.emits == (first,)
    assert d.state == DedupState(first_event_time_ms=T0_MS, expires_at_ms=T0_MS + TTL_MS)
    assert d.timer_ms == T0_MS + TTL_MS


def test_duplicate_is_dropped_without_touching_state_or_timers():
    first = scan(event_id="e1")
    state, emitted, timers = run([(first, T0_MS), (dict(first), T0_MS + minutes(3)), (dict(first), T0_MS + hours(5))])
    assert emitted == [first]
    assert timers == [T0_MS + TTL_MS]
    assert state.expires_at_ms == T0_MS + TTL_MS


def test_first_arrival_wins_when_twins_differ():
    a = scan(event_id="e1", raw_code="PU", at_ms=T0_MS)
    b = scan(event_id="e1", raw_code="AR", at_ms=T0_MS + minutes(2))
    _, emitted, _ = run([(a, T0_MS), (b, T0_MS)])
    assert emitted == [a]


def test_first_arrival_wins_when_twins_differ_out_of_order():
    a = scan(event_id="e1", raw_code="PU", at_ms=T0_MS)
    b = scan(event_id="e1", raw_code="AR", at_ms=T0_MS + minutes(2))
    state, emitted, _ = run([(b, T0_MS), (a, T0_MS)])
    assert emitted == [b]
    assert state.first_event_time_ms == T0_MS + minutes(2)


def test_late_event_keeps_state_a_full_ttl_past_the_watermark():
    late = scan(event_id="e1", at_ms=T0_MS - hours(30))
    d = step(None, late, T0_MS)
    assert d.emits == (late,)
    assert d.timer_ms == T0_MS + TTL_MS


def test_first_event_before_any_watermark_anchors_on_event_time():
    d = step(None, scan(event_id="e1", at_ms=T0_MS), -(2 ** 63))
    assert d.timer_ms == T0_MS + TTL_MS


def test_timer_at_expiry_clears_state():
    d = step(None, scan(event_id="e1"), T0_MS)
    assert on_timer(d.state, d.timer_ms).state is None


def test_stale_timer_keeps_newer_state():
    state = DedupState(first_event_time_ms=T0_MS, expires_at_ms=T0_MS + TTL_MS)
    assert on_timer(state, T0_MS + minutes(1)).state == state


def test_timer_on_empty_state_is_a_no_op():
    d = on_timer(None, T0_MS)
    assert d.state is None and d.emits == () and d.timer_ms is None


def test_twin_after_expiry_is_emitted_again():
    first = scan(event_id="e1")
    state, _, timers = run([(first, T0_MS)])
    state = on_timer(state, timers[0]).state
    assert state is None
    _, emitted, _ = run([(dict(first), T0_MS + TTL_MS + 1)], state=state)
    assert emitted == [first]


def test_works_on_typed_views_too():
    view = Scan.from_record(scan(event_id="e1"))
    state, emitted, _ = run([(view, T0_MS), (view, T0_MS)])
    assert emitted == [view]
    assert on_timer(state, state.expires_at_ms).state is None


def test_custom_ttl():
    d = step(None, scan(event_id="e1"), T0_MS, ttl_ms=minutes(10))
    assert d.timer_ms == T0_MS + minutes(10)
