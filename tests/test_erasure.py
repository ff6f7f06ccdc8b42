"""Erasure: once a delete or a purge returns, no file under the store holds the job's data."""

from __future__ import annotations

from pathlib import Path

from jobstore import JobStore


def files_holding(root: Path, secret: bytes) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() and secret in path.read_bytes())


def test_a_deleted_job_leaves_no_copy_in_any_file(store, root):
    secret = b"card-4111-1111"
    kept = store.create_job("kept")
    doomed = store.create_job("doomed", request=secret.decode())
    store.set_job_running(doomed["id"], {"messages": "working on " + secret.decode()})
    store.update_job_result(doomed["id"], "done")
    assert files_holding(root, secret) != []
    store.delete_job(doomed["id"])
    assert files_holding(root, secret) == []
    assert files_holding(root, doomed["id"].encode()) == []
    assert store.find_job(kept["id"])[1] == "pending"


def test_purged_jobs_leave_no_copy_in_any_file(store, root):
    jobs = [store.create_job(f"old-{n}", request=f"private-{n}") for n in range(5)]
    for job in jobs:
        store.update_job_result(job["id"], "done")
    assert store.purge_jobs("finished", keep_last=2) == 3
    for job in jobs[:3]:
        assert files_holding(root, job["request"].encode()) == []
    for job in jobs[3:]:
        assert files_holding(root, job["request"].encode()) != []


def test_a_power_loss_after_a_delete_does_not_bring_the_job_back(root):
    from test_durability import reboot

    store = JobStore(root)
    doomed = store.create_job("doomed")
    store.create_job("kept")
    store.delete_job(doomed["id"])
    reboot(root)
    reopened = JobStore(root)
    assert reopened.find_job(doomed["id"]) == (None, None)
    assert [job["name"] for job in reopened.get_jobs()] == ["kept"]
