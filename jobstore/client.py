"""The job service's client: the api.job functions, and the store's own, over HTTP.

``job = JobClient("http://host:8765")`` in place of ``from jobstore.api import job`` runs a script
against a store elsewhere: the same names, arguments, results and exception classes. It has the
Pythonic names of :class:`~jobstore.JobStore` too, so code written for a store takes a client.
Needs the ``client`` extra (``pip install 'jobstore[client]'``, httpx).
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from .engines._base import StoreProblem
from . import _schedule
from ._errors import InvalidArgumentError, InvalidJobError, JobNotFoundError, NotAuthorizedError, ServiceUnavailableError, WaitTimeout
from ._lifecycle import entered
from ._schema import JobSchema
from ._status import STATES, JobStatus
from ._store import job_id_of, seconds
from ._wire import rebuilt

__all__ = ["JobClient"]

#: Seconds one long-poll lasts at most, as the service allows; a longer wait asks again.
_LONGEST_POLL = 300.0
#: Jobs asked for per page when a whole state is read.
_PAGE = 1000


def _given(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that were given: None means "the service's default", so it is not sent."""
    return {name: value for name, value in arguments.items() if value is not None}


def _scheduled(job_ref: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A job's fields with its scheduling checked as the store checks it, and put as JSON carries it.

    A refusal comes before anything is sent, naming the field as the store would. A ``delay`` goes
    as seconds, not as the time it ends: the service's clock, not this machine's, starts it.

    :param job_ref: the job as an error names it (``new job``, or a spec's ``#index``)
    :param fields: the fields given (a copy, changed in place); ``delay`` among them
    """
    delay = fields.pop("delay", None)
    given = {name: fields.pop(name) for name in _schedule.FIELDS if name in fields}
    settled = _schedule.settle(job_ref, given, delay)
    if delay is not None:
        settled.pop("runAt")
        fields["delay"] = delay.total_seconds() if isinstance(delay, datetime.timedelta) else delay
    fields.update(settled)
    return fields


class JobClient:
    """A store behind the job service (``jobstore serve``), used as a local one is.

    :param url: the service's address, such as ``http://127.0.0.1:8765``
    :param token: the service's bearer token, when it asks for one
    :param timeout: seconds a request may take (a long-poll is given its own wait on top)
    :param transport: an httpx transport to send requests through (tests, proxies)
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = seconds("timeout", timeout, positive=True)
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=self._timeout, transport=transport)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def close(self) -> None:
        """Close the client's connections."""
        self._http.close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    # The one place a request is sent and its answer judged.

    def _call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None, wait: float = 0.0) -> httpx.Response:
        """Send one request; return a successful answer, or raise the error the service sent back.

        :param wait: seconds the service may hold the answer (a long-poll), on top of the timeout
        """
        write = method != "GET"
        try:
            answer = self._http.request(
                method,
                path,
                json=body,
                params=_given(params or {}),
                timeout=self._timeout + wait,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:  # nothing was sent
            raise ServiceUnavailableError(self.url, f"cannot be reached ({error})") from None
        except httpx.HTTPError as error:
            raise ServiceUnavailableError(self.url, f"did not answer {method} {path} ({error})", unchanged=not write) from None
        if answer.status_code < 400:
            return answer
        try:
            problem = answer.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict) or "error" not in problem or answer.status_code >= 500 and problem["error"] == "InternalError":
            raise ServiceUnavailableError(self.url, f"answered {method} {path} with {answer.status_code} {answer.reason_phrase}", unchanged=not write)
        if problem["error"] == "NotAuthorizedError":
            raise NotAuthorizedError(f"{method} {path}", str(problem.get("detail")))
        raise rebuilt(problem)

    def _json(self, method: str, path: str, **options: Any) -> Any:
        answer = self._call(method, path, **options)
        try:
            return answer.json()
        except ValueError:
            raise ServiceUnavailableError(self.url, f"answered {method} {path} with what is not JSON", unchanged=method == "GET") from None

    @staticmethod
    def _path(job_id: object, *rest: str) -> str:
        name = job_id_of(job_id)
        if "/" in name or name in (".", ".."):
            # A URL would name another resource (a slash ends the id, even encoded as %2F).
            raise InvalidArgumentError("jobId", name, "an id the job service can name in a URL: no '/', not '.' or '..'")
        return "/".join(["/jobs", quote(name, safe=""), *rest])

    # Creating and changing jobs, as JobStore names them

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
    ) -> dict[str, Any]:
        """Submit a new pending job, scheduled by the keywords as :meth:`JobStore.create_job` is; returns the stored document.

        Only the keywords given are sent, under the schema's names: ``run_at`` as ISO 8601 text (a
        naive datetime is UTC), ``delay`` as seconds, counted from when the service takes the job.

        :returns: the stored document (for a key already held, the job that holds it)
        :raises InvalidJobError: naming the field at fault; nothing is sent for a value the store would refuse whatever it holds
        """
        fields = {**_schedule.named(run_at, priority, max_retries, retry_backoff, depends_on, key), "delay": delay}
        spec = _scheduled("new job", {"name": name, "user": user, "request": request, "result": result, **fields})
        job: dict[str, Any] = self._json("POST", "/jobs", body=[spec])["jobs"][0]
        return job

    def create_jobs(self, specs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Submit many jobs at once, all or none; returns the stored documents in order.

        Each spec takes the fields :meth:`JobStore.create_jobs` takes; a ``runAt`` given as a
        datetime and a ``delay`` as a timedelta are sent as the service reads them.
        """
        if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, Iterable):
            raise InvalidArgumentError("specs", specs, "a list of dicts of job fields")
        sent = []
        for index, spec in enumerate(specs):
            if not isinstance(spec, Mapping):
                raise InvalidJobError(f"#{index}", [(None, f"spec #{index} must be a dict of job fields, not {type(spec).__name__}")])
            sent.append(_scheduled(f"#{index}", dict(spec)))
        jobs: list[dict[str, Any]] = self._json("POST", "/jobs", body=sent)["jobs"]
        return jobs

    def set_job(self, job_id: str | int, data: Mapping[str, Any] | None = None, state: str = "pending") -> dict[str, Any]:
        """Put the job in ``state`` with ``data`` merged in, making it when no table holds it."""
        body = _given({"data": None if data is None else dict(data), "state": str(JobStatus.parse(state).value)})
        job: dict[str, Any] = self._json("PUT", self._path(job_id), body=body)
        return job

    def set_job_pending(self, job_id: str | int, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.set_job(job_id, data, JobStatus.PENDING)

    def set_job_running(self, job_id: str | int, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.set_job(job_id, data, JobStatus.RUNNING)

    def set_job_finished(self, job_id: str | int, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.set_job(job_id, data, JobStatus.FINISHED)

    def _act(self, job_id: str | int, action: str, **arguments: Any) -> dict[str, Any]:
        job: dict[str, Any] = self._json("POST", self._path(job_id, action), body=_given(arguments))
        return job

    def update_job_result(self, job_id: str | int, data: Any, input_job: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Store the job's result and move it to finished; returns the document."""
        body: dict[str, Any] = {"result": data}
        if input_job is not None:
            body["inputJob"] = dict(input_job)
        job: dict[str, Any] = self._json("POST", self._path(job_id, "result"), body=body)
        return job

    def delete_job(self, job_id: str | int) -> None:
        """Remove the job; a missing job is not an error, as with a local store."""
        try:
            self._call("DELETE", self._path(job_id))
        except JobNotFoundError:
            pass

    def purge_jobs(self, state: str, older_than: float | None = None, keep_last: int | None = None) -> int:
        """Remove old jobs of a history state, by age (seconds), by count, or both; returns how many went."""
        body = {"state": state, "olderThan": older_than, "keepLast": keep_last}
        removed: int = self._json("POST", "/purge", body=_given(body))["removed"]
        return removed

    # Workers

    def claim_job(self, worker: str | None = None, lease: float | None = None, wait: float | None = None) -> dict[str, Any] | None:
        """Take the job that has waited longest, for this worker alone; None when none waits (after ``wait`` seconds)."""
        patience = 0.0 if wait is None else seconds("wait", wait)
        deadline = time.monotonic() + patience
        # The claim is this process's, not the service's: by default it names this host and pid.
        body = {"worker": f"{socket.gethostname()}:{os.getpid()}" if worker is None else worker, "lease": lease}
        while True:
            chunk = min(max(deadline - time.monotonic(), 0.0), _LONGEST_POLL)
            answer = self._call("POST", "/claims", body=_given({**body, "wait": chunk}), wait=chunk)
            if answer.status_code != 204:
                job: dict[str, Any] = answer.json()
                return job
            if time.monotonic() >= deadline:
                return None

    def heartbeat(self, job_id: str | int, lease: float | None = None, worker: str | None = None) -> dict[str, Any]:
        """Renew a running job's lease; the answer tells whether to stop (``cancelRequested``)."""
        return self._act(job_id, "heartbeat", lease=lease, worker=worker)

    def requeue_expired_jobs(self) -> list[str]:
        """Recover running jobs whose lease lapsed; returns their ids."""
        requeued: list[str] = self._json("POST", "/requeue-expired", body={})["requeued"]
        return requeued

    def set_job_progress(self, job_id: str | int, completed: int, total: int | None = None) -> dict[str, Any]:
        """Record how far a running job has got."""
        return self._act(job_id, "progress", completed=completed, total=total)

    def append_job_message(self, job_id: str | int, text: str) -> dict[str, Any]:
        """Add a line to a running job's messages."""
        return self._act(job_id, "messages", text=text)

    def fail_job(self, job_id: str | int, message: str = "", retry: bool = True) -> dict[str, Any]:
        """Move a job that has not ended to error, adding the message; a running job with retries left goes back to pending after its backoff instead.

        :param retry: False ends the job in error now, whatever retries it has left
        """
        if not isinstance(retry, bool):
            raise InvalidArgumentError("retry", retry, "True or False")
        # The default is left unsaid, so that a service older than retries takes the call too.
        return self._act(job_id, "fail", message=message, retry=None if retry else False)

    def release_job(self, job_id: str | int, reason: str = "", worker: str | None = None) -> dict[str, Any]:
        """Hand a running job back to pending, its claim not counted as an attempt."""
        return self._act(job_id, "release", reason=reason, worker=worker)

    def retry_job(self, job_id: str | int) -> dict[str, Any]:
        """Run an ended job again."""
        return self._act(job_id, "retry")

    def cancel_job(self, job_id: str | int) -> dict[str, Any]:
        """Cancel a job (a running one is asked to stop)."""
        return self._act(job_id, "cancel")

    def block_until_complete(self, job: str | int | Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Wait for the job to end and return it, on the service's long-poll (it answers as the job ends).

        :raises WaitTimeout: when ``timeout`` seconds pass first
        :raises JobNotFoundError: when no table holds the job
        """
        job_id = job_id_of(job.get("id") if isinstance(job, Mapping) else job)
        limit = None if timeout is None else seconds("timeout", timeout)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            left = _LONGEST_POLL if deadline is None else min(max(deadline - time.monotonic(), 0.0), _LONGEST_POLL)
            answer = self._call("GET", self._path(job_id, "wait"), params={"timeout": round(left, 3)}, wait=left)
            found: dict[str, Any] = answer.json()
            if answer.status_code == 200:
                return found
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job_id, limit or 0.0, str(found.get("status")))

    # Reading jobs

    def find_job(self, job_id: str | int) -> tuple[dict[str, Any], JobStatus] | tuple[None, None]:
        """Return ``(job, state)`` from whichever table holds the job, or ``(None, None)``."""
        try:
            job: dict[str, Any] = self._json("GET", self._path(job_id))
        except JobNotFoundError:
            return None, None
        return job, JobStatus(job["status"])

    def get_job(self, job_id: str | int, state: str = "pending") -> dict[str, Any] | None:
        """Return the job when it is in ``state``, else None."""
        wanted = JobStatus.parse(state)
        job, found = self.find_job(job_id)
        return job if found is wanted else None

    def get_jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        """Return the jobs in ``state`` (every job, with none), state by state, each state's oldest first."""
        states = STATES if state is None else (JobStatus.parse(state),)
        jobs: list[dict[str, Any]] = []
        found: list[dict[str, Any]] = []
        for each in states:
            cursor = None
            while True:
                page = self._json("GET", "/jobs", params={"state": each.value, "order": "oldest", "limit": _PAGE, "cursor": cursor})
                found += page["jobs"]
                cursor = page["next"]
                if cursor is None:
                    break
            # In the order they entered the state, as a local store lists them (the list is by creation).
            jobs += sorted(found, key=lambda job: str(entered(job) or ""))
            found = []
        return jobs

    def get_idle_jobs(self) -> list[dict[str, Any]]:
        return self.get_jobs(JobStatus.IDLE)

    def get_pending_jobs(self) -> list[dict[str, Any]]:
        return self.get_jobs(JobStatus.PENDING)

    def get_running_jobs(self) -> list[dict[str, Any]]:
        return self.get_jobs(JobStatus.RUNNING)

    def get_finished_jobs(self) -> list[dict[str, Any]]:
        return self.get_jobs(JobStatus.FINISHED)

    def get_error_jobs(self) -> list[dict[str, Any]]:
        return self.get_jobs(JobStatus.ERROR)

    def get_job_results(self, job_id: str | int) -> dict[str, Any] | None:
        """Return the finished job's document, or None when the job is not finished."""
        return self.get_job(job_id, JobStatus.FINISHED)

    def stats(self) -> dict[str, Any]:
        """The store's figures, as :meth:`JobStore.stats` gives them."""
        figures: dict[str, Any] = self._json("GET", "/stats")
        return figures

    def check(self) -> list[StoreProblem]:
        """Every problem of the store's files, as :meth:`JobStore.check` lists them."""
        found = self._json("GET", "/problems")["problems"]
        return [StoreProblem(each["path"], each["detail"], each.get("jobId")) for each in found]

    def job_schema(self) -> JobSchema:
        """The store's job schema."""
        return JobSchema(self._json("GET", "/schema"))

    def get_job_schema(self, *, all_fields: bool = False) -> dict[str, dict[str, Any]]:
        """The field table of the store's schema, as api.job prints it."""
        return self.job_schema().field_table(all_fields)

    # The api.job names: the same calls as ``jobstore.api.job``'s functions.

    def findJob(self, jobId: str | int) -> tuple[dict[str, Any], str] | tuple[None, None]:
        """``(job, state name)``, or ``(None, None)``, as api.job's findJob."""
        job, state = self.find_job(jobId)
        return (job, state.value) if job is not None and state is not None else (None, None)

    def updateJobResult(self, jobId: str | int, data: Any, inputJob: Mapping[str, Any] | None = None) -> None:
        """Store the result and finish the job, returning nothing, as api.job's updateJobResult."""
        self.update_job_result(jobId, data, inputJob)

    def createJob(
        self,
        name: str = "",
        user: str = "",
        request: str = "",
        result: str = "",
        *,
        runAt: datetime.datetime | str | None = None,
        delay: float | datetime.timedelta | None = None,
        priority: int | None = None,
        maxRetries: int | None = None,
        retryBackoff: float | None = None,
        dependsOn: Iterable[str | int] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a new pending job, scheduled by the keywords as api.job's createJob is; returns the stored document."""
        return self.create_job(
            name, user, request, result, run_at=runAt, delay=delay, priority=priority, max_retries=maxRetries,
            retry_backoff=retryBackoff, depends_on=dependsOn, key=key,
        )

    def failJob(self, jobId: str | int, message: str = "", retry: bool = True) -> dict[str, Any]:
        """Move a job that has not ended to error, or back to pending while it has retries left and ``retry`` is True, as api.job's failJob."""
        return self.fail_job(jobId, message, retry)

    createJobs = create_jobs
    getJob = get_job
    setJob = set_job
    setJobPending = set_job_pending
    setJobRunning = set_job_running
    setJobFinished = set_job_finished
    deleteJob = delete_job
    purgeJobs = purge_jobs
    claimJob = claim_job
    requeueExpiredJobs = requeue_expired_jobs
    setJobProgress = set_job_progress
    appendJobMessage = append_job_message
    releaseJob = release_job
    retryJob = retry_job
    cancelJob = cancel_job
    blockUntilComplete = block_until_complete
    getIdleJobs = get_idle_jobs
    getPendingJobs = get_pending_jobs
    getRunningJobs = get_running_jobs
    getFinishedJobs = get_finished_jobs
    getErrorJobs = get_error_jobs
    getJobs = get_jobs
    getJobResults = get_job_results
    getJobSchema = get_job_schema
