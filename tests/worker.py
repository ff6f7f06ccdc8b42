"""A worker process for the tests: drives a store through the api.job functions.

Usage: python worker.py STORE ACTION [ARGS]. After each call returns it prints one line,
``ack <job id> <state>``, so a test that kills the process knows what was acknowledged.
"""

from __future__ import annotations

import os
import sys
import time

from jobstore import JobStore
from jobstore.api import job


def ack(job_id: str, state: str) -> None:
    print(f"ack {job_id} {state}", flush=True)


def create(count: str) -> None:
    """Create jobs, one after another."""
    for number in range(int(count)):
        created = job.createJob(f"job-{os.getpid()}-{number}", "worker", str(number), "")
        ack(created["id"], "pending")


def lifecycle(count: str) -> None:
    """Create jobs and carry each through running to finished; a count of 0 runs until killed."""
    number = 0
    while int(count) == 0 or number < int(count):
        created = job.createJob(f"job-{os.getpid()}-{number}", "worker", str(number), "")
        ack(created["id"], "pending")
        job.setJobRunning(created["id"], {"messages": "started"})
        ack(created["id"], "running")
        job.updateJobResult(created["id"], f"result {number}")
        ack(created["id"], "finished")
        number += 1


def set_field(job_id: str, field: str, value: str, state: str) -> None:
    """Set one field of a job and move it to a state."""
    job.setJob(job_id, {field: value}, state)
    ack(job_id, state)


def die_mid_move(job_id: str, state: str, point: str) -> None:
    """Move a job, but exit abruptly at the given point of the write, as a crash would.

    Points: ``before-record`` (nothing logged yet), ``torn-record`` (half the log record written),
    ``after-record`` (the record logged, no file replaced), ``one-file`` (one of two files replaced).
    """
    from jobstore import _folder, _wal
    from jobstore.engines import _tinydb as _tinydb_engine

    if point in ("before-record", "torn-record"):
        write = _wal.WriteAheadLog._write

        def crash_in_write(log, data):
            if point == "torn-record":
                write(log, data[: len(data) // 2])
            os._exit(9)

        _wal.WriteAheadLog._write = crash_in_write
    else:
        replace = _folder.Folder.replace
        budget = [{"after-record": 0, "one-file": 1}[point]]

        def crash_after_budget(folder, name, target, target_name):
            # Only state files count: the log is replaced by checkpoints, which come after the files.
            if _tinydb_engine.parse_segment_file_name(target_name) is not None:
                if budget[0] == 0:
                    os._exit(9)
                budget[0] -= 1
            return replace(folder, name, target, target_name)

        _folder.Folder.replace = crash_after_budget
    job.setJob(job_id, {"messages": "moved"}, state)
    ack(job_id, state)


def drain() -> None:
    """Claim jobs and finish them until none is pending."""
    while (claimed := job.claimJob(f"worker-{os.getpid()}")) is not None:
        ack(claimed["id"], "running")
        job.updateJobResult(claimed["id"], f"done by {os.getpid()}")
        ack(claimed["id"], "finished")


def serve(lease: str) -> None:
    """Claim jobs under a lease and finish them, reporting progress, until killed; idle moments poll."""
    while True:
        claimed = job.claimJob(f"worker-{os.getpid()}", float(lease))
        if claimed is None:
            time.sleep(0.01)
            continue
        ack(claimed["id"], "running")
        job.setJobProgress(claimed["id"], 1, 2)
        job.updateJobResult(claimed["id"], f"done by {os.getpid()}")
        ack(claimed["id"], "finished")


def mix(seed: str, seconds: str) -> None:
    """A random mix of every operation, each answer checked against a model (see contention.py)."""
    from contention import main

    main(sys.argv[1], seed, seconds)


def hold_lock() -> None:
    """Enter an operation, so holding the store lock, say so, and stay there until killed."""

    def stay(session, batch):
        print("holding", flush=True)
        time.sleep(3600)

    job._store()._transact(stay)


def claim_and_die(lease: str) -> None:
    """Claim one job under a lease, then exit abruptly without finishing it."""
    claimed = job.claimJob(f"worker-{os.getpid()}", float(lease))
    ack(claimed["id"] if claimed else "-", "running")
    os._exit(9)


def claim_and_beat(lease: str, seconds: str) -> None:
    """Claim one job under a short lease and keep it alive with heartbeats for a while, then finish it."""
    claimed = job.claimJob(f"worker-{os.getpid()}", float(lease))
    ack(claimed["id"], "running")
    until = time.monotonic() + float(seconds)
    while time.monotonic() < until:
        time.sleep(float(lease) / 4)
        job.heartbeat(claimed["id"], float(lease))
    job.updateJobResult(claimed["id"], "done")
    ack(claimed["id"], "finished")


def finish_later(job_id: str, delay: str) -> None:
    """Wait, then finish the job."""
    time.sleep(float(delay))
    job.updateJobResult(job_id, "done later")
    ack(job_id, "finished")


def claim_waiting(wait: str) -> None:
    """Claim with a wait, finish what was claimed, and say what (or that nothing came)."""
    claimed = job.claimJob(wait=float(wait))
    if claimed is None:
        print("none", flush=True)
        return
    job.updateJobResult(claimed["id"], "claimed after a wait")
    ack(claimed["id"], "finished")


ACTIONS = {
    "create": create,
    "lifecycle": lifecycle,
    "set": set_field,
    "die-mid-move": die_mid_move,
    "drain": drain,
    "serve": serve,
    "mix": mix,
    "hold-lock": hold_lock,
    "claim-and-die": claim_and_die,
    "claim-and-beat": claim_and_beat,
    "finish-later": finish_later,
    "claim-waiting": claim_waiting,
}

if __name__ == "__main__":
    job.useStore(JobStore(sys.argv[1], durable=os.environ.get("JOBSTORE_DURABLE", "1") == "1"))
    ACTIONS[sys.argv[2]](*sys.argv[3:])
