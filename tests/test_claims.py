"""Claims: one worker per job, leases that expire, and the recovery of jobs whose worker died."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from jobstore import InvalidArgumentError, JobStateError, JobStore
from jobstore._times import parse_time

from conftest import acks, raw_tables, run_workers, start_worker


def test_claims_take_the_oldest_pending_job_first(store):
    first, second = store.create_job("first"), store.create_job("second")
    store.set_job("waiting", {"name": "idle"}, "idle")
    claimed = store.claim_job("w1")
    assert claimed["id"] == first["id"]
    assert claimed["status"] == "running"
    assert store.claim_job("w2")["id"] == second["id"]
    assert store.claim_job("w3") is None  # the idle job is never claimed
    assert store.find_job("waiting")[1] == "idle"


def test_a_claim_records_the_worker_the_attempt_and_the_lease(store):
    store.create_job("j")
    claimed = store.claim_job("w1", lease=60)
    assert claimed["worker"] == "w1"
    assert claimed["attempts"] == 1
    assert claimed["startedAt"] == claimed["updatedAt"]
    lease = parse_time(claimed["leaseExpiresAt"]) - parse_time(claimed["startedAt"])
    assert 59 <= lease.total_seconds() <= 60
    assert store.get_job(claimed["id"], "running") == claimed


def test_a_claim_without_a_worker_names_this_process(store):
    import os

    store.create_job("j")
    assert store.claim_job()["worker"].endswith(f":{os.getpid()}")


@pytest.mark.parametrize("lease", [0, -1, "10", True, float("nan")])
def test_a_bad_lease_is_refused(store, lease):
    store.create_job("j")
    with pytest.raises(ValueError, match="lease must be a positive number of seconds"):
        store.claim_job("w", lease=lease)
    assert store.get_running_jobs() == []


def test_four_processes_draining_200_jobs_claim_each_exactly_once(store, root):
    created = {job["id"] for job in store.create_jobs([{"name": f"n{i}"} for i in range(200)])}
    pairs = run_workers(root, 4, "drain")
    claims = Counter(job_id for job_id, state in pairs if state == "running")
    assert set(claims) == created
    assert set(claims.values()) == {1}
    finished = raw_tables(root)["finished"]
    assert set(finished) == created
    assert all(job["attempts"] == 1 for job in finished.values())
    assert len({job["worker"] for job in finished.values()}) > 1  # the work was shared


def test_a_dead_workers_job_is_recovered_when_its_lease_expires(store, root):
    job = store.create_job("j")
    dying = start_worker(root, "claim-and-die", "0.3")
    out, _ = dying.communicate(timeout=60)
    assert acks(out) == [(job["id"], "running")]
    assert store.claim_job("second") is None  # the lease still holds
    time.sleep(0.4)
    recovered = store.claim_job("second")
    assert recovered["id"] == job["id"]
    assert recovered["worker"] == "second"
    assert recovered["attempts"] == 2
    assert "expired on attempt 1; back in the queue" in recovered["messages"]
    assert [entry["status"] for entry in recovered["history"]] == ["pending", "running", "pending", "running"]


def test_heartbeats_keep_a_lease_alive(store, root):
    job = store.create_job("j")
    beating = start_worker(root, "claim-and-beat", "0.4", "1.5")
    deadline = time.monotonic() + 30
    while not store.get_running_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    while beating.poll() is None:
        # Well past the first lease, nobody may take the job from its living worker.
        assert store.claim_job("thief") is None
        time.sleep(0.1)
    out, err = beating.communicate()
    assert beating.returncode == 0, err
    assert acks(out) == [(job["id"], "running"), (job["id"], "finished")]
    assert store.find_job(job["id"])[0]["attempts"] == 1


def test_a_job_that_keeps_dying_ends_in_error_after_max_attempts(root):
    store = JobStore(root, max_attempts=2)
    job = store.create_job("poison")
    for attempt in (1, 2):
        assert store.claim_job(f"w{attempt}", lease=0.05)["attempts"] == attempt
        time.sleep(0.1)
    assert store.claim_job("w3") is None
    failed, state = store.find_job(job["id"])
    assert state == "error"
    assert "expired on attempt 2; gave up after 2 attempts" in failed["messages"]
    assert "leaseExpiresAt" not in failed and failed["finishedAt"] == failed["updatedAt"]


def test_requeue_expired_jobs_returns_what_it_recovered(store):
    jobs = [store.create_job(name) for name in "ab"]
    store.claim_job("w", lease=0.05)
    store.claim_job("w", lease=60)
    time.sleep(0.1)
    assert store.requeue_expired_jobs() == [jobs[0]["id"]]
    assert [job["id"] for job in store.get_pending_jobs()] == [jobs[0]["id"]]
    assert store.requeue_expired_jobs() == []


def test_a_running_job_without_a_lease_is_never_recovered(store):
    store.set_job_running("manual")
    assert store.requeue_expired_jobs() == []
    assert store.find_job("manual")[1] == "running"


def test_heartbeat_renews_only_a_running_job_of_its_worker(store):
    job = store.create_job("j")
    claimed = store.claim_job("w1", lease=10)
    renewed = store.heartbeat(job["id"], lease=100, worker="w1")
    assert parse_time(renewed["leaseExpiresAt"]) > parse_time(claimed["leaseExpiresAt"])
    with pytest.raises(JobStateError, match="worker 'w1' holds it now, not 'w2'"):
        store.heartbeat(job["id"], worker="w2")
    store.update_job_result(job["id"], "done")
    with pytest.raises(JobStateError, match="cannot renew the lease of job .*: it is finished"):
        store.heartbeat(job["id"])


def test_store_settings_are_checked(root):
    with pytest.raises(ValueError, match="max_attempts must be an int of at least 1"):
        JobStore(root, max_attempts=0)
    with pytest.raises(ValueError, match="lease must be a positive number"):
        JobStore(root, lease=0)


def test_a_waiting_claim_takes_a_job_submitted_while_it_waits(store, root):
    claimers = [start_worker(root, "claim-waiting", "30") for _ in range(3)]
    time.sleep(0.5)  # let them start waiting on an empty store
    jobs = [store.create_job(f"late-{number}") for number in range(3)]
    results = [claimer.communicate(timeout=60) for claimer in claimers]
    assert all(claimer.returncode == 0 for claimer in claimers), [err for _, err in results]
    claimed = [pair for out, _ in results for pair in acks(out)]
    assert sorted(claimed) == sorted((job["id"], "finished") for job in jobs)


def test_a_waiting_claim_gives_up_after_its_wait(store):
    started = time.monotonic()
    assert store.claim_job("w", wait=0.3) is None
    assert 0.3 <= time.monotonic() - started < 5


def test_a_waiting_claim_returns_at_once_when_a_job_waits(store):
    job = store.create_job("ready")
    assert store.claim_job("w", wait=30)["id"] == job["id"]


@pytest.mark.parametrize("wait", [-1, "soon", float("nan"), True])
def test_a_claim_refuses_a_wait_that_is_not_seconds(store, wait):
    store.create_job("j")
    with pytest.raises(InvalidArgumentError, match="wait"):
        store.claim_job("w", wait=wait)
    assert store.find_job(store.get_pending_jobs()[0]["id"])[1] == "pending"
