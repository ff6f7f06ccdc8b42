"""JobClient: the api.job calls over HTTP, the same results and the same exception classes as a local store."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobstore import InvalidArgumentError, InvalidJobError, JobNotFoundError, JobStateError, JobStore, ServiceUnavailableError, WaitTimeout
from jobstore._times import parse_time
from jobstore.api import job as local
from jobstore.client import JobClient

from conftest import SCRIPT, without_times


def a_day_of_work(job: Any) -> list[Any]:
    """The api.job calls a script makes, the same whichever ``job`` it is given."""
    seen: list[Any] = []
    first = job.createJob("resize", "ann", "cat.png", "")
    more = job.createJobs([{"name": "thumb", "request": "1"}, {"name": "thumb", "request": "2"}])
    seen.append(job.findJob(first["id"])[1])
    claimed = job.claimJob("worker-1", lease=60)
    seen.append(claimed["id"] == first["id"])
    seen.append(job.setJobProgress(first["id"], 1, 2)["progress"])
    seen.append(job.appendJobMessage(first["id"], "half way")["messages"])
    seen.append(job.heartbeat(first["id"])["status"])
    seen.append(job.updateJobResult(first["id"], {"width": 64}))
    seen.append(job.getJobResults(first["id"])["result"])
    seen.append(job.blockUntilComplete(first["id"], timeout=5)["status"])
    seen.append(job.getJob(more[0]["id"])["request"])
    seen.append(job.getJob(more[0]["id"], "finished"))
    seen.append(job.setJobRunning(more[0]["id"], {"messages": "by hand"})["status"])
    seen.append(job.failJob(more[0]["id"], "broke")["messages"])
    seen.append(job.retryJob(more[0]["id"])["status"])
    seen.append(job.cancelJob(more[1]["id"])["canceled"])
    seen.append([each["request"] for each in job.getPendingJobs()])
    seen.append([each["request"] for each in job.getErrorJobs()])
    seen.append(sorted(each["status"] for each in job.getJobs()))
    job.deleteJob(more[1]["id"])
    seen.append(job.findJob(more[1]["id"]))
    seen.append(list(job.getJobSchema()))
    for call in (lambda: job.retryJob(first["id"] + "-nobody"), lambda: job.setJobProgress(first["id"], 3, 2), lambda: job.heartbeat(first["id"])):
        with pytest.raises((JobNotFoundError, InvalidJobError, JobStateError)) as caught:
            call()
        seen.append((type(caught.value).__name__, str(caught.value).replace(first["id"], "<id>")))
    return seen


def test_a_script_runs_the_same_on_a_local_store_and_through_the_service(client, tmp_path):
    local.useStore(tmp_path / "local")
    try:
        here = a_day_of_work(local)
    finally:
        local.useStore(None)
    there = a_day_of_work(client)
    assert there == here


def test_documents_through_the_service_are_the_stored_ones(client, service):
    made = client.createJob("a", "u", "r", "")
    stored = JobStore(service.root).find_job(made["id"])[0]
    assert made == stored
    assert without_times(client.claimJob("w")) == without_times(JobStore(service.root).find_job(made["id"])[0])


def test_a_claim_names_the_client_process_by_default(client):
    client.createJob("a", "u", "r", "")
    import os
    import socket

    assert client.claimJob()["worker"] == f"{socket.gethostname()}:{os.getpid()}"


def test_block_until_complete_wakes_on_the_finish_not_a_poll(client, service):
    made = client.createJob("a", "u", "r", "")
    finisher = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from jobstore import JobStore; s = JobStore(sys.argv[1]); time.sleep(0.4); s.claim_job('w'); print(time.time(), flush=True); s.update_job_result(sys.argv[2], 'ok')", str(service.root), made["id"]],
        stdout=subprocess.PIPE,
        text=True,
    )
    ended = client.blockUntilComplete(made, timeout=30)
    woke = time.time()
    out, _ = finisher.communicate(timeout=30)
    assert ended["status"] == "finished"
    assert woke - float(out) < 2  # a 2-second polling loop would often miss this


def test_block_until_complete_times_out_with_wait_timeout(client):
    made = client.createJob("a", "u", "r", "")
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=f"job '{made['id']}' did not end within 0.3 s; it is pending"):
        client.blockUntilComplete(made["id"], timeout=0.3)
    assert time.monotonic() - started < 5
    with pytest.raises(JobNotFoundError):
        client.blockUntilComplete("nobody", timeout=1)


def test_a_claim_can_wait_for_a_job_submitted_meanwhile(client, service):
    submitter = subprocess.Popen([sys.executable, "-c", "import sys, time; from jobstore import JobStore; time.sleep(0.4); JobStore(sys.argv[1]).create_job('late')", str(service.root)])
    claimed = client.claimJob("w", wait=20)
    submitter.wait(timeout=30)
    assert claimed is not None and claimed["name"] == "late"
    assert client.claimJob("w", wait=0.2) is None


def test_errors_are_the_library_classes_with_their_attributes(client):
    made = client.createJob("a", "u", "r", "")
    with pytest.raises(JobStateError) as caught:
        client.heartbeat(made["id"])
    assert (caught.value.job_id, caught.value.status, caught.value.allowed) == (made["id"], "pending", ("running",))
    with pytest.raises(InvalidJobError) as refused:
        client.createJobs([{"name": "ok"}, {"nmae": "typo"}])
    assert refused.value.fields == ("nmae",) and refused.value.job_id == "#1"
    with pytest.raises(KeyError):  # JobNotFoundError is a KeyError, as locally
        client.retryJob("nobody")


def test_a_service_that_is_not_there_is_service_unavailable(tmp_path):
    with JobClient("http://127.0.0.1:9", timeout=2) as client, pytest.raises(ServiceUnavailableError, match="cannot be reached.*nothing was changed"):
        client.getJobs()


def test_the_command_works_through_the_service(service, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), "--url", service.url, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)

    made = run("create", "resize", "--user", "ann")
    assert made.returncode == 0, made.stderr
    job_id = made.stdout.strip()
    assert job_id in run("list").stdout
    claimed = run("claim", "--worker", "remote")
    assert claimed.returncode == 0 and claimed.stdout.splitlines()[0] == job_id
    assert run("progress", job_id, "1", "2").returncode == 0
    assert run("finish", job_id, "--result", "done").returncode == 0
    assert run("wait", job_id, "--timeout", "5").returncode == 0
    assert "finished                   1" in run("stats").stdout
    assert run("validate").stdout.startswith("no problems in http://")
    refused = run("schema", "--set", "-")
    assert refused.returncode == 2 and "not through --url" in refused.stderr
    assert not (tmp_path / "jobstore").exists()  # nothing was made where the command ran
    assert JobStore(service.root).find_job(job_id)[1] == "finished"


#: The scheduling fields a job is stored with.
SCHEDULING = ("runAt", "priority", "maxRetries", "retryBackoff", "dependsOn", "key")


def scheduling_of(job: dict[str, Any]) -> dict[str, Any]:
    return {name: job[name] for name in SCHEDULING if name in job}


def test_each_scheduling_keyword_reaches_the_store_as_a_local_store_takes_it(client, service, tmp_path):
    local_store = JobStore(tmp_path / "local")
    at = datetime.datetime(2031, 1, 1, 12, tzinfo=datetime.timezone.utc)
    calls: list[dict[str, Any]] = [
        {"run_at": at},
        {"run_at": datetime.datetime(2031, 1, 1, 12)},  # naive: UTC
        {"run_at": "2031-01-01T13:00:00+01:00"},
        {"priority": 5},
        {"priority": -2},
        {"max_retries": 2},
        {"retry_backoff": 0.5},
        {"key": "nightly"},
    ]
    for keywords in calls:
        there, here = client.create_job("j", **keywords), local_store.create_job("j", **keywords)
        assert scheduling_of(there) == scheduling_of(here), keywords
        assert JobStore(service.root).find_job(there["id"])[0] == there
    assert scheduling_of(client.create_job("j", run_at=at))["runAt"] == "2031-01-01T12:00:00.000000Z"
    assert client.create_job("again", key="nightly")["name"] == "j"  # the key's holder, not a new job

    first = client.create_job("first")
    client.set_job(7, {"name": "seven"}, "finished")
    waiting = client.create_job("after", depends_on=(first["id"], 7, first["id"]))
    assert waiting["dependsOn"] == [first["id"], "7"]


def test_a_delay_starts_on_the_service(client):
    for delay, seconds in ((datetime.timedelta(minutes=5), 300.0), (90, 90.0), (2.5, 2.5)):
        before = datetime.datetime.now(datetime.timezone.utc)
        job = client.create_job("later", delay=delay)
        after = datetime.datetime.now(datetime.timezone.utc)
        due = parse_time(job["runAt"])
        assert due is not None and before + datetime.timedelta(seconds=seconds) <= due <= after + datetime.timedelta(seconds=seconds), (delay, job)
    assert client.claim_job("w") is None  # none is due yet


def test_the_api_job_names_take_the_api_job_keywords(client):
    first = client.createJob("first", "ann", "r", "")
    at = "2031-01-01T12:00:00.000000Z"
    job = client.createJob(
        "second", "ann", "r", "", runAt=at, priority=3, maxRetries=1, retryBackoff=2.0, dependsOn=[first["id"]], key="k"
    )
    assert scheduling_of(job) == {"runAt": at, "priority": 3, "maxRetries": 1, "retryBackoff": 2.0, "dependsOn": [first["id"]], "key": "k"}
    later = client.createJob("third", "ann", "r", "", delay=datetime.timedelta(hours=1))
    assert parse_time(later["runAt"]) > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=59)
    assert client.createJob("fourth", "ann", "r", "", key="k")["id"] == job["id"]


def untouched() -> Any:
    """A client whose every request fails the test: what it refuses, it refuses without asking the service."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"sent {request.method} {request.url}")

    return JobClient("http://127.0.0.1:9", transport=httpx.MockTransport(refuse))


@pytest.mark.parametrize(
    ("keywords", "field"),
    [
        ({"run_at": 5}, "runAt"),
        ({"run_at": "soon"}, "runAt"),
        ({"run_at": "2031-01-01T12:00:00Z", "delay": 5}, "runAt"),
        ({"delay": -1}, "delay"),
        ({"delay": "5"}, "delay"),
        ({"delay": float("nan")}, "delay"),
        ({"delay": True}, "delay"),
        ({"priority": "high"}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"max_retries": -1}, "maxRetries"),
        ({"retry_backoff": 0}, "retryBackoff"),
        ({"retry_backoff": 7200}, "retryBackoff"),
        ({"depends_on": "abc"}, "dependsOn"),
        ({"depends_on": [""]}, "dependsOn"),
        ({"depends_on": [None]}, "dependsOn"),
        ({"key": ""}, "key"),
        ({"key": 3}, "key"),
    ],
)
def test_bad_scheduling_arguments_are_refused_as_a_local_store_refuses_them(keywords, field, tmp_path):
    with pytest.raises(InvalidJobError) as local_refusal:
        JobStore(tmp_path / "local").create_job("j", **keywords)
    with untouched() as client:
        with pytest.raises(InvalidJobError) as refused:
            client.create_job("j", **keywords)
        assert refused.value.fields == (field,) and str(refused.value) == str(local_refusal.value)
        camel = {"run_at": "runAt", "max_retries": "maxRetries", "retry_backoff": "retryBackoff", "depends_on": "dependsOn"}
        named = {camel.get(name, name): value for name, value in keywords.items()}
        with pytest.raises(InvalidJobError) as by_api_job_names:
            client.createJob("j", "u", "r", "", **named)
        assert by_api_job_names.value.fields == (field,)
        with pytest.raises(InvalidJobError) as in_a_batch:
            client.create_jobs([{"name": "fine"}, {"name": "j", **named}])
        assert in_a_batch.value.job_id == "#1" and in_a_batch.value.fields == (field,)


def test_a_refusal_only_the_store_can_make_comes_back_from_it(client, service):
    with pytest.raises(InvalidJobError) as refused:
        client.create_job("j", depends_on=["nobody"])
    assert refused.value.fields == ("dependsOn",) and "no job 'nobody'" in str(refused.value)
    with pytest.raises(InvalidJobError) as in_a_batch:
        client.create_jobs([{"name": "fine"}, {"name": "j", "runAt": datetime.datetime(2031, 1, 1), "delay": 5}])
    assert in_a_batch.value.job_id == "#1" and in_a_batch.value.fields == ("runAt",)
    assert JobStore(service.root).get_jobs() == []


def test_a_batch_takes_times_and_spans_as_python_gives_them(client):
    jobs = client.create_jobs(
        [
            {"name": "at", "runAt": datetime.datetime(2031, 1, 1, 12, tzinfo=datetime.timezone.utc)},
            {"name": "in", "delay": datetime.timedelta(hours=2)},
            {"name": "keyed", "key": "k", "priority": 1},
        ]
    )
    assert jobs[0]["runAt"] == "2031-01-01T12:00:00.000000Z"
    assert parse_time(jobs[1]["runAt"]) > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1, minutes=59)
    assert scheduling_of(jobs[2]) == {"key": "k", "priority": 1}


def test_a_failure_is_retried_unless_told_not_to(client, service):
    job = client.create_job("flaky", max_retries=2, retry_backoff=0.05)
    assert client.claim_job("w")["id"] == job["id"]
    retried = client.fail_job(job["id"], "broke")
    assert (retried["status"], retried["retries"]) == ("pending", 1) and "runAt" in retried
    assert client.claimJob("w", wait=10)["id"] == job["id"]  # due again once its backoff is over
    ended = client.failJob(job["id"], "broke again", retry=False)
    assert (ended["status"], ended["retries"]) == ("error", 1)
    assert "broke again" in ended["messages"]
    assert JobStore(service.root).find_job(job["id"])[1] == "error"
    plain = client.createJob("plain", "ann", "r", "")
    assert client.failJob(jobId=plain["id"], message="never ran")["status"] == "error"  # waiting jobs are not retried


@pytest.mark.parametrize("retry", ["no", 0, None])
def test_a_retry_that_is_no_bool_is_refused(retry):
    with untouched() as client, pytest.raises(InvalidArgumentError) as refused:
        client.fail_job("j", "broke", retry=retry)
    assert refused.value.argument == "retry"
