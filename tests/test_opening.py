"""Opening a store: a new or empty directory becomes one; a file, an impossible place or someone else's directory is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobstore import JobStore, NotAStoreError
from jobstore.api import job

from conftest import one_line_error


def test_a_missing_or_empty_directory_becomes_a_store(tmp_path):
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "empty", tmp_path / "a" / "b"):
        JobStore(root).create_job("a", "u", "r", "")
        assert (root / ".jobstore").is_dir()


def test_state_files_alone_are_a_store(tmp_path, store):  # tmp_path: the file engine alone
    made = store.create_job("a", "u", "r", "")
    store.flush()
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "pending.json").write_bytes((store.path / "pending.json").read_bytes())
    assert JobStore(copy).get_job(made["id"])["id"] == made["id"]


@pytest.mark.parametrize("where", ["file", "inside a file", "under /proc"])
def test_a_path_no_store_can_be_at_is_one_clear_error(tmp_path, where):
    (tmp_path / "notes.txt").write_text("mine")
    path = {"file": tmp_path / "notes.txt", "inside a file": tmp_path / "notes.txt" / "store", "under /proc": Path("/proc/jobstore-test/store")}[where]
    with pytest.raises(NotAStoreError, match=f"^cannot open a job store at {path}: ") as caught:
        JobStore(path)
    assert isinstance(caught.value, OSError) and caught.value.errno is not None
    assert "\n" not in str(caught.value)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_directory_of_other_files_is_refused_and_left_as_it_was(tmp_path):
    for name in ("main.py", "README.md", "setup.cfg", "notes.txt"):
        (tmp_path / name).write_text(name)
    before = sorted(path.name for path in tmp_path.iterdir())
    with pytest.raises(NotAStoreError, match=r"it is a directory of other files \(README.md, main.py, notes.txt and 1 more\), not a job store"):
        JobStore(tmp_path)
    with pytest.raises(NotAStoreError):
        job.useStore(tmp_path)
        job.getJobs()
    job.useStore(None)
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_the_command_line_refuses_them_in_one_line(jobstore, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    one_line_error(jobstore("create", "x", store=tmp_path), 1, "directory of other files (notes.txt)")
    one_line_error(jobstore("create", "x", store=tmp_path / "notes.txt"), 1, "it is a file")
