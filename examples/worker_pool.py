"""A pool of worker processes sharing one store: submit jobs, claim, report progress, finish or fail.

Each worker claims the oldest pending job (no two workers ever get the same one), reports its
progress step by step, renews its lease, and finishes or fails the job; the submitter shows a live
summary until every job has ended, cancels one job on the way, and waits for the last one.

Usage: python examples/worker_pool.py [STORE_DIRECTORY] [--jobs 24] [--workers 4]
(default store: a new temporary directory)
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from jobstore.api import job

STATES = ("idle", "pending", "running", "finished", "error")


def worker(store: str, name: str) -> None:
    """Claim jobs until none is left; each takes as many steps as its request says."""
    job.useStore(store)
    chance = random.Random(name)
    while (claimed := job.claimJob(name, lease=10)) is not None:
        steps = int(claimed["request"])
        for step in range(1, steps + 1):
            time.sleep(chance.uniform(0.02, 0.06))  # the work itself
            job.setJobProgress(claimed["id"], step, steps)
            # The heartbeat renews the lease and is where a worker learns of a cancel request.
            if job.heartbeat(claimed["id"], lease=10).get("cancelRequested"):
                job.failJob(claimed["id"], f"{name} stopped at step {step}: canceled")
                break
        else:
            if claimed["name"] == "flaky" and chance.random() < 0.5:
                job.failJob(claimed["id"], f"{name}: the flaky job failed this time")
            else:
                job.updateJobResult(claimed["id"], f"{steps} steps done by {name}")


def summary(jobs: list[dict]) -> str:
    counts = Counter(each["status"] for each in jobs)
    done = sum(each.get("progress", {}).get("completed", 0) for each in jobs)
    total = sum(int(each["request"]) for each in jobs)
    bar = "#" * round(30 * done / total) + "." * (30 - round(30 * done / total))
    states = "  ".join(f"{state} {counts[state]}" for state in STATES if state != "idle")
    return f"[{bar}] {100 * done / total:3.0f}%  {states}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", help="store directory (default: a new temporary one)")
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    root = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="jobstore-pool-"))
    job.useStore(root)
    print(f"store: {root}")

    specs = [{"name": "flaky" if n % 6 == 5 else "thumbnail", "user": "pool", "request": str(4 + n % 5)} for n in range(args.jobs)]
    submitted = job.createJobs(specs)
    print(f"submitted {len(submitted)} jobs; starting {args.workers} workers")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=worker, args=(str(root), f"worker-{n + 1}")) for n in range(args.workers)]
    for process in workers:
        process.start()

    live = sys.stdout.isatty()
    canceled = None
    shown = 0.0
    while True:
        # Looked at before reading the jobs, so a worker that ends the last job and exits between
        # the two does not look like a pool that stopped early.
        working = any(process.is_alive() for process in workers)
        jobs = job.getJobs()
        if canceled is None and any(each["status"] == "running" for each in jobs):
            canceled = next(each for each in jobs if each["status"] == "running")["id"]
            job.cancelJob(canceled)  # its worker sees it at its next heartbeat
        ended = all(each["status"] in ("finished", "error") for each in jobs)
        if live:
            print("\r" + summary(jobs), end="", flush=True)
        elif ended or time.monotonic() - shown >= 1:
            print(summary(jobs), flush=True)
            shown = time.monotonic()
        if ended:
            break
        if not working:
            sys.exit("every worker has stopped, yet some jobs have not ended")
        time.sleep(0.1)
    if live:
        print()
    last = job.blockUntilComplete(submitted[-1], timeout=60)
    for process in workers:
        process.join()

    print(f"\nthe last job submitted: {last['status']}, result {last['result']!r}")
    if canceled is not None:
        stopped, _ = job.findJob(canceled)
        # A cancel request that lands after the worker's last heartbeat lets the job finish.
        print(f"the job asked to cancel while running: {stopped['status']}, messages {stopped['messages']!r}")
    runs = Counter(each["worker"] for each in job.getJobs() if "worker" in each)
    print("jobs per worker: " + ", ".join(f"{name} {count}" for name, count in sorted(runs.items())))
    print(f"every job has ended: {sum(1 for each in job.getJobs() if each['status'] in ('finished', 'error'))} of {len(submitted)}")
    print(f"look at the files: ls {root}, or the jobs: jobstore --store {root} list")


if __name__ == "__main__":
    main()
