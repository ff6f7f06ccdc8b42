"""The api.job functions, each a thin call on a default :class:`~jobstore.JobStore`.

The default store is the one given to :func:`useStore`; without one, the directory named by the
environment variable ``JOBSTORE_PATH``; without that, ``./jobstore``.
"""

from __future__ import annotations

import datetime
import functools
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

from .._errors import InvalidArgumentError, InvalidJobError
from .._store import JobStore

__all__ = [
    "appendJobMessage",
    "blockUntilComplete",
    "cancelJob",
    "claimJob",
    "createJob",
    "createJobs",
    "deleteJob",
    "failJob",
    "findJob",
    "getErrorJobs",
    "getFinishedJobs",
    "getIdleJobs",
    "getJob",
    "getJobResults",
    "getJobSchema",
    "getJobs",
    "getPendingJobs",
    "getRunningJobs",
    "heartbeat",
    "purgeJobs",
    "releaseJob",
    "requeueExpiredJobs",
    "retryJob",
    "setJob",
    "setJobFinished",
    "setJobPending",
    "setJobProgress",
    "setJobRunning",
    "updateJobResult",
    "useStore",
]

#: The environment variable naming the default store's directory.
STORE_VARIABLE = "JOBSTORE_PATH"
#: The default store's directory when neither useStore nor the environment names one.
DEFAULT_PATH = "jobstore"

_chosen: JobStore | None = None
_by_path: dict[str, JobStore] = {}
_guard = threading.Lock()

_P = ParamSpec("_P")
_R = TypeVar("_R")

# The core's names for the arguments these functions spell otherwise, so that an error names the
# argument as the caller wrote it. Only names with an underscore are renamed inside a message:
# "path" is also a plain word there.
_CAMEL_NAMES = {
    "job_id": "jobId",
    "input_job": "inputJob",
    "older_than": "olderThan",
    "keep_last": "keepLast",
    "path": "pathOrStore",
}
_SNAKE_NAMES = re.compile(r"\b(?:" + "|".join(name for name in _CAMEL_NAMES if "_" in name) + r")\b")


def _camel(text: str) -> str:
    """The text with the core's snake_case argument names spelled as the functions here spell them."""
    return _SNAKE_NAMES.sub(lambda match: _CAMEL_NAMES[match.group()], text)


def _camel_case_errors(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Have the function's errors name its own camelCase arguments rather than the core's snake_case ones.

    The error raised is the core's own, its names changed, so that its type, attributes and traceback stay.

    :param function: a function of this module that calls the core
    """

    @functools.wraps(function)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return function(*args, **kwargs)
        except InvalidArgumentError as error:
            named = InvalidArgumentError(_CAMEL_NAMES.get(error.argument, error.argument), error.value, _camel(error.expected))
            error.argument, error.args = named.argument, named.args
            raise
        except InvalidJobError as error:
            # A problem with no field is one with an argument (inputJob not a dict); one with a field
            # quotes the value, which is the caller's to name.
            problems = [(field, _camel(text) if field is None else text) for field, text in error.problems]
            renamed = InvalidJobError(error.job_id, problems)
            error.problems, error.args = renamed.problems, renamed.args
            raise

    return call


@_camel_case_errors
def useStore(pathOrStore: str | os.PathLike[str] | JobStore | None) -> JobStore | None:
    """Make the given store (or a store at the given directory) the one every function here uses.

    :param pathOrStore: a :class:`JobStore`, a directory, or None to go back to ``JOBSTORE_PATH``
    :returns: the store now in use (None after a reset)
    """
    global _chosen
    if pathOrStore is None or isinstance(pathOrStore, JobStore):
        _chosen = pathOrStore
    else:
        _chosen = JobStore(pathOrStore)
    return _chosen


def _store() -> JobStore:
    if _chosen is not None:
        return _chosen
    path = os.path.abspath(os.environ.get(STORE_VARIABLE) or DEFAULT_PATH)
    with _guard:
        store = _by_path.get(path)
        if store is None:
            store = _by_path[path] = JobStore(path)
        return store


@_camel_case_errors
def createJob(
    name: str,
    user: str,
    request: str,
    result: str,
    *,
    runAt: datetime.datetime | str | None = None,
    delay: float | datetime.timedelta | None = None,
    priority: int | None = None,
    maxRetries: int | None = None,
    retryBackoff: float | None = None,
    dependsOn: Iterable[str | int] | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Submit a new pending job with a fresh id; returns the stored document.

    The keywords schedule it, as :meth:`JobStore.create_job` says: not before ``runAt`` or
    ``delay`` seconds, by ``priority``, with ``maxRetries`` after ``retryBackoff`` seconds, after
    the jobs ``dependsOn`` names have finished; a ``key`` another job not yet ended holds returns that job.
    """
    return _store().create_job(
        name, user, request, result, run_at=runAt, delay=delay, priority=priority, max_retries=maxRetries,
        retry_backoff=retryBackoff, depends_on=dependsOn, key=key,
    )


@_camel_case_errors
def createJobs(specs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Submit many jobs under one lock and one write per file; returns the stored documents in order."""
    return _store().create_jobs(specs)


@_camel_case_errors
def getJob(jobId: str | int, state: str = "pending") -> dict[str, Any] | None:
    """Return the job from ``state``'s table, or None."""
    return _store().get_job(jobId, state)


@_camel_case_errors
def findJob(jobId: str | int) -> tuple[dict[str, Any], str] | tuple[None, None]:
    """Return ``(job, state)`` from whichever table holds the job, or ``(None, None)``."""
    job, state = _store().find_job(jobId)
    if job is None or state is None:
        return None, None
    return job, state.value


@_camel_case_errors
def setJob(jobId: str | int, data: Mapping[str, Any] | None, state: str = "pending") -> dict[str, Any]:
    """Move the job into ``state`` (creating it when absent) with ``data`` merged in; returns it."""
    return _store().set_job(jobId, data, state)


@_camel_case_errors
def setJobPending(jobId: str | int, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """``setJob`` with the state ``pending``."""
    return _store().set_job_pending(jobId, data)


@_camel_case_errors
def setJobRunning(jobId: str | int, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """``setJob`` with the state ``running``."""
    return _store().set_job_running(jobId, data)


@_camel_case_errors
def setJobFinished(jobId: str | int, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """``setJob`` with the state ``finished``."""
    return _store().set_job_finished(jobId, data)


@_camel_case_errors
def updateJobResult(jobId: str | int, data: Any, inputJob: Mapping[str, Any] | None = None) -> None:
    """Store the job's result and move it to finished, starting from ``inputJob`` when given.

    A string is stored as given, any other JSON value as ``json.dumps(data, indent=4)``; a value JSON
    cannot hold raises :class:`InvalidJobError`, naming the ``result`` field.
    """
    _store().update_job_result(jobId, data, inputJob)


@_camel_case_errors
def deleteJob(jobId: str | int) -> None:
    """Remove the job from whichever table holds it; a missing job is not an error."""
    _store().delete_job(jobId)


@_camel_case_errors
def purgeJobs(
    state: str, olderThan: float | datetime.timedelta | None = None, keepLast: int | None = None
) -> int:
    """Remove old finished or error jobs, by age (seconds or timedelta) or count; returns how many went."""
    return _store().purge_jobs(state, olderThan, keepLast)


@_camel_case_errors
def claimJob(worker: str | None = None, lease: float | None = None, wait: float | None = None) -> dict[str, Any] | None:
    """Take the oldest pending job for this worker alone, under a lease of ``lease`` seconds; None when none waits.

    ``wait`` seconds block until a job can be claimed (the store's change wakes the wait).
    """
    return _store().claim_job(worker, lease, wait)


@_camel_case_errors
def heartbeat(jobId: str | int, lease: float | None = None) -> dict[str, Any]:
    """Renew the running job's lease; returns the job, whose ``cancelRequested`` says whether to stop."""
    return _store().heartbeat(jobId, lease)


@_camel_case_errors
def requeueExpiredJobs() -> list[str]:
    """Recover running jobs whose lease expired (to pending, or to error after max_attempts); returns their ids."""
    return _store().requeue_expired_jobs()


@_camel_case_errors
def setJobProgress(jobId: str | int, completed: int, total: int | None = None) -> dict[str, Any]:
    """Record ``progress = {"completed": completed, "total": total}``; bad counts raise a ValueError."""
    return _store().set_job_progress(jobId, completed, total)


@_camel_case_errors
def appendJobMessage(jobId: str | int, text: str) -> dict[str, Any]:
    """Add a line to the job's messages."""
    return _store().append_job_message(jobId, text)


@_camel_case_errors
def failJob(jobId: str | int, message: str = "", retry: bool = True) -> dict[str, Any]:
    """Move a job that has not ended to error, adding the message; a running job with retries left goes back to pending after its backoff, unless ``retry`` is False."""
    return _store().fail_job(jobId, message, retry)


@_camel_case_errors
def releaseJob(jobId: str | int, reason: str = "") -> dict[str, Any]:
    """Hand a running job back to pending (a worker told to stop), its claim not counted as an attempt."""
    return _store().release_job(jobId, reason)


@_camel_case_errors
def retryJob(jobId: str | int) -> dict[str, Any]:
    """Send a finished or error job back to pending, to run again."""
    return _store().retry_job(jobId)


@_camel_case_errors
def cancelJob(jobId: str | int) -> dict[str, Any]:
    """Cancel an idle or pending job (to error, ``canceled: true``), or ask a running one to stop."""
    return _store().cancel_job(jobId)


@_camel_case_errors
def blockUntilComplete(jobOrId: str | int | Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Wait until the job is finished or error and return it; raises a TimeoutError subclass after ``timeout`` seconds."""
    return _store().block_until_complete(jobOrId, timeout)


@_camel_case_errors
def getIdleJobs() -> list[dict[str, Any]]:
    """The idle jobs, oldest first."""
    return _store().get_idle_jobs()


@_camel_case_errors
def getPendingJobs() -> list[dict[str, Any]]:
    """The pending jobs, oldest first."""
    return _store().get_pending_jobs()


@_camel_case_errors
def getRunningJobs() -> list[dict[str, Any]]:
    """The running jobs, in the order they started."""
    return _store().get_running_jobs()


@_camel_case_errors
def getFinishedJobs() -> list[dict[str, Any]]:
    """The finished jobs, in the order they finished."""
    return _store().get_finished_jobs()


@_camel_case_errors
def getErrorJobs() -> list[dict[str, Any]]:
    """The jobs that ended in error, in the order they failed."""
    return _store().get_error_jobs()


@_camel_case_errors
def getJobs() -> list[dict[str, Any]]:
    """Every job, state by state, each state's jobs in the order they entered it."""
    return _store().get_jobs()


@_camel_case_errors
def getJobResults(jobId: str | int) -> dict[str, Any] | None:
    """Return the finished job's document, or None when it is not finished."""
    return _store().get_job_results(jobId)


@_camel_case_errors
def getJobSchema() -> dict[str, dict[str, Any]]:
    """Return the api.job field table: type, required, unique, default and options of each of the seven fields.

    The store's own fields (``createdAt``, ``history``, ``progress``...) are left out, as the
    api.job documentation leaves them; ``JobStore.get_job_schema(all_fields=True)`` lists them too.
    """
    return _store().get_job_schema()
