"""The rules of a job's life beyond the api.job basics: claims under leases, recovery of expired
claims, progress, messages, failure, retry and cancel.

Each public function builds one operation for the store's single write path: it reads through
the session and stages whole new documents in the batch, so every document it makes is stamped,
validated and written like any other.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from .engines._base import Batch, Document, Session
from ._errors import InvalidJobError, JobNotFoundError, JobStateError
from ._status import STATES, JobStatus

T = TypeVar("T")
Operation = Callable[[Session, Batch], T]

#: The states a job ends in; waiting stops there.
FINAL_STATES = frozenset({JobStatus.FINISHED, JobStatus.ERROR})
_RUN_TIMES = ("startedAt", "finishedAt", "leaseExpiresAt")
# What a re-run starts without: the traces of the previous run, and who ran it.
_RUN_FIELDS = ("worker", "attempts", "progress", "cancelRequested", "canceled", *_RUN_TIMES)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def timestamp(moment: datetime.datetime) -> str:
    """A time as jobstore writes it: ISO 8601, UTC, to the microsecond."""
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: object) -> datetime.datetime | None:
    """Read a timestamp jobstore wrote; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def age(moment: object, now: datetime.datetime | None = None) -> str:
    """How long ago a timestamp jobstore wrote (or a time) was, in its largest unit: ``42s``, ``5m``, ``3h``, ``2d``; ``-`` for no time."""
    then = moment if isinstance(moment, datetime.datetime) else parse_time(moment)
    if then is None:
        return "-"
    return span(((now or utc_now()) - then).total_seconds())


def span(seconds: float) -> str:
    """A number of seconds in its largest unit, rounded down: ``42s``, ``5m``, ``3h``, ``2d``."""
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def record_change(document: Document, stamp: str) -> None:
    """Stamp a document about to be written: when it was written and, if its state changed, the change.

    The change goes to ``history``; entering ``running`` sets ``startedAt``, entering a final
    state ``finishedAt``, and going back to ``idle`` or ``pending`` clears both, so the times
    always describe the current run. A lease ends with the run.
    """
    document.setdefault("createdAt", stamp)
    document["updatedAt"] = stamp
    history = document.get("history", [])
    status = document.get("status")
    if not isinstance(history, list):
        return  # not ours to repair: the schema names the field
    if history and isinstance(history[-1], Mapping) and history[-1].get("status") == status:
        return
    document["history"] = [*history, {"status": status, "at": stamp}]
    if status == JobStatus.RUNNING:
        document["startedAt"] = stamp
        return
    document.pop("leaseExpiresAt", None)
    if status in FINAL_STATES:
        document["finishedAt"] = stamp
    else:
        document.pop("startedAt", None)
        document.pop("finishedAt", None)


def with_message(document: Mapping[str, Any], text: str) -> str:
    """The job's messages with one more line."""
    messages = document.get("messages") or ""
    return f"{messages}\n{text}" if messages else text


def _found(session: Session, job_id: str) -> tuple[JobStatus, Mapping[str, Any]]:
    found = session.find(job_id)
    if found is None:
        raise JobNotFoundError(job_id)
    return found


def _move(batch: Batch, state: JobStatus, job: Mapping[str, Any], **fields: Any) -> Document:
    document = {**job, **fields, "status": state.value}
    batch.put(state, document)
    return document


def recover_expired(session: Session, batch: Batch, moment: datetime.datetime, max_attempts: int) -> list[Document]:
    """Stage the recovery of every running job whose lease ended before ``moment``; return the new documents.

    A job goes back to pending for another claim, or to error once it has been claimed
    ``max_attempts`` times, or when it was asked to stop; a line in its messages says why.
    """
    recovered = []
    for job in session.lapsed(timestamp(moment)):
        expires = parse_time(job.get("leaseExpiresAt"))
        if expires is None or expires > moment:
            continue
        attempts = job.get("attempts", 0)
        why = f"the lease of worker {job.get('worker', '?')} expired on attempt {attempts}"
        if job.get("cancelRequested"):
            moved = _move(batch, JobStatus.ERROR, job, canceled=True, messages=with_message(job, f"canceled: {why}"))
        elif isinstance(attempts, int) and attempts >= max_attempts:
            gave_up = f"{why}; gave up after {max_attempts} attempts"
            moved = _move(batch, JobStatus.ERROR, job, messages=with_message(job, gave_up))
        else:
            moved = _move(batch, JobStatus.PENDING, job, messages=with_message(job, f"{why}; back in the queue"))
        recovered.append(moved)
    return recovered


def claim(worker: str, lease: float, max_attempts: int) -> Operation[Document | None]:
    """Recover expired claims, then move the job that entered pending first to running under a lease."""

    def operation(session: Session, batch: Batch) -> Document | None:
        moment = utc_now()
        requeued = [job for job in recover_expired(session, batch, moment, max_attempts) if job["status"] == JobStatus.PENDING]
        job = session.first(JobStatus.PENDING)
        if job is None:
            if not requeued:
                return None
            # A job requeued just now joins the queue at its end, and, the queue being empty, leaves
            # it at once: its history must still show the stay.
            job = requeued[0]
            record_change(job, timestamp(moment))
        attempts = job.get("attempts", 0)
        return _move(
            batch,
            JobStatus.RUNNING,
            job,
            worker=worker,
            # A value damaged by hand is left for the schema to name.
            attempts=attempts + 1 if isinstance(attempts, int) else attempts,
            leaseExpiresAt=timestamp(moment + datetime.timedelta(seconds=lease)),
        )

    return operation


def requeue_expired(max_attempts: int) -> Operation[list[str]]:
    def operation(session: Session, batch: Batch) -> list[str]:
        return [job["id"] for job in recover_expired(session, batch, utc_now(), max_attempts)]

    return operation


def heartbeat(job_id: str, lease: float, worker: str | None) -> Operation[Document]:
    """Renew the lease of a running job (of ``worker``'s, when given)."""

    def operation(session: Session, batch: Batch) -> Document:
        state, job = _found(session, job_id)
        if state is not JobStatus.RUNNING:
            raise JobStateError(job_id, state.value, "renew the lease of", [JobStatus.RUNNING.value])
        if worker is not None and job.get("worker") != worker:
            detail = f"worker {job.get('worker')!r} holds it now, not {worker!r}"
            raise JobStateError(job_id, state.value, "renew the lease of", [JobStatus.RUNNING.value], detail)
        expires = timestamp(utc_now() + datetime.timedelta(seconds=lease))
        return _move(batch, state, job, leaseExpiresAt=expires)

    return operation


def check_progress(job_id: str, completed: object, total: object) -> dict[str, int | None]:
    """Return the progress object for ``completed`` of ``total`` steps.

    :raises InvalidJobError: (a ValueError) for a count that is not a non-negative int, or completed > total
    """

    def whole(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not whole(completed):
        raise InvalidJobError(job_id, [("progress", f"completed must be a non-negative int, not {completed!r}")])
    if total is not None and not whole(total):
        raise InvalidJobError(job_id, [("progress", f"total must be a non-negative int or None, not {total!r}")])
    if total is not None and completed > total:  # type: ignore[operator]
        raise InvalidJobError(job_id, [("progress", f"completed ({completed}) is more than total ({total})")])
    return {"completed": completed, "total": total}  # type: ignore[dict-item]


def report(job_id: str, action: str, change: Callable[[Mapping[str, Any]], dict[str, Any]]) -> Operation[Document]:
    """Change what a worker reports of a running job (its progress, its messages), in place.

    Only a running job is being worked on: a report on a job waiting or ended would tell of work
    that is not happening (a finished job shown at 1 of 2).

    :param action: what is asked, for the error ("set the progress of")
    """

    def operation(session: Session, batch: Batch) -> Document:
        state, job = _found(session, job_id)
        if state is not JobStatus.RUNNING:
            raise JobStateError(job_id, state.value, action, [JobStatus.RUNNING.value])
        return _move(batch, state, job, **change(job))

    return operation


def fail(job_id: str, message: str) -> Operation[Document]:
    """Move a job that has not ended to error, with ``message`` as a line of its messages."""

    def operation(session: Session, batch: Batch) -> Document:
        state, job = _found(session, job_id)
        if state in FINAL_STATES:
            allowed = [s.value for s in JobStatus if s not in FINAL_STATES]
            raise JobStateError(job_id, state.value, "fail", allowed)
        fields: dict[str, Any] = {"messages": with_message(job, message)} if message else {}
        if job.get("cancelRequested"):
            fields["canceled"] = True  # the worker stopped as asked: the job ends canceled, as when canceled waiting
        return _move(batch, JobStatus.ERROR, job, **fields)

    return operation


def release(job_id: str, worker: str | None, reason: str) -> Operation[Document]:
    """Hand a running job back to pending, as if never claimed: its claim does not count as an attempt.

    A job its worker was asked to stop ends canceled instead, which is what the stop was for.
    """

    def operation(session: Session, batch: Batch) -> Document:
        state, job = _found(session, job_id)
        if state is not JobStatus.RUNNING:
            raise JobStateError(job_id, state.value, "release", [JobStatus.RUNNING.value])
        holder = job.get("worker")
        if worker is not None and holder != worker:
            detail = f"worker {holder!r} holds it now, not {worker!r}"
            raise JobStateError(job_id, state.value, "release", [JobStatus.RUNNING.value], detail)
        why = f"released by worker {holder or '?'}" + (f": {reason}" if reason else "")
        if job.get("cancelRequested"):
            return _move(batch, JobStatus.ERROR, job, canceled=True, messages=with_message(job, f"canceled: {why}"))
        attempts = job.get("attempts", 0)
        unclaimed = {name: value for name, value in job.items() if name not in ("worker", "leaseExpiresAt", "progress")}
        if isinstance(attempts, int) and attempts > 0:
            unclaimed["attempts"] = attempts - 1
        return _move(batch, JobStatus.PENDING, unclaimed, messages=with_message(job, f"{why}; back in the queue"))

    return operation


def retry(job_id: str) -> Operation[Document]:
    """Send an ended job back to pending for a new run, its attempts counted from zero."""

    def operation(session: Session, batch: Batch) -> Document:
        state, job = _found(session, job_id)
        if state not in FINAL_STATES:
            raise JobStateError(job_id, state.value, "retry", sorted(s.value for s in FINAL_STATES))
        fresh = {name: value for name, value in job.items() if name not in _RUN_FIELDS}
        return _move(batch, JobStatus.PENDING, fresh, messages=with_message(job, f"retried after it was {state.value}"))

    return operation


def cancel(job_id: str) -> Operation[Document]:
    """End a job that has not started; ask a running one to stop (its worker sees ``cancelRequested``)."""

    def operation(session: Session, batch: Batch) -> Document:
        state, job = _found(session, job_id)
        if state is JobStatus.RUNNING:
            return _move(batch, state, job, cancelRequested=True)
        if state in FINAL_STATES:
            allowed = [s.value for s in JobStatus if s not in FINAL_STATES]
            raise JobStateError(job_id, state.value, "cancel", allowed)
        return _move(batch, JobStatus.ERROR, job, canceled=True, messages=with_message(job, f"canceled while {state.value}"))

    return operation


def lease_lapsed(job: Mapping[str, Any], now: datetime.datetime) -> bool:
    """Whether the job is running under a lease that ended by ``now``, as the next claim would judge it.

    :param job: the document
    :param now: the current UTC time
    """
    expires = parse_time(job.get("leaseExpiresAt"))
    return job.get("status") == JobStatus.RUNNING and expires is not None and expires <= now


def entered(job: Mapping[str, Any]) -> datetime.datetime | None:
    """When the job entered its current state: its history's last entry, else when it was created."""
    history = job.get("history")
    if isinstance(history, list) and history and isinstance(history[-1], Mapping):
        return parse_time(history[-1].get("at"))
    return parse_time(job.get("createdAt"))


def statistics(jobs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per state (every state, zeros included), how many running jobs' leases have lapsed,
    the total, the oldest pending job's age in seconds (None when none waits) and how many jobs
    finished in the last hour."""
    now = utc_now()
    counts = {state.value: 0 for state in STATES}
    lapsed = 0
    oldest: datetime.datetime | None = None
    recent = 0
    for job in jobs:
        status = str(job.get("status"))
        counts[status] = counts.get(status, 0) + 1
        if lease_lapsed(job, now):
            lapsed += 1
        if status == JobStatus.PENDING:
            since = entered(job)
            if since is not None and (oldest is None or since < oldest):
                oldest = since
        finished = parse_time(job.get("finishedAt"))
        if status == JobStatus.FINISHED and finished is not None and (now - finished).total_seconds() <= 3600:
            recent += 1
    return {
        **counts,
        "leaseLapsed": lapsed,
        "total": sum(counts.values()),
        "oldestPendingSeconds": None if oldest is None else round((now - oldest).total_seconds(), 3),
        "finishedLastHour": recent,
    }
