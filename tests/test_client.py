"""JobClient: the api.job calls over HTTP, the same results and the same exception classes as a local store."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jobstore import InvalidJobError, JobNotFoundError, JobStateError, JobStore, ServiceUnavailableError, WaitTimeout
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
