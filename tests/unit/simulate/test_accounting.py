"""What a simulated run's truth file says the stores must hold, and which dead letters are the run's."""
from fleetflow.simulate import accounting


def _truth(**over):
    t = {"counts": {"valid_unique_by_topic": {"ff.scans": 120, "ff.pings": 900, "ff.plans": 8},
                    "faults": {"malformed": 7, "duplicates": 40}}}
    t.update(over)
    return t


def test_expected_counts_come_from_valid_unique_scans_pings_and_malformed_records():
    assert accounting.expected(_truth()) == accounting.Counts(120, 900, 7)


def test_a_run_without_pings_expects_no_position_rows():
    t = {"counts": {"valid_unique_by_topic": {"ff.scans": 3}, "faults": {"malformed": 0}}}
    assert accounting.expected(t) == accounting.Counts(3, 0, 0)


def _dl(topic, partition, offset):
    return {"source_topic": topic, "source_partition": partition, "source_offset": offset}


def test_dead_letters_count_once_per_source_record_and_only_from_the_run_start():
    start = {"ff.pings": {"0": 10, "1": 0}, "ff.scans": {"0": 5}}
    dead = [
        _dl("ff.pings", 0, 12), _dl("ff.pings", 0, 12),  # the vehicle and the ETA job both dead-letter it
        _dl("ff.pings", 0, 9),                            # before the run: another run's
        _dl("ff.pings", 1, 0),
        _dl("ff.scans", 0, 5),
        _dl("ff.scans", 1, 3),                            # partition unknown to the run start
        _dl("ff.alert-candidates", 0, 50),                # not an input topic of the run
    ]
    assert accounting.run_origins(dead, start) == {("ff.pings", 0, 12), ("ff.pings", 1, 0), ("ff.scans", 0, 5)}


def test_the_same_dead_letters_in_another_order_give_the_same_origins():
    start = {"ff.pings": {"0": 10}}
    dead = [_dl("ff.pings", 0, 11), _dl("ff.pings", 0, 3), _dl("ff.pings", 0, 11), _dl("ff.pings", 0, 15)]
    assert accounting.run_origins(dead, start) == accounting.run_origins(list(reversed(dead)), start)


def test_rows_label_each_count():
    labels = [label for label, _ in accounting.Counts(1, 2, 3).rows()]
    assert len(labels) == 3 and "history" in labels[0] and "position" in labels[1] and "dead" in labels[2]


def test_the_command_refuses_a_truth_file_from_a_run_that_never_reached_kafka(tmp_path, capsys):
    import json

    from fleetflow.cli.main import main
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(_truth(seed=7)))
    assert main(["accounting", str(path)]) == 1
    assert "no Kafka start offsets" in capsys.readouterr().out


def test_the_command_names_an_unreadable_truth_file(tmp_path, capsys):
    from fleetflow.cli.main import main
    assert main(["accounting", str(tmp_path / "missing.json")]) == 1
    assert "cannot read truth file" in capsys.readouterr().out


def test_every_valid_ping_of_a_run_falls_in_the_window_its_position_rows_are_counted_in(small_run):
    lo, hi = accounting.ping_window_ms(small_run.truth)
    times = [s.record["event_time_ms"] for s in small_run.stream if s.topic == "ff.pings" and s.record is not None]
    assert times and all(lo <= t <= hi for t in times), (lo, hi, min(times), max(times))
