"""Bulk submission: many jobs under one lock, one write per file, all or nothing."""

from __future__ import annotations

import pytest

from jobstore import InvalidJobError

from conftest import log_bytes, snapshot


def test_create_jobs_returns_the_stored_documents_in_order(api):
    made = api.createJobs([{"name": "a", "user": "u"}, {"name": "b", "request": "r"}, {}])
    assert [job["name"] for job in made] == ["a", "b", ""]
    assert all(job["status"] == "pending" and job["messages"] == "" for job in made)
    assert len({job["id"] for job in made}) == 3
    assert api.getPendingJobs() == made


def test_create_jobs_is_one_logged_write(store, root):
    store.create_jobs([{"name": str(n)} for n in range(50)])
    log = log_bytes(root).splitlines()
    assert len([line for line in log if not line.startswith((b"applied", b"jobstore-wal"))]) == 1


def test_one_bad_spec_writes_nothing_and_is_named_by_its_index(store, root):
    store.create_job("before")
    before = snapshot(root)
    with pytest.raises(InvalidJobError, match=r"invalid job '#2': field 'user'"):
        store.create_jobs([{"name": "a"}, {"name": "b"}, {"user": 3}])
    assert snapshot(root) == before


@pytest.mark.parametrize("field", ["id", "status"])
def test_specs_cannot_choose_id_or_status(store, field):
    with pytest.raises(InvalidJobError, match=f"'{field}': is assigned by the store"):
        store.create_jobs([{field: "x"}])
    assert store.get_jobs() == []


def test_a_spec_must_be_a_mapping(store):
    with pytest.raises(InvalidJobError, match="spec #1 must be a dict"):
        store.create_jobs([{}, "name"])


def test_an_empty_list_creates_nothing(store):
    assert store.create_jobs([]) == []
