"""The write-ahead log: power-loss recovery, checkpoints, and the non-durable mode."""

from __future__ import annotations

import os
import json
import re

import pytest

from jobstore import CorruptStoreError, JobStore, _folder, _wal
from jobstore.engines import _tinydb as _tinydb_engine

from conftest import log_bytes, raw_tables, start_worker


def log_path(root):
    return root / ".jobstore" / "wal"


def reboot(root):
    """Make the log look written before the machine's last boot, as after a power loss."""
    path = log_path(root)
    lines = path.read_bytes().split(b"\n")
    lines[0] = re.sub(rb"boot=\S+", b"boot=before-the-power-went", lines[0])
    path.write_bytes(b"\n".join(lines))


def test_after_a_power_loss_the_records_on_disk_are_applied_over_the_files(root):
    store = JobStore(root)
    jobs = store.create_jobs([{"name": str(n)} for n in range(5)])
    store.flush()
    before = {path.name: path.read_bytes() for path in root.glob("*.json")}
    store.set_job_running(jobs[0]["id"], {"messages": "working"})
    store.update_job_result(jobs[1]["id"], "done")
    store.flush()
    expected = raw_tables(root)
    # The files as they were before the moves, as if none of their batches had been written.
    for path in root.glob("*.json"):
        path.unlink()
    for name, data in before.items():
        (root / name).write_bytes(data)
    reboot(root)
    assert JobStore(root).find_job(jobs[1]["id"])[1] == "finished"
    assert raw_tables(root) == expected
    assert log_path(root).read_bytes().count(b"\n") == 1  # a fresh log after the replay


def test_a_file_torn_by_hand_is_reported_after_a_power_loss_not_rebuilt_over(root):
    store = JobStore(root)
    job = store.create_job("j")
    store.flush()
    (root / "pending.json").write_bytes(b'{"pending": {"')
    reboot(root)
    reopened = JobStore(root)
    with pytest.raises(CorruptStoreError, match=r"pending\.json \(line 1, column 14\): not valid JSON"):
        reopened.find_job(job["id"])
    assert [problem.path for problem in reopened.check()] == ["pending.json"]
    assert (root / "pending.json").read_bytes() == b'{"pending": {"'


def test_a_replay_also_removes_files_the_log_deleted(root):
    store = JobStore(root, segment_size=1)
    first, second = store.create_jobs([{"name": "a"}, {"name": "b"}])
    store.set_job_running(first["id"])
    assert not (root / "pending.json").exists()
    (root / "pending.json").write_text('{"pending": {}}')  # a stale file a power loss brought back
    reboot(root)
    assert [job["id"] for job in JobStore(root).get_pending_jobs()] == [second["id"]]
    assert not (root / "pending.json").exists()


def test_a_checkpoint_starts_a_new_log_and_keeps_every_job(root, monkeypatch):
    monkeypatch.setattr(_tinydb_engine, "LEAST_LOG_BYTES", 2000)
    monkeypatch.setattr(_tinydb_engine, "MOST_LOG_BYTES", 2000)
    store = JobStore(root)
    inode = log_path(root).stat().st_ino if log_path(root).exists() else None
    made = [store.create_job(str(n)) for n in range(30)]
    assert log_path(root).stat().st_size < 2000 + 1000
    assert log_path(root).stat().st_ino != inode
    assert [job["id"] for job in JobStore(root).get_pending_jobs()] == [job["id"] for job in made]


def test_a_process_holding_an_old_log_follows_the_new_one(root, monkeypatch):
    monkeypatch.setattr(_tinydb_engine, "LEAST_LOG_BYTES", 1500)
    monkeypatch.setattr(_tinydb_engine, "MOST_LOG_BYTES", 1500)
    reader, writer = JobStore(root), JobStore(root)
    assert reader.get_jobs() == []
    for n in range(20):
        writer.create_job(str(n))
        assert len(reader.get_pending_jobs()) == n + 1


def test_durable_writes_sync_and_non_durable_ones_do_not(root, monkeypatch):
    calls = []
    monkeypatch.setattr(_wal.os, "fdatasync", lambda fd: calls.append(fd))
    JobStore(root / "fast", durable=False).create_job("x")
    assert calls == []
    JobStore(root / "safe").create_job("x")
    assert len(calls) == 1


def test_a_non_durable_store_still_completes_a_move_after_a_crash(root):
    store = JobStore(root, durable=False)
    job = store.create_job("n")
    worker = start_worker(root, "die-mid-move", job["id"], "running", "one-file", durable=False)
    worker.communicate(timeout=60)
    assert JobStore(root, durable=False).find_job(job["id"])[1] == "running"
    assert sum(job["id"] in table for table in raw_tables(root).values()) == 1


def test_the_boot_id_is_read_where_the_system_has_one():
    boot = _wal.boot_id()
    assert boot is None or (len(boot) > 8 and boot == _wal.boot_id())
    if os.path.exists("/proc/sys/kernel/random/boot_id"):
        assert boot is not None


def test_the_files_get_a_write_only_once_its_record_is_on_disk(root, monkeypatch):
    store = JobStore(root)
    store.create_job("first")
    store.flush()
    events = []
    monkeypatch.setattr(_wal.os, "fdatasync", lambda fd: events.append("log synced"))
    replace = _folder.Folder.replace
    monkeypatch.setattr(_folder.Folder, "replace", lambda *args: (events.append(f"{args[3]} replaced"), replace(*args))[1])
    # The writer is stopped after its record, before it synced the log (as if still waiting on the disk).
    monkeypatch.setattr(store._engine.wal, "settle", lambda mark: None)
    store.create_job("second")
    assert events == []
    monkeypatch.undo()
    monkeypatch.setattr(_wal.os, "fdatasync", lambda fd: events.append("log synced"))
    monkeypatch.setattr(_folder.Folder, "replace", lambda *args: (events.append(f"{args[3]} replaced"), replace(*args))[1])
    store.flush()
    assert events[:2] == ["log synced", "pending.json replaced"]


def test_a_checkpoint_keeps_no_copy_of_the_tables_beside_the_files(root):
    store = JobStore(root)
    jobs = store.create_jobs([{"name": str(n)} for n in range(3)])
    with store._engine.session():
        store._engine._checkpoint()
    store.set_job_running(jobs[0]["id"])
    store.flush()
    assert sorted(path.name for path in (root / ".jobstore").iterdir()) == ["lock", "wal", "wal.synced"]
    (root / "pending.json").write_bytes(b"")  # emptied by hand
    reboot(root)
    with pytest.raises(CorruptStoreError, match=r"pending\.json"):
        JobStore(root).get_pending_jobs()


def test_a_checkpoint_removes_the_base_folders_and_spares_of_earlier_releases(root):
    store = JobStore(root)
    job = store.create_job("j")
    store.flush()
    for folder in ("base-1", "spare"):
        (root / ".jobstore" / folder).mkdir()
        (root / ".jobstore" / folder / "pending.json").write_bytes((root / "pending.json").read_bytes())
    store.delete_job(store.create_job("gone")["id"])  # a delete checkpoints at once
    assert not (root / ".jobstore" / "base-1").exists()
    assert not (root / ".jobstore" / "spare").exists()
    assert store.find_job(job["id"])[1] == "pending"


def test_a_reader_syncs_a_record_nobody_synced_before_answering(root, monkeypatch):
    writer, reader = JobStore(root), JobStore(root)
    reader.get_jobs()
    synced = []
    monkeypatch.setattr(_wal.os, "fdatasync", lambda fd: synced.append(fd))
    # The writer is stopped after its record, before it synced the log (as if still waiting on the disk).
    monkeypatch.setattr(writer._engine.wal, "settle", lambda mark: None)
    job = writer.create_job("unsynced")
    assert synced == []
    assert reader.find_job(job["id"])[1] == "pending"
    assert len(synced) == 1
    # Now the note says the log is on disk that far: another look needs no sync.
    assert JobStore(root).find_job(job["id"])[1] == "pending"
    assert len(synced) == 1
