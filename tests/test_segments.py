"""Segment files: each state's table split into bounded files, so a write stays small as history grows."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from jobstore import JobStore
from jobstore.engines._due import SegmentSchedule

from conftest import flushed, raw_tables


def names(root) -> list[str]:
    flushed(root)
    return sorted(path.name for path in root.glob("*.json"))


def test_a_table_grows_in_segments_of_the_given_size(root):
    store = JobStore(root, segment_size=3)
    jobs = [store.create_job(f"job {n}") for n in range(7)]
    assert names(root) == ["pending-0002.json", "pending-0003.json", "pending.json"]
    assert len(json.loads((root / "pending.json").read_text())["pending"]) == 3
    assert list(json.loads((root / "pending-0003.json").read_text())["pending"]) == [jobs[6]["id"]]
    assert [job["name"] for job in store.get_pending_jobs()] == [f"job {n}" for n in range(7)]


def test_bulk_submission_fills_segments_in_order(root):
    store = JobStore(root, segment_size=4)
    store.create_jobs([{"name": str(n)} for n in range(10)])
    assert names(root) == ["pending-0002.json", "pending-0003.json", "pending.json"]
    assert [job["name"] for job in store.get_pending_jobs()] == [str(n) for n in range(10)]


def test_an_emptied_segment_goes_but_the_last_stays(root):
    store = JobStore(root, segment_size=2)
    jobs = [store.create_job(str(n)) for n in range(5)]
    for job in jobs[:2]:
        store.set_job_running(job["id"])
    assert "pending.json" not in names(root)
    for job in jobs[2:]:
        store.set_job_running(job["id"])
    assert names(root) == ["pending-0003.json", "running-0002.json", "running-0003.json", "running.json"]
    assert raw_tables(root)["pending"] == {}
    assert store.create_job("after")["id"] in raw_tables(root)["pending"]


def test_a_job_changed_in_place_keeps_its_segment(root):
    store = JobStore(root, segment_size=2)
    first, _, third = (store.create_job(str(n)) for n in range(3))
    store.set_job_pending(first["id"], {"messages": "still here"})
    store.flush()
    assert first["id"] in json.loads((root / "pending.json").read_text())["pending"]
    assert [job["id"] for job in store.get_pending_jobs()][0] == first["id"]
    assert store.get_job(third["id"])["name"] == "2"


def test_finishing_a_job_rewrites_only_the_last_segment(root):
    store = JobStore(root, segment_size=5)
    for job in store.create_jobs([{"name": str(n)} for n in range(22)]):
        store.update_job_result(job["id"], "done")
    store.flush()
    before = {path.name: path.stat().st_mtime_ns for path in root.glob("finished*.json")}
    job = store.create_job("new")
    store.set_job_running(job["id"])
    store.update_job_result(job["id"], "done")
    store.flush()
    after = {path.name: path.stat().st_mtime_ns for path in root.glob("finished*.json")}
    changed = sorted(name for name in after if before.get(name) != after[name])
    assert changed == ["finished-0005.json"]


def test_another_process_sees_new_and_removed_segments(root):
    writer, reader = JobStore(root, segment_size=2), JobStore(root, segment_size=2)
    assert reader.get_pending_jobs() == []
    jobs = writer.create_jobs([{"name": str(n)} for n in range(5)])
    assert [job["id"] for job in reader.get_pending_jobs()] == [job["id"] for job in jobs]
    for job in jobs[:4]:
        writer.delete_job(job["id"])
    assert [job["id"] for job in reader.get_pending_jobs()] == [jobs[4]["id"]]
    assert reader.find_job(jobs[0]["id"]) == (None, None)


def test_a_store_reads_segments_another_segment_size_wrote(root):
    JobStore(root, segment_size=2).create_jobs([{"name": str(n)} for n in range(5)])
    store = JobStore(root, segment_size=100)
    assert len(store.get_pending_jobs()) == 5
    store.create_job("joins the last segment")
    assert names(root) == ["pending-0002.json", "pending-0003.json", "pending.json"]


def test_segments_are_bounded_by_bytes_as_well(root):
    store = JobStore(root, segment_bytes=50_000)
    jobs = [store.create_job(f"big {n}") for n in range(6)]
    for job in jobs:
        store.update_job_result(job["id"], "x" * 20_000)
    store.flush()
    finished = sorted(root.glob("finished*.json"))
    assert len(finished) == 3  # two 20 KB results to a file
    assert all(path.stat().st_size < 50_000 + 4_000 for path in finished)
    assert [job["id"] for job in store.get_finished_jobs()] == [job["id"] for job in jobs]


def test_a_job_larger_than_the_bound_has_a_file_of_its_own(root):
    store = JobStore(root, segment_bytes=1_000)
    small = store.create_job("small")
    large = store.create_job("large", request="y" * 5_000)
    after = store.create_job("after")
    store.flush()
    tables = [json.loads((root / name).read_text())["pending"] for name in ("pending.json", "pending-0002.json", "pending-0003.json")]
    assert [list(table) for table in tables] == [[small["id"]], [large["id"]], [after["id"]]]


JOB_IDS = st.sampled_from([f"j{n}" for n in range(8)])
SCHEDULED = st.fixed_dictionaries(
    {},
    optional={
        "priority": st.integers(-2, 2),
        "runAt": st.sampled_from(["2026-01-01T00:00:00.000000Z", "2026-06-01T00:00:00.000000Z"]),
        "key": st.sampled_from(["a", "b"]),
        "dependsOn": st.lists(JOB_IDS, max_size=2, unique=True),
    },
)
CHANGES = st.lists(st.tuples(st.dictionaries(JOB_IDS, SCHEDULED, max_size=3), st.sets(JOB_IDS, max_size=2)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(CHANGES)
def test_a_segments_claim_order_followed_change_by_change_is_the_one_built_afresh(changes):
    table: dict = {}
    followed = SegmentSchedule(table)
    for puts, removes in changes:
        documents = {job_id: {"id": job_id, "history": [{"status": "pending", "at": "2026-03-01T00:00:00.000000Z"}], **fields} for job_id, fields in puts.items()}
        after = dict(table)
        for job_id in removes:
            after.pop(job_id, None)
        after.update(documents)
        followed.changed(after, documents, removes)
        table = after
        fresh = SegmentSchedule(table)
        # Positions may differ (a rebuild counts from 0); the order they give may not.
        assert [entry[3] for entry in followed.order] == [entry[3] for entry in fresh.order]
        assert {key: sorted(ids) for key, ids in followed.keys.items()} == {key: sorted(ids) for key, ids in fresh.keys.items()}
        assert {job: sorted(ids) for job, ids in followed.needed_by.items()} == {job: sorted(ids) for job, ids in fresh.needed_by.items()}
        for moment in ("2025-12-31T00:00:00.000000Z", "2026-03-01T00:00:00.000000Z", "2026-07-01T00:00:00.000000Z"):
            due = followed.first_due(moment, lambda job: True)
            expected = fresh.first_due(moment, lambda job: True)
            assert (due and due[3]) == (expected and expected[3])
