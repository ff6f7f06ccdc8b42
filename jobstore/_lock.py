"""The store lock: one holder at a time across threads and processes, handed over the moment it is free.

A waiter that polls learns that the lock is free only at its next look, so each hand-off between
busy workers costs a sleep; a waiter blocked in the kernel is woken as the holder lets go. The
kernel's flock has no timeout, so a waiter with a deadline blocks in a helper thread on a
descriptor of its own and gives up on it if the deadline passes first; should that descriptor
get the lock later, the helper lets it go at once. A lock's helper thread is kept for its
later waits, not started anew for each.
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from filelock import lock_descriptor, unlock_descriptor

from ._errors import StoreLockTimeout

_IDLE_SECONDS = 1.0  # how long a lock's helper thread waits for the next attempt before it ends


class _Attempt:
    """One blocking attempt at the lock, made in a helper thread for a caller that may stop waiting."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._mutex = threading.Lock()
        self._outcome = "waiting"  # then "held", "failed" or "abandoned"
        self.error: OSError | None = None
        self.over = threading.Event()

    def run(self) -> None:
        try:
            # The same primitive as filelock's lock_descriptor (a whole-file flock), blocking.
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as error:
            self.error = error
        with self._mutex:
            if self._outcome == "waiting":
                self._outcome = "held" if self.error is None else "failed"
            kept = self._outcome == "held"
        self.over.set()
        if not kept:
            os.close(self.fd)  # abandoned or failed: closing the descriptor drops any lock it got

    def keep(self) -> bool:
        """The caller's decision once its wait is over: True when the lock is held, else abandon the attempt."""
        with self._mutex:
            if self._outcome == "waiting":
                self._outcome = "abandoned"
            return self._outcome == "held"


class _Helper:
    """The thread that makes a lock's blocking attempts, kept a while for the next, and ended once idle.

    An attempt abandoned by a caller that stopped waiting may still block in the thread when the
    next wait begins: that wait gets a thread of its own, so that no wait queues behind another.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._idle: queue.SimpleQueue[_Attempt] | None = None  # the queue of a thread waiting for work
        self._pid = 0

    def start(self, attempt: _Attempt) -> None:
        with self._mutex:
            if self._pid != os.getpid():
                self._idle, self._pid = None, os.getpid()  # a forked child has none of its parent's threads
            attempts, self._idle = self._idle, None
        if attempts is None:
            attempts = queue.SimpleQueue()
            threading.Thread(target=self._run, args=(attempts,), name="jobstore-lock-wait", daemon=True).start()
        attempts.put(attempt)

    def _run(self, attempts: queue.SimpleQueue[_Attempt]) -> None:
        while True:
            try:
                attempt = attempts.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._mutex:
                    if self._idle is attempts:
                        self._idle = None
                        return
                continue  # taken by a wait just now: its attempt is on the way
            attempt.run()
            with self._mutex:
                if self._idle is not None:
                    return  # another thread is waiting for work already
                self._idle = attempts


class StoreLock:
    """The lock file of a store and this process's hold on it.

    :param path: the lock file, created when missing
    :param timeout: seconds to wait for the lock; a negative value waits for ever
    :param opener: opens (creating when missing) the lock file and returns a descriptor
    :param status: the status of the file now at the lock's path, None when there is none
    """

    def __init__(
        self,
        path: os.PathLike[str],
        timeout: float,
        opener: Callable[[], int],
        status: Callable[[], os.stat_result | None],
    ) -> None:
        self.path = path
        self.timeout = timeout
        self._open = opener
        self._status = status
        self._fd: int | None = None
        self._pid = 0
        # The file lock excludes other processes; this one, other threads sharing the store.
        self._threads = threading.Lock()
        self._helper = _Helper()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock while the block runs."""
        deadline = None if self.timeout < 0 else time.monotonic() + self.timeout
        if not self._threads.acquire(timeout=-1 if deadline is None else self.timeout):
            raise self._timed_out()
        try:
            fd = self._acquire(deadline)
            try:
                yield
            finally:
                unlock_descriptor(fd)
        finally:
            self._threads.release()

    def release(self) -> None:
        """Close this process's descriptor of the lock file (opened again by the next hold); never while held."""
        with self._threads:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def _acquire(self, deadline: float | None) -> int:
        while True:
            if self._fd is None or self._pid != os.getpid():
                # A forked child shares its parent's open file, and with it the parent's lock: open its own.
                self._fd = self._open()
                self._pid = os.getpid()
            if not lock_descriptor(self._fd, blocking=False):
                self._wait(deadline)
            # A lock file removed or replaced by hand would let another process lock the new file
            # while this one holds the old: hold the lock only on the file now at the path.
            now = self._status()
            if now is not None and os.path.samestat(os.fstat(self._fd), now):
                return self._fd
            unlock_descriptor(self._fd)
            os.close(self._fd)
            self._fd = None

    def _wait(self, deadline: float | None) -> None:
        """Block until this process holds the lock on a descriptor of its own, which becomes ``_fd``."""
        assert self._fd is not None
        if deadline is None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            return
        # Another descriptor of the same file: flock excludes it from ours, so the abandoned
        # attempt of a timed-out wait can never pass for this process's hold.
        attempt = _Attempt(self._open())
        self._helper.start(attempt)
        attempt.over.wait(max(0.0, deadline - time.monotonic()))
        if not attempt.keep():
            if attempt.error is not None:
                raise attempt.error
            raise self._timed_out()
        os.close(self._fd)
        self._fd = attempt.fd

    def _timed_out(self) -> StoreLockTimeout:
        return StoreLockTimeout(os.fspath(self.path), self.timeout)
