"""Waiting for a job to end: woken by another process's write, bounded by a timeout, cheap while idle."""

from __future__ import annotations

import pytest

from jobstore import JobNotFoundError, JobStore, WaitTimeout
from jobstore.engines import _tinydb as _tinydb_engine

from conftest import acks, start_worker


def test_a_wait_ends_when_another_process_finishes_the_job(store, root):
    job = store.create_job("j")
    finisher = start_worker(root, "finish-later", job["id"], "0.3")
    done = store.block_until_complete(job, timeout=60)
    out, err = finisher.communicate(timeout=60)
    assert finisher.returncode == 0, err
    assert acks(out) == [(job["id"], "finished")]
    assert (done["status"], done["result"]) == ("finished", "done later")


def test_a_wait_returns_at_once_for_an_ended_job(store):
    job = store.create_job("j")
    store.fail_job(job["id"], "no")
    assert store.block_until_complete(job["id"], timeout=0)["status"] == "error"


def test_a_wait_that_times_out_says_so_and_is_a_timeout_error(store):
    job = store.create_job("j")
    with pytest.raises(WaitTimeout, match=r"did not end within 0.2 s; it is pending") as raised:
        store.block_until_complete(job["id"], timeout=0.2)
    assert isinstance(raised.value, TimeoutError)
    assert (raised.value.job_id, raised.value.status) == (job["id"], "pending")


def test_waiting_for_a_missing_job_fails_at_once(store):
    with pytest.raises(JobNotFoundError, match="no job with id 'nobody'"):
        store.block_until_complete("nobody", timeout=5)


def test_a_wait_reads_no_file_while_nothing_changes(root, monkeypatch):
    job = JobStore(root).create_job("j")
    store = JobStore(root)
    store.find_job(job["id"])
    reads = []
    original = _tinydb_engine.read_json
    monkeypatch.setattr(_tinydb_engine, "read_json", lambda folder, name: reads.append(name) or original(folder, name))
    with pytest.raises(WaitTimeout):
        store.block_until_complete(job["id"], timeout=0.5)
    assert reads == []
    writer = start_worker(root, "set", job["id"], "messages", "started", "running")
    assert writer.wait(timeout=60) == 0
    with pytest.raises(WaitTimeout):
        store.block_until_complete(job["id"], timeout=0.1)
    # Another process's write is followed from its log record: still no file parsed.
    assert reads == []
    assert store.find_job(job["id"])[0]["messages"] == "started"
