"""How soon an idle worker blocked in claim_job(wait=...) takes a job just submitted, and what waiting costs.

16 worker processes wait in ``claim_job(worker=..., wait=5.0)``. First nothing is submitted for a
while, and the CPU time each waiter used meanwhile (utime + stime from /proc/<pid>/stat, read by
this process) gives its share of a core. Then this process submits one job at a time, with the
wall-clock time of the submit in the job's ``request``, and pauses a random 20-80 ms before the
next; the worker that claims a job records now minus that time (so the latency includes the
submit's own write; rows "after create_job returned" leave it out), finishes the job at once and
waits again. Beside it, the same run with
workers that poll ``claim_job()`` every 10 ms, the obvious alternative. At the end each worker
claims a job named "stop" and exits.

Usage: python benchmarks/claim_latency.py [--workers 16] [--jobs 200] [--idle 5] [--poll 0.01] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from jobstore import JobStore

CONTEXT = multiprocessing.get_context("spawn")  # each worker starts clean, as a real one would
WAIT = 5.0  # seconds each claim_job(wait=...) blocks before it returns None and is called again
TICKS = os.sysconf("SC_CLK_TCK")  # the unit of utime and stime in /proc/<pid>/stat


@dataclass
class Outcome:
    latencies: list[float]  # ms from the submit's start to the claim, one per job claimed
    after_submit: list[float]  # ms from create_job's return to the claim (below 0: claimed before it returned)
    idle_cpu: list[float]  # share of a core, one per worker, over the idle spell
    claimed_twice: int
    stopped_cleanly: int  # workers that claimed their "stop" job and exited by themselves
    submits: list[float]  # ms each create_job took: part of every latency, as the job counts once written


def claim(store: JobStore, name: str, poll: float) -> dict[str, Any] | None:
    """One claim the way this run's workers wait: blocking in the store, or polling every ``poll`` s."""
    if not poll:
        return store.claim_job(worker=name, wait=WAIT)
    deadline = time.monotonic() + WAIT
    while (job := store.claim_job(worker=name)) is None and time.monotonic() < deadline:
        time.sleep(poll)
    return job


def worker(root: str, name: str, poll: float, report: Queue) -> None:
    store = JobStore(root)
    store.get_pending_jobs()  # the first parse of the files belongs to start-up, not to the wait
    report.put(("ready", name, os.getpid()))
    while True:
        job = claim(store, name, poll)
        if job is None:
            continue
        if job["name"] == "stop":
            store.update_job_result(job["id"], "stopped")
            break
        claimed = time.time()  # wall clock: the submitter is another process
        store.update_job_result(job["id"], "done")
        report.put(("claimed", job["id"], ((claimed - float(job["request"])) * 1000, claimed)))
    report.put(("stopped", name, None))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
        # The command name in parentheses may hold spaces: count fields from after it.
        fields = stream.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def collect(report: Queue, kind: str, count: int, timeout: float) -> list[tuple[str, Any, Any]]:
    """The next ``count`` messages of ``kind`` from the workers (fewer if ``timeout`` s pass)."""
    found: list[tuple[str, Any, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and (left := deadline - time.monotonic()) > 0:
        try:
            message = report.get(timeout=left)
        except queue.Empty:
            break
        if message[0] == kind:
            found.append(message)
    return found


def measure(root: Path, workers: int, jobs: int, idle: float, poll: float, seed: int) -> Outcome:
    store = JobStore(root)
    report = CONTEXT.Queue()
    processes = [CONTEXT.Process(target=worker, args=(str(root), f"w{n}", poll, report)) for n in range(workers)]
    for process in processes:
        process.start()
    pids = [pid for _, _, pid in collect(report, "ready", workers, 120)]
    time.sleep(1.0)  # every worker is now inside its first claim, not between "ready" and it

    # The idle spell: nothing is submitted, so whatever CPU the workers use is the wait's own cost.
    before, began = [cpu_seconds(pid) for pid in pids], time.monotonic()
    time.sleep(idle)
    after, spell = [cpu_seconds(pid) for pid in pids], time.monotonic() - began
    idle_cpu = [(a - b) / spell for a, b in zip(after, before)]

    pauses = random.Random(seed)  # the same pauses for both ways of waiting
    submits, returned = [], {}
    for number in range(jobs):
        submitted = time.time()
        job_id = store.create_job("work", "bench", repr(submitted))["id"]
        returned[job_id] = time.time()
        submits.append((returned[job_id] - submitted) * 1000)
        time.sleep(pauses.uniform(0.02, 0.08))
    claims = collect(report, "claimed", jobs, 60)
    ids = [job_id for _, job_id, _ in claims]
    after_submit = [(claimed - returned[job_id]) * 1000 for _, job_id, (_, claimed) in claims]

    store.create_jobs([{"name": "stop"} for _ in processes])
    stopped = collect(report, "stopped", workers, 30)
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():  # a worker that never saw its stop job: end it, and count it below
            process.terminate()
            process.join()
    latencies = [latency for _, _, (latency, _) in claims]
    return Outcome(latencies, after_submit, idle_cpu, len(ids) - len(set(ids)), len(stopped), submits)


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


#: The table's rows: label, unit, target (text, and the bound a figure must stay below), figure.
ROWS: list[tuple[str, str, str, float | None, Callable[[Outcome], float]]] = [
    ("median latency", "ms", "", None, lambda o: statistics.median(o.latencies)),
    ("p95 latency", "ms", "< 20 ms", 20.0, lambda o: percentile(o.latencies, 0.95)),
    ("max latency", "ms", "", None, lambda o: max(o.latencies)),
    ("median latency after create_job returned", "ms", "", None, lambda o: statistics.median(o.after_submit)),
    ("p95 latency after create_job returned", "ms", "", None, lambda o: percentile(o.after_submit, 0.95)),
    ("CPU per idle worker (mean)", "% of a core", "< 1%", 1.0, lambda o: statistics.mean(o.idle_cpu) * 100),
    ("CPU of the busiest idle worker", "% of a core", "", None, lambda o: max(o.idle_cpu) * 100),
]


def print_table(ours: Outcome, peer: Outcome | None, poll: float) -> None:
    peer_name = f"claim_job() polled every {poll * 1000:g} ms" if peer else "(no peer run)"
    print(f"| measure | claim_job(wait={WAIT:g}) | {peer_name} | wait / polling | target | met |")
    print("|---|---|---|---|---|---|")
    for label, unit, target, bound, figure in ROWS:
        value = figure(ours) if ours.latencies else float("nan")
        other = figure(peer) if peer and peer.latencies else None
        ratio = f"{value / other:.2f}x" if other else ""
        met = "" if bound is None else ("yes" if value < bound else "no")
        print(f"| {label} | {value:.2f} {unit} | {'' if other is None else f'{other:.2f} {unit}'} | {ratio} | {target} | {met} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=200, help="jobs submitted one at a time")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of nothing submitted, for the idle CPU")
    parser.add_argument("--poll", type=float, default=0.01, help="interval of the polling peer; 0 skips it")
    parser.add_argument("--quick", action="store_true", help="40 jobs and 3 s idle, for CI")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.idle = 40, 3.0

    base = Path(tempfile.mkdtemp(prefix="jobstore-claims-"))
    ours = measure(base / "wait", args.workers, args.jobs, args.idle, 0.0, seed=7)
    print(f"  claim_job(wait=): {len(ours.latencies)} claims", file=sys.stderr)
    peer = None
    if args.poll:
        peer = measure(base / "poll", args.workers, args.jobs, args.idle, args.poll, seed=7)
        print(f"  polling: {len(peer.latencies)} claims", file=sys.stderr)

    print(f"$ python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {args.workers} idle workers, {args.jobs} jobs"
          f" submitted one at a time 20-80 ms apart; idle CPU over {args.idle:g} s with nothing submitted\n")
    print_table(ours, peer, args.poll)
    print()
    for name, outcome in (("claim_job(wait=)", ours), ("polling", peer)):
        if outcome is None:
            continue
        whole = len(outcome.latencies) == args.jobs and not outcome.claimed_twice
        print(f"- {name}: {len(outcome.latencies)} of {args.jobs} jobs claimed, {outcome.claimed_twice} twice"
              f"{'' if whole else ' (JOBS LOST OR DOUBLED)'}; {outcome.stopped_cleanly} of {args.workers} workers"
              f" stopped by their stop job; the submit itself (create_job) took median"
              f" {statistics.median(outcome.submits):.2f} ms of each latency")
    print(f"(stores under {base.name} in the temporary directory)")


if __name__ == "__main__":
    main()
