"""A store and an in-memory model driven by the same random operations answer alike after every step.

Hypothesis picks the operations (errors included: unknown ids, jobs in the wrong state, bad
progress, unknown dependencies); after each one the results, the raised error and every state's
jobs in order must agree, and a call that raised must have left the files byte for byte as they were.

Jobs are submitted with the scheduling fields too: a priority, a runAt long past (due at once) or
far future (never due while the test runs), retries whose backoff is over at once or lasts past
the test, dependencies on jobs the store holds (or does not), and a key. Each claim must take
the very job the model's claim order puts first.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule

from jobstore import InvalidJobError, JobStore

from conftest import snapshot
from model import STATES, Model, agree, seen, stamped

STEPS = int(os.environ.get("JOBSTORE_MODEL_STEPS", "40"))
EXAMPLES = int(os.environ.get("JOBSTORE_FUZZ_EXAMPLES", "60"))

#: The store's own backoff, for jobs with retries and none of their own: long enough that such a
#: retry is never due while a test runs.
STORE_BACKOFF = 600.0

texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
fixed_ids = st.sampled_from(["a", "b/c", "d.e", "42", "ghost"])
UTC = datetime.timezone.utc
#: Times to run at, in the forms a submitter may give them: long past (the first four one instant,
#: so that their jobs tie and the state's order decides) or far future.
run_ats = st.sampled_from(
    [
        datetime.datetime(2000, 1, 1, tzinfo=UTC),
        "2000-01-01T00:00:00Z",
        "2000-01-01T02:00:00+02:00",
        datetime.datetime(2000, 1, 1),  # naive: UTC
        "2001-06-15T12:30:00.250000Z",
        "2999-01-01T00:00:00Z",
        datetime.datetime(2999, 1, 1, tzinfo=UTC),
    ]
)
priorities = st.integers(-1, 2)
#: A backoff over by the next operation (most often, so that retried jobs come round again), or
#: one lasting past the test (as the store's own does).
backoffs = st.sampled_from([1e-6, 1e-6, 600.0])
keys = st.sampled_from(["k1", "k2"])
#: How a worker ends a run it claimed (failures twice as often: they are what retries are for);
#: "stop" is a cancel asked for meanwhile, which the worker obeys by failing the job.
OUTCOMES = ("finish", "fail", "fail", "fail for good", "release", "stop")


def sometimes(strategy):
    """``strategy``'s values a third of the time, else None: each field given alone or with a few others."""
    return st.one_of(st.none(), st.none(), strategy)


class StoreAgainstModel(RuleBasedStateMachine):
    ids = Bundle("ids")
    #: Runs and comparisons made, for the figures of ``python -m tests.stress``.
    runs = compared = 0

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="jobstore-model-"))
        self.store = JobStore(self.directory / "store", durable=False, segment_size=3, retry_backoff=STORE_BACKOFF)
        self.model = Model(default_backoff=STORE_BACKOFF)

    def teardown(self) -> None:
        StoreAgainstModel.runs += 1
        self.store.close()  # the files' lazy writer might otherwise still be writing while they are removed
        shutil.rmtree(self.directory)

    def both(self, call, expect):
        """Run ``expect`` on the model and ``call`` on the store; they must return alike or raise alike, a failure changing no byte."""
        return agree(call, expect, lambda: snapshot(self.store.path), self.model.learn)[0]

    @rule(
        target=ids,
        name=texts,
        user=texts,
        request=texts,
        run_at=sometimes(run_ats),
        priority=sometimes(priorities),
        retries=st.none() | st.tuples(st.integers(0, 3), st.none() | backoffs),
        depends_on=sometimes(st.lists(ids | fixed_ids, max_size=3)),
        key=sometimes(keys),
    )
    def create(self, name, user, request, run_at, priority, retries, depends_on, key):
        max_retries, retry_backoff = retries or (None, None)
        options = {"run_at": run_at, "priority": priority, "max_retries": max_retries, "retry_backoff": retry_backoff, "depends_on": depends_on, "key": key}
        spec = {"runAt": run_at, "priority": priority, "maxRetries": max_retries, "retryBackoff": retry_backoff, "dependsOn": depends_on, "key": key}
        created = self.both(lambda: self.store.create_job(name, user, request, **options), lambda: self.model.create(name=name, user=user, request=request, **spec))
        return multiple() if created is None else created["id"]

    @rule(
        target=ids,
        specs=st.lists(
            st.fixed_dictionaries(
                {"name": texts},
                optional={
                    "runAt": run_ats,
                    "priority": priorities,
                    "maxRetries": st.integers(0, 2),
                    "retryBackoff": backoffs,
                    # Jobs made here (deleted ones aside): a batch with an unknown one makes no job at all.
                    "dependsOn": st.lists(ids, max_size=2),
                    "key": keys,
                },
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def create_many(self, specs):
        created = self.both(lambda: self.store.create_jobs(specs), lambda: self.model.submit(specs))
        return multiple(*(job["id"] for job in created or ()))

    @rule(
        target=ids,
        job_id=ids | fixed_ids,
        state=st.sampled_from(STATES),
        request=texts,
        scheduling=st.fixed_dictionaries({}, optional={"priority": priorities, "runAt": run_ats}),
    )
    def set_job(self, job_id, state, request, scheduling):
        data = {"request": request, **scheduling}
        self.both(lambda: self.store.set_job(job_id, data, state), lambda: self.model.set(job_id, data, state))
        return job_id

    @rule(job_id=ids | fixed_ids, result=texts)
    def update_result(self, job_id, result):
        self.both(lambda: self.store.update_job_result(job_id, result), lambda: self.model.update_result(job_id, result))

    @rule(job_id=ids | fixed_ids)
    def delete(self, job_id):
        self.store.delete_job(job_id)
        self.model.drop(job_id)

    @rule(job_id=ids | fixed_ids, completed=st.integers(0, 5), total=st.none() | st.integers(0, 5))
    def progress(self, job_id, completed, total):
        def expect():
            if total is not None and completed > total:
                raise InvalidJobError(job_id, [])
            return self.model.progress(job_id, completed, total)

        self.both(lambda: self.store.set_job_progress(job_id, completed, total), expect)

    @rule(job_id=ids | fixed_ids, text=texts)
    def append(self, job_id, text):
        self.both(lambda: self.store.append_job_message(job_id, text), lambda: self.model.append(job_id, text))

    @rule(job_id=ids | fixed_ids, message=texts, retry=st.booleans())
    def fail(self, job_id, message, retry):
        self.both(lambda: self.store.fail_job(job_id, message, retry=retry), lambda: self.model.fail(job_id, message, retry))

    @rule(job_id=ids | fixed_ids, reason=texts)
    def release(self, job_id, reason):
        self.both(lambda: self.store.release_job(job_id, reason), lambda: self.model.release(job_id, reason))

    @rule(job_id=ids | fixed_ids)
    def retry(self, job_id):
        self.both(lambda: self.store.retry_job(job_id), lambda: self.model.retry(job_id))

    @rule(job_id=ids | fixed_ids)
    def cancel(self, job_id):
        self.both(lambda: self.store.cancel_job(job_id), lambda: self.model.cancel(job_id))

    @rule(job_id=ids | fixed_ids)
    def heartbeat(self, job_id):
        self.both(lambda: self.store.heartbeat(job_id, 3600), lambda: self.model.heartbeat(job_id))

    @precondition(lambda self: self.model.order["pending"] or not self.model.jobs)  # else an empty queue's answer, many times over
    @rule(worker=st.sampled_from(["w1", "w2"]))
    def claim(self, worker):
        self.both(lambda: self.store.claim_job(worker, 3600), lambda: self.model.claim(worker))

    @precondition(lambda self: self.model.order["pending"])  # an empty queue is the claim rule's to try
    @rule(worker=st.sampled_from(["w1", "w2"]), outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=4), text=texts)
    def work(self, worker, outcomes, text):
        """A worker's rounds: claim, then end the run as workers do; so claims, retries and dependencies come round often."""
        for outcome in outcomes:
            claimed = self.both(lambda: self.store.claim_job(worker, 3600), lambda: self.model.claim(worker))
            if claimed is None:
                return
            self.end_run(claimed["id"], outcome, text)

    def end_run(self, job_id, outcome, text):
        """End a claimed job's run: a result, a failure (retried if it may be, or not), a release, or a stop asked for."""
        if outcome == "stop":
            self.both(lambda: self.store.cancel_job(job_id), lambda: self.model.cancel(job_id))
            outcome = "fail"
        call, expect = {
            "finish": (lambda: self.store.update_job_result(job_id, text), lambda: self.model.update_result(job_id, text)),
            "fail": (lambda: self.store.fail_job(job_id, text), lambda: self.model.fail(job_id, text)),
            "fail for good": (lambda: self.store.fail_job(job_id, text, retry=False), lambda: self.model.fail(job_id, text, False)),
            "release": (lambda: self.store.release_job(job_id, text), lambda: self.model.release(job_id, text)),
        }[outcome]
        self.both(call, expect)

    @rule(job_id=ids | fixed_ids, state=st.sampled_from(STATES))
    def get_job(self, job_id, state):
        expected = self.model.jobs.get(job_id) if self.model.state_of(job_id) == state else None
        assert seen(self.store.get_job(job_id, state)) == expected

    @rule(job_id=ids | fixed_ids)
    def find_job(self, job_id):
        job, state = self.store.find_job(job_id)
        assert (seen(job), state) == (self.model.jobs.get(job_id), self.model.state_of(job_id))

    @invariant()
    def every_state_holds_the_same_jobs_in_the_same_order(self):
        StoreAgainstModel.compared += 1  # once at the start of a run, then after each step
        for state in STATES:
            jobs = self.store.get_jobs(state)
            assert [seen(job) for job in jobs] == self.model.in_state(state), state
            for job in jobs:
                stamped(job)
        assert [job["id"] for job in self.store.get_jobs()] == [i for state in STATES for i in self.model.order[state]]


StoreAgainstModel.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_store_against_model = StoreAgainstModel.TestCase
