"""Hostile input to every public function: only jobstore's own errors come out, and a failed call changes no byte."""

from __future__ import annotations

import datetime
import json
import decimal
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobstore import InvalidJobError, JobStore, JobStoreError, UnsafeStoreError, published_schema
from jobstore.api import job

from test_symlinks import kept, plant, tree

EXAMPLES = int(os.environ.get("JOBSTORE_FUZZ_EXAMPLES", "60"))
#: Calls made per function, for the figures of ``python -m tests.stress``.
CALLS: Counter[str] = Counter()
STATES = ["idle", "pending", "running", "finished", "error"]
FIELDS = list(published_schema()["properties"])
SEEDED = {state[0] + "1": state for state in STATES}  # p1 pending, r1 running, ...

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None, exclude_categories=())),  # lone surrogates too
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=12)
non_json = st.sampled_from(
    [object(), {1, 2}, b"bytes", bytearray(b"x"), 1j, decimal.Decimal("1.5"), datetime.datetime(2026, 1, 1), (1, "a"), {1: "int key"}, print]
)
huge = st.sampled_from(["x" * 300_000, "é\u0000" * 50_000])
anything = st.one_of(json_values, non_json, huge)
ids = st.one_of(
    st.sampled_from(sorted(SEEDED)),
    st.sampled_from(["a/b", "../x", ".", "..", "a\x00b", "\x00", " ", "\ud800", "-1", "0", "pending.json", "x" * 5000]),
    st.text(),
    st.integers(),
    anything,
)
states = st.one_of(st.sampled_from(STATES), st.sampled_from(["Pending", "done", "", " pending"]), anything)
field_data = st.one_of(st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text()), anything, max_size=4), anything)
texts = st.one_of(st.text(), anything)
numbers = st.one_of(st.integers(-5, 10), st.floats(-1.0, 1.0), anything)
short_waits = st.one_of(st.floats(max_value=0.02), st.just(float("nan")), st.integers(max_value=0), non_json, st.text())
specs = st.one_of(st.lists(st.one_of(st.dictionaries(st.sampled_from(FIELDS), anything, max_size=3), anything), max_size=3), anything)

ARGUMENTS = {
    "createJob": st.tuples(texts, texts, texts, texts),
    "createJobs": st.tuples(specs),
    "getJob": st.tuples(ids, states),
    "findJob": st.tuples(ids),
    "setJob": st.tuples(ids, field_data, states),
    "setJobPending": st.tuples(ids, field_data),
    "setJobRunning": st.tuples(ids, field_data),
    "setJobFinished": st.tuples(ids, field_data),
    "updateJobResult": st.tuples(ids, texts, st.one_of(st.none(), field_data)),
    "deleteJob": st.tuples(ids),
    "purgeJobs": st.tuples(states, st.one_of(st.none(), numbers), st.one_of(st.none(), numbers)),
    "claimJob": st.tuples(st.one_of(st.none(), texts), st.one_of(st.none(), numbers)),
    "heartbeat": st.tuples(ids, st.one_of(st.none(), numbers)),
    "requeueExpiredJobs": st.tuples(),
    "setJobProgress": st.tuples(ids, numbers, st.one_of(st.none(), numbers)),
    "appendJobMessage": st.tuples(ids, texts),
    "failJob": st.tuples(ids, texts),
    "releaseJob": st.tuples(ids, texts),
    "retryJob": st.tuples(ids),
    "cancelJob": st.tuples(ids),
    "blockUntilComplete": st.tuples(st.one_of(ids, field_data), short_waits),
    "getIdleJobs": st.tuples(),
    "getPendingJobs": st.tuples(),
    "getRunningJobs": st.tuples(),
    "getFinishedJobs": st.tuples(),
    "getErrorJobs": st.tuples(),
    "getJobs": st.tuples(),
    "getJobResults": st.tuples(ids),
    "getJobSchema": st.tuples(),
}


def test_every_public_function_is_fuzzed():
    assert set(ARGUMENTS) == set(job.__all__) - {"useStore"}


def store_bytes(root: Path) -> dict[str, bytes]:
    """Every file a call could change: the state files and the log."""
    return {path.name: path.read_bytes() for path in sorted(root.glob("*.json")) + [root / ".jobstore" / "wal"]}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("hostile") / "store"
    store = JobStore(root, durable=False)
    for job_id, state in SEEDED.items():
        store.set_job(job_id, {"name": job_id}, state)
    job.useStore(store)
    yield root
    job.useStore(None)


@pytest.mark.parametrize("function", sorted(ARGUMENTS))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_hostile_arguments_give_only_documented_errors_and_change_nothing(seeded, function, data):
    arguments = data.draw(ARGUMENTS[function], label="arguments")
    before = store_bytes(seeded)
    CALLS[function] += 1
    try:
        getattr(job, function)(*arguments)
    except JobStoreError as error:
        assert str(error), "an error must say what was wrong"
        assert store_bytes(seeded) == before, f"{function} failed with {error!r} yet changed the store"
    # Whatever came through, the store is still whole: every document valid, each job in one table.
    assert JobStore(seeded).check() == []


@settings(max_examples=EXAMPLES, deadline=None)
@given(setting=st.sampled_from(["schema", "lock_timeout", "durable", "segment_size", "lease", "max_attempts"]), value=anything)
def test_hostile_settings_give_only_documented_errors(tmp_path_factory, setting, value):
    root = tmp_path_factory.mktemp("settings")
    try:
        JobStore(root, **{setting: value})
    except JobStoreError as error:
        assert setting in str(error)


@settings(max_examples=EXAMPLES, deadline=None)
@given(value=st.one_of(anything.filter(lambda value: not isinstance(value, str)), st.sampled_from(["", "a\x00b"])))
def test_a_hostile_store_path_gives_a_documented_error(value):
    with pytest.raises(JobStoreError, match="path must be a directory path"):
        JobStore(value)


#: Where a link can be planted: every file and folder jobstore keeps, and those an earlier release kept (spares, a base folder).
LINK_LOCATIONS = [
    *(f"{state}.json" for state in STATES),
    ".jobstore",
    ".jobstore/wal",
    ".jobstore/wal.synced",
    ".jobstore/lock",
    ".jobstore/spare",
    *(f".jobstore/spare/{state}.json" for state in STATES),
    ".jobstore/base-1",
    *(f".jobstore/base-1/{state}.json" for state in STATES),
]
LINK_OPERATIONS = {
    "find_job": lambda store, ids: store.find_job(ids["pending"]),
    "get_jobs": lambda store, ids: store.get_jobs(),
    "get_running_jobs": lambda store, ids: store.get_running_jobs(),
    "get_job_results": lambda store, ids: store.get_job_results(ids["finished"]),
    "create_job": lambda store, ids: store.create_job("after the link"),
    "claim_job": lambda store, ids: store.claim_job("intruder"),
    "finish": lambda store, ids: store.update_job_result(ids["running"], "done"),
    "delete_job": lambda store, ids: store.delete_job(ids["pending"]),
    "purge_jobs": lambda store, ids: store.purge_jobs("finished", older_than=0),
}


def seed_for_links(root: Path) -> dict[str, str]:
    """A store with a file in every state, after a checkpoint and writes since; return a job id per state it tells."""
    store = JobStore(root)
    made = store.create_jobs([{"name": f"seed {n}"} for n in range(5)])
    store.set_job("i1", {"name": "idle"}, "idle")
    for _ in range(3):
        store.claim_job("seeder")
    store.update_job_result(made[0]["id"], "done")
    store.fail_job(made[1]["id"], "seeded failure")
    store.delete_job(made[3]["id"])  # a delete makes a checkpoint
    store.create_job("after the checkpoint")
    store.create_job("and another")
    store.flush()
    return {"pending": made[4]["id"], "running": made[2]["id"], "finished": made[0]["id"]}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(["file", "directory", "missing"]), operation=st.sampled_from(sorted(LINK_OPERATIONS)), data=st.data())
def test_a_link_anywhere_in_a_store_is_refused_or_left_unfollowed(tmp_path_factory, target, operation, data):
    folder = tmp_path_factory.mktemp("links")
    root, outside = folder / "store", folder / "outside"
    ids = seed_for_links(root)
    location = data.draw(st.sampled_from(LINK_LOCATIONS), label="location")
    link = plant(root, location, target, outside)
    outside_before, store_before = tree(outside), kept(root)
    try:
        LINK_OPERATIONS[operation](JobStore(root), ids)
    except UnsafeStoreError as error:
        # The planted link is the only one in the store: a refusal must name it, and change nothing.
        assert error.path == str(link), error
        assert kept(root) == store_before, f"{operation} was refused yet changed the store"
    assert tree(outside) == outside_before, f"{operation} changed {target} outside the store through {location}"


@pytest.mark.parametrize(("depth", "words"), [(300, "is not of type 'string'"), (900, "nested too deeply")])
def test_a_value_nested_too_deeply_is_refused_naming_it(store, depth, words):
    nested = json.loads("[" * depth + "]" * depth)
    with pytest.raises(InvalidJobError, match=words):
        store.create_jobs([{"name": "x", "request": nested}])
    with pytest.raises(InvalidJobError):
        store.create_job(nested)
    with pytest.raises(InvalidJobError, match=words):
        store.set_job("j", {"request": nested})
    assert store.get_jobs() == []
