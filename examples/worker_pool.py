"""A pool of worker processes sharing one store: submit jobs, claim, report progress, finish or fail.

Each worker claims the oldest pending job (no two workers ever get the same one), reports its
progress step by step, renews its lease, and finishes or fails the job; the submitter shows a live
summary until every job it submitted has ended, cancels one job on the way, and waits for the last one.

Ctrl-C (SIGINT) or SIGTERM stops the pool between two steps: each worker hands the job it holds
back to the queue (releaseJob), one line on stderr tells how many jobs are still pending, and the
script exits with 128 plus the signal's number: 130 for Ctrl-C, 143 for SIGTERM.

Run again on the same store, the workers first take the jobs an earlier run left pending; the
summary, the bar, the cancel and the counts concern only the jobs this run submits, and one line
of its own tells how many of the earlier jobs have ended too.

Usage: python examples/worker_pool.py [STORE_DIRECTORY] [--jobs 24] [--workers 4]
(default store: a temporary directory, removed at the end)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing
import random
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from jobstore import JobStore
from jobstore.api import job

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

STATES = ("idle", "pending", "running", "finished", "error")
ENDED = ("finished", "error")
CONTEXT = multiprocessing.get_context("spawn")


def worker(store: str, name: str, stop: ctypes.c_int, handed_back: Synchronized[int]) -> None:
    """Claim jobs until none is left or ``stop`` is set; each takes as many steps as its request says."""
    # A terminal sends Ctrl-C to the workers too: they leave it to the main process, which sets stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    job.useStore(store)
    chance = random.Random(name)
    while not stop.value and (claimed := job.claimJob(name, lease=10)) is not None:
        steps = int(claimed["request"])
        for step in range(1, steps + 1):
            if stop.value:
                # Back to the queue, for the next run; a job being canceled ends canceled instead.
                reason = f"{name} stopped before step {step} of {steps}: the pool was interrupted"
                if job.releaseJob(claimed["id"], reason)["status"] == "pending":
                    with handed_back.get_lock():
                        handed_back.value += 1
                return
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


def summary(jobs: list[dict[str, Any]]) -> str:
    """A bar of the steps done (an ended job counts as all its steps done) and the jobs in each state."""
    counts = Counter(each["status"] for each in jobs)
    total = sum(int(each["request"]) for each in jobs)
    done = sum(int(each["request"]) if each["status"] in ENDED else each.get("progress", {}).get("completed", 0) for each in jobs)
    bar = "#" * round(30 * done / total) + "." * (30 - round(30 * done / total))
    states = "  ".join(f"{state} {counts[state]}" for state in STATES if state != "idle")
    return f"[{bar}] {100 * done / total:3.0f}%  {states}"


def shown(path: Path) -> str:
    """The path for a command line: relative to the current directory when inside it, quoted as needed."""
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        return shlex.quote(str(path))
    return shlex.quote(str(relative) if len(relative.parts) > 1 else f"./{relative}")


def jobstore_command() -> str:
    """The jobstore command installed beside this interpreter, else ``python -m jobstore`` with it."""
    script = Path(sys.executable).parent / "jobstore"
    return shown(script) if script.exists() else f"{shown(Path(sys.executable))} -m jobstore"


def plural(count: int, noun: str) -> str:
    """``1 job``, ``2 jobs``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def pool(root: Path, kept: bool, count: int, workers: int, stop: ctypes.c_int) -> int:
    """Submit ``count`` jobs to the store at ``root``, work them with ``workers`` processes; returns the exit status."""
    earlier = {each["id"] for each in job.getJobs() if each["status"] in ("pending", "running")}
    specs = [{"name": "flaky" if n % 6 == 5 else "thumbnail", "user": "pool", "request": str(4 + n % 5)} for n in range(count)]
    submitted = job.createJobs(specs)
    ours = {each["id"] for each in submitted}
    left = f", who first take the {plural(len(earlier), 'job')} an earlier run left" if earlier else ""
    print(f"submitted {len(submitted)} jobs; starting {workers} workers{left}")
    handed_back = CONTEXT.Value(ctypes.c_int, 0)
    processes = [
        CONTEXT.Process(target=worker, args=(str(root), f"worker-{n + 1}", stop, handed_back)) for n in range(workers)
    ]
    # Blocked while they start, Ctrl-C stays blocked in the workers (a child inherits the mask) and
    # waits for this process's handler here.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for process in processes:
            process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    live = sys.stdout.isatty()
    canceled: str | None = None
    printed = 0.0
    while not stop.value:
        # Looked at before reading the jobs, so a worker that ends the last job and exits between
        # the two does not look like a pool that stopped early.
        working = any(process.is_alive() for process in processes)
        jobs = [each for each in job.getJobs() if each["id"] in ours]
        if canceled is None and any(each["status"] == "running" for each in jobs):
            canceled = next(each for each in jobs if each["status"] == "running")["id"]
            job.cancelJob(canceled)  # its worker sees it at its next heartbeat
        ended = all(each["status"] in ENDED for each in jobs)
        if live:
            print("\r" + summary(jobs), end="", flush=True)
        elif ended or time.monotonic() - printed >= 1:
            print(summary(jobs), flush=True)
            printed = time.monotonic()
        if ended:
            break
        if not working:
            sys.exit("every worker has stopped, yet some jobs have not ended")
        time.sleep(0.1)
    if live:
        print()
    for process in processes:
        process.join()  # the workers drain the queue, or hand their jobs back once stop is set

    if stop.value:
        pending = len(job.getPendingJobs())
        then = f"run again on {shown(root)} to go on" if kept else "the store was temporary and is removed now"
        print(f"interrupted: {plural(handed_back.value, 'job')} handed back, {pending} still pending; {then}", file=sys.stderr)
        return 128 + stop.value

    last = job.blockUntilComplete(submitted[-1], timeout=60)
    print(f"\nthe last job submitted: {last['status']}, result {last['result']!r}")
    if canceled is not None:
        stopped, _ = job.findJob(canceled)
        # A cancel request that lands after the worker's last heartbeat lets the job finish.
        if stopped is not None:
            print(f"the job asked to cancel while running: {stopped['status']}, messages {stopped['messages']!r}")
    jobs = job.getJobs()
    mine = [each for each in jobs if each["id"] in ours]
    runs = Counter(each["worker"] for each in mine if "worker" in each)
    print("jobs per worker: " + ", ".join(f"{name} {done}" for name, done in sorted(runs.items())))
    print(f"every job has ended: {sum(1 for each in mine if each['status'] in ENDED)} of {len(submitted)}")
    if earlier:
        ended_too = sum(1 for each in jobs if each["id"] in earlier and each["status"] in ENDED)
        print(f"jobs an earlier run left, ended too: {ended_too} of {len(earlier)}")
    if kept:
        print(f"look at the files: ls {shown(root)}, or the jobs: {jobstore_command()} --store {shown(root)} list")
    else:
        python = shown(Path(sys.executable))
        print(f"the store was temporary and is removed now; to keep one, give a directory: {python} {shlex.quote(sys.argv[0])} DIRECTORY")
    return 0


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("store", nargs="?", help="store directory (default: a temporary one, removed at the end)")
    parser.add_argument("--jobs", type=at_least_one, default=24, help="jobs to submit (default 24)")
    parser.add_argument("--workers", type=at_least_one, default=4, help="worker processes (default 4)")
    args = parser.parse_args()
    # A signal only notes its number (a handler raising would break off a write to the store); the
    # main loop and the workers look at it between two steps.
    stop = CONTEXT.RawValue(ctypes.c_int, 0)

    def note(signum: int, frame: FrameType | None) -> None:
        stop.value = signum

    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)
    with contextlib.ExitStack() as stack:
        directory = args.store or stack.enter_context(tempfile.TemporaryDirectory(prefix="jobstore-pool-"))
        job.useStore(stack.enter_context(JobStore(directory)))  # closed before a temporary directory goes
        print(f"store: {directory}" + ("" if args.store else " (temporary, removed at the end)"))
        status = pool(Path(directory), bool(args.store), args.jobs, args.workers, stop)
    sys.exit(status)


if __name__ == "__main__":
    main()
