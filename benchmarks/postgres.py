"""The PostgreSQL engine beside the file engine and beside procrastinate: jobs per second with 1, 4 and 16 worker processes, and wake latency.

A lifecycle is what a worker does with one job: claim it, report progress once, store its result.
The jobs are submitted beforehand; each worker process loops until none is left; the figure is
jobs ended per second of wall time, every process started before the clock starts. The database
is a private PostgreSQL server started for the run (the pgserver package), on a Unix socket; the
file store is in a temporary directory, syncing every write.

Peer: procrastinate (another job queue on PostgreSQL), on the same server in the same run, in a
database of its own with its own schema. Both sides do the same work per job: the jobs are
submitted beforehand (procrastinate: batch_defer of a no-op async task), then each is claimed
once and finished once (jobstore: claim_job then update_job_result, no progress report;
procrastinate: one worker process per worker, concurrency 1, run_worker with wait=False so it
stops once the queue is empty). Every process is started and connected before the clock starts.
Afterwards procrastinate_jobs must show every job succeeded after one attempt. The peer is
skipped, with a line saying so, when procrastinate does not import (pip install procrastinate).

Claims once each: 16 processes claim from 10,000 pending jobs until none is left, each writing
down the ids it got; no id may come twice, none may be missing.

Wake latency: a waiter in ``block_until_complete`` on a job another process finishes, from the
finish's return to the waiter's return (LISTEN/NOTIFY on PostgreSQL, inotify on files).

Usage: python benchmarks/postgres.py [--jobs 2000] [--workers 1,4,16] [--waits 50] [--claims 10000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobstore import JobStore

if TYPE_CHECKING:
    import procrastinate


def work(location: str, ready: multiprocessing.synchronize.Barrier, done: multiprocessing.sharedctypes.Synchronized, progress: bool = True) -> None:  # type: ignore[name-defined]
    store = JobStore(location)
    store.stats()  # connect (or open the folders) before the clock starts
    ready.wait()
    ended = 0
    while (job := store.claim_job()) is not None:
        if progress:
            store.set_job_progress(job["id"], 1, 1)
        store.update_job_result(job["id"], "done")
        ended += 1
    with done.get_lock():
        done.value += ended


CONTEXT = multiprocessing.get_context("spawn")


def claim_all(location: str, ready: multiprocessing.synchronize.Barrier, out: str) -> None:
    """Claim until none is left, then write the ids claimed to a file of this process's own in ``out``.

    The jobs stay running, so a job handed out twice would show in two lists. A file, not a queue:
    a process with unread queue data does not exit, and the parent joins before it reads.
    """
    store = JobStore(location)
    store.stats()
    ready.wait()
    claimed = []
    while (job := store.claim_job()) is not None:
        claimed.append(job["id"])
    (Path(out) / f"{multiprocessing.current_process().pid}.txt").write_text("\n".join(claimed))


def claims_once(location: str, jobs: int, workers: int) -> tuple[float, int, int, int]:
    """Seconds for ``workers`` processes to claim ``jobs`` jobs, the claims counted, the ids claimed twice, the ids never claimed."""
    store = JobStore(location)
    submitted: set[str] = set()
    for start in range(0, jobs, 1000):
        submitted.update(job["id"] for job in store.create_jobs([{"name": "claim"} for _ in range(min(1000, jobs - start))]))
    with tempfile.TemporaryDirectory() as out:
        elapsed = timed(workers, lambda ready: (claim_all, (location, ready, out)))
        claims = [job_id for listing in Path(out).iterdir() for job_id in listing.read_text().split()]
    return elapsed, len(claims), len(claims) - len(set(claims)), len(submitted - set(claims))


def timed(workers: int, task: Callable[[Any], tuple[Callable[..., None], tuple[Any, ...]]]) -> float:
    """Seconds ``workers`` processes take to run to their end, the clock started once all are ready.

    :param task: given the barrier each process waits at when ready, the function each runs and its arguments
    """
    ready = CONTEXT.Barrier(workers + 1)
    target, args = task(ready)
    processes = [CONTEXT.Process(target=target, args=args) for _ in range(workers)]
    for process in processes:
        process.start()
    ready.wait()
    started = time.perf_counter()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    assert all(process.exitcode == 0 for process in processes), [process.exitcode for process in processes]
    return elapsed


def lifecycles(location: str, jobs: int, workers: int, progress: bool = True) -> float:
    """Jobs ended per second by ``workers`` processes draining ``jobs`` from the store at ``location``.

    With ``progress`` false a job is only claimed and finished, the same work as the procrastinate peer does.
    """
    store = JobStore(location)
    for start in range(0, jobs, 1000):
        store.create_jobs([{"name": "bench"} for _ in range(min(1000, jobs - start))])
    done = CONTEXT.Value("i", 0)
    elapsed = timed(workers, lambda ready: (work, (location, ready, done, progress)))
    assert done.value == jobs, f"{done.value} of {jobs} jobs ended"
    stats = store.stats()
    assert stats["finished"] == jobs and stats["running"] == stats["pending"] == 0, stats
    return jobs / elapsed


def procrastinate_app(conninfo: str) -> procrastinate.App:
    """A procrastinate app on ``conninfo`` with the benchmark's one task, built alike in the parent and each worker."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    # An async task: a sync one would be run in a thread, a cost jobstore's loop does not pay.
    @app.task(name="noop")
    async def noop() -> None:
        pass

    return app


def procrastinate_work(conninfo: str, ready: multiprocessing.synchronize.Barrier) -> None:  # type: ignore[name-defined]
    """One procrastinate worker, concurrency 1, that stops once the queue is empty."""
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    app = procrastinate_app(conninfo)

    async def run() -> None:
        # open_async opens the connection pool and waits for its connections: connected before the clock starts
        async with app.open_async():
            ready.wait()
            await app.run_worker_async(wait=False, concurrency=1)

    asyncio.run(run())


def procrastinate_jobs_per_second(server_uri: Callable[[str], str], jobs: int, workers: int) -> float:
    """Jobs done per second by ``workers`` procrastinate worker processes draining ``jobs`` deferred beforehand.

    ``server_uri`` gives the server's URI for a database name; the jobs go to a new database of their own.
    """
    import psycopg

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    # It warns of an app made in __main__, a risk only for tasks named after their module; ours is named.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    name = f"procrastinate_{uuid.uuid4().hex}"
    with psycopg.connect(server_uri("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    conninfo = server_uri(name)
    with procrastinate_app(conninfo).open() as app:
        app.schema_manager.apply_schema()
        noop = app.tasks["noop"]
        for start in range(0, jobs, 1000):
            noop.batch_defer(*({} for _ in range(min(1000, jobs - start))))
    elapsed = timed(workers, lambda ready: (procrastinate_work, (conninfo, ready)))
    with psycopg.connect(conninfo) as check:
        states = check.execute("SELECT status::text, attempts, count(*) FROM procrastinate_jobs GROUP BY 1, 2").fetchall()
        runs = check.execute("SELECT count(*), count(DISTINCT job_id) FROM procrastinate_events WHERE type = 'started'").fetchone()
    assert states == [("succeeded", 1, jobs)], states
    assert runs == (jobs, jobs), f"{runs} starts (all, distinct jobs) for {jobs} jobs"
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
    parser.add_argument("--claims", type=int, default=10000, help="jobs claimed by 16 processes, each to be claimed once")
    parser.add_argument("--quick", action="store_true", help="200 jobs, 1 and 4 workers, 10 waits: a check that it runs")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.workers, args.waits, args.claims = 200, "1,4", 10, 1000
    counts = [int(part) for part in args.workers.split(",")]
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        peer = False
    else:
        peer = True
    import pgserver

    work_dir = Path(tempfile.mkdtemp(prefix="jobstore-pg-bench-"))
    server = pgserver.get_server(work_dir / "pg", cleanup_mode="stop")
    try:
        url = server.get_uri()
        rows = []
        peer_rows = []
        for workers in counts:
            database = lifecycles(f"{url}#b{uuid.uuid4().hex}", args.jobs, workers)
            files = lifecycles(str(work_dir / f"files-{workers}"), args.jobs, workers)
            rows.append((workers, database, files))
            print(f"  {workers} workers: postgres {database:,.0f}/s, files {files:,.0f}/s", file=sys.stderr)
            if peer:
                claimed = lifecycles(f"{url}#c{uuid.uuid4().hex}", args.jobs, workers, progress=False)
                theirs = procrastinate_jobs_per_second(lambda name: server.get_uri(database=name), args.jobs, workers)
                peer_rows.append((workers, claimed, theirs))
                print(f"  {workers} workers: claim and finish, postgres {claimed:,.0f}/s, procrastinate {theirs:,.0f}/s", file=sys.stderr)
        claimed_once = claims_once(f"{url}#o{uuid.uuid4().hex}", args.claims, 16)
        waits = {"postgres": wake_latencies(f"{url}#w{uuid.uuid4().hex}", args.waits), "files": wake_latencies(str(work_dir / "waits"), args.waits)}
    finally:
        server.cleanup()
    print(f"\nlifecycles per second (claim, progress, result), {args.jobs:,} jobs, 2 cores")
    print(f"{'workers':>7} {'postgres':>10} {'files':>10} {'postgres / files':>17}")
    for workers, database, files in rows:
        print(f"{workers:>7} {database:>8,.0f}/s {files:>8,.0f}/s {database / files:>16.2f}x")
    if peer:
        print(f"\nclaim and finish per second (jobs submitted beforehand), {args.jobs:,} jobs, same server")
        print(f"{'workers':>7} {'jobstore postgres':>18} {'procrastinate':>14} {'ratio':>7}")
        for workers, claimed, theirs in peer_rows:
            print(f"{workers:>7} {claimed:>16,.0f}/s {theirs:>12,.0f}/s {claimed / theirs:>6.2f}x")
    else:
        print("\nprocrastinate peer skipped: it does not import (pip install procrastinate)")
    elapsed, claims, doubled, missed = claimed_once
    verdict = "each claimed exactly once" if claims == args.claims and not doubled and not missed else "JOBS CLAIMED TWICE OR NEVER"
    print(f"\nclaims by 16 processes over {args.claims:,} pending jobs: {claims:,} claims in {elapsed:.1f} s, {doubled} twice, {missed} never: {verdict}")
    print(f"\nwake latency, finish in another process to block_until_complete's return, {args.waits} waits")
    for engine, found in waits.items():
        ordered = sorted(found)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(f"{engine:>9}: p50 {statistics.median(found):.1f} ms, p99 {p99:.1f} ms, max {max(found):.1f} ms")
    print("target: postgres p99 under 20 ms")


if __name__ == "__main__":
    main()
