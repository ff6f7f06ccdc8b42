"""Steering jobs: progress, messages, failing, retrying and canceling, and the history they leave."""

from __future__ import annotations

import pytest

from jobstore import InvalidJobError, JobNotFoundError, JobStateError

from conftest import snapshot


def statuses(job: dict) -> list[str]:
    return [entry["status"] for entry in job["history"]]


def test_history_has_one_entry_per_change_of_state_oldest_first(store):
    job = store.create_job("j")
    store.set_job_pending(job["id"], {"messages": "still waiting"})  # same state: no entry
    store.set_job_running(job["id"])
    done = store.update_job_result(job["id"], "ok")
    assert statuses(done) == ["pending", "running", "finished"]
    times = [entry["at"] for entry in done["history"]]
    assert times == sorted(times)
    assert (done["createdAt"], done["startedAt"], done["finishedAt"]) == tuple(times)


def test_going_back_to_the_queue_clears_the_run_times(store):
    job = store.create_job("j")
    store.update_job_result(job["id"], "ok")
    again = store.set_job_pending(job["id"])
    assert "startedAt" not in again and "finishedAt" not in again
    assert statuses(again) == ["pending", "finished", "pending"]


def test_progress_is_recorded_and_checked(store, root):
    job = store.create_job("j")
    store.claim_job("w")
    assert store.set_job_progress(job["id"], 3, 10)["progress"] == {"completed": 3, "total": 10}
    assert store.set_job_progress(job["id"], 4)["progress"] == {"completed": 4, "total": None}
    before = snapshot(root)
    for completed, total, problem in [
        (11, 10, r"completed \(11\) is more than total \(10\)"),
        (-1, None, "completed must be a non-negative int"),
        (1, -5, "total must be a non-negative int or None"),
        (True, None, "completed must be a non-negative int"),
        (1.5, 2, "completed must be a non-negative int"),
    ]:
        with pytest.raises(ValueError, match=problem):
            store.set_job_progress(job["id"], completed, total)
    with pytest.raises(JobNotFoundError):
        store.set_job_progress("nobody", 1, 2)
    assert snapshot(root) == before


def test_messages_are_appended_as_lines(store):
    job = store.create_job("j")
    store.claim_job("w")
    store.append_job_message(job["id"], "step 1")
    assert store.append_job_message(job["id"], "step 2")["messages"] == "step 1\nstep 2"
    with pytest.raises(InvalidJobError, match="a message is a string, not int"):
        store.append_job_message(job["id"], 3)


@pytest.mark.parametrize("state", ["idle", "pending", "finished", "error"])
def test_progress_and_messages_are_only_for_a_running_job(store, root, state):
    job = store.set_job("j", {}, state)
    store.flush()
    before = snapshot(root)
    with pytest.raises(JobStateError, match=f"cannot set the progress of job 'j': it is {state}; only running jobs can be"):
        store.set_job_progress("j", 1, 2)
    with pytest.raises(JobStateError, match=f"cannot add a message to job 'j': it is {state}; only running jobs can be"):
        store.append_job_message("j", "note")
    assert snapshot(root) == before
    assert store.find_job("j") == (job, state)


def test_fail_moves_a_running_job_to_error_with_its_message(store):
    job = store.create_job("j")
    store.claim_job("w")
    failed = store.fail_job(job["id"], "disk full")
    assert failed["status"] == "error"
    assert failed["messages"] == "disk full"
    assert "leaseExpiresAt" not in failed
    with pytest.raises(JobStateError, match="cannot fail job .*: it is error; only idle, pending, running"):
        store.fail_job(job["id"], "again")


def test_retry_runs_an_ended_job_again_from_a_clean_start(store):
    job = store.create_job("j")
    store.claim_job("w")
    store.set_job_progress(job["id"], 1, 2)
    store.fail_job(job["id"], "flaky")
    again = store.retry_job(job["id"])
    assert again["status"] == "pending"
    for field in ("worker", "attempts", "progress", "startedAt", "finishedAt"):
        assert field not in again
    assert again["messages"] == "flaky\nretried after it was error"
    assert statuses(again) == ["pending", "running", "error", "pending"]
    assert store.claim_job("w2")["attempts"] == 1
    with pytest.raises(JobStateError, match="cannot retry job .*: it is running; only error, finished"):
        store.retry_job(job["id"])


@pytest.mark.parametrize("state", ["idle", "pending"])
def test_cancel_ends_a_job_that_has_not_started(store, state):
    store.set_job("j", {"name": "x"}, state)
    canceled = store.cancel_job("j")
    assert (canceled["status"], canceled["canceled"]) == ("error", True)
    assert canceled["messages"] == f"canceled while {state}"
    assert store.claim_job("w") is None


def test_cancel_asks_a_running_job_to_stop_and_its_worker_decides(store):
    job = store.create_job("j")
    store.claim_job("w")
    asked = store.cancel_job(job["id"])
    assert (asked["status"], asked["cancelRequested"]) == ("running", True)
    seen = store.heartbeat(job["id"])
    assert seen["cancelRequested"] is True
    stopped = store.fail_job(job["id"], "stopped on request")
    # One rule, however the stop came: a job canceled while running ends canceled, as one canceled waiting.
    assert (stopped["status"], stopped["canceled"]) == ("error", True)
    with pytest.raises(JobStateError, match="cannot cancel job .*: it is error"):
        store.cancel_job(job["id"])


def test_a_running_job_asked_to_stop_whose_worker_died_ends_canceled(store):
    import time

    job = store.create_job("j")
    store.claim_job("w", lease=0.05)
    store.cancel_job(job["id"])
    time.sleep(0.1)
    assert store.requeue_expired_jobs() == [job["id"]]
    ended, state = store.find_job(job["id"])
    assert (state, ended["canceled"]) == ("error", True)


def test_a_failed_job_nobody_asked_to_stop_is_not_marked_canceled(store):
    job = store.create_job("j")
    store.claim_job("w")
    assert "canceled" not in store.fail_job(job["id"], "broke")


def test_release_hands_a_running_job_back_without_counting_the_attempt(store):
    job = store.create_job("j")
    store.claim_job("w1")
    store.set_job_progress(job["id"], 2, 5)
    released = store.release_job(job["id"], "interrupted", worker="w1")
    assert released["status"] == "pending"
    assert released["attempts"] == 0
    assert released["messages"].endswith("released by worker w1: interrupted; back in the queue")
    assert not {"worker", "leaseExpiresAt", "startedAt", "progress"} & released.keys()
    again = store.claim_job("w2")
    assert (again["id"], again["attempts"], again["worker"]) == (job["id"], 1, "w2")


def test_release_refuses_a_job_not_running_or_held_by_another_worker(store, root):
    job = store.create_job("j")
    with pytest.raises(JobStateError, match=r"cannot release job .*: it is pending"):
        store.release_job(job["id"])
    store.claim_job("w1")
    before = snapshot(root)
    with pytest.raises(JobStateError, match="worker 'w1' holds it now, not 'w2'"):
        store.release_job(job["id"], worker="w2")
    with pytest.raises(JobNotFoundError):
        store.release_job("no-such-job")
    with pytest.raises(InvalidJobError, match="a reason is a string"):
        store.release_job(job["id"], 5)  # type: ignore[arg-type]
    assert snapshot(root) == before


def test_a_job_asked_to_stop_and_released_ends_canceled(store):
    job = store.create_job("j")
    store.claim_job("w")
    store.cancel_job(job["id"])
    ended = store.release_job(job["id"], "stopping")
    assert (ended["status"], ended["canceled"]) == ("error", True)


def test_every_new_field_is_checked_by_the_schema(store, root):
    store.set_job("j", {"name": "x"})
    before = snapshot(root)
    for field, value in [
        ("attempts", -1),
        ("attempts", "1"),
        ("progress", {"completed": 1}),
        ("history", [{"status": "lost", "at": "2026-01-01T00:00:00Z"}]),
        ("canceled", "yes"),
        ("worker", 5),
        ("leaseExpiresAt", 12),
    ]:
        with pytest.raises(InvalidJobError, match=f"field '{field}'"):
            store.set_job("j", {field: value})
    assert snapshot(root) == before
