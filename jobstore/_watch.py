"""Sleeping until a store may have changed: woken by the kernel where it can tell, else by polling.

Waiting callers (``claim_job(wait=...)``, ``block_until_complete``) would otherwise poll the
store, each look costing CPU and each pause adding latency. On Linux, inotify reports every
append to the log and every file replaced in the store's directories the moment it happens, so a
waiter costs nothing while the store is quiet and wakes within microseconds of a write. Elsewhere
the engine's change token is polled, with jitter, so that many waiters do not look in step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Iterable
from contextlib import suppress
from pathlib import Path
from types import TracebackType

try:
    import inotify_simple  # type: ignore[import-untyped]  # untyped: its INotify is used through typed calls here
except ImportError:  # not Linux: the dependency is installed only there
    inotify_simple = None

#: How long one look sleeps when the kernel cannot wake us: short enough for a claim to start
#: soon after a submit, long enough that an idle waiter costs well under a percent of a core.
POLL_INTERVAL = 0.01


class ChangeWaiter:
    """Blocks until something in the watched directories changes, or a timeout passes.

    Changes made between two waits are not lost: the kernel queues them, and the next wait
    returns at once. Spurious wake-ups happen (any file replaced in a watched directory counts),
    so callers look at the store after each wait and decide.

    :param directories: the directories whose changes mean the store may have changed
    :param token: a cheap value that differs after a change, polled where the kernel cannot tell
    :param interval: seconds between polls of ``token``, on average
    :param ignored: names of files whose changes say nothing about the jobs
    """

    def __init__(
        self,
        directories: Iterable[Path],
        token: Callable[[], Hashable],
        interval: float = POLL_INTERVAL,
        ignored: Iterable[str] = (),
    ) -> None:
        self._token = token
        self._ignored = frozenset(ignored)
        self._interval = interval
        self._last = token()
        self._inotify: inotify_simple.INotify | None = None
        if inotify_simple is not None:
            try:
                inotify = inotify_simple.INotify()
            except OSError:
                return  # out of inotify instances: polling still works
            flags = inotify_simple.flags
            mask = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.DELETE | flags.ATTRIB
            try:
                for directory in directories:
                    inotify.add_watch(directory, mask)
            except OSError:
                inotify.close()
                return
            self._inotify = inotify

    def wait(self, timeout: float) -> None:
        """Return once the store may have changed, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        if self._inotify is not None:
            while True:
                # Read every queued event: one wait answers for all changes made before it returns.
                events = self._inotify.read(timeout=max(0, int((deadline - time.monotonic()) * 1000)))
                if not events or any(event.name not in self._ignored for event in events):
                    return
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, self._interval * random.uniform(0.5, 1.5)))
            current = self._token()
            if current != self._last:
                self._last = current
                return

    def close(self) -> None:
        if self._inotify is not None:
            with suppress(OSError):
                self._inotify.close()
            self._inotify = None

    def __enter__(self) -> ChangeWaiter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()
