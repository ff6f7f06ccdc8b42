"""How fast N worker processes drain a store of submitted jobs through claim_job, against one worker.

Each case submits its jobs in one create_jobs, starts the workers (spawned, each with its own
JobStore), and times from the moment all of them are ready to the last job finished. A worker
loops: claim_job, sleep for the work, update_job_result. Speed-ups are against one worker
measured in the same run, with the same work per job. Afterwards every case's store must hold
every job in finished, and no job may have been claimed twice.

Usage: python benchmarks/workers.py [--runs 3] [--jobs 400] [--zero-jobs 1000] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

from jobstore import JobStore

CONTEXT = multiprocessing.get_context("spawn")  # each worker starts clean, as a real one would


@dataclass
class Case:
    workers: int
    jobs: int
    work: float  # seconds of sleep per job
    target: float | None = None  # the speed-up aimed at, against 1 worker; None for the baselines
    times: list[float] = field(default_factory=list)
    claims: int = 0  # claims counted by the workers, over every run
    doubled: int = 0  # jobs claimed more than once, over every run
    finished: int = 0  # jobs the stores hold in finished, over every run


def worker(root: str, work: float, ready: Event, start: Event, report: Queue) -> None:
    store = JobStore(root)
    store.get_pending_jobs()  # the first parse of the files belongs to start-up, not to the drain
    ready.set()
    start.wait()
    claimed = []
    while (job := store.claim_job()) is not None:
        if work:
            time.sleep(work)
        store.update_job_result(job["id"], "done")
        claimed.append(job["id"])
    report.put((time.monotonic(), claimed))  # system-wide clock: comparable with the parent's


def drain(root: Path, case: Case) -> tuple[float, list[str]]:
    """Seconds for the case's workers to drain a fresh store, and the ids they claimed."""
    JobStore(root).create_jobs([{"name": "bench", "request": f"item-{n}"} for n in range(case.jobs)])
    start, report = CONTEXT.Event(), CONTEXT.Queue()
    readies = [CONTEXT.Event() for _ in range(case.workers)]
    processes = [CONTEXT.Process(target=worker, args=(str(root), case.work, ready, start, report)) for ready in readies]
    for process in processes:
        process.start()
    for ready in readies:
        ready.wait()
    began = time.monotonic()
    start.set()
    # Read the reports before joining: a child blocks on exit until its queue is drained.
    reports = [report.get() for _ in processes]
    for process in processes:
        process.join()
    ended = max(stamp for stamp, _ in reports)
    return ended - began, [job_id for _, ids in reports for job_id in ids]


def run(base: Path, case: Case, number: int) -> None:
    root = base / f"w{case.workers}-{case.work * 1000:g}ms-{case.jobs}-run{number}"
    elapsed, claimed = drain(root, case)
    case.times.append(elapsed)
    case.claims += len(claimed)
    case.doubled += len(claimed) - len(set(claimed))
    store = JobStore(root)
    case.finished += sum(1 for job in store.get_finished_jobs() if job["result"] == "done")


def cases(jobs: int, zero_jobs: int) -> list[Case]:
    return [
        Case(1, jobs, 0.005),
        Case(2, jobs, 0.005),
        Case(4, jobs, 0.005),
        Case(8, jobs, 0.005, 4.0),
        Case(1, zero_jobs, 0.0),
        Case(4, zero_jobs, 0.0, 1.0),
    ]


def print_table(rows: list[Case]) -> None:
    print("| work per job | jobs | workers | wall time to drain | jobs/s | speed-up vs 1 worker | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    baselines = {(case.work, case.jobs): statistics.median(case.times) for case in rows if case.workers == 1}
    for case in rows:
        wall = statistics.median(case.times)
        speedup = baselines[(case.work, case.jobs)] / wall
        target = "" if case.target is None else f">= {case.target:.1f}x"
        met = "" if case.target is None else ("yes" if speedup >= case.target else "no")
        print(
            f"| {case.work * 1000:g} ms | {case.jobs:,} | {case.workers} | {wall:.2f} s | {case.jobs / wall:,.0f}/s |"
            f" {speedup:.2f}x | {target} | {met} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per case; the table gives medians")
    parser.add_argument("--jobs", type=int, default=400, help="jobs per case with 5 ms of work")
    parser.add_argument("--zero-jobs", type=int, default=1000, help="jobs per case with no work")
    parser.add_argument("--quick", action="store_true", help="one run per case and 400 zero-work jobs, for CI")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.zero_jobs = 1, 400

    base = Path(tempfile.mkdtemp(prefix="jobstore-workers-"))
    rows = cases(args.jobs, args.zero_jobs)
    # Runs interleave the cases, so a slow spell of the machine spreads over all of them.
    for number in range(1, args.runs + 1):
        for case in rows:
            run(base, case, number)
            print(f"  run {number}: {case.workers} worker(s), {case.work * 1000:g} ms: {case.times[-1]:.2f} s", file=sys.stderr)

    print(f"$ python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, durable writes, 'spawn' workers,"
          f" median of {args.runs} run{'s' * (args.runs > 1)}\n")
    print_table(rows)
    submitted = sum(case.jobs for case in rows) * args.runs
    finished = sum(case.finished for case in rows)
    claims = sum(case.claims for case in rows)
    doubled = sum(case.doubled for case in rows)
    verdict = "every job finished exactly once" if finished == claims == submitted and not doubled else "JOBS LOST OR DOUBLED"
    print(f"\n{submitted:,} jobs submitted, {claims:,} claimed, {doubled} claimed twice, {finished:,} finished: {verdict}")
    print(f"(stores under {base.name} in the temporary directory)")


if __name__ == "__main__":
    main()
