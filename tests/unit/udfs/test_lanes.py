import json
import pickle
import random

import pytest

from tests.builders import T0_MS, hours, minutes
from udfs.lanes import (
    BASIS_LANE,
    DEFAULT_SERVICE_LEVEL_TRANSIT_MS,
    Lane,
    LaneConfig,
    lane_eta,
    merge,
    observe,
    quantile_ms,
)

CFG = LaneConfig()
LANE = Lane("HUB-BER", "HUB-MUC", "FEDEX", "NEXT_DAY")


def _learn(transits_ms, state=None, cfg=CFG):
    for t in transits_ms:
        state = observe(state, t, cfg)
    return state


def _uniform_hours(lo_h, hi_h, n, seed=1):
    rng = random.Random(seed)
    return [hours(rng.uniform(lo_h, hi_h)) for _ in range(n)]


def test_lane_key_names_all_four_parts():
    assert LANE.key == "HUB-BER>HUB-MUC|FEDEX|NEXT_DAY"


def test_percentiles_are_within_bucket_resolution_of_the_exact_ones():
    transits = _uniform_hours(10, 30, 2000, seed=3)
    state = _learn(transits)
    exact = sorted(transits)
    for q in (0.1, 0.5, 0.9):
        true_ms = exact[int(q * len(exact))]
        assert quantile_ms(state, q) == pytest.approx(true_ms, rel=0.05)


def test_lane_eta_uses_p50_and_p10_to_p90_window_from_history():
    state = _learn(_uniform_hours(10, 30, 500))
    update = lane_eta(state, LANE, T0_MS, "TRK1")
    assert update.basis == BASIS_LANE
    assert update.tracking_id == "TRK1"
    assert update.earliest_ms == T0_MS + quantile_ms(state, 0.1)
    assert update.eta_ms == T0_MS + quantile_ms(state, 0.5)
    assert update.latest_ms == T0_MS + quantile_ms(state, 0.9)
    assert update.earliest_ms < update.eta_ms < update.latest_ms
    assert update.confidence == pytest.approx(500 / 520)


def test_lane_without_history_falls_back_to_its_service_level_defaults():
    p10, p50, p90 = DEFAULT_SERVICE_LEVEL_TRANSIT_MS["NEXT_DAY"]
    update = lane_eta(None, LANE, T0_MS, "TRK1")
    assert (update.earliest_ms, update.eta_ms, update.latest_ms) == (T0_MS + p10, T0_MS + p50, T0_MS + p90)
    assert update.confidence == CFG.default_confidence


def test_thin_history_still_uses_defaults_until_min_samples():
    thin = _learn([hours(2)] * (int(CFG.min_samples) - 1))
    assert lane_eta(thin, LANE, T0_MS, "TRK1").eta_ms == T0_MS + DEFAULT_SERVICE_LEVEL_TRANSIT_MS["NEXT_DAY"][1]
    enough = observe(thin, hours(2), CFG)
    assert lane_eta(enough, LANE, T0_MS, "TRK1").eta_ms == pytest.approx(T0_MS + hours(2), rel=0.1)


def test_unknown_service_level_falls_back_to_standard():
    odd = Lane("A", "B", "DHL", "WHITE_GLOVE")
    assert lane_eta(None, odd, T0_MS, "TRK1").eta_ms == T0_MS + DEFAULT_SERVICE_LEVEL_TRANSIT_MS["STANDARD"][1]


def test_parcel_past_the_median_gets_an_eta_from_the_longer_transits_only():
    state = _learn(_uniform_hours(10, 30, 1000))
    since_ms = T0_MS
    now_ms = since_ms + hours(25)
    update = lane_eta(state, LANE, since_ms, "TRK1", now_ms=now_ms)
    assert update.earliest_ms >= now_ms
    # Of transits above 25 h (uniform 10-30 h) the median is ~27.5 h.
    assert update.eta_ms == pytest.approx(since_ms + hours(27.5), abs=hours(1))
    assert update.as_of_ms == now_ms


def test_parcel_that_outlasted_all_history_gets_default_spread_from_now_at_lower_confidence():
    state = _learn(_uniform_hours(10, 12, 100))
    now_ms = T0_MS + hours(48)
    update = lane_eta(state, LANE, T0_MS, "TRK1", now_ms=now_ms)
    p10, p50, p90 = DEFAULT_SERVICE_LEVEL_TRANSIT_MS["NEXT_DAY"]
    assert (update.earliest_ms, update.eta_ms, update.latest_ms) == (now_ms, now_ms + p50 - p10, now_ms + p90 - p10)
    assert update.confidence == CFG.default_confidence / 2


def test_ignores_non_positive_transits_from_clock_skew():
    state = _learn([hours(5)] * 3)
    assert observe(state, 0, CFG)["n"] == 3
    assert observe(state, -minutes(5), CFG)["n"] == 3


def test_observe_does_not_mutate_the_input_state():
    state = _learn([hours(5)] * 3)
    snapshot = json.dumps(state, sort_keys=True)
    observe(state, hours(9), CFG)
    assert json.dumps(state, sort_keys=True) == snapshot


def test_lane_re_learns_after_a_schedule_change():
    cfg = LaneConfig(max_weight=200)
    state = _learn([hours(30)] * 2000, cfg=cfg)
    state = _learn([hours(12)] * 400, state, cfg)
    assert state["n"] <= cfg.max_weight
    assert quantile_ms(state, 0.5) == pytest.approx(hours(12), rel=0.1)


def test_state_survives_json_and_pickle_round_trips():
    state = _learn(_uniform_hours(10, 30, 300))
    for restored in (json.loads(json.dumps(state)), pickle.loads(pickle.dumps(state))):
        assert quantile_ms(restored, 0.5) == quantile_ms(state, 0.5)
        assert observe(restored, hours(20), CFG)["n"] == state["n"] + 1


def test_geometry_is_read_from_state_not_from_a_changed_config():
    state = _learn([hours(20)] * 50)
    coarser = LaneConfig(bucket_ratio=1.5, min_transit_ms=hours(1))
    again = observe(state, hours(20), coarser)
    assert quantile_ms(again, 0.5) == quantile_ms(state, 0.5)


def test_merging_two_partitions_equals_learning_all_deliveries_in_one():
    a_transits, b_transits = _uniform_hours(10, 20, 100, seed=1), _uniform_hours(15, 40, 100, seed=2)
    merged = merge(_learn(a_transits), _learn(b_transits))
    together = _learn(a_transits + b_transits)
    for q in (0.1, 0.5, 0.9):
        assert quantile_ms(merged, q) == quantile_ms(together, q)


def test_transits_beyond_the_histogram_range_are_clamped_not_lost():
    state = _learn([minutes(1)] * 30 + [hours(24 * 90)] * 30)
    assert state["n"] == 60
    assert quantile_ms(state, 0.0) >= CFG.min_transit_ms
