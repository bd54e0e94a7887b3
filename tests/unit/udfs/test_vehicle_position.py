from udfs import vehicle_position as vp
from udfs.events import Ping
from tests.builders import T0_MS, minutes, ping


def _run(pings):
    state, emits = None, []
    for p in pings:
        d = vp.step(state, Ping.from_record(p), T0_MS)
        state, emits = d.state, emits + list(d.emits)
    return state, emits


def test_newer_ping_moves_current_position_and_writes_history():
    state, emits = _run([ping(at_ms=T0_MS, lat=52.50), ping(at_ms=T0_MS + minutes(1), lat=52.51)])
    current = [e for e in emits if isinstance(e, vp.VehiclePosition)]
    assert [c.lat for c in current] == [52.50, 52.51]
    assert state.last_event_time_ms == T0_MS + minutes(1)
    assert len([e for e in emits if isinstance(e, vp.PositionRow)]) == 2


def test_out_of_order_ping_is_history_only_and_never_moves_position_back():
    newer, older = ping(at_ms=T0_MS + minutes(1), lat=52.51), ping(at_ms=T0_MS, lat=52.50)
    state, emits = _run([newer, older])
    current = [e for e in emits if isinstance(e, vp.VehiclePosition)]
    assert [c.lat for c in current] == [52.51]
    assert state.last_event_time_ms == T0_MS + minutes(1)
    assert sorted(e.event_time_ms for e in emits if isinstance(e, vp.PositionRow)) == [T0_MS, T0_MS + minutes(1)]


def test_in_order_twin_ends_in_the_same_state():
    a, b = ping(at_ms=T0_MS, lat=52.50), ping(at_ms=T0_MS + minutes(1), lat=52.51)
    assert _run([a, b])[0] == _run([b, a])[0]


def test_history_rows_are_bucketed_by_utc_day():
    _, emits = _run([ping(at_ms=T0_MS)])
    assert emits[0].day == T0_MS // 86_400_000
