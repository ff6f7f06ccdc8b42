"""Links planted in a store: jobstore never reads or writes through one, refuses with UnsafeStoreError, and changes nothing."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

import jobstore
from jobstore import CorruptStoreError, JobStatus, JobStore, JobStoreError, UnsafeStoreError
from jobstore.cli import main

#: What an outside file holds, so that any write, truncation or swap through a link shows.
PRECIOUS = b"not the store's file: every byte must stay\n" * 40

#: How an operation must fare against a link: refused, carried out, or either (never anything else).
RAISES, WORKS, EITHER = "raises", "works", "either"

# location in the store, what the link points to, how reads fare, how writes fare
CASES = [
    pytest.param(".jobstore/wal", "file", RAISES, RAISES, id="wal-to-file"),
    # A copy of the real log is the sly case: the store would work as usual, writing outside.
    pytest.param(".jobstore/wal", "copy", RAISES, RAISES, id="wal-to-copy"),
    # The spares' folder of an earlier release: nothing reads or writes it, and a checkpoint
    # removes it (a link in it, or in its place, goes; never what the link points to).
    pytest.param(".jobstore/spare/pending.json", "file", WORKS, WORKS, id="spare-file-to-file"),
    pytest.param("pending.json", "copy", RAISES, RAISES, id="state-file-to-copy"),
    pytest.param(".jobstore/lock", "missing", RAISES, RAISES, id="lock-to-missing"),
    pytest.param(".jobstore/lock", "file", RAISES, RAISES, id="lock-to-file"),
    pytest.param(".jobstore/spare", "directory", WORKS, WORKS, id="spare-folder-to-directory"),
    pytest.param(".jobstore", "moved", RAISES, RAISES, id="engine-folder-moved-out"),
    # The note only saves a process syncing the log again: an operation may do without it, or refuse.
    pytest.param(".jobstore/wal.synced", "file", EITHER, EITHER, id="wal-synced-to-file"),
]


def tree(folder: Path) -> dict[str, object]:
    """Every entry under the folder, links not followed: a file's bytes, a folder's kind, a link's target."""
    found: dict[str, object] = {}

    def visit(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda entry: entry.name):
                name = prefix + entry.name
                if entry.is_symlink():
                    found[name] = ("link", os.readlink(entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    found[name] = ("folder",)
                    visit(Path(entry.path), name + "/")
                else:
                    found[name] = Path(entry.path).read_bytes()

    if folder.is_dir():
        visit(folder, "")
    return found


def kept(root: Path) -> dict[str, object]:
    """The store's own files (as :func:`tree` gives them) less what an earlier release's spares hold (nothing reads them)."""
    return {
        name: value
        for name, value in tree(root).items()
        if not name.startswith(".jobstore/spare/") or isinstance(value, tuple) and value[0] == "link"
    }


def plant(root: Path, location: str, target: str, outside: Path) -> Path:
    """Put a symbolic link at ``location`` in the store, pointing into ``outside``; return the link.

    :param target: ``file`` (known bytes), ``directory`` (holding a file named like a state file),
        ``missing`` (a path with nothing there), ``copy`` (a copy of the real file) or ``moved``
        (the real file or folder itself, moved out)
    """
    link = root / location
    outside.mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)  # the folder of an earlier release's spares, say
    if target == "file":
        destination = outside / "target"
        destination.write_bytes(PRECIOUS)
    elif target == "directory":
        destination = outside / "folder"
        destination.mkdir()
        (destination / "pending.json").write_bytes(PRECIOUS)
    elif target == "missing":
        destination = outside / "absent"
    elif target == "copy":
        destination = outside / link.name
        shutil.copyfile(link, destination)
    elif target == "moved":
        destination = outside / link.name
        os.rename(link, destination)
    else:
        raise ValueError(f"unknown target {target!r}")
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(destination, target_is_directory=destination.is_dir())
    return link


def assert_names(error: UnsafeStoreError, link: Path) -> None:
    assert error.path == str(link)
    assert isinstance(error.detail, str) and error.detail
    assert str(link) in str(error) and "symbolic link" in str(error)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the store, never inside it: where planted links point."""
    return tmp_path / "outside"


@pytest.fixture
def pending_id(root: Path) -> str:
    """Seed the store with a finished job and two pending ones (so the first checkpoint exists); return a pending one's id."""
    store = JobStore(root)
    first, second, _ = store.create_jobs([{"name": name} for name in ("first", "second", "third")])
    assert store.claim_job("seeder")["id"] == first["id"]
    store.update_job_result(first["id"], "done")
    store.flush()  # a store at rest: every file written, so a read has nothing left to write
    return second["id"]


READS = {
    "find_job": lambda store, job_id: store.find_job(job_id),
    "get_jobs": lambda store, job_id: store.get_jobs(),
}
WRITES = {
    "create_job": lambda store, job_id: store.create_job("after the link"),
}


def test_unsafe_store_error_is_a_corrupt_store_error():
    assert issubclass(UnsafeStoreError, CorruptStoreError)
    assert issubclass(UnsafeStoreError, JobStoreError)
    assert issubclass(UnsafeStoreError, ValueError)
    assert "UnsafeStoreError" in jobstore.__all__


@pytest.mark.parametrize("operation", sorted(READS) + sorted(WRITES))
@pytest.mark.parametrize(("location", "target", "reads", "writes"), CASES)
def test_a_planted_symbolic_link_is_never_followed(root, outside, pending_id, location, target, reads, writes, operation):
    link = plant(root, location, target, outside)
    outside_before, store_before = tree(outside), kept(root)
    is_read = operation in READS
    expected = reads if is_read else writes
    call = (READS if is_read else WRITES)[operation]

    # A new instance, so nothing opened before the link was planted can hide it; the
    # constructor may be the one to refuse.
    if expected == RAISES:
        with pytest.raises(UnsafeStoreError, match=re.escape(str(link))) as raised:
            call(JobStore(root), pending_id)
        error: UnsafeStoreError | None = raised.value
    else:
        try:
            store = JobStore(root)
            result = call(store, pending_id)
            if not is_read:
                store.flush()  # the state files are written now: through no link
            error = None
        except UnsafeStoreError as refused:
            if expected == WORKS:
                raise
            error = refused
    if error is not None:
        assert_names(error, link)
    elif operation == "find_job":
        assert result[1] is JobStatus.PENDING and result[0]["id"] == pending_id
    elif operation == "get_jobs":
        assert len(result) == 3

    assert tree(outside) == outside_before, "a file or folder outside the store changed"
    if error is not None or is_read:
        assert kept(root) == store_before, "the store's own files changed"
    if target == "missing":
        assert not os.path.lexists(outside / "absent")
    if location != "pending.json":
        # A spare swapped in would put the link itself where the state file belongs.
        assert not (root / "pending.json").is_symlink()


@pytest.mark.parametrize(("location", "target", "reads", "writes"), CASES)
def test_check_reports_a_symbolic_link_without_following_it(root, outside, pending_id, location, target, reads, writes):
    link = plant(root, location, target, outside)
    outside_before, store_before = tree(outside), kept(root)
    try:
        store = JobStore(root)
    except UnsafeStoreError as error:
        # Only these two folders are opened as the store is: there is no store to check then.
        assert location in (".jobstore", ".jobstore/spare")
        assert_names(error, link)
    else:
        problems = store.check()
        assert any(location in str(problem.path) and "symbolic link" in problem.detail for problem in problems), problems
    assert tree(outside) == outside_before
    assert kept(root) == store_before


@pytest.mark.parametrize(("location", "target", "reads", "writes"), CASES)
def test_validate_fails_naming_a_symbolic_link(root, outside, pending_id, capsys, location, target, reads, writes):
    plant(root, location, target, outside)
    outside_before = tree(outside)
    with pytest.raises(SystemExit) as exited:
        main(["--store", str(root), "validate"])
    said = capsys.readouterr()
    assert exited.value.code not in (0, None), said
    assert location in said.out + said.err
    assert tree(outside) == outside_before


@pytest.mark.parametrize("name", ["wal", "wal.synced"])
@pytest.mark.parametrize("content", ["junk", "copy"])
def test_a_hard_linked_engine_file_is_not_written(root, outside, pending_id, name, content):
    path = root / ".jobstore" / name
    assert path.is_file(), "a durable store keeps both the log and its note"
    outside.mkdir()
    original = outside / name
    # A copy is a file the store would happily keep writing, into the other name as well.
    original.write_bytes(PRECIOUS if content == "junk" else path.read_bytes())
    path.unlink()
    os.link(original, path)
    before = original.read_bytes()
    with pytest.raises(UnsafeStoreError, match=re.escape(str(path))) as raised:
        JobStore(root).create_job("after the link")
    assert re.search(r"other (hard )?links", str(raised.value)), str(raised.value)
    assert original.read_bytes() == before


def test_a_store_whose_root_is_a_symbolic_link_works_normally(tmp_path, capsys):
    real = tmp_path / "data" / "jobs"
    JobStore(real).create_job("made before the link")
    link = tmp_path / "jobs"
    link.symlink_to(real, target_is_directory=True)

    store = JobStore(link)
    made = store.create_job("through the link")
    claimed = store.claim_job("worker")
    assert claimed is not None and claimed["name"] == "made before the link"
    store.update_job_result(claimed["id"], "done")
    again = JobStore(link)
    assert again.find_job(claimed["id"])[1] is JobStatus.FINISHED
    assert again.find_job(made["id"])[1] is JobStatus.PENDING
    # The link is the owner's choice: the files land in the real folder, and the link stays.
    assert (real / "finished.json").is_file() and link.is_symlink()
    assert JobStore(link).check() == []
    with pytest.raises(SystemExit) as exited:
        main(["--store", str(link), "validate"])
    assert exited.value.code in (0, None), capsys.readouterr()
