"""Fixtures shared by the tests: a fresh store, the api.job module bound to it, and worker processes."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from jobstore import JobStore, JobStoreError
from jobstore.api import job

WORKER = Path(__file__).with_name("worker.py")
#: The installed console script, beside the interpreter running the tests.
SCRIPT = Path(sys.executable).with_name("jobstore")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The directory of the store under test."""
    return tmp_path / "store"


#: Fixtures that tie a test to the store's files: a test asking for one runs on the file engine alone.
FILE_BOUND = frozenset({"root", "tmp_path", "api", "jobstore", "service", "client", "page", "browser"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test of a store on both engines, but for those that look at its files."""
    if "store" not in metafunc.fixturenames:
        return
    asked = set(inspect.signature(metafunc.function).parameters)
    engines = ["files"] if asked & FILE_BOUND else ["files", "postgres"]
    metafunc.parametrize("engine", engines)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server of the test run's own, started once: the pgserver package's binaries.

    Never skipped: a run that cannot start one fails, saying why.
    """
    try:
        import pgserver
    except ImportError:
        pytest.fail("the PostgreSQL tests need the pgserver package: pip install -e '.[test]'")
    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def store(root: Path, engine: str, request: pytest.FixtureRequest) -> JobStore:
    """A new, empty store: in a directory, or (``engine`` postgres) in a schema of its own in the test run's database."""
    if engine == "files":
        return JobStore(root)
    return JobStore(f"{request.getfixturevalue('postgres_url')}#t{uuid.uuid4().hex}")


@pytest.fixture
def jobstore(root: Path, tmp_path: Path):
    """Run ``jobstore --store ROOT ARGS``; return the finished process (text stdout and stderr)."""
    assert SCRIPT.exists(), "the jobstore console script is missing: pip install -e '.[test]'"

    def run(*args: str, store: Path | None = root, timeout: float = 60, **options) -> subprocess.CompletedProcess[str]:
        command = [str(SCRIPT), *(["--store", str(store)] if store else []), *args]
        environment = {**os.environ, "COLUMNS": "200", **options.pop("env", {})}
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, cwd=tmp_path, **options)

    return run


def one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """The command failed with ``code`` and said why in one line naming ``words``, no traceback."""
    assert done.returncode == code, done
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("jobstore: "), done.stderr
    assert all(word in done.stderr for word in words), done.stderr
    assert done.stdout == ""


@pytest.fixture
def api(root: Path) -> Iterator[ModuleType]:
    """The api.job module, using a new, empty store."""
    job.useStore(root)
    yield job
    job.useStore(None)


def start_worker(root: Path, *args: str, durable: bool = True) -> subprocess.Popen[str]:
    """Start a worker process (``tests/worker.py``) on the store; its stdout carries its acks."""
    environment = {**os.environ, "JOBSTORE_DURABLE": "1" if durable else "0"}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def run_workers(root: Path, count: int, *args: str) -> list[tuple[str, str]]:
    """Run ``count`` worker processes at once to their end; return all their acks as ``(job id, state)``."""
    workers = [start_worker(root, *args) for _ in range(count)]
    pairs = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        pairs += acks(out)
    return pairs


def acks(output: str) -> list[tuple[str, str]]:
    """Parse the ``ack <id> <state>`` lines a worker printed (a last, partial line is ignored)."""
    pairs = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ack":
            pairs.append((parts[1], parts[2]))
    return pairs


def flushed(root: Path) -> None:
    """Have the store's files brought up to date with its log now, as a person would before reading them.

    A store that cannot be opened or written (damaged on purpose, read-only) is left as it is.
    """
    if (root / ".jobstore").is_dir():
        with contextlib.suppress(JobStoreError, OSError):
            JobStore(root).flush()


def log_bytes(root: Path) -> bytes:
    """The store's log as far as it goes: its room past the last record reads as zero bytes."""
    path = root / ".jobstore" / "wal"
    data = path.read_bytes() if path.exists() else b""
    return data.split(b"\0", 1)[0]


def raw_tables(root: Path, *, flush: bool = True) -> dict[str, dict[str, dict]]:
    """Read every state file with plain ``json`` (as a person would, after a flush): each state's jobs from all its segments.

    :param flush: bring the files up to date first; False reads them as a crash left them
    """
    if flush:
        flushed(root)
    tables: dict[str, dict[str, dict]] = {}
    for path in sorted(root.glob("*.json")):
        state = path.stem.split("-")[0]
        tables.setdefault(state, {})
        for job_id, document in json.loads(path.read_text(encoding="utf-8"))[state].items():
            assert job_id not in tables.setdefault(state, {}), f"{job_id} is twice in {state}"
            tables[state][job_id] = document
    return tables


STAMPED = ("createdAt", "updatedAt", "startedAt", "finishedAt", "history")


def without_times(document: dict) -> dict:
    """The document less what the store stamps on each write (times, history), for comparing documents written at different times."""
    return {name: value for name, value in document.items() if name not in STAMPED}


def snapshot(root: Path) -> dict[str, bytes]:
    """The bytes of every job file in the store's directory (after a flush), to prove a failed call changed nothing."""
    flushed(root)
    return {path.name: path.read_bytes() for path in sorted(root.glob("*.json"))}


class Service:
    """A job service (``jobstore serve``) running in a process of its own, on a free port of 127.0.0.1.

    :param root: the store it serves
    :param options: more options of ``jobstore serve``
    :param env: more environment variables
    """

    def __init__(self, root: Path, *options: str, env: dict[str, str] | None = None) -> None:
        command = [str(SCRIPT), "--store", str(root), "serve", "--port", "0", *options]
        self.root = root
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("serving "):
            self.process.kill()
            raise AssertionError(f"the service did not start: {line}{self.process.stderr.read() if self.process.stderr else ''}")
        self.url = line.split(" at ", 1)[1].split()[0]

    def stop(self) -> str:
        """Stop the service (as Ctrl-C does); return what it wrote on stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stderr.read() if self.process.stderr else ""


@pytest.fixture
def service(root: Path) -> Iterator[Service]:
    """The job service on a new store, with no token (it listens on 127.0.0.1 only)."""
    running = Service(root)
    yield running
    errors = running.stop()
    assert "Traceback" not in errors, errors


@pytest.fixture
def client(service: Service) -> Iterator[Any]:
    """A client of the service."""
    from jobstore.client import JobClient

    with JobClient(service.url) as connected:
        yield connected
