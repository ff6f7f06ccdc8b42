"""Damaged files: a clear CorruptStoreError naming the file, and the file left exactly as it was."""

from __future__ import annotations

import json

import pytest

from jobstore import CorruptStoreError, JobStore

from conftest import snapshot

DAMAGE = {
    "invalid JSON": ('{"pending": {"a": {', r"pending\.json \(line 1, column 20\): not valid JSON"),
    "truncated to nothing": ("", r"pending\.json \(line 1, column 1\): not valid JSON"),
    "not UTF-8": (b'{"pending": {"\xff": {}}}', r"pending\.json: not UTF-8 at byte 14"),
    "a list": ("[]", r"pending\.json: expected an object holding the table 'pending', found list"),
    "another table": ('{"pending": {}, "_default": {}}', r"unexpected table '_default'"),
    "table not an object": ('{"pending": []}', r"table 'pending' is not an object"),
    "job not an object": ('{"pending": {"a": "text"}}', r"job 'a' is not an object"),
    "key and id differ": ('{"pending": {"a": {"id": "b", "status": "pending"}}}', r"job 'a' has the id 'b'"),
    "wrong status": (
        '{"pending": {"a": {"id": "a", "status": "running"}}}',
        r"job 'a' has the status 'running' in the 'pending' table",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_file_is_reported_and_left_untouched(store, root, damage):
    store.set_job("kept", {"name": "kept"}, "running")
    content, message = DAMAGE[damage]
    path = root / "pending.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    before = snapshot(root)
    for call in (
        lambda: store.create_job("new"),
        lambda: store.get_pending_jobs(),
        lambda: store.find_job("kept"),
        lambda: store.set_job("kept", {}, "pending"),
        lambda: JobStore(root).delete_job("a"),
    ):
        with pytest.raises(CorruptStoreError, match=message) as caught:
            call()
        assert caught.value.path == str(path)
    assert snapshot(root) == before


def test_reads_of_intact_tables_still_work(store, root):
    store.set_job("r", {}, "running")
    (root / "finished.json").write_text("{oops", encoding="utf-8")
    assert store.get_job("r", "running")["id"] == "r"
    assert [job["id"] for job in store.get_running_jobs()] == ["r"]
    assert store.create_job("new")["status"] == "pending"  # a new id needs no look into other tables
    with pytest.raises(CorruptStoreError, match="finished.json"):
        store.set_job("somewhere", {})  # a given id might be in the damaged table
    with pytest.raises(CorruptStoreError, match="finished.json"):
        store.update_job_result("r", "done")
    assert store.get_job("r", "running")["result"] == ""


def test_a_repaired_file_is_read_again(store, root):
    store.set_job("j", {"name": "x"})
    store.flush()
    path = root / "pending.json"
    good = path.read_text()
    path.write_text(good[:-5])
    with pytest.raises(CorruptStoreError):
        store.get_job("j")
    path.write_text(good)
    assert store.get_job("j")["name"] == "x"


def test_the_error_carries_the_position(store, root):
    (root / "idle.json").write_text('{\n  "idle": {\n    "a": tru\n  }\n}\n')
    with pytest.raises(CorruptStoreError) as caught:
        store.get_idle_jobs()
    assert (caught.value.line, caught.value.column) == (3, 10)
    assert isinstance(caught.value, ValueError)


def test_an_empty_table_file_written_by_hand_is_fine(store, root):
    (root / "error.json").write_text(json.dumps({}))
    assert store.get_error_jobs() == []
