"""Lifecycle throughput of jobstore beside persist-queue and a naive TinyDB + filelock store, in one run.

A lifecycle is: submit a job, mark it running, store its result (three durable writes). Each
system is measured with a history of finished jobs already in it, and the table gives ratios.

With --large, lifecycles whose result is 100 KB or 1 MB, with 300 and 2,000 such jobs already
finished: the rate, the bytes written per lifecycle beside the document's size, and the peak
memory beside the store's size, each case in a process of its own.

Usage: python benchmarks/lifecycle.py [--histories 300,5000,50000] [--seconds 4] [--quick] [--large]
Needs: pip install -e '.[bench]'
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
from filelock import FileLock
from tinydb import Query, TinyDB

from jobstore import JobStore
from jobstore._files import encode
from jobstore._status import JobStatus
from jobstore._tinydb_engine import DEFAULT_SEGMENT_BYTES, DEFAULT_SEGMENT_SIZE, segment_file_name


def finished_job(number: int) -> dict:
    job_id = str(uuid.uuid4())
    return {
        "id": job_id,
        "name": "thumbnail",
        "user": "bench",
        "request": f"images/{number:06d}.png",
        "result": f"thumbs/{number:06d}.png",
        "status": "finished",
        "messages": "done",
        "createdAt": "2026-01-01T00:00:00.000000Z",
        "updatedAt": "2026-01-01T00:00:01.000000Z",
    }


def seed_jobstore(root: Path, history: int) -> None:
    """Write a history of finished jobs straight into the documented file layout."""
    root.mkdir(parents=True, exist_ok=True)
    jobs = [finished_job(n) for n in range(history)]
    for start in range(0, history, DEFAULT_SEGMENT_SIZE):
        table = {job["id"]: job for job in jobs[start : start + DEFAULT_SEGMENT_SIZE]}
        number = start // DEFAULT_SEGMENT_SIZE + 1
        (root / segment_file_name(JobStatus.FINISHED, number)).write_bytes(encode({"finished": table}))


def jobstore_lifecycle(root: Path, durable: bool = True) -> Callable[[], None]:
    store = JobStore(root, durable=durable)

    def lifecycle() -> None:
        job = store.create_job("thumbnail", "bench", "images/new.png")
        store.set_job_running(job["id"], {"messages": "working"})
        store.update_job_result(job["id"], "thumbs/new.png")

    return lifecycle


def persist_queue_lifecycle(root: Path, history: int) -> Callable[[], None]:
    import persistqueue

    seeding = persistqueue.SQLiteAckQueue(str(root), auto_commit=False, multithreading=False)
    for number in range(history):
        seeding.put(finished_job(number))
        seeding.ack(seeding.get())
    seeding.task_done()
    del seeding
    queue = persistqueue.SQLiteAckQueue(str(root), auto_commit=True, multithreading=False)

    def lifecycle() -> None:
        queue.put({"name": "thumbnail", "user": "bench", "request": "images/new.png"})
        item = queue.get()
        queue.ack(item)

    return lifecycle


def naive_lifecycle(root: Path, history: int) -> Callable[[], None]:
    """Open TinyDB under a FileLock per operation, remove by query, insert into the next table."""
    root.mkdir(parents=True, exist_ok=True)
    path, lock = root / "db.json", FileLock(str(root / "db.lock"))
    with TinyDB(path) as db:
        db.table("finished").insert_multiple(finished_job(n) for n in range(history))
    job = Query()

    def move(job_id: str, source: str, target: str, changes: dict) -> None:
        with lock, TinyDB(path) as db:
            document = db.table(source).get(job.id == job_id)
            db.table(source).remove(job.id == job_id)
            db.table(target).insert({**document, **changes, "status": target})

    def lifecycle() -> None:
        job_id = str(uuid.uuid4())
        with lock, TinyDB(path) as db:
            db.table("pending").insert({"id": job_id, "name": "thumbnail", "status": "pending"})
        move(job_id, "pending", "running", {"messages": "working"})
        move(job_id, "running", "finished", {"result": "thumbs/new.png"})

    return lifecycle


def rate(lifecycle: Callable[[], None], seconds: float, most: int = 100_000) -> float:
    """Lifecycles per second, run for about ``seconds`` after a short warm-up."""
    for _ in range(3):
        lifecycle()
    count, started = 0, time.perf_counter()
    while count < most and time.perf_counter() - started < seconds:
        lifecycle()
        count += 1
    return count / (time.perf_counter() - started)


def drain_worker(root: str, job_ids: list[str]) -> None:
    store = JobStore(root)
    for job_id in job_ids:
        store.set_job_running(job_id, {"messages": "working"})
        store.update_job_result(job_id, "done")


def drain(base: Path, workers: int, jobs: int) -> float:
    """Seconds for ``workers`` processes to take ``jobs`` pending jobs through running to finished.

    Each worker takes every ``workers``-th job, so the figure measures contention for the store,
    not a claim protocol.
    """
    root = base / f"drain-{workers}"
    ids = [job["id"] for job in JobStore(root).create_jobs([{"name": "thumbnail"}] * jobs)]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=drain_worker, args=(str(root), ids[k::workers])) for k in range(workers)]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    assert len(JobStore(root).get_finished_jobs()) == jobs
    return elapsed


def lookup_latency(root: Path) -> tuple[float, float]:
    """Median microseconds of find_job and get_job by id with nothing changed since the last call."""
    store = JobStore(root)
    some = store.get_finished_jobs()[len(store.get_finished_jobs()) // 2]["id"]
    store.find_job(some)
    finds, gets = [], []
    for _ in range(300):
        started = time.perf_counter()
        store.find_job(some)
        finds.append(time.perf_counter() - started)
        started = time.perf_counter()
        store.get_job(some, "finished")
        gets.append(time.perf_counter() - started)
    return statistics.median(finds) * 1e6, statistics.median(gets) * 1e6


def memory_ratio(root: Path) -> tuple[float, float]:
    """Peak Python memory of opening the store and finding a job, over the size of its JSON files."""
    size = sum(path.stat().st_size for path in root.glob("*.json"))
    tracemalloc.start()
    store = JobStore(root)
    store.find_job("absent")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / size, size / 2**20


def bulk_seconds(base: Path, count: int) -> float:
    store = JobStore(base / "bulk")
    specs = [{"name": "thumbnail", "user": "bench", "request": f"images/{n}.png"} for n in range(count)]
    started = time.perf_counter()
    store.create_jobs(specs)
    return time.perf_counter() - started


def io_counters() -> dict[str, int]:
    """This process's I/O so far: ``wchar`` (bytes handed to write calls), ``write_bytes`` (bound for the disk)."""
    with open("/proc/self/io", encoding="ascii") as stream:
        return {key: int(value) for key, value in (line.split(": ") for line in stream)}


def seed_large(root: Path, history: int, size: int) -> None:
    """Write ``history`` finished jobs with results of ``size`` bytes into files of the engine's own bounds."""
    root.mkdir(parents=True, exist_ok=True)
    per_file = max(1, min(DEFAULT_SEGMENT_SIZE, DEFAULT_SEGMENT_BYTES // size))
    for start in range(0, history, per_file):
        jobs = [{**finished_job(n), "result": "r" * size} for n in range(start, min(history, start + per_file))]
        number = start // per_file + 1
        (root / segment_file_name(JobStatus.FINISHED, number)).write_bytes(encode({"finished": {job["id"]: job for job in jobs}}))


def large_case(root: Path, history: int, size: int, seconds: float) -> dict[str, float]:
    """One large-document case, in this (fresh) process: open, then lifecycles with results of ``size`` bytes."""
    seed_large(root, history, size)
    store_bytes = sum(path.stat().st_size for path in root.glob("*.json"))
    started = time.perf_counter()
    store = JobStore(root)
    store.find_job("absent")
    opened = time.perf_counter() - started
    open_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = "x" * size
    before, count = io_counters(), 0
    started = time.perf_counter()
    while count < 3 or (time.perf_counter() - started < seconds and count < 2000):
        job = store.create_job("render", "bench", "scene.blend")
        store.set_job_running(job["id"], {"messages": "working"})
        store.update_job_result(job["id"], result)
        count += 1
    elapsed = time.perf_counter() - started
    after = io_counters()
    return {
        "rate": count / elapsed,
        "wchar": (after["wchar"] - before["wchar"]) / count,
        "write_bytes": (after["write_bytes"] - before["write_bytes"]) / count,
        "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "open_seconds": opened,
        "open_rss": open_rss,
        "store_bytes": store_bytes,
    }


def large_documents(base: Path, cases: list[tuple[int, int]], seconds: float) -> None:
    print("\n| result size | history | lifecycles/s | written per lifecycle (write calls / to disk) | vs the document | bound (4x + 64 KB) | peak memory | vs store JSON | open + find |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, history in cases:
        root = base / f"large-{size}-{history}"
        command = [sys.executable, __file__, "--large-case", f"{root},{history},{size},{seconds}"]
        figures = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        mib = 2**20
        print(
            f"| {size // 1000:,} KB | {history:,} | {figures['rate']:,.0f}/s | {figures['wchar'] / mib:.2f} MiB / {figures['write_bytes'] / mib:.2f} MiB"
            f" | {figures['wchar'] / size:.1f}x | {(4 * size + 65536) / mib:.2f} MiB | {figures['peak'] / mib:,.0f} MiB"
            f" | {figures['peak'] / figures['store_bytes']:.2f}x of {figures['store_bytes'] / mib:,.0f} MiB"
            f" | {figures['open_seconds'] * 1000:,.0f} ms, {figures['open_rss'] / mib:,.0f} MiB |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", default="300,5000,50000")
    parser.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    parser.add_argument("--drain", type=int, default=2000, help="jobs drained by 1 and by 4 workers")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--large", action="store_true", help="also lifecycles with 100 KB and 1 MB results")
    parser.add_argument("--large-case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.large_case:
        root, history, size, seconds = args.large_case.split(",")
        print(json.dumps(large_case(Path(root), int(history), int(size), float(seconds))))
        return
    histories = [int(h) for h in args.histories.split(",")]
    if args.quick:
        histories, args.seconds, args.drain = [300, 2000], 0.5, 200

    base = Path(tempfile.mkdtemp(prefix="jobstore-bench-"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, durable writes (fsync) but where said\n")
    rows = []
    for history in histories:
        seed_jobstore(base / f"js-{history}", history)
        seed_jobstore(base / f"js-fast-{history}", history)
        ours = rate(jobstore_lifecycle(base / f"js-{history}"), args.seconds)
        fast = rate(jobstore_lifecycle(base / f"js-fast-{history}", durable=False), args.seconds)
        peer = rate(persist_queue_lifecycle(base / f"pq-{history}", history), args.seconds)
        naive = rate(naive_lifecycle(base / f"naive-{history}", history), args.seconds, most=200)
        rows.append((history, ours, peer, naive, fast))
        print(f"  measured history {history}", file=sys.stderr)

    first = rows[0]
    print(
        "| history (finished jobs) | jobstore | persist-queue | naive TinyDB + filelock | jobstore / persist-queue |"
        f" jobstore vs its own at {first[0]:,} | jobstore, durable=False (not synced) |"
    )
    print("|---|---|---|---|---|---|---|")
    for history, ours, peer, naive, fast in rows:
        print(
            f"| {history:,} | {ours:,.0f}/s | {peer:,.0f}/s | {naive:,.1f}/s | {ours / peer:.2f}x |"
            f" {ours / first[1]:.2f}x | {fast:,.0f}/s |"
        )

    largest = base / f"js-{histories[-1]}"
    find_us, get_us = lookup_latency(largest)
    ratio, megabytes = memory_ratio(largest)
    one, four = drain(base, 1, args.drain), drain(base, 4, args.drain)
    bulk = bulk_seconds(base, 10_000)
    print()
    print(f"- find_job / get_job by id, {histories[-1]:,} jobs in history, nothing changed: "
          f"median {find_us:.0f} us / {get_us:.0f} us")
    print(f"- peak memory to open that store and search it: {ratio:.2f}x its {megabytes:.1f} MiB of JSON")
    print(f"- create_jobs of 10,000 jobs: {bulk:.2f} s")
    print(f"- draining {args.drain:,} jobs: 1 worker {one:.2f} s, 4 workers {four:.2f} s ({one / four:.2f}x)")
    if args.large or args.quick:
        sizes = [(100_000, 300), (1_000_000, 300)] if args.quick else [(100_000, 300), (100_000, 2000), (1_000_000, 300), (1_000_000, 2000)]
        large_documents(base, sizes, args.seconds)
    print(f"\n(orjson {orjson.__version__}; stores under {base.name} in the temporary directory)")


if __name__ == "__main__":
    main()
