"""Crashes: a process killed at any instant leaves valid files and every job in its old or new state."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from jobstore import CorruptStoreError, JobStore

from conftest import acks, raw_tables, start_worker

#: How many kill rounds the loop runs; raise it for a longer soak (JOBSTORE_CRASH_ROUNDS=500).
ROUNDS = int(os.environ.get("JOBSTORE_CRASH_ROUNDS", "12"))
NEXT_STATE = {"pending": "running", "running": "finished", "finished": "finished"}


def holders(root) -> dict[str, list[str]]:
    """Which tables hold each job id, reading the raw files."""
    found: dict[str, list[str]] = {}
    for state, table in raw_tables(root).items():
        for job_id in table:
            found.setdefault(job_id, []).append(state)
    return found


def last_write_completed(root) -> bool:
    """Whether the log's last line says the last write replaced all its files."""
    lines = (root / ".jobstore" / "wal").read_bytes().splitlines()
    return lines[-1].startswith((b"applied ", b"jobstore-wal "))


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
    log = (root / ".jobstore" / "wal").read_bytes()
    store = JobStore(root)
    job, state = store.find_job(job_id)
    assert (state, job["messages"]) == ("pending", "")
    assert holders(root)[job_id] == ["pending"]
    assert (root / ".jobstore" / "wal").read_bytes() == log[: log.rfind(b"\n") + 1]  # a torn tail is cut off
    store.set_job_running(job_id)
    assert JobStore(root).find_job(job_id)[1] == "running"


def test_a_crash_after_the_record_completes_the_move(root):
    job_id = crash(root, "after-record")
    assert holders(root)[job_id] == ["pending"]
    job, state = JobStore(root).find_job(job_id)
    assert (state, job["messages"]) == ("running", "moved")
    assert holders(root)[job_id] == ["running"]


def test_a_crash_between_the_two_files_completes_the_move(root):
    job_id = crash(root, "one-file")
    assert sorted(holders(root)[job_id]) == ["pending", "running"]
    store = JobStore(root)
    assert [job["id"] for job in store.get_running_jobs()] == [job_id]
    assert store.get_pending_jobs() == []
    assert holders(root)[job_id] == ["running"]


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


def test_killing_writers_at_random_instants_loses_and_doubles_nothing(root):
    JobStore(root)
    rng = random.Random(20261122)
    expected: dict[str, str] = {}
    for _ in range(ROUNDS):
        workers = [start_worker(root, "lifecycle", "0") for _ in range(3)]
        time.sleep(0.3)  # let them import and start writing
        time.sleep(rng.uniform(0.0, 0.3))
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
        for worker in workers:
            out, _ = worker.communicate(timeout=60)
            for job_id, state in acks(out):
                expected[job_id] = state

        for path in root.glob("*.json"):
            json.loads(path.read_text(encoding="utf-8"))  # every file parses, even before recovery
        if last_write_completed(root):
            assert all(len(states) == 1 for states in holders(root).values())

        store = JobStore(root)  # its first call finishes any half-done move
        everything = store.get_jobs()
        found = holders(root)
        assert all(len(states) == 1 for states in found.values()), "a job is in two tables"
        assert len(everything) == len(found)
        for job_id, acked in expected.items():
            assert job_id in found, f"acknowledged job {job_id} was lost"
            assert found[job_id][0] in {acked, NEXT_STATE[acked]}, (job_id, acked, found[job_id])
        assert last_write_completed(root)
    assert len(expected) > ROUNDS  # the workers got real work done between kills
