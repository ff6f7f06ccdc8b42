"""A store and an in-memory model driven by the same random operations answer alike after every step.

Hypothesis picks the operations (errors included: unknown ids, jobs in the wrong state, bad
progress); after each one the results, the raised error and every state's jobs in order must
agree, and a call that raised must have left the files byte for byte as they were.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from jobstore import InvalidJobError, JobStore

from conftest import snapshot
from model import STATES, Model, agree, seen

STEPS = int(os.environ.get("JOBSTORE_MODEL_STEPS", "40"))
EXAMPLES = int(os.environ.get("JOBSTORE_FUZZ_EXAMPLES", "60"))

texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
fixed_ids = st.sampled_from(["a", "b/c", "d.e", "42", "ghost"])


class StoreAgainstModel(RuleBasedStateMachine):
    ids = Bundle("ids")
    #: Runs and comparisons made, for the figures of ``python -m tests.stress``.
    runs = compared = 0

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="jobstore-model-"))
        self.store = JobStore(self.directory / "store", durable=False, segment_size=3)
        self.model = Model()

    def teardown(self) -> None:
        StoreAgainstModel.runs += 1
        shutil.rmtree(self.directory)

    def both(self, call, expect):
        """Run ``expect`` on the model and ``call`` on the store; they must return alike or raise alike, a failure changing no byte."""
        return agree(call, expect, lambda: snapshot(self.store.path))[0]

    @rule(target=ids, name=texts, user=texts, request=texts)
    def create(self, name, user, request):
        created = self.store.create_job(name, user, request)
        self.model.create(created["id"], name, user, request)
        assert seen(created) == self.model.jobs[created["id"]]
        return created["id"]

    @rule(target=ids, job_id=ids | fixed_ids, state=st.sampled_from(STATES), request=texts)
    def set_job(self, job_id, state, request):
        self.both(lambda: self.store.set_job(job_id, {"request": request}, state), lambda: self.model.set(job_id, {"request": request}, state))
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

    @rule(job_id=ids | fixed_ids, message=texts)
    def fail(self, job_id, message):
        self.both(lambda: self.store.fail_job(job_id, message), lambda: self.model.fail(job_id, message))

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

    @rule(worker=st.sampled_from(["w1", "w2"]))
    def claim(self, worker):
        self.both(lambda: self.store.claim_job(worker, 3600), lambda: self.model.claim(worker))

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
            assert [seen(job) for job in self.store.get_jobs(state)] == self.model.in_state(state), state
        assert [job["id"] for job in self.store.get_jobs()] == [i for state in STATES for i in self.model.order[state]]


StoreAgainstModel.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_store_against_model = StoreAgainstModel.TestCase
