"""An in-memory model of a store: what each operation should do to the jobs it holds, errors included.

The stateful test runs it beside a real store in one process; the contention test gives each
process a model of the jobs it alone holds. Both compare what the store answers with it.

The model keeps no clock: it orders jobs by when they entered pending, counting entries, and
places each ``runAt`` it meets against those entries. What only the store decides (the id of a
new job, the instant a retry's backoff ends, drawn with jitter) the model takes from the store's
answer, once it has checked that the answer keeps to the rules (see :meth:`Model.learn`).
"""

from __future__ import annotations

import copy
import datetime
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from jobstore import InvalidJobError, JobNotFoundError, JobStateError, JobStoreError

STATES = ("idle", "pending", "running", "finished", "error")
FINAL = ("finished", "error")
#: The states of a job not yet ended: one of them holding a key keeps the key from new jobs.
LIVE = ("idle", "pending", "running")
#: The states of a job waiting to be claimed (an idle one waits to be submitted).
WAITING = ("idle", "pending")
#: The scheduling fields a submitter gives, as the schema names them.
SCHEDULING = ("runAt", "priority", "maxRetries", "retryBackoff", "dependsOn", "key")
#: The fields the model follows; the times and history the store stamps are left to other tests.
FOLLOWED = ("id", "status", "name", "user", "request", "result", "messages", "progress", "worker", "attempts", "canceled", "cancelRequested", "retries", *SCHEDULING)
RUN_FIELDS = ("worker", "attempts", "progress", "cancelRequested", "canceled")
#: What a job retried by hand starts without, beyond its last run's traces: it is due now, its retries all left.
RETRY_CLEARS = (*RUN_FIELDS, "retries", "runAt")
#: What a job handed back to the queue loses: its worker's traces, and any wait it had.
REQUEUE_CLEARS = ("worker", "progress", "runAt")
NEW = {"name": "", "user": "", "request": "", "result": "", "messages": ""}

#: The longest a retry waits, whatever its backoff doubled to.
BACKOFF_CAP = 3600.0
#: A wait the model counts as over by the next operation, and one it counts as never over while a test runs.
OVER_AT_ONCE, NEVER_OVER = 0.001, 60.0

#: When a pending job is due, as the model places it: ``(0, text)`` for a runAt before the test
#: began, ``(1, n)`` for the n-th entry into pending (or a wait that ended at once after it).
Due = tuple[int, Any]
#: Stands for a wait neither over at once nor lasting past the test: only a model that never
#: predicts a claim (the contention's) may meet one.
UNSURE: Due = (-1, "a wait the model cannot place")
T = TypeVar("T")


def seen(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a stored document the model follows."""
    if document is None:
        return None
    return {name: document[name] for name in FOLLOWED if name in document}


def shown(answer: Any) -> Any:
    """What the model compares of a store's answer: the followed fields of each document in it."""
    if isinstance(answer, Mapping):
        return seen(answer)
    if isinstance(answer, list):
        return [shown(item) for item in answer]
    return answer


def agree(
    call: Callable[[], Any],
    predict: Callable[[], Any],
    observe: Callable[[], Any],
    learn: Callable[[Any, Any], Any] | None = None,
) -> tuple[Any, bool]:
    """Run ``predict`` on the model and ``call`` on the store: the same answer, or the same error.

    A call the model refuses must raise that error from the store too, and leave what
    ``observe`` sees as it was. ``learn`` (:meth:`Model.learn`) turns the prediction into the
    expected answer once the store has decided what only it decides. Returns the store's answer
    (None when refused) and whether it was refused.
    """
    try:
        expected = predict()
    except JobStoreError as error:
        before = observe()
        try:
            call()
        except type(error):
            assert observe() == before, "a failed call changed the store"
            return None, True
        raise AssertionError(f"the store did not raise {type(error).__name__}") from None
    answer = call()
    if learn is not None:
        expected = learn(expected, answer)
    assert shown(answer) == expected, (shown(answer), expected)
    return answer, False


def stamped(document: Mapping[str, Any]) -> None:
    """The store's stamps agree with the job's state: its history ends in it, and the run's times are those the state has.

    (The model does not follow the times themselves, only that they are there.)
    """
    job_id, status = document["id"], document["status"]
    assert document["history"][-1]["status"] == status, f"job {job_id} is {status}, its history ends {document['history'][-1]}"
    if status in FINAL:
        assert "finishedAt" in document, f"job {job_id} is {status} without finishedAt"
    elif status == "running":
        assert "startedAt" in document, f"job {job_id} is running without startedAt"
    else:
        assert "startedAt" not in document and "finishedAt" not in document, f"job {job_id} waits with the times of a run"


def with_message(job: Mapping[str, Any], text: str) -> str:
    return f"{job['messages']}\n{text}" if job.get("messages") else text


def written(moment: datetime.datetime) -> str:
    """An aware time as the store writes it: UTC, to the microsecond, ``Z``."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def moment_of(value: datetime.datetime | str) -> datetime.datetime:
    """A time given as a datetime or ISO 8601 text, as an aware datetime (naive means UTC)."""
    # Before Python 3.11, fromisoformat reads no "Z".
    moment = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def unique(items: Sequence[Any]) -> list[str]:
    """Job ids as the store keeps a dependency list: strings (an int as its text), each once, in order."""
    return list(dict.fromkeys(str(item) for item in items))


@dataclass
class Later:
    """The end of a retry's backoff, which the store draws with jitter: the model knows its bounds, then its text."""

    #: stands for the time, in the model's job, until the store's answer tells it
    mark: str
    #: the earliest it may be: the backoff's shortest wait from before the call
    earliest: datetime.datetime
    #: the longest the wait may be, from the store's answer back
    longest: float
    #: when it is due, as the model places it (None: never while a test runs; or ``UNSURE``)
    due: Due | None

    def read(self, text: object) -> str:
        """The time the store picked, checked against the bounds."""
        assert isinstance(text, str), f"a retry without a runAt: {text!r}"
        slack = datetime.timedelta(milliseconds=1)  # the store writes times to the microsecond, truncated
        latest = now() + datetime.timedelta(seconds=self.longest)
        assert self.earliest - slack <= moment_of(text) <= latest + slack, f"runAt {text} is not between {self.earliest} and {latest}"
        return text


def operation(method: Callable[..., T]) -> Callable[..., T]:
    """Make a model operation behave as one of the store's: all or nothing, then errors cascading.

    On the store's write path every operation ends with the cascade (see :meth:`Model.cascade`),
    and an operation that raises writes nothing: the model is put back as it was.
    """

    @functools.wraps(method)
    def run(self: Model, *args: Any, **kwargs: Any) -> T:
        saved = copy.deepcopy((self.jobs, self.order, self.entered, self.clock))
        self.touched = []
        try:
            result = method(self, *args, **kwargs)
        except JobStoreError:
            self.jobs, self.order, self.entered, self.clock = saved
            self.fresh.clear()
            self.later.clear()
            raise
        self.cascade()
        return result

    return run


class Model:
    """Jobs by id, each the followed fields; ``order`` keeps each state's jobs in the order they entered it.

    :param default_backoff: the store's ``retry_backoff``: what a job's retries wait without one of its own
    """

    def __init__(self, default_backoff: float = 10.0) -> None:
        self.default_backoff = default_backoff
        self.jobs: dict[str, dict[str, Any]] = {}
        self.order: dict[str, list[str]] = {state: [] for state in STATES}
        #: entries into pending so far, and the count at each pending job's entry: its place in time
        self.clock = 0
        self.entered: dict[str, int] = {}
        #: where the model placed each runAt it met (see ``Due``)
        self.times: dict[str, Due | None] = {}
        #: jobs the current operation put, in order: those in error cascade at its end
        self.touched: list[str] = []
        #: stand-in ids of the jobs the current operation made, and retries waiting for their time
        self.fresh: list[str] = []
        self.later: dict[str, Later] = {}
        self.began = now()

    def state_of(self, job_id: str) -> str | None:
        job = self.jobs.get(job_id)
        return job["status"] if job else None

    def put(self, job_id: str, job: dict[str, Any]) -> dict[str, Any]:
        """Hold ``job`` in its state: at the end of that state's order when it has just entered it."""
        before = self.state_of(job_id)
        if before != job["status"]:
            if before is not None:
                self.order[before].remove(job_id)
            self.order[job["status"]].append(job_id)
            if job["status"] == "pending":
                self.clock += 1
                self.entered[job_id] = self.clock
        self.jobs[job_id] = {**job, "id": job_id}
        self.touched.append(job_id)
        return copy.deepcopy(self.jobs[job_id])

    def drop(self, job_id: str) -> None:
        state = self.state_of(job_id)
        if state is not None:
            self.order[state].remove(job_id)
            del self.jobs[job_id]

    def existing(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise JobNotFoundError(job_id)
        return self.jobs[job_id]

    def in_state(self, state: str) -> list[dict[str, Any]]:
        return [{**self.jobs[job_id]} for job_id in self.order[state]]

    def holder(self, key: str | None) -> dict[str, Any] | None:
        """The job not yet ended that holds ``key``: the first in the order idle, pending, running."""
        if key is None:
            return None
        return next((self.jobs[i] for state in LIVE for i in self.order[state] if self.jobs[i].get("key") == key), None)

    # What only the store decides

    def learn(self, expected: Any, answer: Any) -> Any:
        """Take from the store's answer the ids of the jobs just made and the times retries wait for; return ``expected`` with them.

        The answer must name a new job where the model made one (not a job it holds), and give
        each retry a time within its backoff; the expected documents are paired with the
        answer's by position.
        """
        if not self.fresh and not self.later:
            return expected
        names: dict[str, str] = {}
        pairs = zip(expected, answer) if isinstance(expected, list) and isinstance(answer, list) else [(expected, answer)]
        for predicted, given in pairs:
            if not isinstance(predicted, dict) or not isinstance(given, Mapping):
                continue
            stand_in = predicted["id"]
            if stand_in in self.fresh and stand_in not in names:
                made = given["id"] not in self.jobs and given["id"] not in names.values()
                assert made, f"the store answered with job {given['id']}, the model with a new one"
                names[stand_in] = given["id"]
            if stand_in in self.later:
                later = self.later[stand_in]
                names[later.mark] = later.read(given.get("runAt"))
                self.times[names[later.mark]] = later.due
        self.fresh.clear()
        self.later.clear()
        for stand_in, job_id in names.items():
            if stand_in in self.jobs:
                self.rename(stand_in, job_id)
        self.jobs = {job_id: replaced(job, names) for job_id, job in self.jobs.items()}
        return replaced(expected, names)

    def rename(self, stand_in: str, job_id: str) -> None:
        self.jobs[job_id] = self.jobs.pop(stand_in)
        state = self.jobs[job_id]["status"]
        self.order[state][self.order[state].index(stand_in)] = job_id
        if stand_in in self.entered:
            self.entered[job_id] = self.entered.pop(stand_in)

    def backoff(self, job: Mapping[str, Any], retry: int) -> tuple[float, float]:
        """The shortest and longest waits of retry number ``retry``: its backoff doubled at each retry, capped, the jitter taking off up to half."""
        base = job.get("retryBackoff")
        if isinstance(base, bool) or not isinstance(base, (int, float)) or base <= 0:
            base = self.default_backoff
        doubled = min(base * 2.0 ** (retry - 1), BACKOFF_CAP)
        return doubled / 2, doubled

    def retry_later(self, job_id: str, shortest: float, longest: float) -> str:
        """Stand in for the end of a retry's backoff; :meth:`learn` reads it from the store's answer."""
        due = (1, self.clock) if longest <= OVER_AT_ONCE else None if shortest >= NEVER_OVER else UNSURE
        later = Later(f"later-{uuid.uuid4().hex}", now() + datetime.timedelta(seconds=shortest), longest, due)
        self.later[job_id] = later
        return later.mark

    # The claim order

    def due(self, job_id: str) -> Due | None:
        """When the pending job is due: from its runAt if it has one, else from its entry into pending; None: not during the test."""
        run_at = self.jobs[job_id].get("runAt")
        if run_at is None:
            return (1, self.entered[job_id])
        if run_at not in self.times:
            moment = moment_of(run_at)
            if moment < self.began:
                self.times[run_at] = (0, run_at)
            else:
                assert moment > now() + datetime.timedelta(days=1), f"runAt {run_at}: the model cannot say whether it is due"
                self.times[run_at] = None
        assert self.times[run_at] != UNSURE, f"runAt {run_at}: the model cannot say whether it is due"
        return self.times[run_at]

    def ready(self, job_id: str) -> bool:
        """Whether every job it depends on has finished."""
        return all(self.state_of(needed) == "finished" for needed in self.jobs[job_id].get("dependsOn", ()))

    def next_claim(self) -> str | None:
        """The job a claim takes: of the due pending jobs whose dependencies finished, the highest priority, then the one due longest, then the one that entered first."""
        queue = [
            (-self.jobs[job_id].get("priority", 0), due, place, job_id)
            for place, job_id in enumerate(self.order["pending"])
            if (due := self.due(job_id)) is not None and self.ready(job_id)
        ]
        return min(queue)[3] if queue else None

    def cascade(self) -> None:
        """End in error every waiting job depending on a job the operation put in error, and so on down.

        The order is the store's: the last job put in error is followed first, each one's idle
        dependents then its pending ones, in their states' order; a job the operation put already
        is left as it put it.
        """
        failed = [job_id for job_id in dict.fromkeys(self.touched) if self.state_of(job_id) == "error"]
        while failed:
            cause = failed.pop()
            for job_id in [*self.order["idle"], *self.order["pending"]]:
                job = self.jobs[job_id]
                if job_id not in self.touched and cause in job.get("dependsOn", ()):
                    self.put(job_id, {**job, "messages": with_message(job, f"dependency {cause} ended in error"), "status": "error"})
                    failed.append(job_id)

    def failed_dependency(self, job: Mapping[str, Any]) -> str | None:
        """The first job the job depends on that is in error, if any."""
        return next((needed for needed in job.get("dependsOn", ()) if self.state_of(needed) == "error"), None)

    def unless_failed(self, job: dict[str, Any]) -> dict[str, Any]:
        """A job about to wait, unless a job it depends on is in error: then it would wait for ever, and ends at once as that one did."""
        failed = self.failed_dependency(job)
        if failed is None:
            return job
        return {**job, "status": "error", "messages": with_message(job, f"dependency {failed} ended in error")}

    # What each operation should do: the expected job (followed fields), or the error it should raise.

    @operation
    def submit(self, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Jobs submitted together (``create_jobs``): for each spec a new job, or the live job holding its key.

        A spec gives the api.job fields and the scheduling ones by their schema names; ``runAt``
        may be a datetime or any ISO 8601 text.
        """
        made = []
        for spec in specs:
            holder = self.holder(spec.get("key"))
            if holder is not None:
                made.append(copy.deepcopy(holder))
                continue
            job = {**NEW, **{name: value for name, value in spec.items() if value is not None}}
            if "runAt" in job:
                job["runAt"] = written(moment_of(job["runAt"]))
            if "dependsOn" in job:
                job["dependsOn"] = unique(job["dependsOn"])
            missing = [needed for needed in job.get("dependsOn", ()) if needed not in self.jobs]
            if missing:
                raise InvalidJobError(missing[0], [])
            if "maxRetries" in job:
                job.setdefault("retryBackoff", self.default_backoff)  # written in, so that every process retries it alike
            stand_in = f"new-{uuid.uuid4().hex}"
            self.fresh.append(stand_in)
            made.append(self.put(stand_in, self.unless_failed({**job, "status": "pending"})))
        return made

    def create(self, **spec: Any) -> dict[str, Any]:
        """A job submitted alone (``create_job``)."""
        return self.submit([spec])[0]

    @operation
    def set(self, job_id: str, data: Mapping[str, Any], state: str) -> dict[str, Any]:
        """A job put in a state by hand, ``data`` merged in; refused where it would make a second live job with a key."""
        fields = {**data}
        if "runAt" in fields:
            fields["runAt"] = written(moment_of(fields["runAt"]))
        job = {**self.jobs.get(job_id, NEW), **fields, "status": state}
        if state in WAITING:
            job = self.unless_failed(job)
        holder = self.holder(job.get("key"))
        if job["status"] in LIVE and holder is not None and holder["id"] != job_id:
            raise InvalidJobError(job_id, [])
        return self.put(job_id, job)

    @operation
    def update_result(self, job_id: str, result: str) -> dict[str, Any]:
        return self.put(job_id, {**self.existing(job_id), "result": result, "status": "finished"})

    def running(self, job_id: str, action: str) -> dict[str, Any]:
        """The job, which a worker's report (progress, a message) needs to be running."""
        job = self.existing(job_id)
        if job["status"] != "running":
            raise JobStateError(job_id, job["status"], action, [])
        return job

    @operation
    def progress(self, job_id: str, completed: int, total: int | None) -> dict[str, Any]:
        return self.put(job_id, {**self.running(job_id, "set the progress of"), "progress": {"completed": completed, "total": total}})

    @operation
    def append(self, job_id: str, text: str) -> dict[str, Any]:
        job = self.running(job_id, "add a message to")
        return self.put(job_id, {**job, "messages": with_message(job, text)})

    @operation
    def fail(self, job_id: str, message: str, retry: bool = True) -> dict[str, Any]:
        """A failure: back to pending after a backoff while a running job has retries left (and ``retry``), else to error."""
        job = self.existing(job_id)
        if job["status"] in FINAL:
            raise JobStateError(job_id, job["status"], "fail", [])
        allowed, used = job.get("maxRetries"), job.get("retries", 0)
        if retry and job["status"] == "running" and isinstance(allowed, int):
            # A job asked to stop is not retried: its failure is the stop it was asked for.
            if used < allowed and not job.get("cancelRequested"):
                return self.retry_soon(job_id, f"failed: {message}" if message else "failed")
            if 0 < allowed <= used:
                # The failure after the last retry says they are spent, as a line of its own when it has no message.
                spent = f"no retries left ({allowed} of {allowed} used)"
                message = f"{message}; {spent}" if message else spent
        messages = with_message(job, message) if message else job["messages"]
        ended = {**job, "messages": messages, "status": "error"}
        if job.get("cancelRequested"):
            ended["canceled"] = True
        return self.put(job_id, ended)

    def retry_soon(self, job_id: str, why: str) -> dict[str, Any]:
        """A failed job's next retry: back to pending, due at the end of its backoff, one more retry used."""
        job = self.jobs[job_id]
        retry, allowed = job.get("retries", 0) + 1, job["maxRetries"]
        back = {name: value for name, value in job.items() if name not in REQUEUE_CLEARS}
        self.put(job_id, {**back, "retries": retry, "status": "pending"})  # its entry, which a wait over at once is due from
        when = self.retry_later(job_id, *self.backoff(job, retry))
        return self.put(job_id, {**self.jobs[job_id], "runAt": when, "messages": with_message(job, f"{why}; retry {retry} of {allowed} at {when}")})

    @operation
    def release(self, job_id: str, reason: str) -> dict[str, Any]:
        job = self.existing(job_id)
        if job["status"] != "running":
            raise JobStateError(job_id, job["status"], "release", [])
        why = f"released by worker {job.get('worker') or '?'}" + (f": {reason}" if reason else "")
        if job.get("cancelRequested"):
            return self.put(job_id, {**job, "canceled": True, "messages": with_message(job, f"canceled: {why}"), "status": "error"})
        back = {name: value for name, value in job.items() if name not in REQUEUE_CLEARS}
        if job.get("attempts", 0) > 0:
            back["attempts"] = job["attempts"] - 1
        return self.put(job_id, {**back, "messages": with_message(job, f"{why}; back in the queue"), "status": "pending"})

    @operation
    def retry(self, job_id: str) -> dict[str, Any]:
        """An ended job run again: due now, its attempts and retries from zero; refused while another live job holds its key.

        A job depending on one in error would wait for ever: it stays in error instead.
        """
        job = self.existing(job_id)
        if job["status"] not in FINAL or self.holder(job.get("key")) is not None:
            raise JobStateError(job_id, job["status"], "retry", [])
        again = with_message(job, f"retried after it was {job['status']}")
        failed = self.failed_dependency(job)
        if failed is not None:
            # It would wait for ever: it stays as it was, in error as its dependency is, and says why.
            return self.put(job_id, {**job, "messages": with_message({"messages": again}, f"dependency {failed} ended in error"), "status": "error"})
        fresh = {name: value for name, value in job.items() if name not in RETRY_CLEARS}
        return self.put(job_id, {**fresh, "messages": again, "status": "pending"})

    @operation
    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.existing(job_id)
        if job["status"] == "running":
            return self.put(job_id, {**job, "cancelRequested": True})
        if job["status"] in FINAL:
            raise JobStateError(job_id, job["status"], "cancel", [])
        message = with_message(job, f"canceled while {job['status']}")
        return self.put(job_id, {**job, "canceled": True, "messages": message, "status": "error"})

    def heartbeat(self, job_id: str) -> dict[str, Any]:
        job = self.existing(job_id)
        if job["status"] != "running":
            raise JobStateError(job_id, job["status"], "renew the lease of", [])
        return copy.deepcopy(job)

    @operation
    def claim(self, worker: str) -> dict[str, Any] | None:
        """The job the claim order puts first (see :meth:`next_claim`), now running for ``worker`` (leases never expire here)."""
        job_id = self.next_claim()
        if job_id is None:
            return None
        job = self.jobs[job_id]
        return self.put(job_id, {**job, "worker": worker, "attempts": job.get("attempts", 0) + 1, "status": "running"})

    def take(self, document: Mapping[str, Any]) -> None:
        """Hold a job another process made (as a claim hands it over), as the store returned it."""
        self.put(document["id"], seen(document) or {})


def replaced(value: Any, names: Mapping[str, str]) -> Any:
    """``value`` with each stand-in (a new job's id, a retry's time) replaced by what the store gave, in every string it holds."""
    if isinstance(value, str):
        for stand_in, given in names.items():
            value = value.replace(stand_in, given)
        return value
    if isinstance(value, dict):
        return {name: replaced(item, names) for name, item in value.items()}
    if isinstance(value, list):
        return [replaced(item, names) for item in value]
    return value
