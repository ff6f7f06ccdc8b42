"""What the job service (``jobstore serve``) sustains: reads under a worker load, and many long-poll waiters.

The real service runs as a subprocess (``jobstore --store TMP serve --port 0``) on 127.0.0.1, in a
temporary store removed at the end; each of the two measurements gets a fresh service and store.

1. Reads under load. Jobs are submitted over HTTP (``POST /jobs`` in batches) so that the workers
   cannot run out; then for ``--seconds`` 4 worker processes drain them through the client (each
   lifecycle: claimJob, setJobProgress, updateJobResult, three requests) while 50 concurrent
   clients read ``GET /jobs/{id}`` and ``GET /jobs/{id}/status`` of random jobs, alternating.
   The readers are threads, each with its own ``httpx.Client`` (``--clients asyncio`` runs them
   as asyncio tasks instead, each with its own ``httpx.AsyncClient``): on 2 cores the threads get
   slightly more requests out of the service, as httpx's asyncio path costs the reading process
   more CPU per request, leaving less to the service (one AsyncClient shared by the 50 costs more
   still). Every reader's connection is opened before the window. Latencies are as the reader
   measured them, from sending to the whole answer read, so they include the reader's own time;
   the CPU each side used over the window is printed below the table. Before the load, one
   client alone reads 20 jobs one after the other on one connection, for the latency unloaded.
2. Long-poll waiters. ``--waiters`` jobs are submitted and one ``GET /jobs/{id}/wait?timeout=60``
   is opened on each, all at once, from one event loop: each waiter with its own
   ``httpx.AsyncClient`` (with ``--shared-pool``, one AsyncClient whose pool holds a connection
   per waiter; httpx's pool then spends CPU per answer growing with the connections it holds,
   some seconds for 500, which the latencies would show instead of the service's). Once the
   service holds every connection (one file descriptor each), another process finishes the jobs one by one through the
   library (``JobStore(path).update_job_result``), ``--pause`` apart, noting ``time.time()`` as
   each finish returns; each waiter notes when its answer arrived. The wake latency is the one
   minus the other. The service's resident memory (VmRSS) is read before the waiters, with all
   of them waiting, and after they were answered.

Exits 1 when anything went wrong (a read or a worker request failed, a waiter was not answered
200 with its finished job, the service did not stop on SIGINT); missed speed targets only show
in the table.

Usage: python benchmarks/server.py [--seconds 10] [--readers 50] [--workers 4] [--jobs N]
       [--waiters 500] [--pause 0.005] [--shared-pool] [--clients threads|asyncio] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import re
import resource
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from jobstore import JobStore
from jobstore.client import JobClient

CONTEXT = multiprocessing.get_context("spawn")  # each worker starts clean, as a real one would
ROUTES = ("GET /jobs/{id}", "GET /jobs/{id}/status")
WAIT_TIMEOUT = 60  # seconds each long-poll asks the service to hold it
WAKE_TARGET = 100.0  # ms the p99 wake latency should stay under
BATCH = 500  # jobs per POST /jobs while submitting
TICKS = os.sysconf("SC_CLK_TCK")  # the unit of utime and stime in /proc/<pid>/stat
#: One TLS context for every client: each httpx client would build its own (some 30 ms of CPU), unused over http.
TLS = ssl.create_default_context()
ALONE = 20  # reads by one client alone, one after the other on one connection, before the load


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank); NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def rss_kib(pid: int) -> int:
    """The resident memory of a process, in KiB (VmRSS of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, in seconds (every thread of it)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
        # The command name in parentheses may hold spaces: count fields from after it.
        fields = stream.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def open_files(pid: int) -> int:
    """How many file descriptors a process holds: each accepted connection is one."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_open_files_limit() -> int:
    """Raise this process's open-files limit to the hard one (the service, started later, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Service:
    """``jobstore serve`` as a subprocess on a free port of 127.0.0.1; stopped with SIGINT on leaving.

    :param root: the store's directory (made by the service)
    :param log: where the service's stderr goes
    """

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.stopped_in: float | None = None  # seconds from SIGINT to exit; None when it had to be killed
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> Service:
        command = [str(Path(sys.executable).with_name("jobstore")), "--store", str(self.root), "serve", "--port", "0"]
        with open(self.log, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            self.url = self._ready(timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self, timeout: float) -> str:
        """The URL from the service's one line on stdout, ``serving PATH at http://127.0.0.1:PORT ...``."""
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.process.stdout], [], [], min(left, 0.5))
            if readable:
                line = self.process.stdout.readline()
                found = re.search(r" at (http://\S+)", line)
                if found:
                    return found.group(1)
                if not line:  # end of output: the service ended without listening
                    break
            elif self.process.poll() is not None:
                break
        logged = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-10:]
        raise RuntimeError(f"the service did not start (exit code {self.process.poll()}); its log ends:\n" + "\n".join(logged))

    def stop(self) -> None:
        """SIGINT, as Ctrl-C would, then wait; kill it when it does not end within 10 s."""
        if self.process is None:
            return
        if self.process.poll() is not None:  # it ended by itself (or on a Ctrl-C sent to the whole group)
            self.exit_code = self.process.returncode
            return
        began = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            self.exit_code = self.process.wait(timeout=10)
            self.stopped_in = time.monotonic() - began
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.exit_code = self.process.wait()
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()


def end_processes(processes: Sequence[multiprocessing.process.BaseProcess], grace: float = 10.0) -> None:
    """Join the processes; terminate (then kill) any still running after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    for process in processes:
        if process.pid is None:
            continue  # never started
        process.join(timeout=max(deadline - time.monotonic(), 0.1))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()


# 1. Reads under load


@dataclass
class Reads:
    seconds: float = 0.0  # from the start signal to the last answer
    latencies: dict[str, list[float]] = field(default_factory=lambda: {route: [] for route in ROUTES})  # ms
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "404", or the exception's name
    lifecycles: list[float] = field(default_factory=list)  # ms per worker lifecycle ended inside the window
    worker_errors: list[str] = field(default_factory=list)
    ran_dry: int = 0  # claims that found no job waiting
    submitted: int = 0
    submit_seconds: float = 0.0
    pending_left: int = 0
    clients: str = "threads"
    cpu: dict[str, float] = field(default_factory=dict)  # share of a core over the window: service, readers, workers
    alone: list[float] = field(default_factory=list)  # ms of GET /jobs/{id} from one client on one connection, before the load


def worker(url: str, name: str, ready: Event, start: Event, window: Synchronized[float], report: Queue[Any]) -> None:
    """Drain jobs until the window ends: claimJob, setJobProgress, updateJobResult, over HTTP."""
    lifecycles: list[float] = []
    errors: list[str] = []
    dry = 0
    cpu = 0.0  # CPU seconds of this process over the window
    try:
        with JobClient(url, timeout=30) as client:
            client.stats()  # the first connection belongs to start-up, not to the window
            ready.set()
            if not start.wait(120):
                return
            end, cpu = window.value, time.process_time()
            while (began := time.monotonic()) < end and len(errors) < 20:
                try:
                    job = client.claimJob(worker=name)
                    if job is None:
                        dry += 1
                        time.sleep(0.01)
                        continue
                    client.setJobProgress(job["id"], 1, 1)
                    client.updateJobResult(job["id"], "done")
                except Exception as error:  # noqa: BLE001  # counted and shown: the service failed a request
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                if time.monotonic() <= end:
                    lifecycles.append((time.monotonic() - began) * 1000)
            cpu = time.process_time() - cpu
    except KeyboardInterrupt:
        pass
    finally:
        report.put((name, lifecycles, errors, dry, cpu))


def read_path(job_id: str, turn: int) -> tuple[str, str]:
    route = ROUTES[turn % 2]
    return route, f"/jobs/{job_id}" + ("/status" if turn % 2 else "")


async def read_async(url: str, ids: list[str], readers: int, begin: Callable[[], float], reads: Reads) -> None:
    """The readers as asyncio tasks, each with its own AsyncClient, connected before ``begin`` starts the window."""
    clients = [httpx.AsyncClient(base_url=url, timeout=30, verify=TLS) for _ in range(readers)]
    try:
        await asyncio.gather(*(http.get("/") for http in clients))  # every connection open before the window
        end = begin()

        async def reader(number: int) -> None:
            http, choose, turn = clients[number], random.Random(number).choice, number
            while time.monotonic() < end:
                route, path = read_path(choose(ids), turn)
                turn += 1
                began = time.perf_counter()
                try:
                    answer = await http.get(path)
                except httpx.HTTPError as error:
                    reads.statuses[type(error).__name__] += 1
                    continue
                reads.latencies[route].append((time.perf_counter() - began) * 1000)
                reads.statuses[str(answer.status_code)] += 1

        await asyncio.gather(*(reader(number) for number in range(readers)))
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))


def read_threads(url: str, ids: list[str], readers: int, begin: Callable[[], float], reads: Reads) -> None:
    """The readers as threads, each with its own Client, connected before ``begin`` starts the window."""
    clients = [httpx.Client(base_url=url, timeout=30, verify=TLS) for _ in range(readers)]
    lock, gate, window = threading.Lock(), threading.Barrier(readers + 1, timeout=60), [0.0]

    def reader(number: int) -> None:
        http, choose, turn = clients[number], random.Random(number).choice, number
        mine: list[tuple[str, float, str]] = []
        try:
            http.get("/")  # the connection is open before the window
        finally:
            gate.wait()  # every reader connected
        gate.wait()  # the window has begun
        while time.monotonic() < window[0]:
            route, path = read_path(choose(ids), turn)
            turn += 1
            began = time.perf_counter()
            try:
                status = str(http.get(path).status_code)
            except httpx.HTTPError as error:
                mine.append(("", 0.0, type(error).__name__))
                continue
            mine.append((route, (time.perf_counter() - began) * 1000, status))
        with lock:
            for route, latency, status in mine:
                if route:
                    reads.latencies[route].append(latency)
                reads.statuses[status] += 1

    threads = [threading.Thread(target=reader, args=(number,), daemon=True) for number in range(readers)]
    try:
        for thread in threads:
            thread.start()
        gate.wait()
        window[0] = begin()
        gate.wait()
        for thread in threads:
            thread.join(timeout=max(window[0] - time.monotonic(), 0) + 60)
    finally:
        gate.abort()  # readers still at the gate (the window never began) return at once
        for http in clients:
            http.close()


def measure_reads(base: Path, log: Path, args: argparse.Namespace) -> tuple[Reads, Service]:
    reads = Reads(clients=args.clients)
    with Service(base / "reads", log) as service:
        with JobClient(service.url, timeout=120) as client:
            began = time.monotonic()
            ids: list[str] = []
            while len(ids) < args.jobs:
                size = min(BATCH, args.jobs - len(ids))
                ids += [job["id"] for job in client.createJobs([{"name": "bench", "request": f"item-{len(ids) + n}"} for n in range(size)])]
            reads.submit_seconds, reads.submitted = time.monotonic() - began, len(ids)
        print(f"  submitted {len(ids):,} jobs over HTTP in {reads.submit_seconds:.1f} s", file=sys.stderr)
        with httpx.Client(base_url=service.url, timeout=30) as http:
            for job_id in ids[:ALONE]:
                began = time.perf_counter()
                answer = http.get(f"/jobs/{job_id}")
                reads.alone.append((time.perf_counter() - began) * 1000)
                reads.statuses[str(answer.status_code)] += 1

        start, report, window = CONTEXT.Event(), CONTEXT.Queue(), CONTEXT.Value("d", 0.0)
        readies = [CONTEXT.Event() for _ in range(args.workers)]
        processes = [
            CONTEXT.Process(target=worker, args=(service.url, f"w{n}", ready, start, window, report), daemon=True)
            for n, ready in enumerate(readies)
        ]
        try:
            for process in processes:
                process.start()
            for ready in readies:
                if not ready.wait(60):
                    raise RuntimeError("a worker did not get ready within 60 s")
            used: list[float] = []

            def begin() -> float:
                """Start the window, for the workers and the readers alike; returns its end."""
                used[:] = [time.monotonic(), cpu_seconds(service.pid), time.process_time()]
                end: float = used[0] + args.seconds
                window.value = end
                start.set()
                return end

            if args.clients == "asyncio":
                asyncio.run(read_async(service.url, ids, args.readers, begin, reads))
            else:
                read_threads(service.url, ids, args.readers, begin, reads)
            reads.seconds = time.monotonic() - used[0]
            reads.cpu = {
                "service": (cpu_seconds(service.pid) - used[1]) / reads.seconds,
                "readers": (time.process_time() - used[2]) / reads.seconds,
            }
            # Read the reports before joining: a child blocks on exit until its queue is drained.
            for _ in processes:
                _, lifecycles, errors, dry, cpu = report.get(timeout=60)
                reads.cpu["workers"] = reads.cpu.get("workers", 0.0) + cpu / args.seconds
                reads.lifecycles += lifecycles
                reads.worker_errors += errors
                reads.ran_dry += dry
        finally:
            start.set()  # workers still waiting for the start return at once
            window.value = 0.0
            end_processes(processes)
        with JobClient(service.url) as client:
            reads.pending_left = int(client.stats().get("pending", -1))
    return reads, service


# 2. Long-poll waiters


@dataclass
class Waits:
    waiters: int = 0
    answers: dict[str, tuple[float, str, str]] = field(default_factory=dict)  # id -> (time.time(), status code, job status)
    finishes: dict[str, float] = field(default_factory=dict)  # id -> time.time() as update_job_result returned
    answered_early: int = 0  # waiters answered before the finishing began
    connections: int = 0  # file descriptors the service gained with every waiter open
    rss_before: int = 0
    rss_waiting: int = 0
    rss_after: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds while the answers came: service, waiters; and the spell's
    shared: bool = False  # the waiters shared one AsyncClient (else one each)

    @property
    def latencies(self) -> list[float]:
        return [(self.answers[job_id][0] - finished) * 1000 for job_id, finished in self.finishes.items() if job_id in self.answers]

    @property
    def good(self) -> int:
        return sum(1 for _, code, status in self.answers.values() if code == "200" and status == "finished")


def finisher(root: str, ids: list[str], pause: float, ready: Event, go: Event, report: Queue[Any]) -> None:
    """Finish the jobs one by one through the library, noting the wall-clock time as each write returns."""
    finished: dict[str, float] = {}
    try:
        store = JobStore(root)
        store.find_job(ids[0])  # the first read of the files belongs to start-up
        ready.set()
        if go.wait(120):
            for job_id in ids:
                store.update_job_result(job_id, "done")
                finished[job_id] = time.time()  # wall clock: the waiters are another process
                if pause:
                    time.sleep(pause)
    except KeyboardInterrupt:
        pass
    finally:
        report.put(finished)


async def open_waiters(service: Service, ids: list[str], go: Event, shared: bool, waits: Waits) -> None:
    """Open a long-poll on each job, all at once; once the service holds them all, let the finishing begin."""
    files_before = open_files(service.pid)
    timeout = httpx.Timeout(WAIT_TIMEOUT + 30, connect=30)
    if shared:
        limits = httpx.Limits(max_connections=len(ids) + 10, max_keepalive_connections=len(ids) + 10)
        clients = [httpx.AsyncClient(base_url=service.url, limits=limits, timeout=timeout, verify=TLS)]
    else:
        clients = [httpx.AsyncClient(base_url=service.url, timeout=timeout, verify=TLS) for _ in range(len(ids) + 1)]
    try:

        async def wait(http: httpx.AsyncClient, job_id: str) -> None:
            try:
                answer = await http.get(f"/jobs/{job_id}/wait", params={"timeout": WAIT_TIMEOUT})
                arrived = time.time()
                status = answer.json().get("status", "") if answer.headers.get("content-type", "").startswith("application/json") else ""
                waits.answers[job_id] = (arrived, str(answer.status_code), str(status))
            except httpx.HTTPError as error:
                waits.answers[job_id] = (time.time(), type(error).__name__, "")

        tasks = [asyncio.create_task(wait(clients[0 if shared else n], job_id)) for n, job_id in enumerate(ids)]
        deadline = time.monotonic() + 30
        while open_files(service.pid) < files_before + len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        waits.connections = open_files(service.pid) - files_before
        # A request sent after every waiter's was taken, and answered: their first looks at the store are done.
        await clients[-1].get("/stats")
        await asyncio.sleep(0.5)
        waits.rss_waiting = rss_kib(service.pid)
        waits.answered_early = sum(task.done() for task in tasks)
        began, used = time.monotonic(), (cpu_seconds(service.pid), time.process_time())
        go.set()
        await asyncio.wait(tasks, timeout=WAIT_TIMEOUT + 15)  # by then the service has answered 202 at the latest
        spell = time.monotonic() - began
        waits.cpu = {"service": cpu_seconds(service.pid) - used[0], "waiters": time.process_time() - used[1], "spell": spell}
        for task in tasks:
            task.cancel()
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))


def measure_waits(base: Path, log: Path, args: argparse.Namespace) -> tuple[Waits, Service]:
    waits = Waits(waiters=args.waiters, shared=args.shared_pool)
    root = base / "waits"
    with Service(root, log) as service:
        with JobClient(service.url, timeout=120) as client:
            ids = [job["id"] for job in client.createJobs([{"name": "wait", "request": str(n)} for n in range(args.waiters)])]
        ready, go, report = CONTEXT.Event(), CONTEXT.Event(), CONTEXT.Queue()
        process = CONTEXT.Process(target=finisher, args=(str(root), ids, args.pause, ready, go, report), daemon=True)
        try:
            process.start()
            if not ready.wait(60):
                raise RuntimeError("the finishing process did not get ready within 60 s")
            time.sleep(0.5)  # the service settles after the submit
            waits.rss_before = rss_kib(service.pid)
            asyncio.run(open_waiters(service, ids, go, args.shared_pool, waits))
            waits.finishes = report.get(timeout=60)
            time.sleep(0.5)  # every connection closed by the client, and taken down by the service
            waits.rss_after = rss_kib(service.pid)
        finally:
            go.set()
            end_processes([process])
    return waits, service


# The report


def ms(value: float) -> str:
    return f"{value:.1f} ms"


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def print_reads(reads: Reads, args: argparse.Namespace) -> None:
    print(f"| under load: {args.readers} {reads.clients} readers, {args.workers} workers, {reads.seconds:.1f} s | count | per second | p50 | p99 |")
    print("|---|---|---|---|---|")
    alone = reads.alone
    print(f"| GET /jobs/{{id}}, one client alone before the load | {len(alone)} | | {ms(percentile(alone, 0.5))} | {ms(max(alone, default=float('nan')))} (max) |")
    for route in ROUTES:
        values = reads.latencies[route]
        print(f"| {route} | {len(values):,} | {len(values) / reads.seconds:,.0f}/s | {ms(percentile(values, 0.5))} | {ms(percentile(values, 0.99))} |")
    every = [value for values in reads.latencies.values() for value in values]
    print(f"| both reads | {len(every):,} | {len(every) / reads.seconds:,.0f}/s | {ms(percentile(every, 0.5))} | {ms(percentile(every, 0.99))} |")
    lifecycles = reads.lifecycles
    print(
        f"| worker lifecycles (claim, progress, result) | {len(lifecycles):,} | {len(lifecycles) / args.seconds:,.1f}/s |"
        f" {ms(percentile(lifecycles, 0.5))} | {ms(percentile(lifecycles, 0.99))} |"
    )


def print_waits(waits: Waits) -> None:
    latencies = waits.latencies
    p99 = percentile(latencies, 0.99)
    how = "one AsyncClient for all" if waits.shared else "an AsyncClient each"
    print(f"| {waits.waiters} long-poll waiters, {how} | figure | target | met |")
    print("|---|---|---|---|")
    print(f"| wake latency p50 | {ms(percentile(latencies, 0.5))} | | |")
    print(f"| wake latency p95 | {ms(percentile(latencies, 0.95))} | | |")
    print(f"| wake latency p99 | {ms(p99)} | < {WAKE_TARGET:g} ms | {'yes' if p99 < WAKE_TARGET else 'no'} |")
    print(f"| wake latency max | {ms(max(latencies, default=float('nan')))} | | |")
    print(f"| answered 200 with the finished job | {waits.good} of {waits.waiters} | all | {'yes' if waits.good == waits.waiters else 'no'} |")
    print(f"| service RSS before the waiters | {mib(waits.rss_before)} | | |")
    extra = (waits.rss_waiting - waits.rss_before) / max(waits.waiters, 1)
    print(f"| service RSS with {waits.waiters} waiting | {mib(waits.rss_waiting)} ({extra:+.0f} KiB a waiter) | | |")
    print(f"| service RSS after they were answered | {mib(waits.rss_after)} | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the reads under load last")
    parser.add_argument("--readers", type=int, default=50, help="concurrent reading clients")
    parser.add_argument("--workers", type=int, default=4, help="worker processes draining jobs meanwhile")
    parser.add_argument("--jobs", type=int, default=None, help="jobs submitted for the workers (default: 300 per second of --seconds)")
    parser.add_argument("--waiters", type=int, default=500, help="long-poll waiters open at once")
    parser.add_argument("--pause", type=float, default=0.005, help="seconds between two finishes of waited-on jobs")
    parser.add_argument("--shared-pool", action="store_true", help="the waiters share one AsyncClient (a pool of a connection each)")
    parser.add_argument("--clients", choices=("threads", "asyncio"), default="threads", help="how the readers run")
    parser.add_argument("--quick", action="store_true", help="2 s of reads and 100 waiters, for CI")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.waiters = 2.0, 100
    if args.jobs is None:
        args.jobs = max(round(300 * args.seconds), 100)
    files = raise_open_files_limit()
    if files < args.waiters + 100:
        parser.error(f"{args.waiters} waiters need more open files than the limit of {files}")

    base = Path(tempfile.mkdtemp(prefix="jobstore-server-"))
    log = base / "service.log"
    try:
        reads, read_service = measure_reads(base, log, args)
        print(f"  reads: {sum(map(len, reads.latencies.values())):,} in {reads.seconds:.1f} s", file=sys.stderr)
        waits, wait_service = measure_waits(base, log, args)
        print(f"  waits: {len(waits.answers)} answers", file=sys.stderr)
        logged = log.read_text(encoding="utf-8", errors="replace").strip()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"$ python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, httpx {httpx.__version__}; the service on 127.0.0.1"
          f" (uvicorn, one process), durable writes\n")
    print_reads(reads, args)
    print()
    print_waits(waits)
    print()

    problems = []
    failed_reads = {status: number for status, number in reads.statuses.items() if status != "200"}
    if failed_reads:
        problems.append(f"reads not answered 200: {failed_reads}")
    if reads.worker_errors:
        problems.append(f"{len(reads.worker_errors)} worker requests failed, the first: {reads.worker_errors[0]}")
    if waits.good != waits.waiters:
        kinds = Counter(f"{code} {status}".strip() for _, code, status in waits.answers.values())
        problems.append(f"waiters answered: {dict(kinds)}, {waits.waiters - len(waits.answers)} never")
    if waits.answered_early:
        problems.append(f"{waits.answered_early} waiters answered before their job was finished")
    for name, service in (("reads", read_service), ("waits", wait_service)):
        if service.stopped_in is None or service.exit_code not in (0, -signal.SIGINT, 130):
            problems.append(f"the {name} service did not stop on SIGINT (exit code {service.exit_code})")
    dry = "" if not reads.ran_dry else f", claims that found no job: {reads.ran_dry} (RAN DRY)"
    print(f"- reads: {sum(reads.statuses.values()):,} requests, answers {dict(reads.statuses)}; {reads.submitted:,} jobs"
          f" submitted beforehand in {reads.submit_seconds:.1f} s, {reads.pending_left:,} still pending at the end{dry}")
    shares = ", ".join(f"{name} {share * 100:.0f}%" for name, share in reads.cpu.items())
    print(f"- CPU over the reads, in shares of one core (of {os.cpu_count()}): {shares}")
    spread = max(waits.finishes.values(), default=0.0) - min(waits.finishes.values(), default=0.0)
    print(f"- waits: the service held {waits.connections} more file descriptors with the waiters open (one a connection); {len(waits.finishes)} jobs finished"
          f" one by one, {args.pause * 1000:g} ms apart, over {spread:.1f} s by another process; latency from"
          f" update_job_result's return to the answer's arrival")
    if waits.cpu:
        print(f"- CPU while the answers came ({waits.cpu['spell']:.1f} s): service {waits.cpu['service']:.2f} s,"
              f" the waiting process {waits.cpu['waiters']:.2f} s")
    stops = ", ".join(f"{s.stopped_in:.2f} s" if s.stopped_in is not None else "killed" for s in (read_service, wait_service))
    print(f"- the services stopped on SIGINT in {stops}")
    if logged:
        print("- the services' log:\n    " + "\n    ".join(logged.splitlines()[-20:]))
    for problem in problems:
        print(f"- PROBLEM: {problem}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
