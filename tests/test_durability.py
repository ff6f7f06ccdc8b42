"""The write-ahead log: power-loss recovery, checkpoints, and the non-durable mode."""

from __future__ import annotations

import os
import json
import re

from jobstore import JobStore, _wal

from conftest import log_bytes, raw_tables, start_worker


def log_path(root):
    return root / ".jobstore" / "wal"


def reboot(root):
    """Make the log look written before the machine's last boot, as after a power loss."""
    path = log_path(root)
    lines = path.read_bytes().split(b"\n")
    lines[0] = re.sub(rb"boot=\S+", b"boot=before-the-power-went", lines[0])
    path.write_bytes(b"\n".join(lines))


def test_after_a_power_loss_torn_files_are_rebuilt_from_the_log(root):
    store = JobStore(root)
    jobs = store.create_jobs([{"name": str(n)} for n in range(5)])
    store.set_job_running(jobs[0]["id"], {"messages": "working"})
    store.update_job_result(jobs[1]["id"], "done")
    expected = raw_tables(root)
    (root / "pending.json").write_bytes(b'{"pending": {"')  # torn by the power loss
    (root / "finished.json").write_bytes(b"")
    reboot(root)
    assert JobStore(root).find_job(jobs[1]["id"])[1] == "finished"
    assert raw_tables(root) == expected
    assert log_path(root).read_bytes().count(b"\n") == 1  # a fresh log after the replay


def test_a_replay_also_removes_files_the_log_deleted(root):
    store = JobStore(root, segment_size=1)
    first, second = store.create_jobs([{"name": "a"}, {"name": "b"}])
    store.set_job_running(first["id"])
    assert not (root / "pending.json").exists()
    (root / "pending.json").write_text('{"pending": {}}')  # a stale file a power loss brought back
    reboot(root)
    assert [job["id"] for job in JobStore(root).get_pending_jobs()] == [second["id"]]
    assert not (root / "pending.json").exists()


def test_a_checkpoint_starts_a_new_log_and_keeps_every_job(root):
    store = JobStore(root)
    store._engine.wal.checkpoint_bytes = 2000
    inode = log_path(root).stat().st_ino if log_path(root).exists() else None
    made = [store.create_job(str(n)) for n in range(30)]
    assert log_path(root).stat().st_size < 2000 + 1000
    assert log_path(root).stat().st_ino != inode
    assert [job["id"] for job in JobStore(root).get_pending_jobs()] == [job["id"] for job in made]


def test_a_process_holding_an_old_log_follows_the_new_one(root):
    reader, writer = JobStore(root), JobStore(root)
    writer._engine.wal.checkpoint_bytes = 1500
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


def lose_unsynced_tail(root):
    """A power loss after the files were replaced but before the log's last record reached the disk."""
    path = log_path(root)
    lines = log_bytes(root).split(b"\n")
    last_record = max(number for number, line in enumerate(lines) if line and not line.startswith(b"applied"))
    path.write_bytes(b"\n".join(lines[:last_record]) + b"\n")
    reboot(root)


def test_a_write_whose_record_never_reached_the_disk_is_undone_in_every_file(root):
    store = JobStore(root, segment_size=2)
    kept = store.create_jobs([{"name": "a"}, {"name": "b"}])
    store.set_job_running(kept[0]["id"])
    expected = raw_tables(root)
    # The lost write moves a job and starts a new pending file: both file changes were on disk.
    store.create_jobs([{"name": "c"}, {"name": "d"}])
    store.flush()
    assert (root / "pending-0002.json").exists()
    lose_unsynced_tail(root)
    reopened = JobStore(root)
    assert reopened.check() == []
    assert raw_tables(root) == expected
    assert not (root / "pending-0002.json").exists()


def test_the_base_keeps_what_a_checkpoint_synced_and_nothing_after(root):
    store = JobStore(root)
    jobs = store.create_jobs([{"name": str(n)} for n in range(3)])
    with store._engine.session():
        store._engine._checkpoint()
    base = next((root / ".jobstore").glob("base-*"))
    linked = json.loads((base / "pending.json").read_text())["pending"]
    assert list(linked) == [job["id"] for job in jobs]
    store.set_job_running(jobs[0]["id"])
    store.flush()
    # Writing the running job replaced pending.json; the base still holds the checkpoint's version.
    assert list(json.loads((base / "pending.json").read_text())["pending"]) == [job["id"] for job in jobs]
    (root / "pending.json").write_bytes(b"")  # torn by the power loss
    reboot(root)
    assert [job["id"] for job in JobStore(root).get_pending_jobs()] == [job["id"] for job in jobs[1:]]


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
