"""How soon block_until_complete wakes after another process finishes the job, and what waiting costs.

Another process finishes each job after a random pause; the waiter's latency runs from the moment
that process began its finishing write to the moment the wait returned. Beside it, the same waits
done by polling find_job at the same interval, the obvious alternative, for the waiter's CPU time.

Usage: python benchmarks/wake.py [--waits 50]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from jobstore import JobStore

INTERVAL = 0.01  # seconds between looks, for both ways of waiting


def finisher(root: str, orders: Connection) -> None:
    store = JobStore(root)
    random.seed(7)
    while (job_id := orders.recv()) is not None:
        time.sleep(random.uniform(0.02, 0.08))
        began = time.monotonic()  # system-wide clock: comparable between processes
        store.update_job_result(job_id, "done")
        orders.send(began)


def block(store: JobStore, job_id: str) -> None:
    store.block_until_complete(job_id, timeout=30, interval=INTERVAL)


def poll(store: JobStore, job_id: str) -> None:
    while store.find_job(job_id)[1] not in ("finished", "error"):
        time.sleep(INTERVAL)


def measure(root: Path, waits: int, wait: Callable[[JobStore, str], None]) -> tuple[list[float], float]:
    """Latencies in ms of ``waits`` waits, and the waiter's CPU seconds per second spent waiting."""
    store = JobStore(root)
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=finisher, args=(str(root), theirs))
    process.start()
    latencies, cpu, wall = [], 0.0, 0.0
    for _ in range(waits):
        job_id = store.create_job("wake")["id"]
        cpu_started, wall_started = time.process_time(), time.monotonic()
        ours.send(job_id)
        wait(store, job_id)
        woke = time.monotonic()
        cpu += time.process_time() - cpu_started
        wall += woke - wall_started
        latencies.append((woke - ours.recv()) * 1000)
    ours.send(None)
    process.join()
    return latencies, cpu / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=50)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="jobstore-wake-"))
    rows = [(name, *measure(base / name, args.waits, wait)) for name, wait in (("block_until_complete", block), ("find_job polling", poll))]
    print(f"{args.waits} waits, a look every {INTERVAL * 1000:.0f} ms, latency from the start of the other process's write\n")
    print("| waiting by | median latency | worst latency | waiter CPU while waiting |")
    print("|---|---|---|---|")
    for name, latencies, cpu in rows:
        print(f"| {name} | {statistics.median(latencies):.1f} ms | {max(latencies):.1f} ms | {cpu * 100:.1f}% of a core |")
    ratio = rows[1][2] / rows[0][2] if rows[0][2] else float("inf")
    print(f"\nblock_until_complete uses {ratio:.1f}x less CPU than polling find_job")


if __name__ == "__main__":
    main()
