"""The state files follow the log: within the documented delay while a writer lives, at its exit, and at the next operation after a kill."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from jobstore import JobStore
from jobstore.engines._tinydb import MAX_DELAY

from conftest import log_bytes, raw_tables

WRITER = """
import sys, time
from jobstore import JobStore
store = JobStore(sys.argv[1])
job = store.create_job("from the writer")
print(job["id"], flush=True)
{after}
"""


def on_disk(root: Path) -> dict[str, set[str]]:
    """The job ids each state's files hold now, read as they are (no flush)."""
    return {state: set(table) for state, table in raw_tables(root, flush=False).items()}


def writer(root: Path, after: str) -> tuple[subprocess.Popen[str], str]:
    """Start a process that submits one job, prints its id, then runs ``after``."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(after=after), str(root)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def test_the_files_catch_up_within_the_delay_while_the_writer_lives(root):
    JobStore(root)
    process, job_id = writer(root, "time.sleep(30)")
    try:
        written = time.monotonic()
        while job_id not in on_disk(root).get("pending", set()):
            # The bound is the documented one, with a second's grace for a loaded machine.
            assert time.monotonic() - written < MAX_DELAY + 1.0, "the files lag behind the log"
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()


def test_a_writer_that_exits_writes_the_files_first(root):
    JobStore(root)
    process, job_id = writer(root, "")
    assert process.wait(timeout=60) == 0
    assert job_id in on_disk(root)["pending"]


def test_the_records_of_a_killed_writer_are_written_by_the_next_operation_of_any_process(root):
    JobStore(root)
    process, job_id = writer(root, "import os; os._exit(9)")
    assert process.wait(timeout=60) == 9
    assert job_id not in on_disk(root).get("pending", set())  # killed before its files were written
    assert JobStore(root).find_job(job_id)[0]["name"] == "from the writer"  # the log has it
    assert job_id in on_disk(root)["pending"]


def test_a_burst_of_writes_rewrites_each_file_once(root):
    store = JobStore(root)
    jobs = store.create_jobs([{"name": str(n)} for n in range(50)])
    store.flush()
    markers = log_bytes(root).count(b"\napplied ")
    for job in jobs:
        store.set_job_running(job["id"])
    store.flush()
    # Fifty moves, each its own logged write; the files were written once or a few times, not fifty.
    assert log_bytes(root).count(b"\napplied ") - markers <= 5
    assert on_disk(root)["running"] == {job["id"] for job in jobs}


def test_a_hand_edit_made_while_records_wait_keeps_what_the_records_do_not_change(store, root):
    kept, moved = store.create_jobs([{"name": "kept"}, {"name": "moved"}])
    store.flush()
    store.set_job_running(moved["id"])  # a record the files do not have yet
    path = root / "pending.json"
    tables = json.loads(path.read_text(encoding="utf-8"))
    for document in tables["pending"].values():
        document["messages"] = "edited by hand"
    path.write_text(json.dumps(tables), encoding="utf-8")
    assert store.get_job(kept["id"], "pending")["messages"] == "edited by hand"
    assert store.find_job(moved["id"])[1] == "running"  # the record wins for the job it moved
    store.flush()
    assert on_disk(root) == {"pending": {kept["id"]}, "running": {moved["id"]}}
