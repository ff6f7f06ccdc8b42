"""The storage engine interface: what the store needs from wherever jobs are kept.

An engine keeps one table per state and serializes sessions across processes; within a session a
caller reads, stages changes in a :class:`Batch`, and applies them all or nothing. The JSON-file
engine lives in ``_tinydb``; a database engine implements the same two protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from .._status import JobStatus
from .._watch import POLL_INTERVAL

Document = dict[str, Any]


@dataclass
class Batch:
    """The changes one operation makes, applied together or not at all."""

    #: job id -> (state, new document); the job leaves every other table.
    puts: dict[str, tuple[JobStatus, Document]] = field(default_factory=dict)
    #: ids of jobs to remove from whichever table holds them.
    deletes: set[str] = field(default_factory=set)
    #: ids just made up (uuid4), so that no table can hold them yet: no need to look.
    new: set[str] = field(default_factory=set)
    #: ids of jobs the batch moves out of their table and back: they enter it anew, last.
    reentered: set[str] = field(default_factory=set)
    #: ids of jobs read that the batch relies on without writing them (a dependency): the batch
    #: is written only if they are still as read, and none changes until it is (engines whose
    #: sessions run side by side hold them; others need nothing)
    relied_on: set[str] = field(default_factory=set)

    def put(self, state: JobStatus, document: Document, *, new: bool = False) -> None:
        """Stage ``document`` as the whole of its job, in ``state``'s table.

        :param new: the id was just generated, so no table holds the job
        """
        job_id = document["id"]
        self.deletes.discard(job_id)
        staged = self.puts.get(job_id)
        if staged is not None and staged[0] is not state:
            self.reentered.add(job_id)  # moved twice here (recovered, then claimed): its place is a new one
        self.puts[job_id] = (state, document)
        if new:
            self.new.add(job_id)

    def delete(self, job_id: str) -> None:
        """Stage the removal of the job from every table."""
        self.puts.pop(job_id, None)
        self.deletes.add(job_id)

    def rely_on(self, job_id: str) -> None:
        """Make the batch depend on the job staying as read, though it does not write it."""
        self.relied_on.add(job_id)

    def documents(self) -> Iterator[Document]:
        """Yield every document the batch writes."""
        for _, document in self.puts.values():
            yield document

    def __bool__(self) -> bool:
        return bool(self.puts or self.deletes)


class Conflict(Exception):
    """A job changed under a session since it read it (only engines that let sessions run side by side raise this).

    The store runs the operation again on the store as it is now; no caller ever sees it.
    """


@dataclass(frozen=True)
class StoreProblem:
    """One thing wrong in a store, as :meth:`JobStore.check` reports it."""

    #: the file at fault, relative to the store's directory
    path: str
    #: what is wrong
    detail: str
    #: the job concerned, when the problem is one job's
    job_id: str | None = None

    def __str__(self) -> str:
        where = self.path if self.job_id is None else f"{self.path}: job {self.job_id!r}"
        return f"{where}: {self.detail}"


class Session(Protocol):
    """Exclusive access to the store while it lasts; reads always see the latest committed state.

    Documents returned are the engine's own: callers copy them before handing them out or changing them.
    """

    def get(self, state: JobStatus, job_id: str) -> Mapping[str, Any] | None:
        """Return the job from ``state``'s table, or None."""

    def find(self, job_id: str) -> tuple[JobStatus, Mapping[str, Any]] | None:
        """Return the state and document of the job, whichever table holds it, or None."""

    def jobs(self, state: JobStatus) -> Sequence[Mapping[str, Any]]:
        """Return the jobs of ``state``'s table in the order they entered it."""

    def lapsed(self, moment: str) -> Sequence[Mapping[str, Any]]:
        """Return at least every running job whose lease ended by ``moment`` (a time as jobstore writes it), in entry order.

        Others may come too (the caller checks each): an engine that holds the jobs in memory
        need not sort them out, one across a network should.
        """

    def due(self, moment: str) -> Mapping[str, Any] | None:
        """Return the pending job a claim takes at ``moment``, or None: the first in the claim order
        (see ``jobstore._schedule``) of those due by then whose dependencies have all finished.

        An engine whose sessions run side by side holds it for this session, and passes over jobs
        other sessions hold.
        """

    def dependents(self, job_id: str) -> Sequence[Mapping[str, Any]]:
        """Return the idle and pending jobs whose ``dependsOn`` names the job (read, as any job, in this session).

        An engine whose sessions run side by side first holds the job, so that a session
        submitting a dependent of it meanwhile is seen (it relies on the job: see :class:`Batch`).
        """

    def hold(self, topic: str) -> None:
        """Make every other session that holds ``topic`` wait until this one ends (sessions that run side by side; others exclude each other anyway)."""

    def holding(self, key: str) -> Mapping[str, Any] | None:
        """Return the job not yet ended (idle, pending or running) whose ``key`` is ``key``, or None.

        An engine whose sessions run side by side holds the key for this session, so that no other
        session can submit a job with it until this one ends.
        """

    def apply(self, batch: Batch) -> None:
        """Write every change of the batch atomically: after a crash, all of it or none of it is seen."""

    def recorded_schema(self) -> Mapping[str, Any] | None:
        """Return the job schema the store records, as this session sees it; None when it records none."""

    def record_schema(self, schema: Mapping[str, Any]) -> None:
        """Record the store's job schema, durably and at once, replacing any recorded before."""

    def schema_token(self) -> Hashable:
        """Return a value that changes whenever the recorded schema does, cheaply (looked at every session)."""


class Waiter(Protocol):
    """Sleeps until the store may have changed (spurious wake-ups happen: the caller looks, then decides)."""

    def wait(self, timeout: float) -> None:
        """Return once the store may have changed, or after ``timeout`` seconds."""

    def close(self) -> None:
        """Let go of what the waiter watches with."""

    def __enter__(self) -> Waiter: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None: ...


class Engine(Protocol):
    """A place that keeps jobs, one table per state."""

    def session(self) -> AbstractContextManager[Session]:
        """Open a session that excludes every other session, in this and in other processes."""

    def check(self, inspect: Callable[[Mapping[str, Any]], list[str]]) -> list[StoreProblem]:
        """List every problem of the stored data, changing nothing; ``inspect`` judges one document."""

    def recorded_schema(self) -> Mapping[str, Any] | None:
        """Return the job schema the store records, or None when it records none (the published one applies).

        Readable outside a session, so that a store whose other data is damaged can still be checked.
        """

    def flush(self) -> None:
        """Bring the stored files up to date with every write now, where the engine writes them lazily."""

    def close(self) -> None:
        """Finish what the engine left to do later (a flush, say); the engine stays usable."""

    def waiter(self, interval: float = POLL_INTERVAL) -> Waiter:
        """Return a waiter that sleeps until the store may have changed (the caller closes it).

        :param interval: seconds between looks, where the engine cannot be told of a change
        """

    def change_token(self) -> Hashable:
        """Return a value that differs once any session has written, without taking the lock.

        Waiters compare it to learn cheaply that something may have changed.
        """
