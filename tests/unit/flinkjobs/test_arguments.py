"""The `flink run` command line and the `fleetflow jobs` argument handling."""
from __future__ import annotations

import json

import pytest

from fleetflow import flinkjobs
from fleetflow.cli import cmd_jobs
from fleetflow.cli.main import build_parser
from fleetflow.settings import StackSettings
from fleetflow.stack.process import StackError

NAME = "fleetflow-shipment-status"


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_submit_argv_restores_from_a_savepoint_at_a_parallelism():
    argv = flinkjobs.submit_argv(StackSettings(), NAME, from_savepoint="file:/sp/1", parallelism=2,
                                 allow_non_restored_state=True)
    assert _flag(argv, "-s") == "file:/sp/1"
    assert _flag(argv, "-p") == "2"
    assert "-n" in argv
    assert _flag(argv, "-pym") == "jobs.shipment_status"
    assert "--config" not in argv
    # flink run options must come before the Python job options.
    assert argv.index("-s") < argv.index("-pym") and argv.index("-p") < argv.index("-pym")


def test_submit_argv_without_savepoint_ignores_allow_non_restored_state():
    argv = flinkjobs.submit_argv(StackSettings(), NAME, allow_non_restored_state=True)
    assert "-s" not in argv and "-n" not in argv and "-p" not in argv


def test_new_parallelism_replaces_the_one_in_the_job_config():
    argv = flinkjobs.submit_argv(StackSettings(), NAME, config={"parallelism": 1, "idleness_ms": 5000},
                                 parallelism=2)
    assert json.loads(_flag(argv, "--config")) == {"parallelism": 2, "idleness_ms": 5000}


@pytest.mark.parametrize("bad", [0, -1, flinkjobs.MAX_PARALLELISM + 1])
def test_parallelism_outside_the_key_group_range_is_refused(bad):
    with pytest.raises(StackError, match="parallelism must be between 1 and 128"):
        flinkjobs.submit_argv(StackSettings(), NAME, parallelism=bad)


def test_unknown_job_is_refused_with_the_known_names():
    with pytest.raises(StackError, match="unknown job 'shipments'; known: fleetflow-shipment-status"):
        flinkjobs.submit_argv(StackSettings(), "shipments")


def test_cli_parses_every_action():
    p = build_parser()
    a = p.parse_args(["jobs", "submit", NAME, "--from", "file:/sp/1", "-p", "2", "--config", "{}"])
    assert (a.action, a.job, a.from_savepoint, a.parallelism, a.config) == ("submit", NAME, "file:/sp/1", 2, "{}")
    assert p.parse_args(["jobs", "submit"]).job == NAME
    assert p.parse_args(["jobs", "rescale", NAME, "3"]).parallelism == 3
    assert p.parse_args(["jobs", "stop", NAME, "--no-savepoint"]).no_savepoint is True
    assert p.parse_args(["jobs", "savepoint", NAME, "--dir", "s3://b/sp"]).dir == "s3://b/sp"
    assert p.parse_args(["jobs", "upgrade", NAME]).config is None
    assert p.parse_args(["jobs", "list", "--all"]).all is True


@pytest.mark.parametrize("argv", [["jobs", "rescale", NAME, "0"], ["jobs", "rescale", NAME, "two"],
                                  ["jobs", "rescale", NAME], ["jobs", "stop"], ["jobs", "explode", NAME]])
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize("text, message", [("{nope", "--config is not JSON"),
                                           ("[1, 2]", "--config must be a JSON object")])
def test_bad_config_json_is_a_clear_error(text, message):
    with pytest.raises(StackError, match=message):
        cmd_jobs._config(text)


def test_errors_exit_1_with_one_line(monkeypatch, capsys, tmp_path):
    import socket

    from fleetflow.cli import main as cli_main
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("FLEETFLOW_FLINK_REST_PORT", str(port))
    monkeypatch.setenv("FLEETFLOW_HOME_DIR", str(tmp_path))
    assert cli_main.main(["jobs", "list"]) == 1
    assert "not reachable" in capsys.readouterr().out
