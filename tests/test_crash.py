"""Crashes: a process killed at any instant leaves valid files and every job in its old or new state."""

from __future__ import annotations

import os

import pytest

from jobstore import CorruptStoreError, JobStore

from conftest import log_bytes, start_worker
from stress import crash_loop, holders

#: How many kill rounds the loop runs; `python -m tests.stress --rounds 500` runs a longer soak.
ROUNDS = int(os.environ.get("JOBSTORE_CRASH_ROUNDS", "12"))


def crash(root, point: str, state: str = "running") -> str:
    """Create a job, then kill a process at ``point`` while it moves the job to ``state``."""
    created = JobStore(root).create_job("n", "u", "r")
    worker = start_worker(root, "die-mid-move", created["id"], state, point)
    worker.communicate(timeout=60)
    assert worker.returncode == 9
    return created["id"]


@pytest.mark.parametrize("point", ["before-record", "torn-record"])
def test_a_crash_before_the_record_is_logged_leaves_the_old_state(root, point):
    job_id = crash(root, point)
    log = log_bytes(root)
    store = JobStore(root)
    job, state = store.find_job(job_id)
    assert (state, job["messages"]) == ("pending", "")
    assert holders(root, flush=False)[job_id] == ["pending"]
    assert log_bytes(root) == log[: log.rfind(b"\n") + 1]  # a torn tail is cut off
    store.set_job_running(job_id)
    assert JobStore(root).find_job(job_id)[1] == "running"


def test_a_crash_after_the_record_completes_the_move(root):
    job_id = crash(root, "after-record")
    assert holders(root, flush=False)[job_id] == ["pending"]
    job, state = JobStore(root).find_job(job_id)
    assert (state, job["messages"]) == ("running", "moved")
    assert holders(root, flush=False)[job_id] == ["running"]


def test_a_crash_between_the_two_files_completes_the_move(root):
    job_id = crash(root, "one-file")
    assert sorted(holders(root, flush=False)[job_id]) == ["pending", "running"]
    store = JobStore(root)
    assert [job["id"] for job in store.get_running_jobs()] == [job_id]
    assert store.get_pending_jobs() == []
    assert holders(root, flush=False)[job_id] == ["running"]


def test_the_move_is_completed_by_a_process_that_already_had_the_store_open(root):
    store = JobStore(root)
    store.get_jobs()
    job_id = crash(root, "one-file")
    assert store.find_job(job_id)[1] == "running"
    assert store.get_pending_jobs() == []


def test_a_damaged_record_in_the_middle_of_the_log_is_reported_and_kept(root):
    store = JobStore(root)
    for name in "abc":
        store.create_job(name)
    log = root / ".jobstore" / "wal"
    lines = log.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"a"', b'"z"')
    log.write_bytes(b"\n".join(lines))
    damaged = log.read_bytes()
    with pytest.raises(CorruptStoreError, match=r"wal: a damaged record at byte \d+"):
        JobStore(root).get_jobs()
    assert log.read_bytes() == damaged


def test_killing_writers_and_workers_at_random_instants_loses_and_doubles_nothing(tmp_path):
    figures = crash_loop(tmp_path / "store", ROUNDS, seed=20261122)
    assert figures["processes killed"] == 4 * ROUNDS
