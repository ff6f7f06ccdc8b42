"""JobStore.check: every problem of a damaged store listed with its file and job, nothing changed."""

from __future__ import annotations

import json
import re
import shutil
import threading

import pytest

from conftest import flushed, snapshot
from jobstore import JobStore, StoreLockTimeout, StoreProblem

from test_corruption import DAMAGE


def edit(path, change) -> None:
    flushed(path.parent)  # as the README says: a hand edit comes after the files caught up
    tables = json.loads(path.read_text(encoding="utf-8"))
    change(tables)
    path.write_text(json.dumps(tables), encoding="utf-8")


def test_a_sound_store_has_no_problem(store):
    jobs = store.create_jobs([{"name": f"job {n}"} for n in range(5)])
    store.update_job_result(jobs[0]["id"], "done")
    store.fail_job(jobs[1]["id"], "broken")
    assert store.check() == []


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_every_kind_of_damaged_file_is_listed(store, root, damage):
    store.set_job("kept", {"name": "kept"}, "running")
    content, message = DAMAGE[damage]
    path = root / "pending.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(root)
    problems = store.check()
    assert [problem.path for problem in problems] == ["pending.json"]
    assert problems[0].job_id is None
    assert re.search(message.split(": ", 1)[-1].replace(r"pending\.json", ""), problems[0].detail)
    assert snapshot(root) == before


def test_documents_failing_the_schema_are_listed_by_job_and_field(store, root):
    good, bad = store.create_job("good"), store.create_job("bad")
    edit(root / "pending.json", lambda tables: tables["pending"][bad["id"]].update(name=7, colour="red"))
    problems = store.check()
    assert {(problem.path, problem.job_id) for problem in problems} == {("pending.json", bad["id"])}
    assert sorted(problem.detail for problem in problems) == [
        "field 'colour': unknown field (allowed: " + ", ".join(store.schema.document["properties"]) + ")",
        "field 'name': 7 is not of type 'string'",
    ]
    assert str(problems[0]).startswith(f"pending.json: job {bad['id']!r}: field")


def test_a_job_held_in_two_tables_is_listed(store, root):
    job = store.create_job("twice")
    store.set_job("other", {}, "running")
    copy = {**job, "status": "running"}
    edit(root / "running.json", lambda tables: tables["running"].update({job["id"]: copy}))
    assert store.check() == [StoreProblem("running.json", "the job is also in pending.json", job["id"])]


def test_unknown_files_are_listed_and_left_alone(store, root):
    store.create_job("a")
    (root / "notes.txt").write_text("mine", encoding="utf-8")
    (root / "pending-1.json").write_text("{}", encoding="utf-8")
    (root / "backup").mkdir()
    problems = store.check()
    assert [problem.path for problem in problems] == ["backup", "notes.txt", "pending-1.json"]
    assert all("unknown file" in problem.detail for problem in problems)
    store.create_job("b")
    assert (root / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert len(store.get_pending_jobs()) == 2


def test_a_state_file_removed_by_hand_is_listed_as_missing(store, root):
    job = store.create_job("a")
    store.update_job_result(job["id"], "done")
    store.flush()
    (root / "finished.json").unlink()
    assert store.check() == [
        StoreProblem("finished.json", "missing: the last write logged to it left it in place, and none removed it")
    ]


def test_a_damaged_log_is_listed_and_the_files_still_checked(root):
    store = JobStore(root)
    for name in "abc":
        store.create_job(name)
    (root / "running.json").write_text("{", encoding="utf-8")
    log = root / ".jobstore" / "wal"
    lines = log.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"a"', b'"z"')
    log.write_bytes(b"\n".join(lines))
    before = log.read_bytes()
    problems = JobStore(root).check()
    assert [problem.path for problem in problems] == [".jobstore/wal", "running.json"]
    assert problems[0].detail.startswith("a damaged record at byte")
    assert log.read_bytes() == before


def test_the_engine_folder_removed_by_hand_is_made_again_and_no_job_is_lost(store, root):
    jobs = store.create_jobs([{"name": "a"}, {"name": "b"}])
    store.flush()  # the log holds what the files do not yet: removing it first would lose that
    shutil.rmtree(root / ".jobstore")
    store.set_job_running(jobs[0]["id"])
    assert [job["status"] for job in JobStore(root).get_jobs()] == ["pending", "running"]
    assert store.check() == []


def test_a_lock_file_removed_by_hand_still_excludes(root):
    first, second = JobStore(root, lock_timeout=0.3), JobStore(root, lock_timeout=0.3)
    first.create_job("a")  # the first store has its lock file open from now on
    (root / ".jobstore" / "lock").unlink()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with second._engine.session():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        with pytest.raises(StoreLockTimeout):
            first.create_job("b")
    finally:
        release.set()
        holder.join()
    first.create_job("b")
    assert len(second.get_jobs()) == 2
