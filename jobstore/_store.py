"""The job store: every operation on jobs, in Pythonic form, over a storage engine."""

from __future__ import annotations

import datetime
import json  # the standard library's, for the indent=4 text api.job stores, which orjson does not write
import os
import socket
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

from .engines._base import Batch, Conflict, Document, Engine, Session, StoreProblem, Waiter
from . import _lifecycle as lifecycle
from . import _schedule
from ._errors import (
    CorruptStoreError,
    InvalidArgumentError,
    InvalidJobError,
    InvalidStateError,
    JobNotFoundError,
    SchemaConflictError,
    StoreLockTimeout,
    WaitTimeout,
)
from ._files import check_storable
from ._lifecycle import FINAL_STATES
from ._times import parse_time, timestamp, utc_now
from ._schema import JobSchema, published_schema, schema_difference
from ._status import STATES, JobStatus
from .engines._tinydb import DEFAULT_SEGMENT_BYTES, DEFAULT_SEGMENT_SIZE, TinyDBEngine
from ._watch import POLL_INTERVAL

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


#: How a store in a database is named: ``postgresql://user@host/db#name`` (the name, by default
#: ``jobstore``, is the database schema holding its tables).
DATABASE_SCHEMES = ("postgresql://", "postgres://")

#: Runs of one operation before a store whose jobs keep changing under it is reported as too busy.
_MOST_ATTEMPTS = 50

#: A schema token no store gives: the first operation reads the store's schema.
_NOT_READ = object()

#: Ten thousand years: longer spans overflow the clock's arithmetic, and no wait needs them.
_LONGEST = 10_000 * 365.25 * 86_400


def seconds(argument: str, value: object, *, positive: bool = False, timedelta: bool = False) -> float:
    """Return a span of seconds given as an argument, checked: a finite number, not a bool.

    :param positive: zero is refused too
    :param timedelta: a :class:`datetime.timedelta` is accepted as well
    :raises InvalidArgumentError: naming the argument, for anything else
    """
    span = value.total_seconds() if timedelta and isinstance(value, datetime.timedelta) else value
    if (
        isinstance(span, bool)
        or not isinstance(span, (int, float))
        or not ((span > 0) if positive else (span >= 0))  # NaN fails here too
        or not span <= _LONGEST
    ):
        expected = f"a {'positive' if positive else 'non-negative'} number of seconds"
        raise InvalidArgumentError(argument, value, expected + (" or a timedelta" if timedelta else ""))
    return float(span)


def count(argument: str, value: object, minimum: int) -> int:
    """Return a count given as an argument, checked: an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(argument, value, f"an int of at least {minimum}")
    return value


def _fields(job_id: object, data: object, what: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidJobError(job_id, [(None, f"{what} must be a dict of job fields, not {type(data).__name__}")])
    try:
        return copy_json(dict(data))
    except RecursionError:
        raise InvalidJobError(job_id, [(None, f"{what} is nested too deeply to be stored")]) from None


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
    :param segment_bytes: the size in bytes past which a state's last file takes no new job
        (a larger job gets a file of its own), so that large results keep each write small
    :param lease: seconds a claim lasts unless its worker renews it with :meth:`heartbeat`
    :param max_attempts: claims a job without retries (``maxRetries``) gets before a lease that
        expires sends it to error
    :param max_retries: the retries each job submitted gets unless it says otherwise (see
        "Scheduling" in the README); 0 gives none, so a failure ends a job in error at once
    :param retry_backoff: seconds a job's first retry waits unless it says otherwise; each
        further retry waits twice as long, with jitter, up to an hour
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schema: Mapping[str, Any] | None = None,
        lock_timeout: float = 10.0,
        durable: bool = True,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        lease: float = 300.0,
        max_attempts: int = 3,
        max_retries: int = 0,
        retry_backoff: float = _schedule.DEFAULT_BACKOFF,
    ) -> None:
        self.lease = seconds("lease", lease, positive=True)
        self.max_attempts = count("max_attempts", max_attempts, 1)
        self.max_retries = count("max_retries", max_retries, 0)
        self.retry_backoff = seconds("retry_backoff", retry_backoff, positive=True)
        if self.retry_backoff > _schedule.BACKOFF_CAP:
            raise InvalidArgumentError("retry_backoff", retry_backoff, f"a positive number of seconds up to {_schedule.BACKOFF_CAP:g}")
        if not isinstance(durable, bool):
            raise InvalidArgumentError("durable", durable, "True or False")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or lock_timeout != lock_timeout:
            raise InvalidArgumentError("lock_timeout", lock_timeout, "a number of seconds (negative: wait for ever)")
        count("segment_size", segment_size, 1)
        count("segment_bytes", segment_bytes, 1)
        if not isinstance(path, (str, os.PathLike)) or os.fspath(path) in ("", b"") or "\0" in str(os.fspath(path)):
            raise InvalidArgumentError("path", path, "a directory path or a postgresql:// URL")
        #: where the store is, as its messages name it: its directory, or its database and name
        self.location = str(os.fspath(path))
        given = None if schema is None else JobSchema(schema)  # a bad schema is refused before the store is touched
        database = self.location.startswith(DATABASE_SCHEMES)
        #: the store's directory; None for a store in a database
        self.path: Path | None = None if database else Path(path)
        if self.path is None:
            from .engines._postgres import PostgresEngine  # psycopg is needed only here

            dsn, _, name = self.location.partition("#")
            self._engine: Engine = PostgresEngine(dsn, name=name or "jobstore", lock_timeout=lock_timeout)
        else:
            self._engine = TinyDBEngine(
                self.path, lock_timeout=lock_timeout, durable=durable, segment_size=segment_size, segment_bytes=segment_bytes
            )
        #: the schema every write is checked against: the one the store records, else the published one
        self.schema = given or JobSchema()
        self._schema_token: Hashable = _NOT_READ
        if given is not None:
            with self._engine.session() as session:
                self._adopt_schema(session, given)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    def flush(self) -> None:
        """Write every job's current state into the state files now.

        Every write is done once its log record is; the files follow within a second (see
        "The files" in the README). Call this before reading the files by other means than
        jobstore, or before copying them; jobstore's own reads never need it.
        """
        self._engine.flush()

    def close(self) -> None:
        """Write what the state files lack, now (also done at the interpreter's exit); the store stays usable."""
        self._engine.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def _transact(self, operation: Callable[[Session, Batch], T], *, follow_schema: bool = True, stamp: bool = True) -> T:
        """Run one operation: lock, read, stage changes, validate them, write them, return a copy.

        Every public method goes through here, so no write escapes the lock or the schema, and no
        caller gets a reference into the engine's documents.

        :param follow_schema: first take up the schema the store records, if it changed since last read
        :param stamp: record the change in each document written (``updatedAt``, ``history``); False
            writes documents as they are (a copy from another store)
        """
        for attempt in range(_MOST_ATTEMPTS):
            try:
                with self._engine.session() as session:
                    token = session.schema_token()
                    if follow_schema and token != self._schema_token:
                        self._follow_schema(token, session)
                    batch = Batch()
                    result = operation(session, batch)
                    lifecycle.cascade(session, batch)
                    if batch:
                        now = timestamp(utc_now())
                        for document in batch.documents():
                            if stamp:
                                lifecycle.record_change(document, now)
                            self._check(document)
                        session.apply(batch)
                    return copy_json(result)
            except Conflict:
                # A job this operation read changed under it (engines whose sessions run side by
                # side): nothing was written; run it again on the store as it is now.
                time.sleep(min(0.001 * 2**attempt, 0.05))
        raise StoreLockTimeout(f"{self.location} (jobs changing under every attempt)", float(_MOST_ATTEMPTS))

    def _follow_schema(self, token: Hashable, session: Session | None = None) -> None:
        """Use the schema the store records now: another process may have recorded or changed it.

        :param session: the session to read it in; None reads it outside any
        """
        recorded = self._engine.recorded_schema() if session is None else session.recorded_schema()
        try:
            if recorded is not None:
                self.schema = JobSchema(recorded)
            elif self.schema.document != published_schema():
                self.schema = JobSchema()
        except InvalidArgumentError as error:
            detail = f"the schema it records is not a job schema: {error.expected}; record one with change_schema() (jobstore schema --set FILE)"
            raise CorruptStoreError(self.location, detail) from None
        self._schema_token = token

    def _adopt_schema(self, session: Session, given: JobSchema) -> None:
        """Open the store with a schema of the caller's: the one it records, or recorded now if it records none."""
        recorded = session.recorded_schema()
        if recorded is None:
            if given.document != published_schema():
                self._refuse_failing_jobs(session, given)
                session.record_schema(given.document)
        elif recorded != given.document:
            raise SchemaConflictError(
                self.location,
                f"records another job schema ({schema_difference(recorded, given.document)}): open it without "
                "a schema to use the recorded one, or change that with change_schema() (jobstore schema --set FILE)",
            )
        self.schema = given
        self._schema_token = session.schema_token()

    def _refuse_failing_jobs(self, session: Session, schema: JobSchema) -> None:
        failing = [
            (document.get("id"), problems)
            for state in STATES
            for document in session.jobs(state)
            if (problems := schema.problems(document))
        ]
        if failing:
            shown = "; ".join(str(InvalidJobError(job_id, problems)) for job_id, problems in failing[:3])
            more = f" (and {len(failing) - 3} more)" if len(failing) > 3 else ""
            raise SchemaConflictError(self.location, f"holds {len(failing)} job{'s' if len(failing) != 1 else ''} the schema refuses{more}, so it was not recorded: {shown}")

    def change_schema(self, schema: Mapping[str, Any]) -> None:
        """Record a new job schema for the store, once every job it holds passes it; every process follows it from its next operation.

        :param schema: the new schema, extending the published one as the ``schema`` argument must
        :raises InvalidArgumentError: when it is not a job schema
        :raises SchemaConflictError: naming the jobs that fail it; nothing is changed
        """
        new = JobSchema(schema)

        def change(session: Session, batch: Batch) -> None:
            self._refuse_failing_jobs(session, new)
            session.record_schema(new.document)
            self.schema = new
            self._schema_token = session.schema_token()

        self._transact(change, follow_schema=False)  # a damaged recorded schema is what this replaces

    def copy_from(self, source: JobStore) -> int:
        """Copy every job of another store into this one, which must hold none: in one write, each document checked, all or none.

        Jobs keep their ids, states, order and every field; the schema the source records comes
        along. This is how a store moves between engines (``jobstore migrate``).

        :returns: how many jobs were copied
        :raises InvalidArgumentError: when this store holds jobs already
        :raises InvalidJobError: naming a job that fails this store's schema; nothing is written
        :raises SchemaConflictError: when both stores record schemas, and they differ
        """
        recorded = source.job_schema().document if source._engine.recorded_schema() is not None else None
        jobs = source.get_jobs()

        def copy(session: Session, batch: Batch) -> int:
            if any(session.jobs(state) for state in STATES):
                raise InvalidArgumentError("target", self.location, "an empty store (it holds jobs already)")
            if recorded is not None:
                self._adopt_schema(session, JobSchema(recorded))
            for job in jobs:
                batch.put(JobStatus(job["status"]), job, new=True)
            return len(jobs)

        return self._transact(copy, stamp=False)

    def _check(self, document: Document) -> None:
        try:
            self.schema.validate(document)
        except RecursionError:
            raise InvalidJobError(document.get("id"), [(None, "nested too deeply to be checked or stored")]) from None
        except TypeError as error:
            # jsonschema compared a value no JSON holds (a complex number, say): name it if so.
            unchecked: TypeError | None = error
        else:
            unchecked = None
        try:
            check_storable(document)
        except (TypeError, ValueError):
            # Values the schema may let through (NaN, lone surrogates, non-JSON objects) that no JSON file can hold.
            raise InvalidJobError(document.get("id"), list(self._unstorable(document))) from None
        if unchecked is not None:
            raise InvalidJobError(document.get("id"), [(None, f"could not be checked against the schema: {unchecked}")])

    @staticmethod
    def _unstorable(document: Document) -> Iterator[tuple[str | None, str]]:
        for name, value in document.items():
            try:
                check_storable(value)
            except (TypeError, ValueError) as error:
                yield name, f"not storable as JSON: {error}"
        if any(not isinstance(name, str) for name in document):
            yield None, "not storable as JSON: field names are strings"

    def _new_job(self, job_id: str, state: JobStatus, fields: Mapping[str, Any]) -> Document:
        return {**self.schema.defaults(), **fields, "id": job_id, "status": state.value}

    def _admit(self, session: Session, batch: Batch, fields: Mapping[str, Any], holders: dict[str, Document]) -> tuple[Document, bool]:
        """Stage a job submitted with ``fields`` and return it with True, or return the job not yet ended that holds its key, with False.

        :param holders: key -> the job holding it, for every key the submission gives (looked up
            beforehand, in key order, so that engines holding keys for a session take them in one order)
        """
        key = fields.get("key")
        if isinstance(key, str) and key in holders:
            return holders[key], False
        # Made under the lock: the defaults are those of the schema the store records now.
        job = self._new_job(str(uuid.uuid4()), JobStatus.PENDING, fields)
        if self.max_retries and "maxRetries" not in job:
            job["maxRetries"] = self.max_retries
        if "maxRetries" in job:
            job.setdefault("retryBackoff", self.retry_backoff)  # written into the job: every process then retries it alike
        state = JobStatus.PENDING
        failed = lifecycle.check_dependencies(session, batch, job["id"], _schedule.depends_on(job), given=True, cycles=False)
        if failed is not None:
            state = JobStatus.ERROR
            job["status"] = state.value
            job["messages"] = lifecycle.with_message(job, f"dependency {failed} ended in error")
        batch.put(state, job, new=True)
        if isinstance(key, str) and state is JobStatus.PENDING:  # one that ended at once holds no key
            holders[key] = job
        return job, True

    def _holders(self, session: Session, specs: Iterable[Mapping[str, Any]]) -> dict[str, Document]:
        keys = sorted({key for fields in specs if isinstance(key := fields.get("key"), str)})
        return {key: dict(holder) for key in keys if (holder := session.holding(key)) is not None}

    # Creating and changing jobs

    def create_job(
        self,
        name: str = "",
        user: str = "",
        request: str = "",
        result: str = "",
        *,
        run_at: datetime.datetime | str | None = None,
        delay: float | datetime.timedelta | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        depends_on: Iterable[str | int] | None = None,
        key: str | None = None,
    ) -> Document:
        """Submit a new job: a fresh id, status ``pending``, last in the pending table.

        The keywords schedule it (see "Scheduling" in the README); none given, it is due at once.

        :param run_at: not claimed before this time (a datetime, or ISO 8601 text; naive is UTC)
        :param delay: not claimed for this many seconds (or this timedelta); not with ``run_at``
        :param priority: due jobs of higher priority are claimed first (default 0)
        :param max_retries: failures that send it back to pending, after a backoff, before one ends it in error
        :param retry_backoff: seconds its first retry waits; each further one twice as long, with jitter
        :param depends_on: ids of jobs that must all finish before it is claimed; it ends in error if one does
        :param key: while a job with this key has not ended, submitting another returns that one instead
        :returns: the stored document (for a key already held, the job that holds it)
        :raises InvalidJobError: naming the field at fault (an unknown dependency, say); nothing is written
        """
        given = _schedule.named(run_at, priority, max_retries, retry_backoff, depends_on, key)
        fields = {"name": name, "user": user, "request": request, "result": result, "messages": "", **_schedule.settle("new job", given, delay)}

        def create(session: Session, batch: Batch) -> Document:
            return self._admit(session, batch, fields, self._holders(session, [fields]))[0]

        return self._transact(create)

    def create_jobs(self, specs: Iterable[Mapping[str, Any]]) -> list[Document]:
        """Submit many jobs at once: one lock, one write per file, all of them or none.

        :meth:`submit_jobs` does the same and says which were made.

        :param specs: for each job, a dict of its fields (``name``, ``user``, ``request``, ``result``,
            the scheduling fields ``runAt``, ``priority``, ``maxRetries``, ``retryBackoff``,
            ``dependsOn`` and ``key``, ``delay`` in seconds, or any other field of the schema but
            ``id`` and ``status``)
        :returns: the stored documents, in the order of ``specs`` (for a key already held, the job that holds it)
        :raises InvalidJobError: naming the first spec at fault (by its index); nothing is written
        """
        return [job for job, _ in self.submit_jobs(specs)]

    def submit_jobs(self, specs: Iterable[Mapping[str, Any]]) -> list[tuple[Document, bool]]:
        """Submit many jobs as :meth:`create_jobs` does, saying of each whether it was made.

        :returns: for each spec, in order, the stored document and True, or the job holding the
            key the spec gives and False (nothing was made for that spec)
        """
        if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, Iterable):
            raise InvalidArgumentError("specs", specs, "a list of dicts of job fields")
        given = []
        for index, spec in enumerate(specs):
            fields = _fields(f"#{index}", spec, f"spec #{index}")
            for name in ("id", "status"):
                if name in fields:
                    raise InvalidJobError(f"#{index}", [(name, "is assigned by the store, not given")])
            delay = fields.pop("delay", None)
            given.append({"messages": "", **_schedule.settle(f"#{index}", fields, delay)})
        jobs: list[tuple[Document, bool]] = []

        def create(session: Session, batch: Batch) -> list[tuple[Document, bool]]:
            holders = self._holders(session, given)
            jobs[:] = []
            for fields in given:
                try:
                    jobs.append(self._admit(session, batch, fields, holders))
                except InvalidJobError as error:
                    raise InvalidJobError(f"#{len(jobs)}", error.problems) from None
            return jobs

        try:
            return self._transact(create)
        except InvalidJobError as error:
            position = next((i for i, (job, _) in enumerate(jobs) if job["id"] == error.job_id), None)
            if position is None:
                raise
            raise InvalidJobError(f"#{position}", error.problems) from None

    @staticmethod
    def _own_id(job_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Return the fields with an int ``id`` naming this job replaced by the job id's string, as an int job id is stored.

        :param job_id: the job id as stored
        :param fields: the fields given (a copy, changed in place)
        """
        given = fields.get("id")
        if isinstance(given, int) and not isinstance(given, bool) and str(given) == job_id:
            fields["id"] = job_id
        return fields

    def set_job(self, job_id: str | int, data: Mapping[str, Any] | None = None, state: str = "pending") -> Document:
        """Put the job in ``state`` with ``data`` merged into it, creating it when no table holds it.

        :param job_id: the job's id (an int is stored as its string)
        :param data: fields to set (a shallow merge into the stored document); ``id`` may only repeat the job id
            (as a string or an int), and ``status`` is always replaced by ``state``
        :param state: the state to put the job in
        :returns: the stored document
        """
        target = JobStatus.parse(state)
        job_id = job_id_of(job_id)
        fields = self._own_id(job_id, _fields(job_id, data, "data"))
        _same_id(job_id, fields)
        fields.update(_schedule.settle(job_id, {name: fields[name] for name in _schedule.FIELDS if fields.get(name) is not None}))

        def set_job(session: Session, batch: Batch) -> Document:
            changed = isinstance(fields.get("dependsOn"), list)  # anything else is the schema's to refuse
            if changed:
                # Two such changes at once could each see no cycle and make one together: they take turns.
                session.hold("dependencies")
            found = session.find(job_id)
            job = {**found[1], **fields, "status": target.value} if found else self._new_job(job_id, target, fields)
            state = target
            if changed or target in lifecycle.WAITING_STATES:
                failed = lifecycle.check_dependencies(session, batch, job_id, _schedule.depends_on(job), given=changed, cycles=changed)
                if failed is not None and target in lifecycle.WAITING_STATES:
                    # It would wait for ever: it ends now, as its dependency did.
                    state = JobStatus.ERROR
                    job = {**job, "status": state.value, "messages": lifecycle.with_message(job, f"dependency {failed} ended in error")}
            held = lifecycle.key_held(session, job_id, job) if state in lifecycle.LIVE_STATES else None
            if held is not None:
                raise InvalidJobError(job_id, [("key", held)])
            batch.put(state, job)
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

    @staticmethod
    def _result_text(job_id: str, data: object) -> str:
        """Return the result as stored: a string as given, any other JSON value as its JSON text indented by 4, as api.job has always stored it.

        :param job_id: the job concerned, for the error
        :param data: the result given
        :raises InvalidJobError: naming the ``result`` field, for a value JSON cannot hold
        """
        if isinstance(data, str):
            return data
        try:
            return json.dumps(data, indent=4, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as error:
            problem = f"a result is a string or a JSON value, not {type(data).__name__} ({error})"
            raise InvalidJobError(job_id, [("result", problem)]) from None

    def update_job_result(
        self, job_id: str | int, data: Any, input_job: Mapping[str, Any] | None = None
    ) -> Document:
        """Store the job's result and move it to ``finished``.

        :param job_id: the job's id
        :param data: the result: a string is stored as given, any other JSON value (dict, list,
            number, bool, None) as ``json.dumps(data, indent=4)``
        :param input_job: the document to start from instead of the stored one
        :returns: the stored document
        :raises InvalidJobError: for a result JSON cannot hold (a set, an object, NaN); nothing is written
        :raises JobNotFoundError: when no ``input_job`` is given and no table holds the job
        """
        job_id = job_id_of(job_id)
        result = self._result_text(job_id, data)
        start = _fields(job_id, input_job, "input_job") if input_job is not None else None
        if start is not None:
            _same_id(job_id, self._own_id(job_id, start))

        def finish(session: Session, batch: Batch) -> Document:
            base: Mapping[str, Any] | None = start
            if base is None:
                found = session.find(job_id)
                if found is None:
                    raise JobNotFoundError(job_id)
                base = found[1]
            job = {**base, "id": job_id, "result": result, "status": JobStatus.FINISHED.value}
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
            raise InvalidArgumentError("older_than", None, "a number of seconds or a timedelta when keep_last is None")
        cutoff = None
        if older_than is not None:
            age = seconds("older_than", older_than, timedelta=True)
            cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=age)
        if keep_last is not None:
            count("keep_last", keep_last, 0)

        def purge(session: Session, batch: Batch) -> int:
            jobs = session.jobs(target)
            candidates = jobs if keep_last is None else jobs[: max(len(jobs) - keep_last, 0)]
            for job in candidates:
                written = parse_time(job.get("updatedAt"))
                if cutoff is None or (written is not None and written < cutoff):
                    batch.delete(job["id"])
            return len(batch.deletes)

        return self._transact(purge)

    # Workers

    def claim_job(self, worker: str | None = None, lease: float | None = None, wait: float | None = None) -> Document | None:
        """Take the job that has waited longest in pending, for this worker alone; None when none waits.

        Expired claims are recovered first (see :meth:`requeue_expired_jobs`), so no daemon is
        needed. Idle jobs are never claimed.

        :param worker: who claims it (stored in ``worker``); by default this host and process id
        :param lease: seconds the claim lasts unless renewed; by default the store's ``lease``
        :param wait: seconds to block until a job can be claimed; None (or 0) answers at once.
            The wait sleeps until the store changes (on Linux the kernel wakes it as a job is
            submitted), and looks once a second in any case, for leases that expire meanwhile
        :returns: the job, now running, with ``attempts`` counted up and ``leaseExpiresAt`` set
        """
        if worker is None:
            worker = f"{socket.gethostname()}:{os.getpid()}"
        elif not isinstance(worker, str) or not worker:
            raise InvalidArgumentError("worker", worker, "a non-empty string")
        lease = self.lease if lease is None else seconds("lease", lease, positive=True)
        operation = lifecycle.claim(worker, lease, self.max_attempts, self.retry_backoff)
        patience = 0.0 if wait is None else seconds("wait", wait)
        if not patience:
            return self._transact(operation)
        deadline = time.monotonic() + patience
        with self._engine.waiter() as waiter:
            while True:
                claimed = self._transact(operation)
                left = deadline - time.monotonic()
                if claimed is not None or left <= 0:
                    return claimed
                waiter.wait(min(left, 1.0))

    def heartbeat(self, job_id: str | int, lease: float | None = None, worker: str | None = None) -> Document:
        """Renew the lease of a running job; the returned job tells its worker whether to stop (``cancelRequested``).

        :param lease: seconds from now the lease lasts; by default the store's ``lease``
        :param worker: when given, the lease is renewed only if this worker holds the job
        :raises JobStateError: when the job is not running, or another worker holds it
        """
        job_id = job_id_of(job_id)
        lease = self.lease if lease is None else seconds("lease", lease, positive=True)
        return self._transact(lifecycle.heartbeat(job_id, lease, worker))

    def requeue_expired_jobs(self) -> list[str]:
        """Recover running jobs whose lease expired: back to pending, or to error after ``max_attempts`` claims.

        :returns: the ids of the jobs recovered
        """
        return self._transact(lifecycle.requeue_expired(self.max_attempts, self.retry_backoff))

    def set_job_progress(self, job_id: str | int, completed: int, total: int | None = None) -> Document:
        """Record how far a running job has got: ``progress = {"completed": completed, "total": total}``.

        :raises InvalidJobError: (a ValueError) for negative counts, non-ints, or completed > total
        :raises JobStateError: when the job is not running
        """
        job_id = job_id_of(job_id)
        progress = lifecycle.check_progress(job_id, completed, total)
        return self._transact(lifecycle.report(job_id, "set the progress of", lambda job: {"progress": progress}))

    def append_job_message(self, job_id: str | int, text: str) -> Document:
        """Add a line to a running job's ``messages`` (any other change of messages goes through :meth:`set_job`).

        :raises JobStateError: when the job is not running
        """
        job_id = job_id_of(job_id)
        if not isinstance(text, str):
            raise InvalidJobError(job_id, [("messages", f"a message is a string, not {type(text).__name__}")])
        return self._transact(lifecycle.report(job_id, "add a message to", lambda job: {"messages": lifecycle.with_message(job, text)}))

    def fail_job(self, job_id: str | int, message: str = "", retry: bool = True) -> Document:
        """Move a job that has not ended to ``error``, adding ``message`` to its messages.

        A running job with retries left (``maxRetries``) goes back to pending instead, due after
        its backoff, a line in its messages saying which retry and when; the job returned says which.

        :param retry: False ends the job in error now, whatever retries it has left
        :raises JobStateError: when the job is already finished or in error
        """
        job_id = job_id_of(job_id)
        if not isinstance(message, str):
            raise InvalidJobError(job_id, [("messages", f"a message is a string, not {type(message).__name__}")])
        if not isinstance(retry, bool):
            raise InvalidArgumentError("retry", retry, "True or False")
        return self._transact(lifecycle.fail(job_id, message, retry, self.retry_backoff))

    def release_job(self, job_id: str | int, reason: str = "", worker: str | None = None) -> Document:
        """Hand a running job back to pending (a worker told to stop does this), its claim not counted as an attempt.

        A job whose cancel was asked for (``cancelRequested``) ends in error, ``canceled: true``, instead.

        :param reason: why, added to the job's messages
        :param worker: when given, the job is released only if this worker holds it
        :raises JobStateError: when the job is not running, or another worker holds it
        """
        job_id = job_id_of(job_id)
        if not isinstance(reason, str):
            raise InvalidJobError(job_id, [("messages", f"a reason is a string, not {type(reason).__name__}")])
        return self._transact(lifecycle.release(job_id, worker, reason))

    def retry_job(self, job_id: str | int) -> Document:
        """Run an ended (finished or error) job again: back to pending, as if just submitted, its history kept.

        :raises JobStateError: when the job has not ended
        """
        return self._transact(lifecycle.retry(job_id_of(job_id)))

    def cancel_job(self, job_id: str | int) -> Document:
        """Cancel a job: an idle or pending one goes to error with ``canceled: true``; a running one
        gets ``cancelRequested: true`` and its worker, seeing it, stops and calls :meth:`fail_job`.

        :raises JobStateError: when the job has already ended
        """
        return self._transact(lifecycle.cancel(job_id_of(job_id)))

    def block_until_complete(
        self, job: str | int | Mapping[str, Any], timeout: float | None = None, interval: float = 0.01
    ) -> Document:
        """Wait for the job to end (finished or error) and return it.

        Between looks it sleeps until the store changes (on Linux the kernel wakes it at each
        write; elsewhere it polls the engine's change token every ``interval``), so a wait costs
        no parsing and takes no lock while nothing is written; it still looks once a second, for
        files changed by hand.

        :param job: the job or its id
        :param timeout: seconds to wait at most; None waits for ever
        :param interval: seconds between checks of the change token, where the kernel cannot wake the wait
        :raises WaitTimeout: (a TimeoutError) when the time runs out
        :raises JobNotFoundError: when the job is not, or no longer, in the store
        """
        job_id = job_id_of(job.get("id") if isinstance(job, Mapping) else job)
        if timeout is not None:
            timeout = seconds("timeout", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.watch(interval) as waiter:
            while True:
                found, state = self.find_job(job_id)
                if found is None or state is None:
                    raise JobNotFoundError(job_id)
                if state in FINAL_STATES:
                    return found
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise WaitTimeout(job_id, timeout or 0.0, state.value)
                waiter.wait(1.0 if left is None else min(left, 1.0))

    # Reading jobs

    def get_job(self, job_id: str | int, state: str = "pending") -> Document | None:
        """Return the job from ``state``'s table, or None when that table does not hold it."""
        source = JobStatus.parse(state)
        job_id = job_id_of(job_id)
        # _transact hands back a copy, a plain dict.
        return cast("Document | None", self._transact(lambda session, batch: session.get(source, job_id)))

    def find_job(self, job_id: str | int) -> tuple[Document, JobStatus] | tuple[None, None]:
        """Return ``(job, state)`` from whichever table holds the job, or ``(None, None)``."""
        job_id = job_id_of(job_id)

        def find(session: Session, batch: Batch) -> tuple[Any, JobStatus] | tuple[None, None]:
            found = session.find(job_id)
            return (found[1], found[0]) if found else (None, None)

        return self._transact(find)

    def find_jobs(self, job_ids: Iterable[str | int]) -> dict[str, Document]:
        """Return the jobs of the given ids that some table holds, by id, all read in one look at the store.

        For a caller following many jobs at once (the job service's waiters): one lock, not one per job.
        """
        wanted = [job_id_of(job_id) for job_id in job_ids]

        def find(session: Session, batch: Batch) -> dict[str, Any]:
            return {job_id: found[1] for job_id in wanted if (found := session.find(job_id)) is not None}

        return self._transact(find)

    def change_token(self) -> Hashable:
        """Return a value that differs once any process has written to the store: cheap, and takes no lock."""
        return self._engine.change_token()

    def watch(self, interval: float = POLL_INTERVAL) -> Waiter:
        """Return a waiter whose ``wait(timeout)`` returns once the store may have changed; close it when done.

        What :meth:`block_until_complete` sleeps on, for callers that follow the store themselves.

        :param interval: seconds between looks, where the kernel cannot tell of a change
        """
        return self._engine.waiter(seconds("interval", interval, positive=True))

    def stats(self) -> dict[str, Any]:
        """Return the store's figures: the count per state (zeros included), ``leaseLapsed`` (running
        jobs whose lease has lapsed, counted among the running too), ``total``,
        ``oldestPendingSeconds`` (None when none waits) and ``finishedLastHour``."""
        return lifecycle.statistics(self.get_jobs())

    def get_jobs(self, state: str | None = None) -> list[Document]:
        """Return the jobs in ``state`` in the order they entered it; with no state, every job, state by state."""
        states = STATES if state is None else (JobStatus.parse(state),)
        jobs = self._transact(lambda session, batch: [job for each in states for job in session.jobs(each)])
        return cast("list[Document]", jobs)  # copies, plain dicts

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

    def check(self) -> list[StoreProblem]:
        """List every problem in the store, changing nothing; an empty list means it is sound.

        Reads every file afresh and reports each one that is damaged or out of layout, each document
        failing the schema, each job held twice, each unknown file, a damaged log, and each file the
        log says should be there but is not.
        """

        # Not through a session: a damaged log, which fails every session, is one of the problems listed.
        try:
            self._follow_schema(_NOT_READ)
            schema, found = self.schema, []
        except CorruptStoreError as error:
            schema, found = JobSchema(), [StoreProblem(os.path.relpath(error.path, self.path) if self.path else error.path, error.detail)]

        def inspect(document: Mapping[str, Any]) -> list[str]:
            problems = schema.problems(document)
            return InvalidJobError(document.get("id"), problems).details() if problems else []

        return found + self._engine.check(inspect)

    def job_schema(self) -> JobSchema:
        """Return the store's job schema as it is now: the one the store records, else the published one."""
        self._transact(lambda session, batch: None)
        return self.schema

    def get_job_schema(self, *, all_fields: bool = False) -> dict[str, dict[str, Any]]:
        """Return the field table of the store's schema: type, required, unique, default and options per field.

        :param all_fields: list the store's own fields (``createdAt``, ``history``, ``progress``...) too;
            without it, the seven api.job fields (and any field a custom schema adds), as api.job prints them
        """
        return self.job_schema().field_table(all_fields)
