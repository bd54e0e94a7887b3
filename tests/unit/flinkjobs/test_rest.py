"""flinkjobs against a fake Flink REST API: polling, error messages, refusal before harm."""
from __future__ import annotations

import pytest

from fleetflow import flinkjobs
from fleetflow.stack.process import StackError
from tests.unit.flinkjobs.conftest import flink_error

JOB = "a" * 32
NEW_JOB = "b" * 32
NAME = "fleetflow-shipment-status"
TRIGGER = "c" * 32


def in_progress():
    return {"status": {"id": "IN_PROGRESS"}}


def completed(location):
    return {"status": {"id": "COMPLETED"}, "operation": {"location": location}}


def failed(trace):
    return {"status": {"id": "COMPLETED"}, "operation": {"failure-cause": {"class": "java.lang.Exception",
                                                                          "stack-trace": trace}}}


def test_savepoint_polls_the_trigger_until_it_completes_and_returns_the_path(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME)
    fake.on("POST", f"/jobs/{JOB}/savepoints", {"request-id": TRIGGER})
    fake.on("GET", f"/jobs/{JOB}/savepoints/{TRIGGER}", in_progress(), in_progress(), completed("file:/sp/savepoint-1"))

    path = flinkjobs.savepoint(s, NAME, interval_s=0.01)

    assert path == "file:/sp/savepoint-1"
    assert len(fake.calls("GET", f"/jobs/{JOB}/savepoints/{TRIGGER}")) == 3
    [body] = fake.calls("POST", f"/jobs/{JOB}/savepoints")
    assert body == {"target-directory": f"file://{s.data / 'flink-savepoints'}", "cancel-job": False}
    assert flinkjobs.last_submission(s, NAME)["last_savepoint"] == path


def test_savepoint_accepts_a_job_id_and_an_explicit_directory(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME)
    fake.on("POST", f"/jobs/{JOB}/savepoints", {"request-id": TRIGGER})
    fake.on("GET", f"/jobs/{JOB}/savepoints/{TRIGGER}", completed("s3://bucket/sp-1"))

    assert flinkjobs.savepoint(s, JOB, target_dir="s3://bucket", interval_s=0.01) == "s3://bucket/sp-1"
    assert fake.calls("POST", f"/jobs/{JOB}/savepoints")[0]["target-directory"] == "s3://bucket"


def test_failed_savepoint_names_the_innermost_cause_and_the_log(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME)
    fake.on("POST", f"/jobs/{JOB}/savepoints", {"request-id": TRIGGER})
    fake.on("GET", f"/jobs/{JOB}/savepoints/{TRIGGER}", in_progress(), failed(
        "java.util.concurrent.CompletionException: outer\n\tat X.y(X.java:1)\n"
        "Caused by: org.apache.flink.runtime.checkpoint.CheckpointException: Task not running\n\tat Z.z(Z.java:2)"))

    with pytest.raises(StackError) as exc:
        flinkjobs.savepoint(s, NAME, interval_s=0.01)

    msg = str(exc.value)
    assert "CheckpointException: Task not running" in msg
    assert "flink-jobmanager.log" in msg
    assert "last_savepoint" not in flinkjobs.last_submission(s, NAME)


def test_savepoint_that_never_completes_times_out_with_the_log_named(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME)
    fake.on("POST", f"/jobs/{JOB}/savepoints", {"request-id": TRIGGER})
    fake.on("GET", f"/jobs/{JOB}/savepoints/{TRIGGER}", in_progress())

    with pytest.raises(StackError, match=r"did not complete within 0s.*flink-jobmanager.log"):
        flinkjobs.savepoint(s, NAME, timeout_s=0.2, interval_s=0.01)


def test_stop_uses_stop_with_savepoint_without_drain_and_waits_for_finished(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME)
    fake.on("POST", f"/jobs/{JOB}/stop", {"request-id": TRIGGER})
    fake.on("GET", f"/jobs/{JOB}/savepoints/{TRIGGER}", in_progress(), completed("file:/sp/savepoint-2"))
    running = {"jid": JOB, "name": NAME, "state": "RUNNING", "vertices": []}
    fake.on("GET", f"/jobs/{JOB}", running, running, {**running, "state": "FINISHED"})

    assert flinkjobs.stop(s, NAME, interval_s=0.01) == "file:/sp/savepoint-2"

    [body] = fake.calls("POST", f"/jobs/{JOB}/stop")
    assert body["drain"] is False
    assert fake.calls("PATCH", f"/jobs/{JOB}") == []


def test_stop_without_savepoint_cancels(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME)
    fake.on("PATCH", f"/jobs/{JOB}", {})
    fake.on("GET", f"/jobs/{JOB}", {"jid": JOB, "name": NAME, "state": "CANCELED", "vertices": []})

    assert flinkjobs.stop(s, NAME, savepoint=False, interval_s=0.01) is None
    assert len(fake.calls("PATCH", f"/jobs/{JOB}")) == 1
    assert fake.calls("POST", f"/jobs/{JOB}/stop") == []


def test_unknown_job_name_lists_the_known_ones(fake_flink):
    fake, s = fake_flink
    fake.on("GET", "/jobs/overview", {"jobs": []})
    with pytest.raises(StackError, match=r"unknown job 'fleetflow-nope'; known: fleetflow-shipment-status"):
        flinkjobs.savepoint(s, "fleetflow-nope")


def test_job_that_is_not_running_says_how_to_start_it(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME, state="FINISHED")
    with pytest.raises(StackError, match=rf"{NAME} is not running; start it with `fleetflow jobs submit {NAME}`"):
        flinkjobs.stop(s, NAME)
    with pytest.raises(StackError, match=rf"job {JOB} \({NAME}\) is FINISHED, not running"):
        flinkjobs.stop(s, JOB)
    with pytest.raises(StackError, match=rf"no job with id {'d' * 32}"):
        flinkjobs.stop(s, "d" * 32)
    assert fake.calls("POST", f"/jobs/{JOB}/stop") == []


def test_newest_active_instance_wins_over_finished_ones(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME, state="FINISHED", start_ms=5_000)
    fake.job(NEW_JOB, NAME, state="RUNNING", start_ms=1_000)
    assert flinkjobs.running(s, NAME).job_id == NEW_JOB


def test_rest_errors_carry_flinks_own_cause(fake_flink):
    fake, s = fake_flink
    fake.on("GET", "/jobs/overview", flink_error("org.apache.flink.runtime.messages.FlinkJobNotFoundException: "
                                                 "Could not find Flink job"), status=404)
    with pytest.raises(flinkjobs.FlinkRestError) as exc:
        flinkjobs.list_jobs(s)
    assert exc.value.status == 404
    assert str(exc.value) == ("Flink REST GET /jobs/overview → 404: org.apache.flink.runtime.messages."
                              "FlinkJobNotFoundException: Could not find Flink job")


def test_unreachable_cluster_says_to_start_it(tmp_path):
    from fleetflow.settings import StackSettings
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = StackSettings(home=tmp_path, host="127.0.0.1", flink_rest_port=port)
    with pytest.raises(StackError, match=r"not reachable at http://127.0.0.1:\d+ .*fleetflow up"):
        flinkjobs.list_jobs(s)


def test_rescale_beyond_free_slots_is_refused_before_anything_stops(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME, parallelism=1)
    fake.on("GET", "/overview", {"slots-available": 1, "slots-total": 4})

    with pytest.raises(StackError, match=r"needs 3 task slots; the cluster would have 2 free after stopping it"):
        flinkjobs.rescale(s, NAME, 3)
    assert fake.calls("POST", f"/jobs/{JOB}/stop") == []


def test_upgrade_keeps_the_remembered_config_and_parallelism(fake_flink, monkeypatch):
    fake, s = fake_flink
    fake.job(JOB, NAME, parallelism=2)
    fake.on("GET", "/overview", {"slots-available": 2})
    flinkjobs._remember(s, NAME, config={"rules": {"lifecycle": {"idle_expiry_ms": 1000}}})
    monkeypatch.setattr(flinkjobs, "stop", lambda s, job, **kw: "file:/sp/savepoint-3")
    submitted = {}

    def fake_submit(s, name, **kw):
        submitted.update(kw, name=name)
        return flinkjobs.JobInfo(NEW_JOB, name, "RUNNING", 2_000)

    monkeypatch.setattr(flinkjobs, "submit", fake_submit)

    job = flinkjobs.upgrade(s, NAME)

    assert job.job_id == NEW_JOB
    assert submitted["from_savepoint"] == "file:/sp/savepoint-3"
    assert submitted["parallelism"] == 2
    assert submitted["config"] == {"rules": {"lifecycle": {"idle_expiry_ms": 1000}}}


def test_failed_resubmission_names_the_savepoint_to_resume_from(fake_flink, monkeypatch):
    fake, s = fake_flink
    fake.job(JOB, NAME)
    fake.on("GET", "/overview", {"slots-available": 3})
    monkeypatch.setattr(flinkjobs, "stop", lambda s, job, **kw: "file:/sp/savepoint-4")

    def broken_submit(s, name, **kw):
        raise StackError("job xyz is FAILED instead of RUNNING: Cannot map checkpoint/savepoint state")

    monkeypatch.setattr(flinkjobs, "submit", broken_submit)

    with pytest.raises(StackError) as exc:
        flinkjobs.upgrade(s, NAME)
    assert "Cannot map checkpoint/savepoint state" in str(exc.value)
    assert f"fleetflow jobs submit {NAME} --from file:/sp/savepoint-4" in str(exc.value)


def test_submit_from_a_savepoint_next_to_a_running_instance_is_refused(fake_flink):
    fake, s = fake_flink
    fake.job(JOB, NAME)
    with pytest.raises(StackError, match=r"already running .*fleetflow jobs upgrade"):
        flinkjobs.submit(s, NAME, from_savepoint="file:/sp/savepoint-5")


def test_submit_from_a_missing_local_savepoint_is_refused(fake_flink, tmp_path):
    fake, s = fake_flink
    fake.on("GET", "/jobs/overview", {"jobs": []})
    with pytest.raises(StackError, match=r"savepoint file:/nonexistent/savepoint-6 does not exist"):
        flinkjobs.submit(s, NAME, from_savepoint="file:/nonexistent/savepoint-6")


def test_wait_running_reports_the_root_exception_of_a_failed_job(fake_flink):
    fake, s = fake_flink
    fake.on("GET", f"/jobs/{NEW_JOB}", {"jid": NEW_JOB, "name": NAME, "state": "FAILED", "vertices": []})
    fake.on("GET", f"/jobs/{NEW_JOB}/exceptions", {"exceptionHistory": {"entries": [{
        "stacktrace": "org.apache.flink.runtime.JobException: Recovery is suppressed\n"
                      "Caused by: java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint"}]}})
    with pytest.raises(StackError, match=r"FAILED instead of RUNNING: java.lang.IllegalStateException: Failed to "
                                         r"rollback.*flink-taskmanager\*.log"):
        flinkjobs.wait_running(s, NEW_JOB, timeout_s=5, interval_s=0.01)


def test_wait_running_waits_for_every_task(fake_flink):
    fake, s = fake_flink
    base = {"jid": NEW_JOB, "name": NAME, "state": "RUNNING"}
    fake.on("GET", f"/jobs/{NEW_JOB}",
            {**base, "vertices": [{"status": "RUNNING"}, {"status": "INITIALIZING"}]},
            {**base, "vertices": [{"status": "RUNNING"}, {"status": "RUNNING"}]})
    job = flinkjobs.wait_running(s, NEW_JOB, timeout_s=5, interval_s=0.01)
    assert job.state == "RUNNING"
    assert len(fake.calls("GET", f"/jobs/{NEW_JOB}")) == 2


def test_job_that_fails_to_start_is_cancelled_and_remembered(fake_flink, monkeypatch):
    import subprocess

    fake, s = fake_flink
    fake.on("GET", "/jobs/overview", {"jobs": []})
    fake.on("GET", f"/jobs/{NEW_JOB}", {"jid": NEW_JOB, "name": NAME, "state": "RESTARTING", "vertices": []})
    fake.on("GET", f"/jobs/{NEW_JOB}/exceptions", {"exceptionHistory": {"entries": [{
        "stacktrace": "pemja.core.PythonException: <class 'AttributeError'>: boom"}]}})
    fake.on("PATCH", f"/jobs/{NEW_JOB}", {})
    monkeypatch.setattr(flinkjobs, "prepare_flink", lambda s: None)
    argvs = []

    def fake_run(argv, **kw):
        argvs.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=f"Job has been submitted with JobID {NEW_JOB}\n", stderr="")

    monkeypatch.setattr(flinkjobs.subprocess, "run", fake_run)

    with pytest.raises(StackError) as exc:
        flinkjobs.submit(s, NAME, config={"idleness_ms": 5000}, wait_running_s=5)

    assert "RESTARTING instead of RUNNING: pemja.core.PythonException" in str(exc.value)
    assert f"{NEW_JOB} was cancelled" in str(exc.value)
    assert len(fake.calls("PATCH", f"/jobs/{NEW_JOB}")) == 1
    assert flinkjobs.last_submission(s, NAME)["config"] == {"idleness_ms": 5000}
    assert "--config" in argvs[0]
