"""Many processes and threads at once: no update is lost and no call answers from stale data."""

from __future__ import annotations

import threading
from collections import Counter

from jobstore import JobStore

from conftest import raw_tables, run_workers


def test_four_processes_creating_at_once_lose_nothing(root):
    JobStore(root)
    acked = [job_id for job_id, _ in run_workers(root, 4, "create", "60")]
    assert len(acked) == 240
    assert sorted(raw_tables(root)["pending"]) == sorted(acked)


def test_four_processes_running_lifecycles_at_once(root):
    JobStore(root)
    finished = [job_id for job_id, state in run_workers(root, 4, "lifecycle", "25") if state == "finished"]
    assert len(finished) == 100
    store = JobStore(root)
    assert sorted(job["id"] for job in store.get_finished_jobs()) == sorted(finished)
    assert store.get_pending_jobs() == [] and store.get_running_jobs() == []
    assert all(job["result"].startswith("result ") for job in store.get_finished_jobs())


def test_a_change_made_by_another_process_is_seen_by_the_next_call(store, root):
    created = store.create_job("n", "u", "r")
    assert store.get_job(created["id"])["messages"] == ""
    run_workers(root, 1, "set", created["id"], "messages", "from another process", "running")
    assert store.get_job(created["id"]) is None
    assert store.find_job(created["id"])[0]["messages"] == "from another process"


def test_same_size_rewrites_in_quick_succession_are_all_seen(root):
    # Equal-sized files written within one tick of the kernel clock may reuse an inode: the cache must still notice.
    reader, writer = JobStore(root), JobStore(root)
    writer.set_job("j", {"name": "aaaa"})
    for value in ["bbbb", "aaaa"] * 100:
        writer.set_job("j", {"name": value})
        assert reader.get_job("j")["name"] == value


def test_threads_sharing_one_store_lose_nothing(store):
    def submit(thread: int) -> None:
        for number in range(30):
            store.create_job(f"{thread}-{number}")

    threads = [threading.Thread(target=submit, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = Counter(job["name"] for job in store.get_pending_jobs())
    assert len(names) == 240 and set(names.values()) == {1}


def test_threads_with_their_own_stores_on_one_directory(root):
    def move(thread: int) -> None:
        mine = JobStore(root)
        for number in range(20):
            job_id = f"{thread}-{number}"
            mine.set_job(job_id, {}, "pending")
            mine.set_job_running(job_id)
            mine.update_job_result(job_id, "ok")

    threads = [threading.Thread(target=move, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tables = raw_tables(root)
    assert len(tables["finished"]) == 80
    assert tables["pending"] == {} and tables["running"] == {}


def test_a_process_follows_others_writes_from_the_log_without_reading_files_again(root, monkeypatch):
    from jobstore.engines import _tinydb as _tinydb_engine

    writer, reader = JobStore(root, segment_size=4), JobStore(root, segment_size=4)
    jobs = writer.create_jobs([{"name": str(n)} for n in range(6)])
    assert len(reader.get_pending_jobs()) == 6
    reads = []
    real_read = _tinydb_engine.read_json
    monkeypatch.setattr(_tinydb_engine, "read_json", lambda folder, name: reads.append(name) or real_read(folder, name))
    writer.set_job_running(jobs[0]["id"], {"messages": "by the writer"})
    writer.update_job_result(jobs[1]["id"], "done")
    writer.delete_job(jobs[2]["id"])
    writer.create_job("late")
    assert [job["name"] for job in reader.get_pending_jobs()] == ["3", "4", "5", "late"]
    assert reader.find_job(jobs[0]["id"])[0]["messages"] == "by the writer"
    assert reader.get_job_results(jobs[1]["id"])["result"] == "done"
    assert reader.find_job(jobs[2]["id"]) == (None, None)
    assert reads == []
    assert [job["id"] for job in reader.get_jobs()] == [job["id"] for job in JobStore(root).get_jobs()]
