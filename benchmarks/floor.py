"""What the parts every durable jobstore write must keep cost on their own, beside persist-queue and jobstore, in one run.

A bare loop does, for each of a lifecycle's three writes (submit, mark running, store the
result): take a whole-file flock, check the changed fields with jsonschema against the published
schema, update a TinyDB table keyed by job id, append one record to a preallocated log, release
the lock and fdatasync the log. None of jobstore's other work is in it: no state files, no
recovery, no checks of the files against hand edits or links, no history, no copies for the
caller. Its rate is the most a design built on these parts could reach on this machine; the
ratios say how far jobstore is from it, and how far persist-queue is.

Usage: python benchmarks/floor.py [--history 300] [--lifecycles 2000] [--rounds 4]
Needs: pip install -e '.[bench]'
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from jsonschema import validators
from tinydb import TinyDB
from tinydb.storages import MemoryStorage
from tinydb.table import Document

from jobstore._times import timestamp, utc_now
from jobstore._schema import published_schema
from jobstore.engines._tinydb import JobTable

sys.path.insert(0, str(Path(__file__).parent))
from lifecycle import jobstore_lifecycle, persist_queue_lifecycle, seed_jobstore  # noqa: E402

LOG_ROOM = 256 << 20  # bytes preallocated for the log: appends then change no file size
TRIM = 100  # the oldest finished jobs removed at a time, keeping the history between its size and this more


class _Database(TinyDB):
    table_class = JobTable  # keyed by job id and updated with one copy of the table, as the store's are


def bare_lifecycle(folder: Path, history: int) -> Callable[[], None]:
    """A lifecycle made of the fixed parts only, with ``history`` finished jobs kept in its table."""
    schema = published_schema()
    validator_class = validators.validator_for(schema)
    # Each field checked on its own, against its part of the schema, references resolved from the whole.
    whole = validator_class(schema)
    fields = {name: whole.evolve(schema=spec) for name, spec in schema["properties"].items()}
    database = _Database(storage=MemoryStorage)
    tables = {state: database.table(state) for state in ("pending", "running", "finished")}
    lock = os.open(folder / "lock", os.O_RDWR | os.O_CREAT)
    log = os.open(folder / "log", os.O_RDWR | os.O_CREAT)
    os.posix_fallocate(log, 0, LOG_ROOM)
    os.fsync(log)
    offset = 0

    def write(state: str, job: dict[str, Any], changed: Iterable[str], leaving: str | None) -> None:
        nonlocal offset
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for name in changed:
                if not fields[name].is_valid(job[name]):
                    raise ValueError(f"{name} is not valid")
            if leaving is not None:
                tables[leaving].remove(doc_ids=[job["id"]])
            tables[state].upsert(Document(job, doc_id=job["id"]))
            record = orjson.dumps({"state": state, "put": job}) + b"\n"
            if offset + len(record) > LOG_ROOM:
                offset = 0  # a ring: only the cost of the append is measured
            os.pwrite(log, record, offset)
            offset += len(record)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        os.fdatasync(log)

    def lifecycle() -> None:
        stamp = timestamp(utc_now())
        job = {"id": str(uuid.uuid4()), "name": "thumbnail", "user": "bench", "request": "images/new.png",
               "result": "", "status": "pending", "messages": "", "createdAt": stamp, "updatedAt": stamp}
        write("pending", job, list(job), None)
        job = dict(job, status="running", messages="working", updatedAt=timestamp(utc_now()))
        write("running", job, ("status", "messages", "updatedAt"), "pending")
        job = dict(job, status="finished", result="thumbs/new.png", updatedAt=timestamp(utc_now()))
        write("finished", job, ("status", "result", "updatedAt"), "running")
        finished = tables["finished"]
        if len(finished) >= history + TRIM:
            finished.remove(doc_ids=[document.doc_id for document in finished.all()[:TRIM]])

    return lifecycle


def measure(lifecycle: Callable[[], None], count: int) -> tuple[float, float]:
    """Wall and CPU microseconds per lifecycle over ``count`` lifecycles, after a warm-up."""
    for _ in range(count // 10):
        lifecycle()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        lifecycle()
    return (time.perf_counter() - wall) / count * 1e6, (time.process_time() - cpu) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=300, help="finished jobs already in each store")
    parser.add_argument("--lifecycles", type=int, default=2000, help="lifecycles per system per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds interleaving the systems; the table gives medians")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="jobstore-floor-"))
    (base / "bare").mkdir()
    seed_jobstore(base / "jobstore", args.history)
    systems = {
        "bare fixed parts": bare_lifecycle(base / "bare", args.history),
        "persist-queue": persist_queue_lifecycle(base / "persist-queue", args.history),
        "jobstore": jobstore_lifecycle(base / "jobstore"),
    }
    walls: dict[str, list[float]] = {name: [] for name in systems}
    cpus: dict[str, list[float]] = {name: [] for name in systems}
    # Rounds interleave the systems, so a slow spell of the machine spreads over all of them.
    for number in range(1, args.rounds + 1):
        for name, lifecycle in systems.items():
            wall, cpu = measure(lifecycle, args.lifecycles)
            walls[name].append(wall)
            cpus[name].append(cpu)
            print(f"  round {number}: {name}: {1e6 / wall:,.0f}/s", file=sys.stderr)

    print(f"$ python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, durable, {args.history:,} finished jobs in history,"
          f" median of {args.rounds} rounds\n")
    print("| system | lifecycles/s | CPU per lifecycle | vs persist-queue | vs bare fixed parts |")
    print("|---|---|---|---|---|")
    rates = {name: 1e6 / statistics.median(walls[name]) for name in systems}
    for name in systems:
        print(f"| {name} | {rates[name]:,.0f}/s | {statistics.median(cpus[name]):,.0f} us |"
              f" {rates[name] / rates['persist-queue']:.2f}x | {rates[name] / rates['bare fixed parts']:.2f}x |")
    print(f"\n(stores under {base.name} in the temporary directory)")


if __name__ == "__main__":
    main()
