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
from . import _schedule
from ._times import age, parse_time, span, timestamp, utc_now

T = TypeVar("T")
Operation = Callable[[Session, Batch], T]

#: The states a job ends in; waiting stops there.
FINAL_STATES = frozenset({JobStatus.FINISHED, JobStatus.ERROR})
#: The states of a job waiting to be claimed (idle ones wait to be submitted).
WAITING_STATES = frozenset({JobStatus.IDLE, JobStatus.PENDING})
#: The states of a job not yet ended, which holds its key.
LIVE_STATES = frozenset({JobStatus.IDLE, JobStatus.PENDING, JobStatus.RUNNING})
_RUN_TIMES = ("startedAt", "finishedAt", "leaseExpiresAt")
# What a re-run starts without: the traces of the previous run, and who ran it.
_RUN_FIELDS = ("worker", "attempts", "retries", "runAt", "progress", "cancelRequested", "canceled", *_RUN_TIMES)


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


def _requeue(batch: Batch, job: Mapping[str, Any], why: str, *, run_at: str | None = None, **fields: Any) -> Document:
    """Stage a job's return to pending for another claim, without the traces of its worker.

    It is due as it enters, or at ``run_at``; its history shows the stay at once, so that a
    claim in the same operation orders it as any other due job.
    """
    back = {name: value for name, value in job.items() if name not in ("worker", "leaseExpiresAt", "progress", "runAt")}
    if run_at is not None:
        back["runAt"] = run_at
    moved = _move(batch, JobStatus.PENDING, back, messages=with_message(job, why), **fields)
    record_change(moved, timestamp(utc_now()))
    return moved


def _retry_later(batch: Batch, job: Mapping[str, Any], why: str, default_backoff: float) -> Document | None:
    """Stage a failed job's automatic retry if it has one left (pending, due after its backoff); None when none is left."""
    allowed, used = job.get("maxRetries"), job.get("retries", 0)
    if not isinstance(allowed, int) or not isinstance(used, int) or used >= allowed or job.get("cancelRequested"):
        return None
    retry = used + 1
    when = timestamp(utc_now() + datetime.timedelta(seconds=_schedule.backoff(job, retry, default_backoff)))
    return _requeue(batch, job, f"{why}; retry {retry} of {allowed} at {when}", run_at=when, retries=retry)


def _no_retry_left(job: Mapping[str, Any]) -> str:
    """What ends a job with retries that were all used: said in its last message; nothing for any other."""
    allowed, used = job.get("maxRetries"), job.get("retries", 0)
    spent = isinstance(allowed, int) and allowed > 0 and isinstance(used, int) and used >= allowed
    return f"; no retries left ({allowed} of {allowed} used)" if spent else ""


def recover_expired(session: Session, batch: Batch, moment: datetime.datetime, max_attempts: int, default_backoff: float) -> list[Document]:
    """Stage the recovery of every running job whose lease ended before ``moment``; return the new documents.

    A lapsed lease is a failure: a job with retries (``maxRetries``) goes back to pending after
    its backoff while it has some left, then to error. A job without goes back to pending at
    once for another claim, or to error once it has been claimed ``max_attempts`` times. One
    asked to stop ends canceled. A line in its messages says which and why.
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
        elif "maxRetries" in job:
            retried = _retry_later(batch, job, why, default_backoff)
            moved = retried or _move(batch, JobStatus.ERROR, job, messages=with_message(job, why + _no_retry_left(job)))
        elif isinstance(attempts, int) and attempts >= max_attempts:
            moved = _move(batch, JobStatus.ERROR, job, messages=with_message(job, f"{why}; gave up after {max_attempts} attempts"))
        else:
            moved = _requeue(batch, job, f"{why}; back in the queue")
        recovered.append(moved)
    return recovered


def ready(session: Session, job: Mapping[str, Any]) -> bool:
    """Whether every job the job depends on has finished."""
    return all(session.get(JobStatus.FINISHED, needed) is not None for needed in _schedule.depends_on(job))


def claim(worker: str, lease: float, max_attempts: int, default_backoff: float) -> Operation[Document | None]:
    """Recover expired claims, then move the first due job in the claim order (see ``_schedule``) to running under a lease."""

    def operation(session: Session, batch: Batch) -> Document | None:
        moment = utc_now()
        recovered = recover_expired(session, batch, moment, max_attempts, default_backoff)
        now = timestamp(utc_now())  # after the recovery, which stamped the jobs it requeued
        # Jobs recovered just now are not in the store's pending table yet: they compete here.
        candidates = [
            job for job in recovered if job["status"] == JobStatus.PENDING and _schedule.due_since(job) <= now and ready(session, job)
        ]
        found = session.due(now)
        if found is not None:
            candidates.append(dict(found))
        if not candidates:
            return None
        job = min(candidates, key=_schedule.claim_order)
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


def requeue_expired(max_attempts: int, default_backoff: float) -> Operation[list[str]]:
    def operation(session: Session, batch: Batch) -> list[str]:
        return [job["id"] for job in recover_expired(session, batch, utc_now(), max_attempts, default_backoff)]

    return operation


def check_dependencies(session: Session, batch: Batch, job_id: str, needs: Iterable[str], *, given: bool, cycles: bool) -> str | None:
    """Return the first of the job's dependencies in error, if any; refuse dependencies just given that name no job, or close a cycle.

    The batch relies on every job read here: a dependency failing meanwhile, or another
    write closing a cycle, makes one of the two operations run again and see the other.

    :param given: the dependencies are given now (a submit, a change): an unknown one is refused;
        else they are the job's own, and one deleted since is passed over
    :param cycles: look for a cycle (no job can depend on an id just made up, nor on a job
        whose dependencies are not changing)
    :raises InvalidJobError: naming ``dependsOn``
    """
    failed = None
    for needed in needs:
        if needed == job_id:
            raise InvalidJobError(job_id, [("dependsOn", "a job cannot depend on itself")])
        found = session.find(needed)
        if found is None:
            if given:
                raise InvalidJobError(job_id, [("dependsOn", f"no job {needed!r} is in the store")])
            continue
        batch.rely_on(needed)
        if found[0] is JobStatus.ERROR and failed is None:
            failed = needed
        if not cycles:
            continue
        # A cycle would need a path back from the dependency to this job: follow every one.
        seen, ahead = {needed}, list(_schedule.depends_on(found[1]))
        while ahead:
            step = ahead.pop()
            if step == job_id:
                raise InvalidJobError(job_id, [("dependsOn", f"depending on {needed!r} makes a cycle: {needed!r} waits for this job")])
            if step not in seen and (further := session.find(step)) is not None:
                seen.add(step)
                batch.rely_on(step)
                ahead += _schedule.depends_on(further[1])
    return failed


def key_held(session: Session, job_id: str, job: Mapping[str, Any]) -> str | None:
    """Why the job may not be made live again: another job not yet ended holds its key; None when none does."""
    key = job.get("key")
    holder = session.holding(key) if isinstance(key, str) else None
    if holder is not None and holder["id"] != job_id:
        return f"job {holder['id']} holds its key {key!r} and has not ended"
    return None


def cascade(session: Session, batch: Batch) -> None:
    """Stage the end, in error, of every waiting job that depends on a job the batch sends to error, and so on down.

    The store's write path runs this after every operation, so that no way into error (a
    failure, a cancel, a lapsed lease, a job set by hand) leaves its dependents waiting for ever.
    """
    failed = [job_id for job_id, (state, _) in batch.puts.items() if state is JobStatus.ERROR]
    while failed:
        cause = failed.pop()
        for job in session.dependents(cause):
            if job["id"] not in batch.puts:  # else this operation has decided its fate already
                _move(batch, JobStatus.ERROR, job, messages=with_message(job, f"dependency {cause} ended in error"))
                failed.append(job["id"])


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


def fail(job_id: str, message: str, retry: bool, default_backoff: float) -> Operation[Document]:
    """Move a job that has not ended to error, with ``message`` as a line of its messages.

    A running job with retries left (``maxRetries``) goes back to pending instead, due after
    its backoff, unless ``retry`` is False: a worker's failure is what retries are for.
    """

    def operation(session: Session, batch: Batch) -> Document:
        state, job = _found(session, job_id)
        if state in FINAL_STATES:
            allowed = [s.value for s in JobStatus if s not in FINAL_STATES]
            raise JobStateError(job_id, state.value, "fail", allowed)
        if retry and state is JobStatus.RUNNING:
            retried = _retry_later(batch, job, f"failed: {message}" if message else "failed", default_backoff)
            if retried is not None:
                return retried
        spent = _no_retry_left(job) if retry and state is JobStatus.RUNNING else ""
        last = message + spent if message else spent.removeprefix("; ")
        fields: dict[str, Any] = {"messages": with_message(job, last)} if last else {}
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
        fields: dict[str, Any] = {"attempts": attempts - 1} if isinstance(attempts, int) and attempts > 0 else {}
        return _requeue(batch, job, f"{why}; back in the queue", **fields)

    return operation


def retry(job_id: str) -> Operation[Document]:
    """Send an ended job back to pending for a new run, due now, its attempts and retries counted from zero.

    :raises JobStateError: also when another job not yet ended holds the job's ``key``
    """

    def operation(session: Session, batch: Batch) -> Document:
        state, job = _found(session, job_id)
        if state not in FINAL_STATES:
            raise JobStateError(job_id, state.value, "retry", sorted(s.value for s in FINAL_STATES))
        held = key_held(session, job_id, job)
        if held is not None:
            raise JobStateError(job_id, state.value, "retry", sorted(s.value for s in FINAL_STATES), held)
        fresh = {name: value for name, value in job.items() if name not in _RUN_FIELDS}
        again = with_message(job, f"retried after it was {state.value}")
        failed = check_dependencies(session, batch, job_id, _schedule.depends_on(job), given=False, cycles=False)
        if failed is not None:
            # It would wait for ever: it stays in error, as its dependency is, and says why.
            return _move(batch, JobStatus.ERROR, job, messages=with_message({"messages": again}, f"dependency {failed} ended in error"))
        return _move(batch, JobStatus.PENDING, fresh, messages=again)

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
