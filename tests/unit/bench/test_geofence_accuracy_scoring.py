"""The arithmetic of bench/geofence_accuracy.py on tiny inputs with known answers."""
import pytest

from bench.geofence_accuracy import (flapping_pairs, match_visits, reported_visits, score_fences,
                                     score_stalls)
from tests.builders import T0_MS, minutes, seconds
from udfs.fence_membership import ENTER, EXIT, GeofenceEvent


def ev(kind, t_ms, fence="GF-A", van="VAN1", interpolated=False):
    return GeofenceEvent(f"{van}|{fence}|{kind}|{t_ms}", kind, van, fence, "CUSTOMER_STOP", t_ms, None, t_ms,
                         interpolated=interpolated)


def visit(enter_ms, exit_ms, fence="GF-A", van="VAN1"):
    return {"vehicle_id": van, "geofence_id": fence, "kind": "CUSTOMER_STOP", "enter_ms": enter_ms,
            "exit_ms": exit_ms}


def test_reported_visits_pair_enter_with_the_next_exit_and_leave_the_last_open():
    events = [ev(ENTER, T0_MS), ev(EXIT, T0_MS + minutes(3)), ev(ENTER, T0_MS + minutes(10))]
    assert [(v["enter_ms"], v["exit_ms"]) for v in reported_visits(events)] == [
        (T0_MS, T0_MS + minutes(3)), (T0_MS + minutes(10), None)]


def test_match_is_one_to_one_same_van_and_fence_within_tolerance():
    truth = [visit(T0_MS, T0_MS + minutes(3)), visit(T0_MS + minutes(30), None)]
    reported = [visit(T0_MS + seconds(20), T0_MS + minutes(3)),      # the first visit
                visit(T0_MS + minutes(3) + seconds(30), T0_MS + minutes(4)),  # within 60 s, but already taken
                visit(T0_MS + minutes(31), None),                      # the open visit
                visit(T0_MS, T0_MS + minutes(3), fence="GF-B")]        # wrong fence
    assert match_visits(reported, truth, tolerance_ms=seconds(60)) == [(0, 0), (1, None), (2, 1), (3, None)]


def test_score_fences_precision_recall_stays_false_enters_and_flaps():
    truth = [visit(T0_MS, T0_MS + minutes(4)),                       # a stay, found
             visit(T0_MS + minutes(20), T0_MS + minutes(20) + seconds(10)),  # a 10 s drive-through, missed
             visit(T0_MS + minutes(40), T0_MS + minutes(45))]        # a stay, missed
    events = [ev(ENTER, T0_MS + seconds(15)), ev(EXIT, T0_MS + minutes(4) + seconds(10)),
              ev(ENTER, T0_MS + minutes(5)), ev(EXIT, T0_MS + minutes(8)),   # false, and a flap (50 s after EXIT)
              ev(ENTER, T0_MS + minutes(60), fence="GF-B"), ev(EXIT, T0_MS + minutes(62), fence="GF-B")]  # false
    s = score_fences(events, truth, tolerance_ms=seconds(60))
    assert (s["true_visits"], s["true_stays"], s["reported_visits"]) == (3, 2, 3)
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["recall_stays"] == pytest.approx(1 / 2)
    assert (s["false_enters"], s["missed_stays"], s["flapping_pairs"]) == (2, 1, 1)
    assert s["exit_recall"] == 1.0
    assert s["median_enter_error_s"] == 15.0


def test_flap_needs_the_same_van_and_fence_within_the_window():
    events = [ev(EXIT, T0_MS), ev(ENTER, T0_MS + seconds(119)),
              ev(EXIT, T0_MS + minutes(10)), ev(ENTER, T0_MS + minutes(12)),  # exactly 2 min: not a flap
              ev(EXIT, T0_MS, fence="GF-B"), ev(ENTER, T0_MS + seconds(10), fence="GF-C")]
    assert flapping_pairs(events, window_ms=minutes(2)) == 1


def test_no_events_no_truth_gives_no_ratios():
    s = score_fences([], [], tolerance_ms=seconds(60))
    assert s["precision"] is None and s["recall"] is None and s["false_enters"] == 0


def alert(van, start_ms, lat=None, lon=None):
    return {"alert_id": f"VEHICLE_STALLED:{van}:{start_ms}", "vehicle_id": van, "condition_start_ms": start_ms,
            "lat": lat, "lon": lon}


def test_score_stalls_counts_exactly_one_duplicates_breaks_and_false_stalls_at_stops():
    stalls = [{"vehicle_id": "VAN1", "start_ms": T0_MS, "end_ms": T0_MS + minutes(20)},
              {"vehicle_id": "VAN2", "start_ms": T0_MS, "end_ms": T0_MS + minutes(20)},
              {"vehicle_id": "VAN3", "start_ms": T0_MS, "end_ms": T0_MS + minutes(20)}]
    breaks = [{"vehicle_id": "VAN1", "start_ms": T0_MS + minutes(60), "end_ms": T0_MS + minutes(80)}]
    stop = (52.52, 13.405)
    alerts = [alert("VAN1", T0_MS - minutes(1)),                    # VAN1's stall (within 2 min early)
              alert("VAN2", T0_MS), alert("VAN2", T0_MS + minutes(15)),  # VAN2's stall, twice
              alert("VAN1", T0_MS + minutes(61)),                   # a driver break
              alert("VAN3", T0_MS + minutes(30), *stop),            # after VAN3's stall ended, at its stop
              alert("VAN1", T0_MS + minutes(200), 52.60, 13.405)]   # nowhere near a stop
    s = score_stalls(alerts, stalls, breaks, {"VAN3": [stop]})
    assert (s["stalls"], s["detected"], s["exactly_one"], s["duplicated"]) == (3, 2, 1, 1)
    assert s["recall"] == pytest.approx(2 / 3)
    # 3 alerts on stalls, 2 false; the break alert is left out.
    assert s["precision"] == pytest.approx(3 / 5)
    assert (s["break_alerts"], s["false_stalls"], s["false_stalls_at_stops"]) == (1, 2, 1)
