"""A full disk or a failing one: a write that cannot be logged changes nothing; one that was logged is kept."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
import traceback
from pathlib import Path

import pytest

from conftest import log_bytes, raw_tables, snapshot
from jobstore import JobStore, StoreWriteError
from jobstore._files import TEMP_SUFFIX

FD_CALLS = ("write", "pwrite", "fdatasync", "fsync", "ftruncate")


class Faults:
    """Makes chosen system calls on chosen store files fail, as a full or failing disk would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.failed = 0

    def fail(self, call: str, name: str, code: int, *, partial: bool = False, times: int | None = None) -> None:
        """Make ``os.<call>`` fail with ``code`` on files whose name ends with ``name``.

        :param partial: the first such write goes half through, as a disk filling up mid-write does
        :param times: fail only this many times, then work again (None: until healed)
        """
        real = getattr(os, call)
        halves = [partial]
        left = [times]

        def target(args: tuple) -> str:
            if call in FD_CALLS:
                return os.readlink(f"/proc/self/fd/{args[0]}")
            return os.fspath(args[-1])

        def faulty(*args, **kwargs):
            if not target(args).endswith(name) or left[0] == 0:
                return real(*args, **kwargs)
            if halves[0] and call in ("write", "pwrite"):
                halves[0] = False
                data = bytes(args[1])
                return real(args[0], data[: len(data) // 2], *args[2:])
            self.failed += 1
            if left[0] is not None:
                left[0] -= 1
            raise OSError(code, os.strerror(code))

        self.monkeypatch.setattr(os, call, faulty)

    def heal(self) -> None:
        """The disk has room again, and works."""
        self.monkeypatch.undo()


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    return Faults(monkeypatch)


def state_of(root: Path) -> tuple[dict, bytes]:
    return snapshot(root), log_bytes(root)


def test_a_log_record_cut_short_by_a_full_disk_changes_nothing(store, root, faults):
    first = store.create_job("a", "u", "r", "")
    before = state_of(root)
    faults.fail("pwrite", "wal", errno.ENOSPC, partial=True, times=1)
    with pytest.raises(StoreWriteError, match="No space left on device; nothing was changed") as caught:
        store.set_job_running(first["id"])
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert caught.value.path.endswith("wal")
    assert state_of(root) == before, "the half-written record was left in the log"
    faults.heal()
    # The store goes on: this process and a fresh one see the same, whole store.
    store.set_job_running(first["id"])
    assert JobStore(root).find_job(first["id"])[1] == "running"


def test_a_log_record_that_could_not_be_cut_back_is_cut_by_the_next_write(store, root, faults):
    first = store.create_job("a", "u", "r", "")
    # Half the record is written, and clearing it fails too (the disk refuses every write to the log).
    faults.fail("pwrite", "wal", errno.ENOSPC, partial=True)
    with pytest.raises(StoreWriteError):
        store.set_job_running(first["id"])
    faults.heal()
    store.set_job_finished(first["id"])
    other = JobStore(root)
    assert other.find_job(first["id"])[1] == "finished"
    assert other.create_job("b", "u", "r", "")["status"] == "pending"


def test_a_sync_that_fails_says_the_write_may_not_survive_a_power_loss(store, root, faults):
    # The log is synced after the lock is released, when other processes may already have read
    # the record: it cannot be taken back, so the error says what is known.
    first = store.create_job("a", "u", "r", "")
    faults.fail("fdatasync", "wal", errno.EIO)
    with pytest.raises(StoreWriteError, match="Input/output error; the write was logged, but the disk did not confirm it is durable"):
        store.update_job_result(first["id"], "done")
    assert faults.failed == 1
    # Nothing noted it as synced: the next operation, in any process, tries the sync again.
    with pytest.raises(StoreWriteError, match="did not confirm"):
        JobStore(root).find_job(first["id"])
    assert faults.failed >= 2  # the first store's helper may also have tried, writing its files
    faults.heal()
    assert JobStore(root).find_job(first["id"])[1] == "finished"


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_a_state_file_that_cannot_be_written_leaves_the_write_done_and_the_file_as_it_was(store, root, faults, call):
    jobs = store.create_jobs([{"name": f"job {n}"} for n in range(3)])
    store.flush()
    files = snapshot(root)
    faults.fail(call, TEMP_SUFFIX, errno.ENOSPC)  # a file's next version is written under a temporary name
    store.delete_job(jobs[0]["id"])  # the record counts: the files follow when the disk allows
    with pytest.raises(StoreWriteError, match="the jobs are safe in the log"):
        store.flush()
    assert faults.failed >= 1
    assert {path.name: path.read_bytes() for path in sorted(root.glob("*.json"))} == files
    assert [job["id"] for job in JobStore(root).get_jobs()] == [job["id"] for job in jobs[1:]]
    faults.heal()
    assert set(raw_tables(root)["pending"]) == {job["id"] for job in jobs[1:]}


def test_a_state_file_that_could_not_be_replaced_is_replaced_once_the_disk_allows(store, root, faults):
    first = store.create_job("a", "u", "r", "")
    faults.fail("replace", "running.json", errno.EIO)
    moved = store.set_job_running(first["id"])
    assert moved["status"] == "running"
    with pytest.raises(StoreWriteError, match="running.json"):
        store.flush()
    assert faults.failed == 1
    # Reads answer from the log meanwhile, in any process.
    assert JobStore(root).find_job(first["id"])[1] == "running"
    faults.heal()
    assert store.find_job(first["id"])[1] == "running"
    assert set(raw_tables(root)["running"]) == {first["id"]}
    assert raw_tables(root).get("pending") == {}


def test_a_note_that_could_not_be_logged_after_a_write_does_no_harm(store, root, faults):
    first = store.create_job("a", "u", "r", "")
    second = store.create_job("b", "u", "r", "")
    real_write = os.pwrite

    def applied_note_fails(fd, data, offset):
        if bytes(data).startswith(b"applied") and os.readlink(f"/proc/self/fd/{fd}").endswith("wal"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data, offset)

    faults.monkeypatch.setattr(os, "pwrite", applied_note_fails)
    assert store.set_job_running(first["id"])["status"] == "running"
    faults.heal()
    store.set_job_running(second["id"])
    assert {job["id"] for job in JobStore(root).get_running_jobs()} == {first["id"], second["id"]}


# A real filesystem, small enough to fill: a tmpfs, where this machine lets the tests mount one.


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small filesystem here")
    try:
        yield mount
    finally:
        # Lazily: stores still open in this process hold files there.
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_filling_a_real_disk_loses_no_acknowledged_job(small_disk):
    store = JobStore(small_disk / "store")
    acknowledged = []
    with pytest.raises(StoreWriteError, match="No space left on device; nothing was changed") as caught:
        for n in range(10_000):
            acknowledged.append(store.create_job(f"job {n}", "u", "x" * 200, "")["id"])
    assert caught.value.errno == errno.ENOSPC
    assert len(acknowledged) > 10
    assert [job["id"] for job in JobStore(small_disk / "store").get_jobs()] == acknowledged
    for path in (small_disk / "store").glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
    # Room again: everything goes on, nothing else was lost.
    subprocess.run(["mount", "-o", "remount,size=1m", str(small_disk)], check=True)
    store.delete_job(acknowledged[0])
    store.set_job_running(acknowledged[1])
    assert len(JobStore(small_disk / "store").get_jobs()) == len(acknowledged) - 1


def test_a_read_only_store_reads_and_refuses_writes_clearly(small_disk, tmp_path):
    store = JobStore(small_disk / "store")
    jobs = store.create_jobs([{"name": "a"}, {"name": "b"}])
    store.set_job_running(jobs[0]["id"])
    view = tmp_path / "read-only"
    view.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(small_disk), str(view)], check=True)
    try:
        reader = JobStore(view / "store")
        assert [job["name"] for job in reader.get_jobs()] == ["b", "a"]
        with pytest.raises(StoreWriteError, match="Read-only file system; nothing was changed") as caught:
            reader.create_job("c", "u", "r", "")
        assert caught.value.errno == errno.EROFS
        store.set_job_running(jobs[1]["id"])  # a writer elsewhere goes on; the reader follows
        assert reader.find_job(jobs[1]["id"])[1] == "running"
    finally:
        subprocess.run(["umount", "--lazy", str(view)], check=True)


def read_only_directory(place: Path) -> None:
    root = place / "store"
    store = JobStore(root)
    first = store.create_job("a", "u", "r", "")
    store.set_job_running(first["id"])
    store.set_job_pending(first["id"])
    store.flush()
    directories = (root, root / ".jobstore")
    for directory in directories:
        directory.chmod(0o555)  # the files in them stay writable: only renames are refused
    with pytest.raises(StoreWriteError, match="Permission denied; nothing was changed") as caught:
        store.set_job_running(first["id"])
    assert caught.value.errno == errno.EACCES
    assert JobStore(root).find_job(first["id"])[1] == "pending"
    for directory in directories:
        directory.chmod(0o755)
    store.set_job_running(first["id"])
    assert JobStore(root).find_job(first["id"])[1] == "running"


def test_a_directory_made_read_only_under_writable_files_refuses_writes_before_logging():
    # root ignores file modes: as root, the check runs in a child that becomes the user "nobody".
    place = Path(tempfile.mkdtemp())
    place.chmod(0o777)
    try:
        if os.getuid() != 0:
            read_only_directory(place)
            return
        child = os.fork()
        if child == 0:
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                read_only_directory(place)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the check failed in the child (its traceback is above)"
    finally:
        shutil.rmtree(place, ignore_errors=True)
