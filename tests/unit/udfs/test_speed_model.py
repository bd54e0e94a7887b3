import json
import pickle
from datetime import datetime, timedelta, timezone

import h3
import pytest

from tests.builders import T0_MS, hours, minutes, ping
from udfs.events import Ping
from udfs.speed_model import (
    FLEET_SLOT,
    SpeedModelConfig,
    cell_for,
    expected_speed_mps,
    hour_of_week,
    learnable_speed_mps,
    make_speed_lookup,
    merge,
    observe,
    observe_ping,
    slot_keys,
)

CFG = SpeedModelConfig(min_samples=5)
BERLIN = (52.5200, 13.4050)
CELL = cell_for(*BERLIN, CFG)
MON_8H = hour_of_week(T0_MS)


def _fill(model, cell, how, speed_mps, n):
    for _ in range(n):
        model = observe(model, cell, how, speed_mps, CFG)
    return model


def _neighbour_cell(cell):
    # A cell next door shares the parent slot but not the cell slots.
    parent = h3.cell_to_parent(cell, CFG.parent_res)
    return next(c for c in h3.grid_ring(cell, 1) if h3.cell_to_parent(c, CFG.parent_res) == parent)


def test_hour_of_week_is_zero_at_monday_midnight_utc():
    monday_midnight_ms = T0_MS - hours(8)
    assert hour_of_week(monday_midnight_ms) == 0
    assert hour_of_week(T0_MS) == 8
    assert hour_of_week(monday_midnight_ms - 1) == 167


def test_hour_of_week_agrees_with_calendar_over_a_year_including_before_1970():
    for start in (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(1969, 6, 1, tzinfo=timezone.utc)):
        for h in range(0, 24 * 400, 7):
            t = start + timedelta(hours=h, minutes=13)
            ms = int(t.timestamp() * 1000)
            assert hour_of_week(ms) == t.weekday() * 24 + t.hour


def test_thin_cell_falls_back_to_default_speed_with_low_confidence():
    speed, confidence = expected_speed_mps({}, CELL, MON_8H, CFG)
    assert speed == CFG.default_speed_mps
    assert confidence == CFG.weight_default


def test_uses_cell_hour_slot_once_it_has_min_samples():
    model = _fill({}, CELL, MON_8H, 6.0, CFG.min_samples - 1)
    assert expected_speed_mps(model, CELL, MON_8H, CFG)[0] == CFG.default_speed_mps
    model = observe(model, CELL, MON_8H, 6.0, CFG)
    speed, confidence = expected_speed_mps(model, CELL, MON_8H, CFG)
    assert speed == pytest.approx(6.0)
    assert 0 < confidence < 1


def test_other_hour_of_same_cell_falls_back_to_cell_any_hour_with_less_confidence():
    model = _fill({}, CELL, MON_8H, 6.0, 50)
    exact = expected_speed_mps(model, CELL, MON_8H, CFG)
    other_hour = expected_speed_mps(model, CELL, MON_8H + 10, CFG)
    assert other_hour[0] == pytest.approx(6.0)
    assert other_hour[1] < exact[1]


def test_unseen_neighbour_cell_falls_back_to_parent_cell():
    model = _fill({}, CELL, MON_8H, 6.0, 50)
    neighbour = _neighbour_cell(CELL)
    speed, confidence = expected_speed_mps(model, neighbour, MON_8H, CFG)
    assert speed == pytest.approx(6.0)
    assert confidence < expected_speed_mps(model, CELL, MON_8H + 10, CFG)[1]


def test_cell_in_another_region_falls_back_to_learned_fleet_mean():
    model = _fill({}, CELL, MON_8H, 6.0, 50)
    munich_cell = cell_for(48.137, 11.575, CFG)
    speed, confidence = expected_speed_mps(model, munich_cell, MON_8H, CFG)
    assert speed == pytest.approx(6.0)
    assert confidence == pytest.approx(CFG.weight_fleet * 50 / 55)


def test_confidence_grows_with_samples():
    few = expected_speed_mps(_fill({}, CELL, MON_8H, 6.0, 6), CELL, MON_8H, CFG)[1]
    many = expected_speed_mps(_fill({}, CELL, MON_8H, 6.0, 200), CELL, MON_8H, CFG)[1]
    assert few < many < 1


def test_mean_and_variance_match_batch_statistics():
    speeds = [3.0, 5.0, 7.5, 9.0, 12.0, 4.5]
    model = {}
    for s in speeds:
        model = observe(model, CELL, MON_8H, s, CFG)
    n, mean, m2 = model[f"{CELL}@{MON_8H}"]
    batch_mean = sum(speeds) / len(speeds)
    assert n == len(speeds)
    assert mean == pytest.approx(batch_mean)
    assert m2 / n == pytest.approx(sum((s - batch_mean) ** 2 for s in speeds) / len(speeds))


def test_mature_slot_follows_a_lasting_change_in_speed():
    cfg = SpeedModelConfig(min_samples=5, max_weight_samples=50)
    model = {}
    for _ in range(1000):
        model = observe(model, CELL, MON_8H, 10.0, cfg)
    for _ in range(200):
        model = observe(model, CELL, MON_8H, 4.0, cfg)
    n, mean, _ = model[f"{CELL}@{MON_8H}"]
    assert n == 50
    # A plain running mean would still say ~8.5 m/s after 1000 samples of 10.
    assert mean < 4.2


def test_observe_does_not_mutate_the_input_state():
    before = _fill({}, CELL, MON_8H, 6.0, 3)
    snapshot = dict(before)
    observe(before, CELL, MON_8H, 9.0, CFG)
    assert before == snapshot


def test_one_observation_feeds_cell_hour_cell_parent_and_fleet_slots():
    model = observe({}, CELL, MON_8H, 6.0, CFG)
    assert set(model) == set(slot_keys(CELL, MON_8H, CFG))
    assert FLEET_SLOT in model


@pytest.mark.parametrize(
    "overrides",
    [
        {"source": "CELL", "accuracy_m": 800.0},
        {"source": "DRIVER_CHECKIN"},
        {"speed_mps": 0.2},  # standing at a stop
        {"speed_mps": 55.0},  # GPS glitch
        {"speed_mps": None},
        {"accuracy_m": 120.0},
        {"accuracy_m": None},
    ],
)
def test_ignores_pings_unfit_to_learn_from(overrides):
    p = Ping.from_record(ping(**{"speed_mps": 7.0, **overrides}))
    assert learnable_speed_mps(p, CFG) is None
    assert observe_ping({}, p, CFG) == {}


def test_learns_from_moving_accurate_gps_ping_in_its_cell_and_hour():
    p = Ping.from_record(ping(lat=BERLIN[0], lon=BERLIN[1], at_ms=T0_MS + minutes(5), speed_mps=7.0))
    model = observe_ping({}, p, CFG)
    assert model[f"{CELL}@{MON_8H}"][:2] == (1, 7.0)


def test_model_survives_json_and_pickle_round_trips():
    model = _fill({}, CELL, MON_8H, 6.0, 10)
    model = _fill(model, CELL, MON_8H + 1, 9.0, 10)
    for restored in (json.loads(json.dumps(model)), pickle.loads(pickle.dumps(model))):
        assert expected_speed_mps(restored, CELL, MON_8H, CFG) == expected_speed_mps(model, CELL, MON_8H, CFG)
        restored = observe(restored, CELL, MON_8H, 6.0, CFG)
        assert restored[f"{CELL}@{MON_8H}"][0] == 11


def test_merging_partial_models_equals_learning_everything_in_one():
    a = _fill({}, CELL, MON_8H, 6.0, 7)
    b = _fill({}, CELL, MON_8H, 10.0, 3)
    together = _fill(_fill({}, CELL, MON_8H, 6.0, 7), CELL, MON_8H, 10.0, 3)
    merged = merge(a, b, CFG)
    assert set(merged) == set(together)
    for key in together:
        assert merged[key] == pytest.approx(together[key])


def test_lookup_adapter_resolves_cell_and_hour_from_position_and_time():
    model = _fill({}, CELL, MON_8H, 6.0, 10)
    lookup = make_speed_lookup(model, CFG)
    assert lookup(BERLIN[0], BERLIN[1], T0_MS + minutes(30)) == expected_speed_mps(model, CELL, MON_8H, CFG)


def test_slot_updates_touch_only_the_four_slots_a_ping_feeds_and_match_observe():
    from tests.builders import T0_MS, ping as ping_record
    from udfs.events import Ping as PingView
    from udfs.speed_model import observe_ping, slot_updates

    model = {}
    for i in range(5):
        p = PingView.from_record(ping_record(at_ms=T0_MS + i * 10_000, speed_mps=6.0 + i))
        updates = slot_updates(model, p)
        assert len(updates) == 4
        expected = observe_ping(model, p)
        model = {**model, **updates}
        assert model == expected
    cell_tower = PingView.from_record(ping_record(at_ms=T0_MS + 60_000, source="CELL", accuracy_m=900.0))
    assert slot_updates(model, cell_tower) == {}
