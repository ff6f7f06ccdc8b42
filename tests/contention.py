"""Contention: processes doing a random mix of every operation on one store, each logging what it saw.

A job belongs to one process at a time, so each process can predict every answer about its
own jobs with a :class:`model.Model`: a pending job belongs to the queue, a claim hands it to
the claimer, and putting a job back in pending hands it back. Each process logs the jobs it
gave to the queue, the ones it claimed and, at the end, those it holds; :func:`reconcile`
then checks that the store holds exactly that.

Jobs are submitted with priorities, delays, retries, keys (shared by every process) and
dependencies on jobs the submitter holds. A queued job can thus change without its owner: a
dependency that ends in error ends it in error too, which the reconciliation allows for. The
checks beyond the logs: no job claimed before its ``runAt`` (a retry's included) nor before its
dependencies finished, no key held by two jobs not yet ended, and every job ended by a
dependency naming one that ended in error.
"""

from __future__ import annotations

import datetime
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from jobstore import InvalidJobError, JobStateError, JobStore

from model import FINAL, LIVE, STATES, Model, agree, moment_of, now, seen, stamped, unique, with_message

Event = dict[str, Any]

#: Keys every process submits with: one process's live job keeps another's submission from making a second.
KEYS = ("k0", "k1", "k2", "k3")
#: Delays: none, a moment (due within the run) or never due while the run lasts.
DELAYS = (0, 0.05, 0.5, 1e6)
#: Backoffs: over at once, a moment, or never over while the run lasts.
BACKOFFS = (1e-6, 0.05, 1000.0)
#: create_job's keyword for each scheduling field, as a spec names it.
KEYWORDS = {"priority": "priority", "delay": "delay", "maxRetries": "max_retries", "retryBackoff": "retry_backoff", "key": "key", "dependsOn": "depends_on"}
#: The last line of a job a dependency ended in error, naming the dependency.
ENDED_BY = re.compile(r"dependency (.+) ended in error")
#: The last line of a job a failure sent back to wait for a retry.
RETRY_LINE = re.compile(r"; retry \d+ of \d+ at (\S+)$")
#: Slack in comparing a time the store wrote (to the microsecond, truncated) with one read here.
SLACK = datetime.timedelta(milliseconds=1)


class Mixer:
    """One process's share of the contention: random operations, each answer checked against its model."""

    def __init__(self, store: JobStore, seed: int, tag: str) -> None:
        self.store, self.tag = store, tag
        self.rng = random.Random(seed)
        self.model = Model(default_backoff=store.retry_backoff)
        self.held: dict[str, dict[str, Any]] = {}  # the last document the store returned for each job held
        self.submitted: set[str] = set()  # the jobs this process's submissions made
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

    def mine(self, *, plain: bool = False) -> str | None:
        """A job this process holds, at random; ``plain``: one without a key or dependencies."""
        held = sorted(i for i, job in self.held.items() if not plain or not ("key" in job or "dependsOn" in job))
        return self.rng.choice(held) if held else None

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
        document, refused = agree(call, predict, lambda: seen(self.store.find_job(job_id)[0]), self.model.learn)
        if refused:
            assert seen(self.store.find_job(job_id)[0]) == self.model.jobs.get(job_id), f"a failed call changed {job_id}"
            self.counts["refused"] += 1
        else:
            self.keep(document)

    def scheduling(self) -> dict[str, Any]:
        """Random scheduling fields for a submission, by the names a spec gives them (``delay`` in seconds).

        Dependencies are on jobs this process holds: no other process can delete them meanwhile,
        and the model knows which of them ended in error.
        """
        rng, fields = self.rng, dict[str, Any]()
        if rng.random() < 0.5:
            fields["priority"] = rng.randint(-1, 2)
        if rng.random() < 0.3:
            fields["delay"] = rng.choice(DELAYS)
        if rng.random() < 0.4:
            fields["maxRetries"] = rng.randint(0, 2)
            if rng.random() < 0.7:
                fields["retryBackoff"] = rng.choice(BACKOFFS)
        if rng.random() < 0.25:
            fields["key"] = rng.choice(KEYS)
        if self.held and rng.random() < 0.3:
            fields["dependsOn"] = rng.sample(sorted(self.held), min(len(self.held), rng.randint(1, 2)))
        return fields

    def admit(self, document: dict[str, Any], fields: Mapping[str, Any], before: datetime.datetime) -> None:
        """Check what a submission returned, and keep it if it is new: a job as asked, or the job not yet ended that holds its key."""
        key = fields.get("key")
        ours = self.model.holder(key)  # one of this process's live jobs holding the key: the store must answer with it
        if document["id"] in self.submitted or document["user"] != self.tag:
            assert key is not None and document.get("key") == key and document["status"] in LIVE, f"a submission answered with job {document['id']}"
            assert ours is None or ours["id"] == document["id"], f"job {ours and ours['id']} holds key {key!r}, not {document['id']}"
            assert document["id"] not in self.held or document == self.held[document["id"]], "a submission changed the key's holder"
            self.counts["key held"] += 1
            return
        assert ours is None, f"a submission made a second job with key {key!r}, which job {ours and ours['id']} holds"
        self.submitted.add(document["id"])
        given = {name: value for name, value in fields.items() if name in ("priority", "maxRetries", "retryBackoff", "key")}
        if "maxRetries" in given:
            given.setdefault("retryBackoff", self.store.retry_backoff)  # the store's, written into the job
        assert {name: document[name] for name in given if name in document} == given, (document, fields)
        if "delay" in fields:
            delay = datetime.timedelta(seconds=fields["delay"])
            assert before + delay - SLACK <= moment_of(document["runAt"]) <= now() + delay + SLACK, (document["runAt"], fields["delay"])
        needs = unique(fields.get("dependsOn", ()))
        assert document.get("dependsOn", []) == needs
        failed = next((needed for needed in needs if self.model.state_of(needed) == "error"), None)
        if failed is None:
            assert document["status"] == "pending", document
        else:
            assert (document["status"], document["messages"]) == ("error", f"dependency {failed} ended in error"), document
            self.model.take(document)  # ended at once: this process holds it
        self.keep(document)

    def check_claim(self, document: Mapping[str, Any]) -> None:
        """A claim took a due job: its runAt passed, and every job it depends on had finished, by the time it started."""
        started = document["startedAt"]
        assert document.get("runAt", "") <= started, f"job {document['id']} claimed at {started}, before its runAt {document['runAt']}"
        for needed in document.get("dependsOn", ()):
            then = self.state_at(needed, started)
            assert then in (None, "finished"), f"job {document['id']} claimed at {started}, when {needed} was {then}"

    def state_at(self, job_id: str, moment: str) -> str | None:
        """The state a job was in at ``moment`` (a time as the store writes it), by its history; None once it is deleted, its history with it."""
        found = self.store.find_job(job_id)[0]
        if found is None:
            return None
        then = [entry["status"] for entry in found["history"] if entry["at"] <= moment]
        return then[-1] if then else "not made yet"

    # Operations (one is picked at random each time)

    def op_create(self) -> None:
        fields, before = self.scheduling(), now()
        options = {KEYWORDS[name]: value for name, value in fields.items()}
        self.admit(self.store.create_job(self.text(), self.tag, self.text(), **options), fields, before)

    def op_create_many(self) -> None:
        specs, before = [{"name": self.text(), "user": self.tag, **self.scheduling()} for _ in range(3)], now()
        for document, spec in zip(self.store.create_jobs(specs), specs, strict=True):
            self.admit(document, spec, before)

    def op_claim(self) -> None:
        document = self.store.claim_job(self.tag, 3600)
        if document is not None:
            assert document["status"] == "running" and document["worker"] == self.tag
            assert document["id"] not in self.held, "claimed a job this process already held"
            self.check_claim(document)
            self.model.take(document)
            self.events.append({"claimed": document["id"], "runAt": document.get("runAt"), "startedAt": document["startedAt"]})
            self.keep(document)

    def op_set_new(self) -> None:
        self.made += 1
        job_id, state, data = f"{self.tag}-{self.made}", self.rng.choice(STATES), {"request": self.text()}
        self.expect(job_id, lambda: self.store.set_job(job_id, data, state), lambda: self.model.set(job_id, data, state))

    def op_set(self) -> None:
        # Only a plain job: set_job minds no key (it could make a second live holder) and an idle
        # job with dependencies could be ended by another process's failure, behind this one's model.
        if (job_id := self.mine(plain=True)) is not None:
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
        """A message, a failure (retried if it may be, or not), a retry, a cancel or a heartbeat; the model says which of them the state refuses."""
        job_id, text = self.mine() or f"{self.tag}-ghost", self.text()
        name, retry = self.rng.choice(["append", "fail", "fail", "retry", "cancel", "heartbeat"]), self.rng.random() < 0.7
        if name == "retry" and job_id in self.held and self.held[job_id]["status"] in FINAL and not self.model.holder(self.held[job_id].get("key")):
            return self.retry_unsure(job_id)
        call = {
            "append": lambda: self.store.append_job_message(job_id, text),
            "fail": lambda: self.store.fail_job(job_id, text, retry=retry),
            "retry": lambda: self.store.retry_job(job_id),
            "cancel": lambda: self.store.cancel_job(job_id),
            "heartbeat": lambda: self.store.heartbeat(job_id, 3600),
        }[name]
        predict = {
            "append": lambda: self.model.append(job_id, text),
            "fail": lambda: self.model.fail(job_id, text, retry),
            "retry": lambda: self.model.retry(job_id),
            "cancel": lambda: self.model.cancel(job_id),
            "heartbeat": lambda: self.model.heartbeat(job_id),
        }[name]
        self.expect(job_id, call, predict)

    def retry_unsure(self, job_id: str) -> None:
        """Retry an ended job whose fate may rest on other processes' jobs.

        Another process's live job may hold its key (the store refuses), or a job it depends on,
        held elsewhere, may be in error (it ends again at once, naming that one): the model knows
        neither, so the answer is checked against what the store shows of those jobs.
        """
        job = self.held[job_id]
        try:
            document = self.store.retry_job(job_id)
        except JobStateError as error:
            assert "key" in job and f"holds its key {job['key']!r}" in str(error), error
            assert seen(self.store.find_job(job_id)[0]) == self.model.jobs[job_id], f"a refused retry changed {job_id}"
            self.counts["refused"] += 1
            return
        before = self.model.jobs[job_id]
        expected = self.model.retry(job_id)
        stamped(document)
        if document["status"] == "error" and expected["status"] == "pending":
            # A dependency held elsewhere is in error: the job stays as it was, saying so.
            cause = ENDED_BY.fullmatch(document["messages"].rsplit("\n", 1)[-1])
            assert cause is not None and cause.group(1) in job.get("dependsOn", ()), document["messages"]
            assert self.state_at(cause.group(1), document["updatedAt"]) in (None, "error"), f"{job_id} ended by {cause.group(1)}, not in error"
            expected = {**before, "status": "error", "messages": with_message(expected, cause.group())}
            self.model.take(document)
        assert seen(document) == expected, (seen(document), expected)
        self.keep(document)

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


#: What a dependency's failure changes in a queued job, besides its state and messages: the store's stamps.
STAMPS = ("status", "messages", "updatedAt", "finishedAt", "history")


def ended_by_dependency(job: Mapping[str, Any], queued: Mapping[str, Any]) -> None:
    """The queued job ended in error as one of its dependencies did: only its state and a line naming that one changed."""
    cause = ENDED_BY.fullmatch(job["messages"].rsplit("\n", 1)[-1])
    assert job["status"] == "error" and cause is not None, f"queued job {job['id']} changed to {job['status']}: {job['messages']!r}"
    assert job["messages"] == with_message(queued, cause.group()), job["messages"]
    assert {n: v for n, v in job.items() if n not in STAMPS} == {n: v for n, v in queued.items() if n not in STAMPS}


def keys_held_once(stored: Mapping[str, Mapping[str, Any]]) -> None:
    """No key is held by two jobs not yet ended."""
    keys = Counter(job["key"] for job in stored.values() if job["status"] in LIVE and "key" in job)
    assert [key for key, holders in keys.items() if holders > 1] == [], "a key held by two jobs not yet ended"


def errors_cascaded(stored: Mapping[str, Mapping[str, Any]]) -> None:
    """No job waits on a dependency that entered error since the job began to wait.

    (A job retried after a dependency failed waits for that one to be retried and finish.)
    """
    for job in stored.values():
        if job["status"] in ("idle", "pending"):
            waits_since = job["history"][-1]["at"]
            for needed in job.get("dependsOn", ()):
                dependency = stored.get(needed)
                failed_since = dependency["history"][-1]["at"] if dependency and dependency["status"] == "error" else ""
                assert failed_since < waits_since, f"job {job['id']} still waits on {needed}, in error since {failed_since}"


def ended_by_dependencies(stored: Mapping[str, Mapping[str, Any]]) -> int:
    """Each job a dependency ended names one it depends on, which had entered error by then; return how many there are."""
    ended = 0
    for job in stored.values():
        cause = ENDED_BY.fullmatch(job.get("messages", "").rsplit("\n", 1)[-1])
        if job["status"] != "error" or cause is None:
            continue
        ended += 1
        needed = cause.group(1)
        assert needed in job.get("dependsOn", ()), f"job {job['id']} names {needed}, which it does not depend on"
        if needed in stored:  # else deleted since, its history with it
            failed = [entry["at"] for entry in stored[needed]["history"] if entry["status"] == "error"]
            # By the write that named it: the end of the job, or a retry that left it in error.
            assert failed and failed[0] <= job["updatedAt"], f"job {job['id']} ended by {needed}, which had not failed"
    return ended


def alike(stored: Mapping[str, Any], logged: Mapping[str, Any], what: str) -> None:
    """The jobs the store holds are those the logs say, as they say: else name the first that differs, both ways."""
    for job_id in sorted(stored.keys() | logged.keys()):
        assert stored.get(job_id) == logged.get(job_id), f"{what} job {job_id}: the store has {stored.get(job_id)}, the logs {logged.get(job_id)}"


def reconcile(root: Path, logs: list[list[Event]]) -> dict[str, int]:
    """Check the store against the processes' logs; return what was checked, for the figures."""
    store = JobStore(root)
    assert store.check() == [], "the store has problems"
    held: dict[str, dict[str, Any]] = {}
    released: Counter[str] = Counter()
    claimed: Counter[str] = Counter()
    last_release: dict[str, dict[str, Any]] = {}
    retries: set[tuple[str, str]] = set()  # each retry a failure scheduled: the job, and the end of its backoff
    claims: list[Event] = []
    counts: Counter[str] = Counter()
    for log in logs:
        for event in log:
            if "released" in event:
                document = event["released"]
                released[document["id"]] += 1
                if len(document["history"]) > len(last_release.get(document["id"], {}).get("history", [])):
                    last_release[document["id"]] = document
                if (retry := RETRY_LINE.search(document["messages"])) is not None:
                    assert retry.group(1) == document["runAt"], "a retry's message and runAt differ"
                    retries.add((document["id"], document["runAt"]))
            elif "claimed" in event:
                claimed[event["claimed"]] += 1
                claims.append(event)
                assert (event["runAt"] or "") <= event["startedAt"], f"job {event['claimed']} claimed before its runAt"
            else:
                assert not held.keys() & event["held"].keys(), "a job held by two processes"
                held.update(event["held"])
                counts.update(event["counts"])
    waiting = {job_id for job_id in released if released[job_id] - claimed[job_id] == 1}
    assert all(released[job_id] - claimed[job_id] in (0, 1) for job_id in released | claimed), "a job claimed more often than it was queued"
    listed = [job["id"] for job in store.get_jobs()]
    assert len(listed) == len(set(listed)), "a job in two states"
    stored = {job["id"]: job for job in store.get_jobs()}
    for job in stored.values():
        stamped(job)
    keys_held_once(stored)
    errors_cascaded(stored)
    alike({i: job for i, job in stored.items() if i not in waiting}, held, "held")
    for job_id in waiting:
        assert job_id in stored, f"queued job {job_id} is gone"
        if stored[job_id]["status"] == "pending":
            alike({job_id: stored[job_id]}, {job_id: last_release[job_id]}, "queued")
        else:
            ended_by_dependency(stored[job_id], last_release[job_id])
    return {
        "operations": sum(n for name, n in counts.items() if name not in ("refused", "key held")),
        "refused": counts["refused"],
        "jobs": len(stored),
        "claims": sum(claimed.values()),
        # each started after its runAt, the end of its backoff (checked with every claim above)
        "claims of retries": sum((claim["claimed"], claim["runAt"]) in retries for claim in claims),
        "submissions answered by a key's holder": counts["key held"],
        "jobs ended by a dependency": ended_by_dependencies(stored),
    }


def main(root: str, seed: str, seconds: str) -> None:
    """Run one mixer (in a process of its own) and print its events, one JSON line each."""
    import os

    store = JobStore(root)
    for event in Mixer(store, int(seed), f"p{os.getpid()}").run(float(seconds)):
        print(json.dumps(event), flush=True)
