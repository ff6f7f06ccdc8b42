"""The write-ahead log: the commit point of every write, and what repairs the files after a crash.

Each write appends one record naming every store file it changes and the documents it puts in
and removes from each, then replaces those files. The record is the only thing synced to disk
per write, and it is synced after the store lock is released, so that the next process's write
proceeds while this one waits for the disk (the syncs of processes waiting together are one
commit of the filesystem's journal). A process that reads a record nobody has synced yet syncs
the log itself before it answers, so nothing is seen that a power loss could take back. The
state files are synced at each checkpoint, when the log starts afresh and every state file is
hard-linked into a base folder. So:

- a process killed before its record is complete changed nothing (the torn tail is cut off);
- a process killed after its record but before the files were all replaced leaves a record with
  no ``applied`` line after it, and the next session applies it again;
- after a power loss (the machine's boot id differs from the log's), every state file is rebuilt
  from the base the log's header names and the records that reached the disk; a file the lost
  records made is removed.

Records are single JSON lines behind a CRC-32, so a torn or damaged line is recognised.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ._errors import CorruptStoreError
from ._files import FileKey, write_atomic
from ._folder import Folder

_MAGIC = b"jobstore-wal 2"
#: Logs written before the base folders: their first record for each file holds its whole table.
_MAGIC_IMAGES = b"jobstore-wal 1"
_APPLIED = b"applied"
#: How far the log is known to be on disk, noted by the process that synced it: the log's inode
#: and an offset, with a checksum (a note read while being written is seen as no note).
_SYNCED = struct.Struct("<QQI")


def boot_id() -> str | None:
    """Return an id of the machine's current boot, or None where the system has none to give."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


@dataclass
class FileChange:
    """What one record does to one store file.

    Exactly one of: ``image`` (the file's whole table after the write), ``delete`` (the file goes),
    or ``puts``/``removes`` (documents upserted and removed, on top of the file's previous table).
    """

    state: str
    image: dict[str, Any] | None = None
    delete: bool = False
    puts: dict[str, Any] = field(default_factory=dict)
    removes: list[str] = field(default_factory=list)
    #: the file's identity before and after the write (None: no file), so that another process
    #: holding the file's "before" version can apply the change instead of reading the file again
    before: FileKey | None = None
    after: FileKey | None = None

    def to_json(self) -> dict[str, Any]:
        keys = {"before": self.before, "after": self.after}
        if self.delete:
            return {"state": self.state, "delete": True, **keys}
        if self.image is not None:
            return {"state": self.state, "image": self.image, **keys}
        return {"state": self.state, "put": self.puts, "remove": self.removes, **keys}

    @classmethod
    def from_json(cls, value: Any) -> FileChange:
        if not isinstance(value, dict) or not isinstance(value.get("state"), str):
            raise ValueError("a file change needs a state")
        before, after = _file_key(value.get("before")), _file_key(value.get("after"))
        if value.get("delete") is True:
            return cls(value["state"], delete=True, before=before, after=after)
        if isinstance(value.get("image"), dict):
            return cls(value["state"], image=value["image"], before=before, after=after)
        puts, removes = value.get("put"), value.get("remove")
        if not isinstance(puts, dict) or not isinstance(removes, list):
            raise ValueError("a file change needs an image, a delete, or puts and removes")
        return cls(value["state"], puts=puts, removes=removes, before=before, after=after)

    def applied_to(self, table: dict[str, Any] | None) -> dict[str, Any] | None:
        """Return the file's table after this change, given the table before it (None: no file)."""
        if self.delete:
            return None
        if self.image is not None:
            return dict(self.image)
        result = dict(table or {})
        for job_id in self.removes:
            result.pop(job_id, None)
        result.update(self.puts)
        return result


def _synced_checksum(inode: int, offset: int) -> int:
    return zlib.crc32(struct.pack("<QQ", inode, offset))


def _parse_header(header: bytes) -> tuple[bytes, str | None, int | None]:
    """The magic, boot id and base number of a log's first line (None for what it lacks)."""
    words = header.split(b" ")
    magic = b" ".join(words[:2])
    fields = dict(word.split(b"=", 1) for word in words[2:] if b"=" in word)
    boot = fields[b"boot"].decode("utf-8", "replace") if b"boot" in fields else None
    base = int(fields[b"base"]) if magic == _MAGIC and fields.get(b"base", b"").isdigit() else None
    return magic, boot, base


def _file_key(value: Any) -> FileKey | None:
    if isinstance(value, list) and len(value) == 4:
        return (value[0], value[1], value[2], value[3])
    return None


class Record:
    """One write: a sequence number and the changes to each file it touches, by file name.

    Other processes read every record but need only its number and file names; the changes are
    parsed when a record has to be applied again, which is rare.
    """

    def __init__(self, seq: int, files: dict[str, FileChange] | None = None, *, names: list[str] | None = None,
                 payload: bytes = b"", path: Path | None = None) -> None:
        self.seq = seq
        self._files = files
        self.names: list[str] = list(files) if files is not None else names or []
        self._payload = payload
        self._path = path

    @property
    def files(self) -> dict[str, FileChange]:
        if self._files is None:
            try:
                changes = orjson.loads(self._payload)
                self._files = {name: FileChange.from_json(changes[name]) for name in self.names}
            except (ValueError, KeyError, TypeError) as error:
                raise CorruptStoreError(str(self._path), f"record {self.seq} does not parse: {error}") from None
        return self._files


@dataclass
class Catchup:
    """What a session must do before it may trust the files."""

    #: the last record, when its files may not all have been replaced
    unapplied: Record | None = None
    #: every record since the checkpoint, when the files may be torn (a power loss happened)
    replay: list[Record] | None = None
    #: the number of the base folder those records start from; None for a log of whole-table images
    base: int | None = None
    #: the records other processes applied since this one last looked, oldest first
    seen: list[Record] = field(default_factory=list)


class WriteAheadLog:
    """The log file of one store. Use only while holding the store lock.

    :param path: the log file
    :param durable: fsync each record and each checkpoint
    :param checkpoint_bytes: start a new log once the current one grows past this size
    """

    def __init__(self, path: Path, *, durable: bool = True, checkpoint_bytes: int = 16 << 20) -> None:
        self.path = path
        self.synced_path = path.with_name(path.name + ".synced")
        #: the log's folder, opened by the session that uses the log: every file of the log is
        #: opened through it (see ``_folder``)
        self.folder: Folder | None = None
        #: the base folder the open log's records start from
        self.base = 0
        #: the open log predates base folders: it must be checkpointed before anything is added to it
        self.legacy = False
        self._synced: tuple[int | None, int] = (None, 0)
        self._synced_fd: int | None = None
        self.durable = durable
        self.checkpoint_bytes = checkpoint_bytes
        #: names of the files this log has mentioned since its checkpoint
        self.mentioned: set[str] = set()
        self._fd: int | None = None
        self._inode: int | None = None
        self._offset = 0
        self._seq = 0
        #: bytes past the offset that a failed write left and that could not be cut off then
        self._stray = False
        self._boot = boot_id()
        #: a record of this process's whose files it failed to replace (a disk error, say)
        self.unapplied: Record | None = None

    def catch_up(self) -> Catchup:
        """Read what other processes appended since this process last looked; say what needs repair."""
        if self.durable:
            self._synced_file()  # a link planted in its place is refused now, before anything is written
        status = self._folder.stat(self.path.name)
        if status is None:
            self._start()
            return Catchup()
        if status.st_ino != self._inode:
            # A checkpoint replaced the log: what it added since this process looked is still
            # readable through the old descriptor, and followed rather than read from the files.
            following = self._fd is not None
            tail = [record for record, _ in self._read_records()] if following else []
            self._open(status.st_ino)
            header = self._stored_header()
            self._offset = len(header) + 1
            records = self._read_records()
            magic, boot, base = _parse_header(header)
            self.base, self.legacy = base or 0, magic != _MAGIC
            if boot != self._boot_name():
                return Catchup(replay=[record for record, _ in records], base=base)
            if following:
                tail += [record for record, applied in records if applied]
            # A first look: the log's records are older than anything cached, so there is nothing to follow.
            return Catchup(unapplied=self._last_unapplied(records), seen=tail)
        if status.st_size == self._offset:
            return Catchup(unapplied=self.unapplied)
        records = self._read_records()
        unapplied = self._last_unapplied(records)
        seen = [record for record, applied in records if applied]
        return Catchup(unapplied=unapplied or self.unapplied, seen=seen)

    def last_changes(self) -> dict[str, FileChange]:
        """Return, by file name, the last change the log records to each file it names since its checkpoint."""
        start = len(self._stored_header()) + 1
        lines = os.pread(self._log, os.fstat(self._log).st_size - start, start).split(b"\n")[:-1]
        changes: dict[str, FileChange] = {}
        for line in lines:
            parsed = self._parse(line)
            if isinstance(parsed, Record):
                changes.update(parsed.files)
        return changes

    def position(self) -> tuple[int | None, int]:
        """Where this process has read the log up to: the log's inode and the offset in it."""
        return self._inode, self._offset

    def append(self, files: dict[str, FileChange]) -> Record:
        """Write a record: from here on the write counts as done, once :meth:`settle` made it durable."""
        self._seq += 1
        record = Record(self._seq, files)
        body = b"%d %s %s" % (
            record.seq,
            orjson.dumps(record.names),
            orjson.dumps({name: change.to_json() for name, change in files.items()}),
        )
        start = self._offset
        try:
            self._write(b"%08x %s\n" % (zlib.crc32(body), body))
        except OSError as error:
            # Not written means not done: take the record back, so no later session applies it.
            self._cut(start)
            error.filename = error.filename or str(self.path)
            raise
        self.mentioned.update(record.names)
        return record

    def mark_applied(self, record: Record) -> bool:
        """Note that every file of the record was replaced (not synced: a power loss replays anyway).

        :returns: False when the note could not be written; the record then stays to be applied
            again by the next session, which does no harm
        """
        start = self._offset
        try:
            self._write(b"%s %d\n" % (_APPLIED, record.seq))
        except OSError:
            self._cut(start)
            self.unapplied = record
            return False
        if self.unapplied is record:
            self.unapplied = None
        return True

    def mark(self) -> tuple[int, int, int] | None:
        """What :meth:`settle` must make durable of what this session wrote or read: None when nothing.

        Taken under the lock, settled after it: the descriptor is duplicated, since another
        thread may open a new log meanwhile.
        """
        if not self.durable or self._fd is None or self._inode is None:
            return None
        if self._synced[0] == self._inode and self._synced[1] >= self._offset:
            return None
        self._synced_file()  # opened here, under the lock, where the session's folder is open
        return os.dup(self._fd), self._inode, self._offset

    def settle(self, mark: tuple[int, int, int] | None) -> None:
        """Make the log durable up to the mark, unless a note says another process did already.

        Called once the store lock is released, so that the wait for the disk holds no one up.

        :raises OSError: when the disk refused the sync; the records stay in the log
        """
        if mark is None:
            return
        fd, inode, offset = mark
        try:
            if not self._noted(inode, offset):
                os.fdatasync(fd)
                self._note(inode, offset)
        except OSError as error:
            error.filename = error.filename or str(self.path)
            raise
        finally:
            os.close(fd)
        self._synced = (inode, offset)

    def _noted(self, inode: int, offset: int) -> bool:
        """Whether another process's note says the log is on disk up to ``offset``."""
        fd = self._synced_fd
        if fd is None:
            return False
        data = os.pread(fd, _SYNCED.size, 0)
        if len(data) != _SYNCED.size:
            return False
        noted_inode, noted_offset, checksum = _SYNCED.unpack(data)
        return bool(checksum == _synced_checksum(noted_inode, noted_offset) and noted_inode == inode and noted_offset >= offset)

    def _note(self, inode: int, offset: int) -> None:
        """Tell other processes how far the log is on disk (a hint: a lost note costs a sync, no more)."""
        fd = self._synced_fd
        if fd is not None:
            try:
                os.pwrite(fd, _SYNCED.pack(inode, offset, _synced_checksum(inode, offset)), 0)
            except OSError:
                pass

    def _synced_file(self) -> int | None:
        """Open the note's file, once; only under the lock, where the session's folder is open."""
        if self._synced_fd is None:
            try:
                self._synced_fd = self._folder.open_writable(self.synced_path.name, os.O_CREAT)
            except OSError:
                return None
        return self._synced_fd

    def wants_checkpoint(self) -> bool:
        return self._offset > self.checkpoint_bytes

    def checkpoint(self, base: int) -> None:
        """Start a new, empty log over the base folder ``base``; the caller has made that base durable."""
        self.base = base
        self._start()

    def _stored_header(self) -> bytes:
        """The first line of the open log."""
        return os.pread(self._log, 4096, 0).split(b"\n", 1)[0]

    def _boot_name(self) -> str:
        return self._boot or f"unknown-{os.getpid()}"

    def _header(self) -> bytes:
        return b"%s boot=%s base=%d" % (_MAGIC, self._boot_name().encode(), self.base)

    def _start(self) -> None:
        folder = self._folder
        key = write_atomic(folder, self.path.name, self._header() + b"\n", durable=self.durable)
        self._open(key[1])
        self._offset = len(self._header()) + 1
        self.mentioned = set()
        self.legacy = False
        if self.durable and self._inode is not None:
            self._synced = (self._inode, self._offset)
            self._synced_file()
            self._note(self._inode, self._offset)

    @property
    def _folder(self) -> Folder:
        if self.folder is None:
            raise RuntimeError("the write-ahead log is used outside a session")
        return self.folder

    @property
    def _log(self) -> int:
        """The open log's descriptor: every session's :meth:`catch_up` opens the log first."""
        if self._fd is None:
            raise RuntimeError("the write-ahead log is used before catch_up opened it")
        return self._fd

    def _open(self, inode: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._folder.open_writable(self.path.name, os.O_APPEND)  # read-only on a read-only store: followed, never written
        self._inode = inode
        self._offset = 0
        self._stray = False
        self.mentioned = set()
        # A new log means a checkpoint, which first applied every record, this process's too.
        self.unapplied = None

    def _write(self, data: bytes) -> None:
        if self._stray:
            os.ftruncate(self._log, self._offset)
            self._stray = False
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._log, view) :]
        except BaseException:
            self._stray = True  # part of the line may be written: it is no part of the log
            raise
        self._offset += len(data)

    def _cut(self, offset: int) -> None:
        """Remove what lies past ``offset``: a line that failed to be written, or a torn tail.

        Should the disk refuse even this, the next write of this process cuts first; a
        read-only store never writes, and needs no cut.
        """
        self._offset = offset
        try:
            os.ftruncate(self._log, offset)
        except OSError:
            self._stray = True
        else:
            self._stray = False

    def _read_records(self) -> list[tuple[Record, bool]]:
        """Parse the lines after the offset, cutting off a torn tail. Returns (record, applied) pairs."""
        size = os.fstat(self._log).st_size
        *lines, tail = os.pread(self._log, size - self._offset, self._offset).split(b"\n")
        records: list[tuple[Record, bool]] = []
        position = 0
        for number, line in enumerate(lines):
            parsed = self._parse(line)
            if parsed is None:
                if any(self._parse(later) is not None for later in lines[number + 1 :]):
                    raise CorruptStoreError(str(self.path), f"a damaged record at byte {self._offset + position}")
                break
            if isinstance(parsed, int):
                if records and records[-1][0].seq == parsed:
                    records[-1] = (records[-1][0], True)
                if self.unapplied is not None and self.unapplied.seq == parsed:
                    self.unapplied = None  # another process applied it for this one
            else:
                records.append((parsed, False))
                self._seq = max(self._seq, parsed.seq)
                self.mentioned.update(parsed.names)
            position += len(line) + 1
        if position < size - self._offset:
            # A torn tail: a writer died inside its append, before its write counted. Cut it off.
            self._cut(self._offset + position)
        else:
            self._offset += position
        return records

    def _parse(self, line: bytes) -> Record | int | None:
        """A record, the sequence number of an applied marker, or None for a line that is not whole."""
        if line.startswith(_APPLIED + b" "):
            number = line[len(_APPLIED) + 1 :]
            return int(number) if number.isdigit() else None
        checksum, _, body = line.partition(b" ")
        try:
            if int(checksum, 16) != zlib.crc32(body):
                return None
        except ValueError:
            return None
        try:
            seq, names, payload = body.split(b" ", 2)
            return Record(int(seq), names=orjson.loads(names), payload=payload, path=self.path)
        except ValueError as error:
            raise CorruptStoreError(str(self.path), f"a record with a valid checksum does not parse: {error}") from None

    @staticmethod
    def _last_unapplied(records: list[tuple[Record, bool]]) -> Record | None:
        if records and not records[-1][1]:
            return records[-1][0]
        return None
