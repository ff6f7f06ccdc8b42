"""The reliability soak: processes killed at random instants, processes contending, fuzzed calls.

Run from the repository root: ``python -m tests.stress --rounds 500``. The test suite runs the
same code for less long (tests/test_crash.py, test_contention.py, test_hostile_input.py,
test_model.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as ``python -m tests.stress``: the helpers sit beside this file
    sys.path.insert(0, str(HERE))

from jobstore import JobStore  # noqa: E402

from conftest import acks, log_bytes, raw_tables, start_worker  # noqa: E402
from contention import reconcile  # noqa: E402

#: How far each acknowledged state may have gone since: a finished job stays finished.
RANK = {"pending": 0, "running": 1, "finished": 2}
LEASE = "0.5"


def holders(root: Path, *, flush: bool = True) -> dict[str, list[str]]:
    """Which tables hold each job id, reading the raw files (as they are, with ``flush=False``)."""
    found: dict[str, list[str]] = {}
    for state, table in raw_tables(root, flush=flush).items():
        for job_id in table:
            found.setdefault(job_id, []).append(state)
    return found


def last_write_completed(root: Path) -> bool:
    """Whether the log's last line says the last write replaced all its files (true of no log: no write yet)."""
    if not (root / ".jobstore" / "wal").exists():  # killed before any of them wrote: the log is made, whole, with the first write
        return True
    lines = log_bytes(root).splitlines()
    return lines[-1].startswith((b"applied ", b"jobstore-wal "))


def crash_round(root: Path, rng: random.Random, acked: dict[str, str]) -> int:
    """Start writers and workers, SIGKILL them all at a random instant, and check what they left.

    Checks: every file parses as JSON as it was left; the next operation finishes any half-done
    move; then no job is in two tables, the store has no problem, no acknowledged job is lost and
    none went back from finished. ``acked`` gathers the furthest state acknowledged per job.
    :returns: how many processes were killed
    """
    processes = [
        start_worker(root, "lifecycle", "0"),
        start_worker(root, "create", "1000000"),
        start_worker(root, "serve", LEASE),
        start_worker(root, "serve", LEASE),
    ]
    # Kill at a random instant once the processes write: how long they take to start (imports,
    # on a loaded machine) must not decide whether a round kills anything but starting processes.
    started = time.monotonic()
    size = len(log_bytes(root))
    while len(log_bytes(root)) == size and time.monotonic() - started < 30:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.4))
    for process in processes:
        process.send_signal(signal.SIGKILL)
    for process in processes:
        out, _ = process.communicate(timeout=60)
        for job_id, state in acks(out):
            if RANK[state] >= RANK.get(acked.get(job_id, "pending"), 0):
                acked[job_id] = state

    for path in root.glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))  # every file parses, even before recovery
    if last_write_completed(root):
        assert all(len(states) == 1 for states in holders(root, flush=False).values()), "a job in two tables"

    store = JobStore(root)
    store.get_jobs()  # the first operation finishes any half-done move
    assert last_write_completed(root)
    assert store.check() == []
    found = holders(root)
    assert all(len(states) == 1 for states in found.values()), "a job in two tables"
    for job_id, state in acked.items():
        assert job_id in found, f"acknowledged job {job_id} was lost"
        if state == "finished":
            assert found[job_id] == ["finished"], (job_id, found[job_id])
    return len(processes)


def settle(root: Path) -> None:
    """After the last round: let the killed workers' leases end, then drain; every claim must resolve."""
    time.sleep(float(LEASE) + 0.1)
    worker = start_worker(root, "drain")
    _, err = worker.communicate(timeout=600)
    assert worker.returncode == 0, err
    store = JobStore(root)
    assert store.get_pending_jobs() == []
    assert [job["id"] for job in store.get_running_jobs() if "leaseExpiresAt" in job] == []
    assert store.check() == []


def crash_loop(root: Path, rounds: int, seed: int, per_store: int = 25, report: bool = False) -> dict[str, int]:
    """Run ``rounds`` crash rounds, ``per_store`` on each new store (each check reads the whole
    store, so rounds on one store would slow down as it grows), settling each; return the figures."""
    rng = random.Random(seed)
    killed = acknowledged = 0
    for first in range(0, rounds, per_store):
        store_root = root / f"store-{first // per_store + 1}"
        JobStore(store_root)
        acked: dict[str, str] = {}
        count = min(per_store, rounds - first)
        killed += sum(crash_round(store_root, rng, acked) for _ in range(count))
        settle(store_root)
        assert len(acked) > count, "the processes got too little done between kills"
        acknowledged += len(acked)
        if report:
            print(f"  {first + count} of {rounds} crash rounds survived", file=sys.stderr, flush=True)
    return {"rounds": rounds, "processes killed": killed, "jobs acknowledged": acknowledged}


def contend(root: Path, processes: int, seconds: float, seed: int) -> dict[str, int]:
    """Run ``processes`` mixers for ``seconds`` at once, then check the store against their logs."""
    JobStore(root)
    mixers = [start_worker(root, "mix", str(seed + number), str(seconds)) for number in range(processes)]
    logs = []
    for mixer in mixers:
        out, err = mixer.communicate(timeout=seconds + 300)
        assert mixer.returncode == 0, err
        logs.append([json.loads(line) for line in out.splitlines()])
    return {"processes": processes, "seconds": int(seconds), **reconcile(root, logs)}


def fuzz(examples: int) -> dict[str, int]:
    """Run the hostile-input and model tests with ``examples`` examples each; return what they did."""
    import pytest

    os.environ["JOBSTORE_FUZZ_EXAMPLES"] = str(examples)
    tests = [str(HERE / "test_hostile_input.py"), str(HERE / "test_model.py")]
    assert pytest.main(["-q", "-p", "no:cacheprovider", *tests]) == 0, "the fuzz tests failed"
    calls, model = sys.modules["test_hostile_input"].CALLS, sys.modules["test_model"].StoreAgainstModel
    return {
        "hostile calls": sum(calls.values()),
        "functions": len(calls),
        "model runs": model.runs,
        "operations compared with the model": model.compared - model.runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="crash rounds (default: %(default)s)")
    parser.add_argument("--processes", type=int, default=8, help="contending processes (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long they contend (default: %(default)s)")
    parser.add_argument("--examples", type=int, default=300, help="hypothesis examples per fuzzed function and for the model (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=20261122)
    options = parser.parse_args(argv)
    report = []
    with tempfile.TemporaryDirectory(prefix="jobstore-stress-") as directory:
        phases = [
            ("crash loop", lambda: crash_loop(Path(directory) / "crash", options.rounds, options.seed, report=True)),
            ("contention", lambda: contend(Path(directory) / "contention", options.processes, options.seconds, options.seed)),
            ("fuzzing", lambda: fuzz(options.examples)),
        ]
        for name, phase in phases:
            started = time.monotonic()
            figures = phase()
            report.append(f"{name}: " + ", ".join(f"{value:,} {what}" for what, value in figures.items()) + f" ({time.monotonic() - started:.0f} s)")
    print("\n".join(report))
    print("no job lost, none doubled, every file and document valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
