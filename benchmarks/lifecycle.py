"""Lifecycle throughput of jobstore beside persist-queue and a naive TinyDB + filelock store, in one run.

A lifecycle is: submit a job, mark it running, store its result (three durable writes). Each
system is measured with a history of finished jobs already in it, and the table gives ratios.

With --large, also lifecycles whose result is 100 KB or 1 MB, with 300 and 2,000 such jobs
already finished: the rate beside one fsynced write of the document, the bytes written per
lifecycle beside the document's size (/proc/self/io), the peak memory beside the store's JSON,
and a cold open of the store for one get_job; seeding, lifecycles and the open each run in a
fresh process, so each peak is its own. --quick runs the standard table and two large cases.

Usage: python benchmarks/lifecycle.py [--histories 300,5000,50000] [--seconds 4] [--quick]
       [--large] [--only-large] [--large-cases 100000x300,100000x2000,1000000x300,1000000x2000]
Needs: pip install -e '.[bench]'
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import orjson
from filelock import FileLock
from tinydb import Query, TinyDB

from jobstore import JobStore
from jobstore._files import encode
from jobstore._status import JobStatus
from jobstore.engines._tinydb import DEFAULT_SEGMENT_SIZE, segment_file_name

T = TypeVar("T")

#: Lifecycles per second aimed at, by result size in bytes.
LARGE_RATE_TARGETS = {100_000: 100, 1_000_000: 20}


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


def proc_fields(name: str) -> dict[str, str]:
    """The ``key: value`` lines of a /proc/self file."""
    with open(f"/proc/self/{name}", encoding="ascii") as stream:
        return dict(line.split(":", 1) for line in stream if ":" in line)


def io_counters() -> dict[str, int]:
    """This process's I/O so far: ``wchar`` (bytes handed to write calls), ``write_bytes`` (sent to the block layer)."""
    return {key: int(value) for key, value in proc_fields("io").items()}


def peak_rss() -> int:
    """Bytes of this process's peak resident memory.

    VmHWM, not ru_maxrss: a spawned child starts by fork and exec, and the kernel carries the
    parent's ru_maxrss across the exec, so a child of a large parent would report the parent's peak.
    """
    return int(proc_fields("status")["VmHWM"].split()[0]) * 1024


def in_fresh_process(function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in a new interpreter, so its peak memory is its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def store_json_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.glob("*.json"))


def seed_large(root: str, history: int, size: int) -> str:
    """Put ``history`` finished jobs with results of ``size`` bytes in a store; returns one id from the middle.

    Through the public API (unsynced), so the files are the ones the engine itself writes
    whatever its segment bounds; it takes about 40 s for 2,000 jobs of 1 MB.
    """
    store = JobStore(root, durable=False)
    ids = [str(uuid.uuid4()) for _ in range(history)]
    result = "x" * size
    for number, job_id in enumerate(ids):
        store.set_job_finished(job_id, {"name": "render", "user": "bench", "request": f"scenes/{number:06d}", "result": result})
    return ids[history // 2]


def large_lifecycles(root: str, size: int, history: int, seconds: float) -> dict[str, float]:
    """Lifecycles storing results of ``size`` bytes, for about ``seconds``: rate, bytes written, peak memory.

    At most a quarter of ``history`` lifecycles (and at least 20), so that the history the case
    is named for grows by no more than that while it runs.
    """
    most = max(20, history // 4)
    store = JobStore(root)
    result = "x" * size
    documents: list[dict] = []

    def lifecycle() -> None:
        job = store.create_job("render", "bench", "scenes/new")
        store.set_job_running(job["id"], {"messages": "working"})
        documents.append(store.update_job_result(job["id"], result))

    lifecycle()  # the first one also parses the store's files: that is opening, not a lifecycle
    before, count, started = io_counters(), 0, time.perf_counter()
    while count < 3 or (time.perf_counter() - started < seconds and count < most):
        lifecycle()
        count += 1
    elapsed = time.perf_counter() - started
    after = io_counters()
    figures = {key: (after[key] - before[key]) / count for key in ("wchar", "write_bytes", "cancelled_write_bytes")}
    return {
        **figures,
        "rate": count / elapsed,
        "peer_rate": fsynced_writes(Path(root).parent / f"{Path(root).name}-peer", len(orjson.dumps(documents[-1])), seconds),
        "document": len(orjson.dumps(documents[-1])),
        "peak": peak_rss(),
        "store_bytes": store_json_bytes(Path(root)),
    }


def fsynced_writes(directory: Path, size: int, seconds: float) -> float:
    """The peer: writes per second of ``size`` bytes to a new file, fsynced and renamed into place.

    This is the least any store that keeps the document in a file must do once per lifecycle.
    """
    directory.mkdir(exist_ok=True)
    content, count, started = b"x" * size, 0, time.perf_counter()
    while count < 3 or (time.perf_counter() - started < min(seconds, 1.0) and count < 2000):
        spare = directory / "document.tmp"
        with open(spare, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(spare, directory / "document.json")
        count += 1
    return count / (time.perf_counter() - started)


def open_and_get(root: str, job_id: str) -> dict[str, float]:
    """Seconds and peak memory for this fresh process to open the store and get one finished job."""
    baseline = peak_rss()
    started = time.perf_counter()
    found = JobStore(root).get_job(job_id, "finished")
    elapsed = time.perf_counter() - started
    assert found is not None, "the seeded job is missing"
    return {"seconds": elapsed, "peak": peak_rss(), "baseline": baseline}


def large_case(root: Path, size: int, history: int, seconds: float) -> dict[str, float]:
    """One large-document case: seed, lifecycles, then a cold open, each in a process of its own."""
    some_id = in_fresh_process(seed_large, str(root), history, size)
    figures = in_fresh_process(large_lifecycles, str(root), size, history, seconds)
    opened = in_fresh_process(open_and_get, str(root), some_id)
    shutil.rmtree(root)  # up to 2 GB of results: not left behind in the temporary directory
    return {**figures, **{f"open_{key}": value for key, value in opened.items()}}


def large_documents(base: Path, cases: list[tuple[int, int]], seconds: float) -> None:
    """Measure and print the large-document cases: speed and bytes written, then memory."""
    rows = []
    for size, history in cases:
        rows.append((size, history, large_case(base / f"large-{size}-{history}", size, history, seconds)))
        print(f"  measured {size:,} B results, history {history:,}", file=sys.stderr)
    first_rate = {size: figures["rate"] for size, _, figures in reversed(rows)}  # each size's first history
    mib, kib = 2**20, 2**10

    print("\nLifecycles storing a large result (durable), with that many such jobs already finished:\n")
    print(
        "| result | history | lifecycles/s | target | vs one fsynced file write of the document |"
        " vs the same size's first history | written per lifecycle: write_bytes / wchar | x document |"
        " bound: 4x document + 64 KB | met |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, history, f in rows:
        floor = LARGE_RATE_TARGETS.get(size)
        bound = 4 * f["document"] + 64 * kib
        written = max(f["write_bytes"], f["wchar"])  # judged on the larger: neither counter alone sees everything
        met = "yes" if written <= bound and (floor is None or f["rate"] >= floor) else "no"
        print(
            f"| {size / 1000:,.0f} KB | {history:,} | {f['rate']:,.1f}/s | {'' if floor is None else f'>= {floor}/s'} |"
            f" {f['rate'] / f['peer_rate']:.2f}x | {f['rate'] / first_rate[size]:.2f}x |"
            f" {f['write_bytes'] / mib:,.2f} MiB / {f['wchar'] / mib:,.2f} MiB |"
            f" {f['write_bytes'] / f['document']:.2f}x / {f['wchar'] / f['document']:.2f}x | {bound / mib:,.2f} MiB | {met} |"
        )

    print("\nPeak memory (VmHWM) beside the store's JSON, and a fresh process opening the store for one get_job:\n")
    print(
        "| result | history | store JSON | peak, lifecycles | x store JSON | open + get_job | peak, open + get_job |"
        " bound: 4x JSON + 64 MiB | met |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size, history, f in rows:
        bound = 4 * f["store_bytes"] + 64 * mib
        met = "yes" if max(f["peak"], f["open_peak"]) <= bound else "no"
        print(
            f"| {size / 1000:,.0f} KB | {history:,} | {f['store_bytes'] / mib:,.1f} MiB | {f['peak'] / mib:,.0f} MiB |"
            f" {f['peak'] / f['store_bytes']:.2f}x | {f['open_seconds'] * 1000:,.0f} ms | {f['open_peak'] / mib:,.0f} MiB |"
            f" {bound / mib:,.0f} MiB | {met} |"
        )
    baseline = statistics.median(f["open_baseline"] for _, _, f in rows)
    cancelled = max(f["cancelled_write_bytes"] for _, _, f in rows)
    print(f"\n- a fresh interpreter with this script's imports already peaks at {baseline / mib:.0f} MiB (counted above)")
    print("- each case runs at most history/4 lifecycles (at least 20); store JSON is measured after them")
    print(f"- write_bytes counts what reached the block layer, wchar every byte handed to write();"
          f" cancelled_write_bytes was at most {cancelled / kib:,.0f} KiB per lifecycle")


def large_case_spec(text: str) -> tuple[int, int]:
    """``"100000x300"`` as (result bytes, finished jobs)."""
    size, _, history = text.partition("x")
    return int(size), int(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", default="300,5000,50000")
    parser.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--large", action="store_true", help="also lifecycles with 100 KB and 1 MB results")
    parser.add_argument("--only-large", action="store_true", help="the large-result cases alone")
    parser.add_argument(
        "--large-cases",
        default="100000x300,100000x2000,1000000x300,1000000x2000",
        help="result bytes x finished jobs already in the store, for --large (2,000 x 1 MB seeds in about 40 s)",
    )
    args = parser.parse_args()
    histories = [int(h) for h in args.histories.split(",")]
    large = [large_case_spec(case) for case in args.large_cases.split(",")]
    if args.quick:
        histories, args.seconds = [300, 2000], 0.5
        large = [(100_000, 300), (1_000_000, 300)]

    base = Path(tempfile.mkdtemp(prefix="jobstore-bench-"))
    print(f"$ python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, durable writes (fsync) but where said\n")
    if args.only_large:
        large_documents(base, large, args.seconds)
        print(f"\n(orjson {orjson.__version__}; stores under {base.name} in the temporary directory)")
        return
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
    bulk = bulk_seconds(base, 10_000)
    print()
    print(f"- find_job / get_job by id, {histories[-1]:,} jobs in history, nothing changed: "
          f"median {find_us:.0f} us / {get_us:.0f} us")
    print(f"- peak memory to open that store and search it: {ratio:.2f}x its {megabytes:.1f} MiB of JSON")
    print(f"- create_jobs of 10,000 jobs: {bulk:.2f} s")
    print("- workers draining a store: benchmarks/workers.py")
    if args.large or args.quick:
        large_documents(base, large, args.seconds)
    print(f"\n(orjson {orjson.__version__}; stores under {base.name} in the temporary directory)")


if __name__ == "__main__":
    main()
