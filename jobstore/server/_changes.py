"""One watcher of the store for the whole service: waiters and event streams wake from it, never poll.

A thread sleeps on the store's change waiter (inotify on Linux) and hands each change to the event
loop. There, one look at the store answers every long-poll waiter at once (one lock, one read,
however many wait), and, while any event stream is open, the jobs are compared with the last look
so that each change goes out as one event per job.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable, Mapping
from contextlib import suppress
from typing import Any

from anyio import to_thread

from .._lifecycle import FINAL_STATES
from .._status import JobStatus
from .._store import JobStore
from ._listing import Listing

#: Seconds the watcher thread sleeps at most between looks at the change token (a look is one stat).
_LOOK_EVERY = 0.5
#: Events queued for one stream before it is closed as too slow to follow the store.
_MOST_QUEUED = 10_000


def event_of(job: Mapping[str, Any]) -> dict[str, Any]:
    """The short form of a job an event carries: id, status, progress."""
    return {"id": job.get("id"), "status": job.get("status"), "progress": job.get("progress")}


def _shown(jobs: list[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """What an event tells of each job, by id: a job whose pair changed gets an event."""
    return {str(job["id"]): (job.get("status"), job.get("progress")) for job in jobs}


class Changes:
    """Follows the store for the service's waiters and event streams.

    :param store: the store followed
    """

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._changed = asyncio.Event()
        #: set once the change being handled has been looked at, then replaced by a fresh one
        self._tick = asyncio.Event()
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any] | None]]] = {}
        self._streams: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._seen: dict[str, tuple[Any, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._baseline: asyncio.Future[None] | None = None
        #: counts the changes seen; a listing made before the last one is stale
        self._generation = 0
        self._listing: tuple[tuple[int, Hashable], Listing] | None = None
        self._loading: tuple[tuple[int, Hashable], asyncio.Future[Listing]] | None = None

    async def start(self) -> None:
        """Start following the store (at the service's start-up)."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._follow())
        self._thread = threading.Thread(target=self._watch, name="jobstore-changes", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop following, and end every open stream (at the service's shutdown)."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._end_streams()
        if self._thread is not None:
            await to_thread.run_sync(self._thread.join, 2 * _LOOK_EVERY)

    def _watch(self) -> None:
        """The watcher thread: sleep until the store may have changed, and tell the loop when it has."""
        assert self._loop is not None
        last: Hashable = self.store.change_token()
        with self.store.watch() as waiter:
            while not self._stop.is_set():
                started = time.monotonic()
                waiter.wait(_LOOK_EVERY)
                token = self.store.change_token()
                # A wait that ended early was woken by a change, even one the token cannot tell
                # from the last (two writes within one tick of the file times).
                if token != last or time.monotonic() - started < 0.9 * _LOOK_EVERY:
                    last = token
                    with suppress(RuntimeError):  # the loop closed while the service stopped
                        self._loop.call_soon_threadsafe(self._changed.set)

    async def _follow(self) -> None:
        """In the loop: at each change, answer the waiters and feed the streams."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            self.stale()
            try:
                if self._waiting:
                    await self._answer_waiters()
                if self._streams:
                    await self._publish()
            except Exception:  # noqa: BLE001  # a store that fails one look is looked at again a moment later
                self._changed.set()
                await asyncio.sleep(_LOOK_EVERY)
            finally:
                self._tick.set()
                self._tick = asyncio.Event()

    def stale(self) -> None:
        """Note that the store changed (the watcher saw it, or the service itself just wrote): the next listing reads it afresh."""
        self._generation += 1

    async def listing(self) -> Listing:
        """Every job, sorted for paging: read once per change of the store, however many ask meanwhile.

        A listing is kept until the store changes: the watcher's wake, a write by the service
        itself, or a change of the store's change token (checked at each call, for a watcher
        that has not woken yet) each make the next call read the store again.
        """
        key = (self._generation, self.store.change_token())
        if self._listing is not None and self._listing[0] == key:
            return self._listing[1]
        if self._loading is None or self._loading[0] != key:
            future = asyncio.ensure_future(to_thread.run_sync(lambda: Listing(self.store.get_jobs())))
            self._loading = (key, future)
        loading = self._loading
        try:
            listing = await asyncio.shield(loading[1])
        except Exception:
            if self._loading is loading:
                self._loading = None  # a look that failed (a lock held too long) is not kept: the next call looks again
            raise
        if self._loading is loading:
            self._listing, self._loading = (key, listing), None
        return listing

    async def next_change(self, timeout: float) -> None:
        """Return after the store's next change (once the waiters have been answered), or after ``timeout`` seconds."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._tick.wait(), timeout)

    async def wait_for_end(self, job_id: str, timeout: float) -> dict[str, Any] | None:
        """Return the job once it has ended (or None once no table holds it); raise TimeoutError when ``timeout`` passes first.

        The waiter is registered before the first look, so no change between the two is missed.
        """
        assert self._loop is not None
        future: asyncio.Future[dict[str, Any] | None] = self._loop.create_future()
        self._waiting.setdefault(job_id, []).append(future)
        try:
            found = await to_thread.run_sync(self.store.find_jobs, [job_id])
            job = found.get(job_id)
            if job is None or JobStatus(job["status"]) in FINAL_STATES:
                return job
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            futures = self._waiting.get(job_id, [])
            with suppress(ValueError):
                futures.remove(future)
            if not futures:
                self._waiting.pop(job_id, None)

    async def _answer_waiters(self) -> None:
        # Only the jobs looked at are answered: a waiter that came during the look is not in it,
        # and its absence from the answer says nothing of its job (its own first look covers it).
        looked = list(self._waiting)
        found = await to_thread.run_sync(self.store.find_jobs, looked)
        for job_id in looked:
            job = found.get(job_id)
            if job is None or JobStatus(job["status"]) in FINAL_STATES:
                for future in self._waiting.get(job_id, []):
                    if not future.done():
                        future.set_result(job)

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """Open an event stream: a queue of job events (None ends it)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_MOST_QUEUED + 1)
        if not self._streams:
            self._seen = None  # no stream followed the jobs meanwhile: the next look starts afresh
        self._streams.add(queue)
        if self._seen is None:
            # The first look, so that the next change is told apart from it; not a change itself.
            self._baseline = asyncio.ensure_future(self._look_first())
        return queue

    async def _look_first(self) -> None:
        with suppress(Exception):  # a store that fails this look is looked at again at the next change
            jobs = (await self.listing()).jobs
            if self._seen is None:
                self._seen = _shown(jobs)

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        """Close an event stream."""
        self._streams.discard(queue)

    def end_streams(self) -> None:
        """End every open event stream, from any thread (the server does as it begins to stop, so it need not wait for them)."""
        if self._loop is not None:
            with suppress(RuntimeError):  # the loop has closed: so have the streams
                self._loop.call_soon_threadsafe(self._end_streams)

    def _end_streams(self) -> None:
        for queue in list(self._streams):
            self._close(queue)

    def _close(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._streams.discard(queue)
        with suppress(asyncio.QueueFull):
            queue.put_nowait(None)

    async def _publish(self) -> None:
        jobs = (await self.listing()).jobs
        now = _shown(jobs)
        seen, self._seen = self._seen, now
        if seen is None:
            return  # the first look: what a stream sees from here on is what changes
        events = [event_of(job) for job in jobs if seen.get(str(job["id"])) != now[str(job["id"])]]
        events += [{"id": job_id, "status": "deleted", "progress": None} for job_id in seen if job_id not in now]
        for queue in list(self._streams):
            if queue.qsize() + len(events) > _MOST_QUEUED:
                self._close(queue)  # a stream this far behind is ended rather than holding memory
                continue
            for event in events:
                queue.put_nowait(event)
