"""What 100,000 pending jobs that are not yet due cost a claim: claim latency beside a store without them.

For each engine (the JSON files, and PostgreSQL on a private server the ``pgserver`` package
starts), three stores are filled, then ``--due`` jobs due at once are claimed one by one, each
claim timed:

- "none later": the due jobs alone;
- "later, older": ``--later`` jobs due in a day, submitted before the due ones, so that in
  entry order every one of them comes first;
- "later, higher priority": the same, at priority 5, so that in priority order too they come
  first (the due jobs have priority 0).

Each claim must return a due job (never one of the later ones), and the three cases are
timed in turn, ``--runs`` times, the median of each run kept: the target is the later cases within
2x of "none later".

Usage: python benchmarks/scheduling.py [--later 100000] [--due 300] [--runs 3] [--engines files,postgres] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jobstore import JobStore

CASES = ("none later", "later, older", "later, higher priority")
#: Jobs per create_jobs call while a store is filled.
CHUNK = 5000


@contextmanager
def locations(engines: list[str], scratch: Path) -> Iterator[dict[str, str]]:
    """Where each engine's stores go: a directory, or a database URL (its server stopped afterwards)."""
    found = {}
    server = None
    if "files" in engines:
        found["files"] = str(scratch / "files")
    if "postgres" in engines:
        import pgserver

        server = pgserver.get_server(scratch / "postgres", cleanup_mode="stop")
        found["postgres"] = server.get_uri()
    try:
        yield found
    finally:
        if server is not None:
            server.cleanup()


def fill(location: str, case: str, later: int, due: int) -> JobStore:
    """A new store holding the case's jobs: the later ones first, then the due ones."""
    if location.startswith("postgresql://"):
        store = JobStore(f"{location}#s{uuid.uuid4().hex[:12]}")
    else:
        store = JobStore(Path(location) / uuid.uuid4().hex)
    if case != "none later":
        spec = {"name": "later", "delay": 86400, **({"priority": 5} if case == "later, higher priority" else {})}
        for start in range(0, later, CHUNK):
            store.create_jobs([spec] * min(CHUNK, later - start))
    store.create_jobs([{"name": "due"}] * (due + 1))  # one more, for the claim that is not timed
    return store


def claims(store: JobStore, due: int) -> list[float]:
    """Claim the due jobs one by one, finishing each (not timed); milliseconds per claim."""
    times = []
    for _ in range(due):
        began = time.perf_counter()
        job = store.claim_job(worker="bench")
        times.append((time.perf_counter() - began) * 1000)
        if job is None or job["name"] != "due":
            sys.exit(f"claimed {job and job['name']!r} instead of a due job: the benchmark is void")
        store.update_job_result(job["id"], "done")  # as a worker would, so the running jobs stay few
    if store.claim_job(worker="bench") is not None:
        sys.exit("a later job was claimed before its time: the benchmark is void")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--later", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="files,postgres")
    parser.add_argument("--quick", action="store_true", help="a small run, to check that it works (5,000 later, 50 due, 1 run)")
    options = parser.parse_args()
    if options.quick:
        options.later, options.due, options.runs = 5000, 50, 1
    engines = options.engines.split(",")
    with tempfile.TemporaryDirectory() as scratch, locations(engines, Path(scratch)) as where:
        print(f"{options.due} claims of due jobs, beside {options.later:,} not yet due; median ms per claim, {options.runs} run(s)")
        worst = 0.0
        for engine, location in where.items():
            medians: dict[str, list[float]] = {case: [] for case in CASES}
            p99s: dict[str, list[float]] = {case: [] for case in CASES}
            for _ in range(options.runs):
                stores = {case: fill(location, case, options.later, options.due) for case in CASES}
                # The first claim of a store reads its files or fills the connection pool: not timed.
                for store in stores.values():
                    store.get_pending_jobs()
                    store.claim_job(worker="bench")
                for case, store in stores.items():
                    times = claims(store, options.due)
                    medians[case].append(statistics.median(times))
                    p99s[case].append(sorted(times)[int(len(times) * 0.99) - 1])
                    store.close()  # its files written now, before the directory goes
            base = statistics.median(medians["none later"])
            print(f"\n{engine}:")
            print(f"  {'case':<24} {'median':>9} {'p99':>9} {'ratio':>7}")
            for case in CASES:
                median = statistics.median(medians[case])
                ratio = median / base
                if case != "none later":
                    worst = max(worst, ratio)
                print(f"  {case:<24} {median:>7.2f}ms {statistics.median(p99s[case]):>7.2f}ms {ratio:>6.2f}x")
        print(f"\nworst ratio {worst:.2f}x: {'within' if worst <= 2 else 'NOT within'} the 2x target")


if __name__ == "__main__":
    main()
