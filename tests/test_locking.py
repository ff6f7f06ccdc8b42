"""The store lock: every operation holds it, and one not obtained in time is a clear error."""

from __future__ import annotations

import threading
import time

import pytest
from filelock import FileLock

from jobstore import JobStore, StoreLockTimeout

from conftest import start_worker


def test_a_held_lock_times_out_naming_the_lock_file(root):
    store = JobStore(root, lock_timeout=0.2)
    holder = FileLock(str(root / ".jobstore" / "lock"))
    with holder:
        started = time.monotonic()
        with pytest.raises(StoreLockTimeout, match=r"within 0\.2 s: .*\.jobstore/lock is held") as caught:
            store.create_job("n")
        assert time.monotonic() - started >= 0.2
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.lock_file == str(root / ".jobstore" / "lock")
    assert caught.value.timeout == 0.2
    assert store.get_jobs() == []


def test_the_call_goes_through_once_the_lock_is_released(root):
    store = JobStore(root, lock_timeout=5)
    holder = FileLock(str(root / ".jobstore" / "lock"), thread_local=False)
    holder.acquire()
    threading.Timer(0.2, holder.release).start()
    assert store.create_job("waited")["name"] == "waited"


def test_a_thread_holding_a_session_makes_another_thread_wait(root):
    store = JobStore(root, lock_timeout=0.1)
    inside, leave = threading.Event(), threading.Event()

    def hold(session, batch):
        inside.set()
        leave.wait(5)

    holder = threading.Thread(target=store._transact, args=(hold,))
    holder.start()
    inside.wait(5)
    try:
        with pytest.raises(StoreLockTimeout):
            store.get_jobs()
    finally:
        leave.set()
        holder.join()
    assert store.get_jobs() == []


def test_the_lock_file_stays_after_use(store, root):
    store.create_job("n")
    assert (root / ".jobstore" / "lock").exists()


def test_a_killed_lock_holder_releases_the_lock(root):
    store = JobStore(root, lock_timeout=0.5)
    created = store.create_job("n")
    holder = start_worker(root, "hold-lock")
    assert holder.stdout.readline() == "holding\n"
    with pytest.raises(StoreLockTimeout):
        store.get_jobs()
    holder.kill()
    holder.communicate(timeout=60)
    # The operating system drops the dead process's lock: the next call gets it at once, nothing lost.
    assert [job["id"] for job in store.get_jobs()] == [created["id"]]
    assert store.set_job_running(created["id"])["status"] == "running"


def _lock_waiting_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "jobstore-lock-wait")


def test_a_wait_given_up_does_not_hold_up_the_next(root):
    store = JobStore(root, lock_timeout=1)
    holder = FileLock(str(root / ".jobstore" / "lock"), thread_local=False)
    holder.acquire()
    with pytest.raises(StoreLockTimeout):
        store.create_job("given up")  # its attempt still blocks in a helper thread
    threading.Timer(0.3, holder.release).start()
    assert store.create_job("waited")["name"] == "waited"
    assert [job["name"] for job in store.get_jobs()] == ["waited"]


def test_many_waits_share_one_helper_thread(root):
    store = JobStore(root, lock_timeout=5)
    before = _lock_waiting_threads()
    for number in range(20):
        holder = FileLock(str(root / ".jobstore" / "lock"), thread_local=False)
        holder.acquire()
        threading.Timer(0.01, holder.release).start()
        store.create_job(f"job {number}")
        assert _lock_waiting_threads() <= before + 1
    assert len(store.get_jobs()) == 20
