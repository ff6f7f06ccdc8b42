"""Retention: purging old finished and error jobs by age or by count."""

from __future__ import annotations

import datetime

import pytest

from jobstore import InvalidStateError, _store


def finish(store, names, when=None, monkeypatch=None):
    if when is not None:
        moment = datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))
        monkeypatch.setattr(_store, "utc_now", lambda: moment)
    jobs = [store.create_job(name) for name in names]
    for job in jobs:
        store.update_job_result(job["id"], "done")
    return jobs


def test_keep_last_keeps_the_jobs_that_finished_last(store):
    finish(store, "abcde")
    assert store.purge_jobs("finished", keep_last=2) == 3
    assert [job["name"] for job in store.get_finished_jobs()] == ["d", "e"]
    assert store.purge_jobs("finished", keep_last=2) == 0


def test_older_than_removes_jobs_last_written_before_the_cutoff(store, monkeypatch):
    finish(store, "ab", "2020-01-01T00:00:00.000000Z", monkeypatch)
    monkeypatch.undo()
    finish(store, "c")
    assert store.purge_jobs("finished", older_than=datetime.timedelta(days=7)) == 2
    assert [job["name"] for job in store.get_finished_jobs()] == ["c"]


def test_both_bounds_together(store, monkeypatch):
    finish(store, "abc", "2020-01-01T00:00:00.000000Z", monkeypatch)
    assert store.purge_jobs("finished", older_than=3600, keep_last=1) == 2
    assert [job["name"] for job in store.get_finished_jobs()] == ["c"]


def test_error_jobs_can_be_purged_too(store):
    for name in "xy":
        store.set_job(name, {}, "error")
    assert store.purge_jobs("error", older_than=0) == 2
    assert store.get_error_jobs() == []


def test_a_job_without_a_readable_time_is_never_purged_by_age(store, root):
    store.set_job("odd", {"updatedAt": "whenever"}, "finished")
    store.flush()
    # updatedAt is stamped on every write, so damage it the way a hand edit would
    path = root / "finished.json"
    path.write_text(path.read_text().replace(store.get_job("odd", "finished")["updatedAt"], "not a time"))
    assert store.purge_jobs("finished", older_than=0) == 0
    assert store.purge_jobs("finished", keep_last=0) == 1


@pytest.mark.parametrize("state", ["pending", "running", "idle"])
def test_only_history_states_can_be_purged(store, state):
    with pytest.raises(InvalidStateError, match=f"cannot purge jobs in the state '{state}'"):
        store.purge_jobs(state, keep_last=0)


def test_an_unknown_state_is_refused(store):
    with pytest.raises(InvalidStateError, match="unknown job state 'done'"):
        store.purge_jobs("done", keep_last=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "older_than must be .* when keep_last is None"),
        ({"older_than": -1}, "older_than must be a non-negative"),
        ({"older_than": "7d"}, "older_than must be a non-negative"),
        ({"keep_last": -1}, "keep_last must be an int of at least 0"),
        ({"keep_last": 1.5}, "keep_last must be an int of at least 0"),
    ],
)
def test_bad_bounds_are_refused(store, kwargs, message):
    finish(store, "a")
    with pytest.raises(ValueError, match=message):
        store.purge_jobs("finished", **kwargs)
    assert len(store.get_finished_jobs()) == 1


def test_the_api_function(api):
    for name in "abc":
        api.setJob(name, {}, "finished")
    assert api.purgeJobs("finished", keepLast=1) == 2
    assert [job["id"] for job in api.getFinishedJobs()] == ["c"]
