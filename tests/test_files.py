"""The file layout: one TinyDB-format JSON file per state, readable by json, by TinyDB and by eye."""

from __future__ import annotations

import gc
import json
import os
import time

from tinydb import TinyDB
from tinydb.table import Table

from jobstore import JobStore
from jobstore.engines._tinydb import MAX_DELAY

from conftest import raw_tables


def test_each_state_has_its_own_file_in_tinydb_layout(store, root):
    created = store.create_job("n", "u", "r")
    store.set_job("r1", {}, "running")
    store.flush()
    assert json.loads((root / "pending.json").read_text()) == {"pending": {created["id"]: created}}
    assert raw_tables(root)["running"] == {"r1": store.get_job("r1", "running")}


def test_files_are_indented_for_people(store, root):
    store.set_job("j", {"name": "read me"})
    store.flush()
    text = (root / "pending.json").read_text(encoding="utf-8")
    assert '\n    "j": {\n      "id": "j",' in text
    assert text.endswith("}\n")


def test_non_ascii_text_is_written_as_itself(store, root):
    store.set_job("j", {"name": "café"})
    store.flush()
    assert "café" in (root / "pending.json").read_text(encoding="utf-8")


def test_tinydb_itself_reads_the_files(store, root):
    created = store.create_job("n", "u", "r")
    store.flush()

    class ById(Table):
        document_id_class = str

    class Reader(TinyDB):
        table_class = ById

    with Reader(root / "pending.json", access_mode="r") as db:
        found = db.table("pending").get(doc_id=created["id"])
    assert dict(found) == created


def test_a_moved_job_is_in_exactly_one_table(store, root):
    created = store.create_job("n", "u", "r")
    store.set_job_running(created["id"])
    store.update_job_result(created["id"], "ok")
    tables = raw_tables(root)
    holders = [state for state, table in tables.items() if created["id"] in table]
    assert holders == ["finished"]
    assert sorted(p.name for p in root.iterdir()) == [".jobstore", "finished.json", "pending.json", "running.json"]


def test_a_hand_edit_is_seen_by_the_next_call(store, root):
    created = store.create_job("n", "u", "r")
    assert store.get_job(created["id"])["name"] == "n"
    store.flush()  # the README's rule: files are edited by hand once flushed, while no process writes
    path = root / "pending.json"
    data = json.loads(path.read_text())
    data["pending"][created["id"]]["name"] = "edited by hand"
    path.write_text(json.dumps(data))
    assert store.get_job(created["id"])["name"] == "edited by hand"


def test_a_store_reopens_what_another_wrote(root):
    JobStore(root).set_job("j", {"name": "persisted"}, "finished")
    assert JobStore(root).find_job("j")[0]["name"] == "persisted"


def test_each_rewrite_of_a_file_has_a_new_identity_even_when_the_clock_stands_still(tmp_path, monkeypatch):
    # Readers reuse a parsed file while its (inode, size, mtime) is unchanged; inodes are reused,
    # so the writer must make mtime rise even on a coarse or stopped clock.
    from jobstore import _files, _folder

    monkeypatch.setattr(_files.time, "time_ns", lambda: 1_000_000_000)
    with _folder.Folder.root(tmp_path) as folder:
        keys = [_files.write_atomic(folder, "table.json", b"same size", durable=False) for _ in range(50)]
        assert len(set(keys)) == 50
        assert [key[3] for key in keys] == list(range(1_000_000_000, 1_000_000_050))
        assert keys[-1] == _files.file_key(folder, "table.json")


def test_stores_let_go_of_their_files_when_closed_or_collected(root):
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    JobStore(root).create_job("first")
    before = open_files()
    for number in range(40):
        store = JobStore(root)
        store.create_job(str(number))
        if number % 2:
            store.close()
        del store
    time.sleep(MAX_DELAY / 5)  # the helper threads write the files and let their stores go
    gc.collect()
    assert open_files() <= before
    closed = JobStore(root)
    closed.close()
    assert len(closed.get_jobs()) == 41  # a closed store opens its files again when next used
