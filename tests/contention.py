"""Contention: processes doing a random mix of every operation on one store, each logging what it saw.

A job belongs to one process at a time, so each process can predict every answer about its
own jobs with a :class:`model.Model`: a pending job belongs to the queue, a claim hands it to
the claimer, and putting a job back in pending hands it back. Each process logs the jobs it
gave to the queue, the ones it claimed and, at the end, those it holds; :func:`reconcile`
then checks that the store holds exactly that.
"""

from __future__ import annotations

import datetime
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jobstore import InvalidJobError, JobStore

from model import FINAL, STATES, Model, agree, seen

Event = dict[str, Any]


class Mixer:
    """One process's share of the contention: random operations, each answer checked against its model."""

    def __init__(self, store: JobStore, seed: int, tag: str) -> None:
        self.store, self.tag = store, tag
        self.rng = random.Random(seed)
        self.model = Model()
        self.held: dict[str, dict[str, Any]] = {}  # the last document the store returned for each job held
        self.events: list[Event] = []
        self.counts: Counter[str] = Counter()
        self.made = 0

    def run(self, seconds: float) -> Iterator[Event]:
        """Run operations for ``seconds``; yield each event as it happens, then what is held at the end."""
        operations = [getattr(self, name) for name in dir(self) if name.startswith("op_")]
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            operation = self.rng.choice(operations)
            self.counts[operation.__name__[3:]] += 1
            operation()
            yield from self.events
            self.events.clear()
        yield {"held": self.held, "counts": dict(self.counts)}

    # Bookkeeping

    def text(self) -> str:
        return self.rng.choice(["", "x", "ünï", "a/b.c", "line\nbreak", "n" * 50])

    def mine(self) -> str | None:
        return self.rng.choice(sorted(self.held)) if self.held else None

    def keep(self, document: dict[str, Any] | None) -> None:
        """Record what a write on a held job returned: still held, or handed to the queue."""
        if document is None:
            return
        if document["status"] == "pending":
            self.model.drop(document["id"])
            self.held.pop(document["id"], None)
            self.events.append({"released": document})
        else:
            self.held[document["id"]] = document

    def expect(self, job_id: str, call: Callable[[], Any], predict: Callable[[], Any]) -> None:
        """Run ``call`` on the store and ``predict`` on the model: same answer or the same error, and a failed call changes nothing."""
        document, refused = agree(call, predict, lambda: seen(self.store.find_job(job_id)[0]))
        if refused:
            assert seen(self.store.find_job(job_id)[0]) == self.model.jobs.get(job_id), f"a failed call changed {job_id}"
            self.counts["refused"] += 1
        else:
            self.keep(document)

    # Operations (one is picked at random each time)

    def op_create(self) -> None:
        self.keep(self.store.create_job(self.text(), self.tag, self.text()))

    def op_create_many(self) -> None:
        for document in self.store.create_jobs([{"name": self.text(), "user": self.tag} for _ in range(3)]):
            self.keep(document)

    def op_claim(self) -> None:
        document = self.store.claim_job(self.tag, 3600)
        if document is not None:
            assert document["status"] == "running" and document["worker"] == self.tag
            assert document["id"] not in self.held, "claimed a job this process already held"
            self.model.take(document)
            self.events.append({"claimed": document["id"]})
            self.keep(document)

    def op_set_new(self) -> None:
        self.made += 1
        job_id, state, data = f"{self.tag}-{self.made}", self.rng.choice(STATES), {"request": self.text()}
        self.expect(job_id, lambda: self.store.set_job(job_id, data, state), lambda: self.model.set(job_id, data, state))

    def op_set(self) -> None:
        if (job_id := self.mine()) is not None:
            state, data = self.rng.choice(STATES), {"result": self.text()}
            setter = {"pending": self.store.set_job_pending, "running": self.store.set_job_running, "finished": self.store.set_job_finished}.get(state)
            call = (lambda: setter(job_id, data)) if setter else (lambda: self.store.set_job(job_id, data, state))
            self.expect(job_id, call, lambda: self.model.set(job_id, data, state))

    def op_update_result(self) -> None:
        job_id, result = self.mine() or f"{self.tag}-ghost", self.text()
        self.expect(job_id, lambda: self.store.update_job_result(job_id, result), lambda: self.model.update_result(job_id, result))

    def op_progress(self) -> None:
        job_id, done, total = self.mine() or f"{self.tag}-ghost", self.rng.randint(0, 4), self.rng.choice([None, 3])

        def predict() -> Any:
            if total is not None and done > total:
                raise InvalidJobError(job_id, [])
            return self.model.progress(job_id, done, total)

        self.expect(job_id, lambda: self.store.set_job_progress(job_id, done, total), predict)

    def op_lifecycle_rules(self) -> None:
        """A message, a failure, a retry, a cancel or a heartbeat; the model says which of them the state refuses."""
        job_id, text = self.mine() or f"{self.tag}-ghost", self.text()
        name = self.rng.choice(["append", "fail", "retry", "cancel", "heartbeat"])
        call = {
            "append": lambda: self.store.append_job_message(job_id, text),
            "fail": lambda: self.store.fail_job(job_id, text),
            "retry": lambda: self.store.retry_job(job_id),
            "cancel": lambda: self.store.cancel_job(job_id),
            "heartbeat": lambda: self.store.heartbeat(job_id, 3600),
        }[name]
        predict = {
            "append": lambda: self.model.append(job_id, text),
            "fail": lambda: self.model.fail(job_id, text),
            "retry": lambda: self.model.retry(job_id),
            "cancel": lambda: self.model.cancel(job_id),
            "heartbeat": lambda: self.model.heartbeat(job_id),
        }[name]
        self.expect(job_id, call, predict)

    def op_bad_document(self) -> None:
        if (job_id := self.mine()) is not None:
            self.expect(job_id, lambda: self.store.set_job(job_id, {"progress": "lots"}, "running"), lambda: _refuse(InvalidJobError(job_id, [])))

    def op_delete(self) -> None:
        if (job_id := self.mine()) is not None:
            self.store.delete_job(job_id)
            self.model.drop(job_id)
            del self.held[job_id]
        self.store.delete_job(f"{self.tag}-ghost")

    def op_read_one(self) -> None:
        if (job_id := self.mine()) is not None:
            state = self.held[job_id]["status"]
            assert self.store.find_job(job_id) == (self.held[job_id], state)
            assert self.store.get_job(job_id, state) == self.held[job_id]
            assert self.store.get_job(job_id, self.rng.choice([s for s in STATES if s != state])) is None
            if state in FINAL:
                assert self.store.block_until_complete(job_id, timeout=5) == self.held[job_id]
        assert self.store.find_job(f"{self.tag}-ghost") == (None, None)
        assert self.store.get_job_results(f"{self.tag}-ghost") is None

    def op_read_state(self) -> None:
        state = self.rng.choice([*STATES, None])
        listed = self.store.get_jobs(state)
        ids = [job["id"] for job in listed]
        assert len(ids) == len(set(ids)), "a job listed twice"
        mine = {job["id"]: job for job in listed if job["id"] in self.held}
        assert mine == {i: job for i, job in self.held.items() if state in (None, job["status"])}

    def op_housekeeping(self) -> None:
        # Nothing here is old enough to purge and every lease runs for an hour: both must find nothing.
        assert self.store.requeue_expired_jobs() == []
        assert self.store.purge_jobs("finished", older_than=datetime.timedelta(days=3650)) == 0


def _refuse(error: Exception) -> Any:
    raise error


def reconcile(root: Path, logs: list[list[Event]]) -> dict[str, int]:
    """Check the store against the processes' logs; return what was checked, for the figures."""
    store = JobStore(root)
    assert store.check() == [], "the store has problems"
    held: dict[str, dict[str, Any]] = {}
    released: Counter[str] = Counter()
    claimed: Counter[str] = Counter()
    last_release: dict[str, dict[str, Any]] = {}
    counts: Counter[str] = Counter()
    for log in logs:
        for event in log:
            if "released" in event:
                document = event["released"]
                released[document["id"]] += 1
                if len(document["history"]) > len(last_release.get(document["id"], {}).get("history", [])):
                    last_release[document["id"]] = document
            elif "claimed" in event:
                claimed[event["claimed"]] += 1
            else:
                assert not held.keys() & event["held"].keys(), "a job held by two processes"
                held.update(event["held"])
                counts.update(event["counts"])
    waiting = {job_id for job_id in released if released[job_id] - claimed[job_id] == 1}
    assert all(released[job_id] - claimed[job_id] in (0, 1) for job_id in released | claimed), "a job claimed more often than it was queued"
    stored = {job["id"]: job for job in store.get_jobs()}
    assert {i: job for i, job in stored.items() if job["status"] != "pending"} == held
    assert {i: job for i, job in stored.items() if job["status"] == "pending"} == {i: last_release[i] for i in waiting}
    return {"operations": sum(n for name, n in counts.items() if name != "refused"), "refused": counts["refused"], "jobs": len(stored), "claims": sum(claimed.values())}


def main(root: str, seed: str, seconds: str) -> None:
    """Run one mixer (in a process of its own) and print its events, one JSON line each."""
    import os

    store = JobStore(root)
    for event in Mixer(store, int(seed), f"p{os.getpid()}").run(float(seconds)):
        print(json.dumps(event), flush=True)
