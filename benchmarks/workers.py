"""Worker processes draining one store: how the speed grows with workers, and how fast a wait wakes.

Drain: N processes claim and finish jobs submitted beforehand until none is left; the speed-up is
against one process in the same run. Claim latency: idle workers block in
``claim_job(wait=...)`` while a submitter adds one job at a time; the latency is from the submit
to the claim, and the CPU an idle worker burns is measured while nothing is submitted.

Usage: python benchmarks/workers.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from jobstore import JobStore


def drain_worker(root: str, work: float) -> None:
    store = JobStore(root)
    while (job := store.claim_job()) is not None:
        if work:
            time.sleep(work)
        store.update_job_result(job["id"], "done")


def drain(workers: int, jobs: int, work: float) -> float:
    """Seconds for ``workers`` processes to finish ``jobs`` jobs of ``work`` seconds each."""
    with tempfile.TemporaryDirectory(prefix="jobstore-workers-") as root:
        JobStore(root).create_jobs([{"name": f"job-{n}"} for n in range(jobs)])
        processes = [multiprocessing.Process(target=drain_worker, args=(root, work)) for _ in range(workers)]
        started = time.perf_counter()
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        elapsed = time.perf_counter() - started
        finished = JobStore(root).get_finished_jobs()
        # Every job finished exactly once, by someone: a drain that lost or doubled one measures nothing.
        assert len(finished) == jobs == len({job["id"] for job in finished}), "a job was lost or doubled"
        assert all(len(job["history"]) == 3 for job in finished), "a job was claimed twice"
        return elapsed


def claim_waiter(root: str, number: int, results: multiprocessing.Queue) -> None:
    store = JobStore(root)
    started_cpu = time.process_time()
    latencies = []
    while True:
        job = store.claim_job(f"waiter-{number}", wait=60)
        if job is None or job["name"] == "stop":
            break
        latencies.append(time.time() - float(job["request"]))
        store.update_job_result(job["id"], "done")
    results.put((latencies, time.process_time() - started_cpu))


def idle_cpu(root: str, seconds: float, ready: multiprocessing.Event, results: multiprocessing.Queue) -> None:
    store = JobStore(root)
    ready.set()
    started = time.process_time()
    store.claim_job("idle", wait=seconds)
    results.put(time.process_time() - started)


def claim_latency(waiters: int, submits: int, idle_seconds: float) -> tuple[list[float], float]:
    """Latencies (s) from submit to claim with ``waiters`` idle workers, and the CPU share of one idle waiter."""
    with tempfile.TemporaryDirectory(prefix="jobstore-claims-") as root:
        store = JobStore(root)
        results: multiprocessing.Queue = multiprocessing.Queue()
        # The idle cost first, while nothing is submitted.
        ready = [multiprocessing.Event() for _ in range(waiters)]
        idlers = [multiprocessing.Process(target=idle_cpu, args=(root, idle_seconds, ready[n], results)) for n in range(waiters)]
        for process in idlers:
            process.start()
        for event in ready:
            event.wait()
        cpu = [results.get() for _ in idlers]
        for process in idlers:
            process.join()
        processes = [multiprocessing.Process(target=claim_waiter, args=(root, n, results)) for n in range(waiters)]
        for process in processes:
            process.start()
        time.sleep(1.0)  # let every waiter start waiting
        for _ in range(submits):
            store.create_job("work", request=repr(time.time()))
            time.sleep(random.uniform(0.02, 0.08))
        store.create_jobs([{"name": "stop"} for _ in processes])
        latencies = [latency for _ in processes for latency in results.get()[0]]
        for process in processes:
            process.join()
        return latencies, statistics.median(cpu) / idle_seconds


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short run of each case, for CI")
    arguments = parser.parse_args()
    runs = 1 if arguments.quick else 3
    cases = [(0.005, 400 if not arguments.quick else 100, (1, 2, 4, 8), 4.0), (0.0, 1000 if not arguments.quick else 200, (1, 4), 1.0)]
    print("| work per job | jobs | workers | drain time (median) | jobs/s | vs 1 worker | target |")
    print("|---|---|---|---|---|---|---|")
    for work, jobs, counts, target in cases:
        base = None
        for workers in counts:
            elapsed = statistics.median(drain(workers, jobs, work) for _ in range(runs))
            base = base or elapsed
            aim = f">= {target:.1f}x" if workers == counts[-1] else ""
            print(f"| {work * 1000:.0f} ms | {jobs:,} | {workers} | {elapsed:.2f} s | {jobs / elapsed:,.0f} | {base / elapsed:.2f}x | {aim} |", flush=True)
    waiters = 16
    latencies, share = claim_latency(waiters, 40 if arguments.quick else 200, 2.0 if arguments.quick else 5.0)
    print()
    print(f"| idle workers in claim_job(wait=...) | jobs | median | p95 | worst | CPU per idle worker |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {waiters} | {len(latencies)} | {statistics.median(latencies) * 1000:.1f} ms | {percentile(latencies, 0.95) * 1000:.1f} ms "
        f"| {max(latencies) * 1000:.1f} ms | {share * 100:.2f}% of a core |"
    )
    print(f"\n(targets: p95 under 20 ms, under 1% of a core; {os.cpu_count()} cores)")


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()
