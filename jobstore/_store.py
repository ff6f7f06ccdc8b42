"""The job store: every operation on jobs, in Pythonic form, over a storage engine."""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ._engine import Batch, Document, Engine, Session
from ._errors import InvalidJobError, InvalidStateError, JobNotFoundError
from ._files import check_storable
from ._schema import JobSchema
from ._status import STATES, JobStatus
from ._tinydb_engine import DEFAULT_SEGMENT_SIZE, TinyDBEngine

#: The states whose old jobs purge_jobs removes.
HISTORY_STATES = (JobStatus.FINISHED, JobStatus.ERROR)

T = TypeVar("T")


def copy_json(value: T) -> T:
    """Return a deep copy of a JSON-like value (dicts, lists, tuples and scalars), much faster than deepcopy."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}  # type: ignore[return-value]
    if isinstance(value, list):
        return [copy_json(item) for item in value]  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(copy_json(item) for item in value)  # type: ignore[return-value]
    return value


def job_id_of(job_id: object) -> str:
    """Return the job id as stored: a non-empty string; an int is accepted and stored as its string.

    :raises InvalidJobError: for any other value
    """
    if isinstance(job_id, str) and job_id:
        return job_id
    if isinstance(job_id, int) and not isinstance(job_id, bool):
        return str(job_id)
    raise InvalidJobError(job_id, [("id", "a job id is a non-empty string or an int")])


def now() -> str:
    """The current time as jobstore writes it: ISO 8601, UTC, to the microsecond."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: object) -> datetime.datetime | None:
    """Read a timestamp jobstore wrote; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _seconds(value: float | datetime.timedelta) -> float:
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"older_than must be a non-negative number of seconds or a timedelta, not {value!r}")
    return float(seconds)


def _fields(job_id: object, data: object, what: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidJobError(job_id, [(None, f"{what} must be a dict of job fields, not {type(data).__name__}")])
    return copy_json(dict(data))


def _same_id(job_id: str, fields: Mapping[str, Any]) -> None:
    if "id" in fields and fields["id"] != job_id:
        raise InvalidJobError(job_id, [("id", f"the data names another job, {fields['id']!r}")])


class JobStore:
    """A store of jobs, one table per state, shared safely by threads and processes.

    :param path: the directory of the store's files, created when missing
    :param schema: a JSON Schema for job documents extending the published one; None for the published schema
    :param lock_timeout: seconds an operation waits for the store lock before raising
        :class:`StoreLockTimeout`; a negative value waits for ever
    :param durable: sync each write to disk before returning, so that a power loss loses no
        acknowledged write; False keeps every guarantee against crashed processes but not that one
    :param segment_size: the most jobs one file of a state holds; finishing a job rewrites one
        such file, however long the history
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schema: Mapping[str, Any] | None = None,
        lock_timeout: float = 10.0,
        durable: bool = True,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        self.path = Path(path)
        self.schema = JobSchema(schema)
        self._engine: Engine = TinyDBEngine(
            self.path, lock_timeout=lock_timeout, durable=durable, segment_size=segment_size
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _transact(self, operation: Callable[[Session, Batch], T]) -> T:
        """Run one operation: lock, read, stage changes, validate them, write them, return a copy.

        Every public method goes through here, so no write escapes the lock or the schema, and no
        caller gets a reference into the engine's documents.
        """
        with self._engine.session() as session:
            batch = Batch()
            result = operation(session, batch)
            if batch:
                stamp = now()
                for document in batch.documents():
                    document.setdefault("createdAt", stamp)
                    document["updatedAt"] = stamp
                    self._check(document)
                session.apply(batch)
            return copy_json(result)

    def _check(self, document: Document) -> None:
        self.schema.validate(document)
        try:
            check_storable(document)
        except (TypeError, ValueError) as error:
            # Values the schema may let through (NaN, lone surrogates, non-JSON objects) that no JSON file can hold.
            raise InvalidJobError(document.get("id"), [(None, f"not storable as JSON: {error}")]) from None

    def _new_job(self, job_id: str, state: JobStatus, fields: Mapping[str, Any]) -> Document:
        return {**self.schema.defaults(), **fields, "id": job_id, "status": state.value}

    # Creating and changing jobs

    def create_job(self, name: str = "", user: str = "", request: str = "", result: str = "") -> Document:
        """Submit a new job: a fresh id, status ``pending``, last in the pending table.

        :returns: the stored document
        """
        fields = {"name": name, "user": user, "request": request, "result": result, "messages": ""}
        job = self._new_job(str(uuid.uuid4()), JobStatus.PENDING, fields)

        def create(session: Session, batch: Batch) -> Document:
            batch.put(JobStatus.PENDING, job, new=True)
            return job

        return self._transact(create)

    def create_jobs(self, specs: Iterable[Mapping[str, Any]]) -> list[Document]:
        """Submit many jobs at once: one lock, one write per file, all of them or none.

        :param specs: for each job, a dict of its fields (``name``, ``user``, ``request``, ``result``,
            or any other field of the schema but ``id`` and ``status``)
        :returns: the stored documents, in the order of ``specs``
        :raises InvalidJobError: naming the first spec at fault (by its index); nothing is written
        """
        jobs = []
        for index, spec in enumerate(specs):
            fields = _fields(f"#{index}", spec, f"spec #{index}")
            for name in ("id", "status"):
                if name in fields:
                    raise InvalidJobError(f"#{index}", [(name, "is assigned by the store, not given")])
            jobs.append(self._new_job(str(uuid.uuid4()), JobStatus.PENDING, {"messages": "", **fields}))

        def create(session: Session, batch: Batch) -> list[Document]:
            for job in jobs:
                batch.put(JobStatus.PENDING, job, new=True)
            return jobs

        try:
            return self._transact(create)
        except InvalidJobError as error:
            index = next(i for i, job in enumerate(jobs) if job["id"] == error.job_id)
            raise InvalidJobError(f"#{index}", error.problems) from None

    def set_job(self, job_id: str | int, data: Mapping[str, Any] | None = None, state: str = "pending") -> Document:
        """Put the job in ``state`` with ``data`` merged into it, creating it when no table holds it.

        :param job_id: the job's id (an int is stored as its string)
        :param data: fields to set (a shallow merge into the stored document); ``id`` may only repeat the job id,
            and ``status`` is always replaced by ``state``
        :param state: the state to put the job in
        :returns: the stored document
        """
        target = JobStatus.parse(state)
        job_id = job_id_of(job_id)
        fields = _fields(job_id, data, "data")
        _same_id(job_id, fields)

        def set_job(session: Session, batch: Batch) -> Document:
            found = session.find(job_id)
            job = {**found[1], **fields, "status": target.value} if found else self._new_job(job_id, target, fields)
            batch.put(target, job)
            return job

        return self._transact(set_job)

    def set_job_pending(self, job_id: str | int, data: Mapping[str, Any] | None = None) -> Document:
        """:meth:`set_job` with the state ``pending``."""
        return self.set_job(job_id, data, JobStatus.PENDING)

    def set_job_running(self, job_id: str | int, data: Mapping[str, Any] | None = None) -> Document:
        """:meth:`set_job` with the state ``running``."""
        return self.set_job(job_id, data, JobStatus.RUNNING)

    def set_job_finished(self, job_id: str | int, data: Mapping[str, Any] | None = None) -> Document:
        """:meth:`set_job` with the state ``finished``."""
        return self.set_job(job_id, data, JobStatus.FINISHED)

    def update_job_result(
        self, job_id: str | int, data: str, input_job: Mapping[str, Any] | None = None
    ) -> Document:
        """Store the job's result and move it to ``finished``.

        :param job_id: the job's id
        :param data: the result
        :param input_job: the document to start from instead of the stored one
        :returns: the stored document
        :raises JobNotFoundError: when no ``input_job`` is given and no table holds the job
        """
        job_id = job_id_of(job_id)
        start = _fields(job_id, input_job, "input_job") if input_job is not None else None
        if start is not None:
            _same_id(job_id, start)

        def finish(session: Session, batch: Batch) -> Document:
            base = start
            if base is None:
                found = session.find(job_id)
                if found is None:
                    raise JobNotFoundError(job_id)
                base = found[1]
            job = {**base, "id": job_id, "result": data, "status": JobStatus.FINISHED.value}
            batch.put(JobStatus.FINISHED, job)
            return job

        return self._transact(finish)

    def delete_job(self, job_id: str | int) -> None:
        """Remove the job from whichever table holds it; a missing job is not an error."""
        job_id = job_id_of(job_id)

        def delete(session: Session, batch: Batch) -> None:
            if session.find(job_id) is not None:
                batch.delete(job_id)

        self._transact(delete)

    def purge_jobs(
        self,
        state: str,
        older_than: float | datetime.timedelta | None = None,
        keep_last: int | None = None,
    ) -> int:
        """Remove old jobs of a history state, by age, by count, or both; returns how many went.

        :param state: ``finished`` or ``error``
        :param older_than: remove jobs last written longer ago than this (seconds or a timedelta);
            a job with no readable ``updatedAt`` is never removed by age
        :param keep_last: keep at least this many of the jobs that entered the state last
        :raises ValueError: when neither bound is given, or one is negative
        """
        target = JobStatus.parse(state)
        if target not in HISTORY_STATES:
            raise InvalidStateError(state, [s.value for s in HISTORY_STATES], "cannot purge jobs in the state")
        if older_than is None and keep_last is None:
            raise ValueError("purge_jobs needs older_than, keep_last, or both")
        cutoff = None
        if older_than is not None:
            cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=_seconds(older_than))
        if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0):
            raise ValueError(f"keep_last must be a non-negative int, not {keep_last!r}")

        def purge(session: Session, batch: Batch) -> int:
            jobs = session.jobs(target)
            candidates = jobs if keep_last is None else jobs[: max(len(jobs) - keep_last, 0)]
            for job in candidates:
                written = parse_time(job.get("updatedAt"))
                if cutoff is None or (written is not None and written < cutoff):
                    batch.delete(job["id"])
            return len(batch.deletes)

        return self._transact(purge)

    # Reading jobs

    def get_job(self, job_id: str | int, state: str = "pending") -> Document | None:
        """Return the job from ``state``'s table, or None when that table does not hold it."""
        source = JobStatus.parse(state)
        job_id = job_id_of(job_id)
        return self._transact(lambda session, batch: session.get(source, job_id))

    def find_job(self, job_id: str | int) -> tuple[Document, JobStatus] | tuple[None, None]:
        """Return ``(job, state)`` from whichever table holds the job, or ``(None, None)``."""
        job_id = job_id_of(job_id)

        def find(session: Session, batch: Batch) -> tuple[Any, JobStatus] | tuple[None, None]:
            found = session.find(job_id)
            return (found[1], found[0]) if found else (None, None)

        return self._transact(find)

    def get_jobs(self, state: str | None = None) -> list[Document]:
        """Return the jobs in ``state`` in the order they entered it; with no state, every job, state by state."""
        states = STATES if state is None else (JobStatus.parse(state),)
        return self._transact(lambda session, batch: [job for each in states for job in session.jobs(each)])

    def get_idle_jobs(self) -> list[Document]:
        """The idle jobs, oldest first."""
        return self.get_jobs(JobStatus.IDLE)

    def get_pending_jobs(self) -> list[Document]:
        """The pending jobs, oldest first."""
        return self.get_jobs(JobStatus.PENDING)

    def get_running_jobs(self) -> list[Document]:
        """The running jobs, in the order they started."""
        return self.get_jobs(JobStatus.RUNNING)

    def get_finished_jobs(self) -> list[Document]:
        """The finished jobs, in the order they finished."""
        return self.get_jobs(JobStatus.FINISHED)

    def get_error_jobs(self) -> list[Document]:
        """The jobs that ended in error, in the order they failed."""
        return self.get_jobs(JobStatus.ERROR)

    def get_job_results(self, job_id: str | int) -> Document | None:
        """Return the finished job's document, or None when the job is not finished."""
        return self.get_job(job_id, JobStatus.FINISHED)

    def get_job_schema(self) -> dict[str, dict[str, Any]]:
        """Return the field table of the store's schema: type, required, unique, default and options per field."""
        return self.schema.field_table()
