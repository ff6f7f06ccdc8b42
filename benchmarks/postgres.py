"""The PostgreSQL engine beside the file engine: lifecycles per second with 1, 4 and 16 worker processes, and wake latency.

A lifecycle is what a worker does with one job: claim it, report progress once, store its result.
The jobs are submitted beforehand; each worker process loops until none is left; the figure is
jobs ended per second of wall time, every process started before the clock starts. The database
is a private PostgreSQL server started for the run (the pgserver package), on a Unix socket; the
file store is in a temporary directory, syncing every write.

Wake latency: a waiter in ``block_until_complete`` on a job another process finishes, from the
finish's return to the waiter's return (LISTEN/NOTIFY on PostgreSQL, inotify on files).

Usage: python benchmarks/postgres.py [--jobs 2000] [--workers 1,4,16] [--waits 50] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from jobstore import JobStore


def work(location: str, ready: multiprocessing.synchronize.Barrier, done: multiprocessing.sharedctypes.Synchronized) -> None:  # type: ignore[name-defined]
    store = JobStore(location)
    store.stats()  # connect (or open the folders) before the clock starts
    ready.wait()
    ended = 0
    while (job := store.claim_job()) is not None:
        store.set_job_progress(job["id"], 1, 1)
        store.update_job_result(job["id"], "done")
        ended += 1
    with done.get_lock():
        done.value += ended


def lifecycles(location: str, jobs: int, workers: int) -> float:
    """Jobs ended per second by ``workers`` processes draining ``jobs`` from the store at ``location``."""
    store = JobStore(location)
    for start in range(0, jobs, 1000):
        store.create_jobs([{"name": "bench"} for _ in range(min(1000, jobs - start))])
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers + 1)
    done = context.Value("i", 0)
    processes = [context.Process(target=work, args=(location, ready, done)) for _ in range(workers)]
    for process in processes:
        process.start()
    ready.wait()
    started = time.perf_counter()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    assert done.value == jobs, f"{done.value} of {jobs} jobs ended"
    stats = store.stats()
    assert stats["finished"] == jobs and stats["running"] == stats["pending"] == 0, stats
    return jobs / elapsed


FINISH = """
import sys, time
from jobstore import JobStore
store = JobStore(sys.argv[1])
for line in sys.stdin:
    time.sleep(0.02)
    store.update_job_result(line.strip(), "done")
    print(time.time(), flush=True)
"""


def wake_latencies(location: str, waits: int) -> list[float]:
    """Milliseconds from a finish in another process to a waiter's return, ``waits`` times."""
    import subprocess

    store = JobStore(location)
    finisher = subprocess.Popen([sys.executable, "-c", FINISH, location], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert finisher.stdin is not None and finisher.stdout is not None
    latencies = []
    try:
        for _ in range(waits):
            job = store.create_job("wait")
            store.claim_job("w")
            woke: list[float] = []
            waiter = threading.Thread(target=lambda: (store.block_until_complete(job["id"], timeout=30), woke.append(time.time())))
            waiter.start()
            time.sleep(0.01)
            finisher.stdin.write(job["id"] + "\n")
            finisher.stdin.flush()
            finished = float(finisher.stdout.readline())
            waiter.join(timeout=30)
            latencies.append((woke[0] - finished) * 1000)
    finally:
        finisher.stdin.close()
        finisher.wait(timeout=30)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", default="1,4,16")
    parser.add_argument("--waits", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="200 jobs, 1 and 4 workers, 10 waits: a check that it runs")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.workers, args.waits = 200, "1,4", 10
    counts = [int(part) for part in args.workers.split(",")]
    import pgserver

    work_dir = Path(tempfile.mkdtemp(prefix="jobstore-pg-bench-"))
    server = pgserver.get_server(work_dir / "pg", cleanup_mode="stop")
    try:
        url = server.get_uri()
        rows = []
        for workers in counts:
            database = lifecycles(f"{url}#b{uuid.uuid4().hex}", args.jobs, workers)
            files = lifecycles(str(work_dir / f"files-{workers}"), args.jobs, workers)
            rows.append((workers, database, files))
            print(f"  {workers} workers: postgres {database:,.0f}/s, files {files:,.0f}/s", file=sys.stderr)
        waits = {"postgres": wake_latencies(f"{url}#w{uuid.uuid4().hex}", args.waits), "files": wake_latencies(str(work_dir / "waits"), args.waits)}
    finally:
        server.cleanup()
    print(f"\nlifecycles per second (claim, progress, result), {args.jobs:,} jobs, 2 cores")
    print(f"{'workers':>7} {'postgres':>10} {'files':>10} {'postgres / files':>17}")
    for workers, database, files in rows:
        print(f"{workers:>7} {database:>8,.0f}/s {files:>8,.0f}/s {database / files:>16.2f}x")
    print(f"\nwake latency, finish in another process to block_until_complete's return, {args.waits} waits")
    for engine, found in waits.items():
        ordered = sorted(found)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(f"{engine:>9}: p50 {statistics.median(found):.1f} ms, p99 {p99:.1f} ms, max {max(found):.1f} ms")
    print("target: postgres p99 under 20 ms")


if __name__ == "__main__":
    main()
