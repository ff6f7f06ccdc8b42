"""An in-memory model of a store: what each operation should do to the jobs it holds, errors included.

The stateful test runs it beside a real store in one process; the contention test gives each
process a model of the jobs it alone holds. Both compare what the store answers with it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from jobstore import JobNotFoundError, JobStateError, JobStoreError

STATES = ("idle", "pending", "running", "finished", "error")
FINAL = ("finished", "error")
#: The fields the model follows; the times and history the store stamps are left to other tests.
FOLLOWED = ("status", "name", "user", "request", "result", "messages", "progress", "worker", "attempts", "canceled", "cancelRequested")
RUN_FIELDS = ("worker", "attempts", "progress", "cancelRequested", "canceled")
NEW = {"name": "", "user": "", "request": "", "result": "", "messages": ""}


def seen(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a stored document the model follows."""
    if document is None:
        return None
    return {name: document[name] for name in FOLLOWED if name in document}


def agree(call: Callable[[], Any], predict: Callable[[], Any], observe: Callable[[], Any]) -> tuple[Any, bool]:
    """Run ``predict`` on the model and ``call`` on the store: the same answer, or the same error.

    A call the model refuses must raise that error from the store too, and leave what
    ``observe`` sees as it was. Returns the store's answer (None when refused) and whether it was refused.
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
    assert (seen(answer) if isinstance(answer, dict) else answer) == expected, (seen(answer) if isinstance(answer, dict) else answer, expected)
    return answer, False


def with_message(job: Mapping[str, Any], text: str) -> str:
    return f"{job['messages']}\n{text}" if job.get("messages") else text


class Model:
    """Jobs by id, each the followed fields; ``order`` keeps each state's jobs in the order they entered it."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.order: dict[str, list[str]] = {state: [] for state in STATES}

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
        self.jobs[job_id] = job
        return copy.deepcopy(job)

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

    # What each operation should do: the expected job (followed fields), or the error it should raise.

    def create(self, job_id: str, name: str, user: str, request: str, result: str = "") -> dict[str, Any]:
        return self.put(job_id, {**NEW, "name": name, "user": user, "request": request, "result": result, "status": "pending"})

    def set(self, job_id: str, data: Mapping[str, Any], state: str) -> dict[str, Any]:
        base = self.jobs.get(job_id, NEW)
        return self.put(job_id, {**base, **data, "status": state})

    def update_result(self, job_id: str, result: str) -> dict[str, Any]:
        return self.put(job_id, {**self.existing(job_id), "result": result, "status": "finished"})

    def running(self, job_id: str, action: str) -> dict[str, Any]:
        """The job, which a worker's report (progress, a message) needs to be running."""
        job = self.existing(job_id)
        if job["status"] != "running":
            raise JobStateError(job_id, job["status"], action, [])
        return job

    def progress(self, job_id: str, completed: int, total: int | None) -> dict[str, Any]:
        return self.put(job_id, {**self.running(job_id, "set the progress of"), "progress": {"completed": completed, "total": total}})

    def append(self, job_id: str, text: str) -> dict[str, Any]:
        job = self.running(job_id, "add a message to")
        return self.put(job_id, {**job, "messages": with_message(job, text)})

    def fail(self, job_id: str, message: str) -> dict[str, Any]:
        job = self.existing(job_id)
        if job["status"] in FINAL:
            raise JobStateError(job_id, job["status"], "fail", [])
        messages = with_message(job, message) if message else job["messages"]
        ended = {**job, "messages": messages, "status": "error"}
        if job.get("cancelRequested"):
            ended["canceled"] = True
        return self.put(job_id, ended)

    def release(self, job_id: str, reason: str) -> dict[str, Any]:
        job = self.existing(job_id)
        if job["status"] != "running":
            raise JobStateError(job_id, job["status"], "release", [])
        why = f"released by worker {job.get('worker') or '?'}" + (f": {reason}" if reason else "")
        if job.get("cancelRequested"):
            return self.put(job_id, {**job, "canceled": True, "messages": with_message(job, f"canceled: {why}"), "status": "error"})
        back = {name: value for name, value in job.items() if name not in ("worker", "progress")}
        if job.get("attempts", 0) > 0:
            back["attempts"] = job["attempts"] - 1
        return self.put(job_id, {**back, "messages": with_message(job, f"{why}; back in the queue"), "status": "pending"})

    def retry(self, job_id: str) -> dict[str, Any]:
        job = self.existing(job_id)
        if job["status"] not in FINAL:
            raise JobStateError(job_id, job["status"], "retry", [])
        fresh = {name: value for name, value in job.items() if name not in RUN_FIELDS}
        return self.put(job_id, {**fresh, "messages": with_message(job, f"retried after it was {job['status']}"), "status": "pending"})

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

    def claim(self, worker: str) -> dict[str, Any] | None:
        """The pending job that entered pending first, now running for ``worker`` (leases never expire here)."""
        if not self.order["pending"]:
            return None
        job_id = self.order["pending"][0]
        job = self.jobs[job_id]
        return self.put(job_id, {**job, "worker": worker, "attempts": job.get("attempts", 0) + 1, "status": "running"})

    def take(self, document: Mapping[str, Any]) -> None:
        """Hold a job another process made (as a claim hands it over), as the store returned it."""
        self.put(document["id"], seen(document) or {})
