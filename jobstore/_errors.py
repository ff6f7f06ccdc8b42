"""The exceptions jobstore raises: one base class, each subclass also the nearest builtin."""

from __future__ import annotations

import reprlib
from collections.abc import Sequence


class JobStoreError(Exception):
    """Base class of every error jobstore raises on purpose."""


class InvalidStateError(JobStoreError, ValueError):
    """A state name that is not one of the job statuses.

    :param state: the value that was given
    :param states: the state names valid here
    :param problem: what is wrong with it, for the message
    """

    def __init__(self, state: object, states: Sequence[str], problem: str = "unknown job state") -> None:
        self.state = state
        self.states = tuple(states)
        super().__init__(f"{problem} {state!r}; expected one of: {', '.join(self.states)}")


class InvalidArgumentError(JobStoreError, ValueError):
    """An argument that is not a job field (a lease, a timeout, a setting) has a value it cannot take.

    :param argument: the parameter's name
    :param value: the value given
    :param expected: what it must be, as the message says it
    """

    def __init__(self, argument: str, value: object, expected: str) -> None:
        self.argument = argument
        self.value = value
        self.expected = expected
        super().__init__(f"{argument} must be {expected}, not {_short(value)}")


def _short(value: object) -> str:
    """The repr of a value, cut short: a bad argument can be a string of a million characters."""
    return reprlib.repr(value)


class InvalidJobError(JobStoreError, ValueError):
    """A job document (or a job id) that the schema or the store rejects; nothing was written.

    :param job_id: the id of the job concerned, when known
    :param problems: ``(field, message)`` pairs; field is None when the problem is the whole document
    """

    def __init__(self, job_id: object, problems: Sequence[tuple[str | None, str]]) -> None:
        self.job_id = job_id
        self.problems = tuple(problems)
        super().__init__(f"invalid job {job_id!r}: {'; '.join(self.details())}")

    def details(self) -> list[str]:
        """One line per problem, naming its field."""
        return [message if field is None else f"field {field!r}: {message}" for field, message in self.problems]

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the fields at fault, in the order reported."""
        return tuple(field for field, _ in self.problems if field is not None)


class JobNotFoundError(JobStoreError, KeyError):
    """No table of the store holds the job.

    :param job_id: the id that was looked up
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(job_id)

    def __str__(self) -> str:
        # KeyError would print only the repr of its argument; say what was missing.
        return f"no job with id {self.job_id!r}"


class StoreLockTimeout(JobStoreError, TimeoutError):
    """The store's lock was not obtained in time: another process or thread holds it.

    :param lock_file: the path of the lock file
    :param timeout: the seconds waited
    """

    def __init__(self, lock_file: str, timeout: float) -> None:
        self.lock_file = lock_file
        self.timeout = timeout
        super().__init__(f"could not lock the job store within {timeout:g} s: {lock_file} is held by another process")


class CorruptStoreError(JobStoreError, ValueError):
    """A store file that cannot be read as jobstore wrote it; the store leaves it untouched.

    :param path: the file at fault
    :param detail: what is wrong with it
    :param line: the line of the fault, when known (1-based)
    :param column: the column of the fault, when known (1-based)
    """

    def __init__(self, path: str, detail: str, line: int | None = None, column: int | None = None) -> None:
        self.path = path
        self.detail = detail
        self.line = line
        self.column = column
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(f"damaged store file {path}{where}: {detail}")


class JobStateError(JobStoreError, ValueError):
    """The job is not in a state the operation applies to; nothing was written.

    :param job_id: the job concerned
    :param status: the state it is in
    :param action: what was asked, for the message ("retry", "renew the lease of")
    :param allowed: the states the operation applies to
    :param detail: what else was wrong, when the state alone does not say
    """

    def __init__(
        self, job_id: str, status: str, action: str, allowed: Sequence[str], detail: str | None = None
    ) -> None:
        self.job_id = job_id
        self.status = status
        self.action = action
        self.allowed = tuple(allowed)
        self.detail = detail
        reason = detail or f"it is {status}; only {', '.join(self.allowed)} jobs can be"
        super().__init__(f"cannot {action} job {job_id!r}: {reason}")


class WaitTimeout(JobStoreError, TimeoutError):
    """The job did not end within the time given.

    :param job_id: the job waited for
    :param timeout: the seconds waited
    :param status: the job's state when the time ran out
    """

    def __init__(self, job_id: str, timeout: float, status: str) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.status = status
        super().__init__(f"job {job_id!r} did not end within {timeout:g} s; it is {status}")


class StoreWriteError(JobStoreError, OSError):
    """The store's files could not be written: a full disk, an I/O error, a read-only directory.

    ``errno`` and ``strerror`` are those of the operating system's error; ``path`` names the file
    or directory that refused the write.

    :param path: what could not be written
    :param error: the operating system's error
    :param outcome: what became of the operation, for the message
    """

    def __init__(self, path: str, error: OSError, outcome: str = "nothing was changed") -> None:
        super().__init__(error.errno, error.strerror or str(error), path)
        self.path = path
        self.outcome = outcome

    def __str__(self) -> str:
        return f"could not write the job store at {self.path}: {self.strerror}; {self.outcome}"


class UnsafeStoreError(CorruptStoreError):
    """A file or folder inside the store is a link jobstore will not follow; nothing was read or written through it.

    A link planted in a store could send a write, a truncation or a new file outside it, into
    any file the process may write. The store's root itself may be a link; nothing inside it may.

    :param path: the link
    :param detail: what kind of link it is
    """

    def __init__(self, path: str, detail: str) -> None:
        JobStoreError.__init__(self, f"unsafe store file {path}: {detail}; jobstore never follows a link inside a store, and changed nothing")
        self.path = path
        self.detail = detail
        self.line = None
        self.column = None


class NotAStoreError(JobStoreError, OSError):
    """The path cannot hold a job store: it is a file, no directory can be made there, or it is a directory of other files.

    ``errno`` is the operating system's, when it refused; ``path`` names the path given.

    :param path: the store's path as given
    :param detail: why it cannot be a store
    :param error: the operating system's error, when there was one
    """

    def __init__(self, path: str, detail: str, error: OSError | None = None) -> None:
        if error is None:
            super().__init__(detail)
        else:
            super().__init__(error.errno, error.strerror or str(error), path)
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return f"cannot open a job store at {self.path}: {self.detail}"


class SchemaConflictError(JobStoreError, ValueError):
    """The schema given is not the one the store records, or jobs of the store fail the schema it was to record; nothing was changed.

    :param path: the store's path
    :param detail: how the schemas differ, or which jobs fail the new one
    """

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"the job store at {path} {detail}")


class NotAuthorizedError(JobStoreError, PermissionError):
    """The job service refused the request: no token, a wrong one, or a write from another site.

    :param url: what was asked for
    :param detail: the service's reason
    """

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"the job service refused {url}: {detail}")
        self.url = url
        self.detail = detail

    def __str__(self) -> str:
        return f"the job service refused {self.url}: {self.detail}"


class ServiceUnavailableError(JobStoreError, ConnectionError):
    """The job service could not be reached, or answered what no jobstore service sends.

    :param url: what was asked for
    :param detail: what went wrong
    :param unchanged: True when the request cannot have changed anything (a read, or one never
        sent); False when it was a write whose answer was lost, which may have been carried out
    """

    def __init__(self, url: str, detail: str, unchanged: bool = True) -> None:
        super().__init__(f"the job service at {url} {detail}")
        self.url = url
        self.detail = detail
        self.unchanged = unchanged

    def __str__(self) -> str:
        outcome = "nothing was changed" if self.unchanged else "the write may or may not have been carried out"
        return f"the job service at {self.url} {self.detail}; {outcome}"
