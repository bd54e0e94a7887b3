import argparse
import json

import pytest

from fleetflow.simulate import add_replay_args, add_simulate_args, run_replay, run_simulate, sinks
from fleetflow.simulate.cli import config_from_args
from fleetflow.simulate.faults import Outgoing
from fleetflow.simulate.sinks import Pacer, Recorded, read_recording, write_recording


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.slept.append(round(s, 6))
        self.now += s


class FakeSink:
    instances = []

    def __init__(self, bootstrap):
        self.bootstrap, self.sent, self.closed = bootstrap, [], False
        FakeSink.instances.append(self)

    def send(self, topic, key, value):
        self.sent.append((topic, key, value))

    def close(self):
        self.closed = True


def test_pacer_holds_a_steady_rate():
    clock = FakeClock()
    p = Pacer(rate_eps=4, clock=clock, sleep=clock.sleep)
    for i in range(5):
        p.wait(i, offset_ms=0)
    assert clock.now == pytest.approx(101.0)
    assert clock.slept == [0.25, 0.25, 0.25, 0.25]


def test_pacer_with_speedup_follows_recorded_offsets():
    clock = FakeClock()
    p = Pacer(speedup=10, clock=clock, sleep=clock.sleep)
    for i, offset_ms in enumerate([0, 10_000, 10_000, 30_000]):
        p.wait(i, offset_ms)
    assert clock.now == pytest.approx(103.0)


def test_pacer_at_rate_zero_never_sleeps():
    clock = FakeClock()
    p = Pacer(clock=clock, sleep=clock.sleep)
    for i in range(100):
        p.wait(i, i * 1000)
    assert clock.slept == []


def test_recording_round_trips_keys_values_and_offsets(tmp_path):
    path = tmp_path / "r.jsonl"
    records = [Outgoing(5_000, 1, "ff.pings", "VAN-1", b"\xc3\x01abc"), Outgoing(7_500, 2, "ff.scans", None, b"\x00")]
    write_recording(path, records)
    assert list(read_recording(path)) == [Recorded(0, "ff.pings", "VAN-1", b"\xc3\x01abc"),
                                          Recorded(2_500, "ff.scans", None, b"\x00")]
    assert json.loads(path.read_text().splitlines()[0]) == {"offset_ms": 0, "topic": "ff.pings", "key": "VAN-1",
                                                            "value": "wwFhYmM="}


def test_reading_a_broken_line_names_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"offset_ms":0,"topic":"ff.pings","key":null,"value":"AA=="}\nnot json\n')
    with pytest.raises(ValueError, match=":2:"):
        list(read_recording(path))


def test_simulate_args_map_onto_the_config():
    parser = add_simulate_args(argparse.ArgumentParser())
    args = parser.parse_args(["--seed", "9", "--vans", "3", "--duration", "600", "--dup-rate", "0.1",
                              "--ooo-bound", "30", "--start-ms", "1000", "--rate", "50", "--no-progress"])
    cfg = config_from_args(args)
    assert (cfg.seed, cfg.vans, cfg.duration_s, cfg.duplicate_rate, cfg.out_of_order_bound_s) == (9, 3, 600, 0.1, 30)
    assert (cfg.start_ms, cfg.rate_eps, cfg.progress) == (1000, 50, False)


def test_simulate_rejects_a_rate_outside_zero_to_one():
    parser = add_simulate_args(argparse.ArgumentParser())
    with pytest.raises(SystemExit):
        parser.parse_args(["--late-rate", "1.5"])


def test_run_simulate_writes_recording_and_truth_and_prints_a_summary(tmp_path, capsys):
    parser = add_simulate_args(argparse.ArgumentParser())
    args = parser.parse_args(["--vans", "2", "--duration", "300", "--stops-per-van", "4", "--no-progress",
                              "--out", str(tmp_path / "r.jsonl"), "--truth", str(tmp_path / "t.json")])
    assert run_simulate(args) == 0
    out = capsys.readouterr().out
    assert "ff.pings" in out and "duplicates" in out and "stalls injected" in out
    truth = json.loads((tmp_path / "t.json").read_text())
    assert sum(truth["counts"]["records_by_topic"].values()) == len((tmp_path / "r.jsonl").read_text().splitlines())


def test_replay_sends_every_recorded_record_in_order_with_its_key(tmp_path, monkeypatch, capsys):
    path = tmp_path / "r.jsonl"
    write_recording(path, [Outgoing(0, 1, "ff.pings", "VAN-1", b"a"), Outgoing(10, 2, "ff.scans", "TRK", b"b"),
                           Outgoing(20, 3, "ff.scans", None, b"c")])
    monkeypatch.setattr(sinks, "KafkaSink", FakeSink)
    args = add_replay_args(argparse.ArgumentParser()).parse_args([str(path), "--bootstrap", "h:9092",
                                                                   "--no-progress"])
    assert run_replay(args) == 0
    sink = FakeSink.instances[-1]
    assert sink.bootstrap == "h:9092" and sink.closed
    assert sink.sent == [("ff.pings", "VAN-1", b"a"), ("ff.scans", "TRK", b"b"), ("ff.scans", None, b"c")]
    assert "ff.scans" in capsys.readouterr().out


def test_pacer_sends_the_backlog_before_the_anchor_at_once_then_follows_the_clock():
    clock = FakeClock()
    p = Pacer(speedup=1, anchor_offset_ms=60_000, clock=clock, sleep=clock.sleep)
    for i, offset_ms in enumerate([0, 30_000, 60_000, 61_500]):
        p.wait(i, offset_ms)
    assert clock.slept == [1.5]
