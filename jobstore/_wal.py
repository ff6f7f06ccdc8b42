"""The write-ahead log: the commit point of every write, what every process reads the store through, and what repairs the files.

Each write appends one record naming every store file it changes and the documents it puts in
and removes from each; that is all a write writes. The state files are rewritten later, in
batches, each batch followed by an ``applied`` marker: the files hold every record up to the
marker's number (the records after it are *pending*). Every process follows the log, so its
tables are current whatever the files hold; a table read from its file gets the pending
records' changes to it. The record is the only thing synced to disk per write, and it is synced
after the store lock is released, so that the next process's write proceeds while this one
waits for the disk (the syncs of processes waiting together are one commit of the
filesystem's journal). A process that reads a record nobody has synced yet syncs the log itself
before it answers, so nothing is seen that a power loss could take back. A batch of the state
files is written only once its records are on disk, each file synced: a file never holds a
write a power loss could undo. At a checkpoint the log starts afresh, numbered one more. So:

- a process killed before its record is complete changed nothing (the torn tail is cleared);
- a process killed with records pending leaves them for the next session of any process to
  write into the files (applying a record to a file that has it already changes nothing);
- after a power loss (the machine's boot id differs from the log's), the records that reached
  the disk are applied again over the files as they are.

Records are single JSON lines behind a CRC-32, so a torn or damaged line is recognised. The
file is grown ahead of need and reads as zeros past its last line (see :meth:`WriteAheadLog._reserve`).
"""

from __future__ import annotations

import errno
import os
import struct
import time
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
#: The room a log is first given, and the most it grows by at once (doubling in between): the
#: room's zeros are written to disk by the next sync, so a larger step costs more than it saves.
_ROOM_FIRST = 64 << 10
_ROOM_MOST = 256 << 10
#: The bytes a look at the log reads first, and the most it reads at once.
_READ_FIRST = 4 << 10
_READ_MOST = 1 << 20
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
    #: the change begins its file: no file was there, and no pending record before it names the
    #: file (so the change applied to an empty table is the whole table); known once read
    begins: bool = field(default=False, compare=False)

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


def _parse_header(header: bytes) -> tuple[bytes, str | None, int | None, int]:
    """The magic, boot id, base number (None for what it lacks) and first sequence number of a log's first line."""
    words = header.split(b" ")
    magic = b" ".join(words[:2])
    fields = dict(word.split(b"=", 1) for word in words[2:] if b"=" in word)
    boot = fields[b"boot"].decode("utf-8", "replace") if b"boot" in fields else None
    base = int(fields[b"base"]) if magic == _MAGIC and fields.get(b"base", b"").isdigit() else None
    seq = int(fields[b"seq"]) if fields.get(b"seq", b"").isdigit() else 0
    return magic, boot, base, seq


def _file_key(value: Any) -> FileKey | None:
    if isinstance(value, list) and len(value) == 4:
        return (value[0], value[1], value[2], value[3])
    return None


class Record:
    """One write: a sequence number and the changes to each file it touches, by file name.

    The changes are parsed once, when the record is first read.
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
class Marker:
    """The note that the state files hold every record up to ``seq``, and the identities they then had."""

    seq: int
    keys: dict[str, FileKey | None] = field(default_factory=dict)


@dataclass
class Catchup:
    """What a session must do before it may trust what it holds."""

    #: every record since the checkpoint, when the files may be torn (a power loss happened)
    replay: list[Record] | None = None
    #: the number of the checkpoint those records start from (and of the base folder an earlier
    #: release made at it, when there is one); None for a log of whole-table images
    base: int | None = None
    #: the records and markers other processes appended since this one last looked, oldest first
    seen: list[Record | Marker] = field(default_factory=list)
    #: more than one checkpoint came since this process last looked, so a whole log of records
    #: went unseen: nothing cached can be trusted (the files hold every record up to the open log)
    stale: bool = False


class WriteAheadLog:
    """The log file of one store. Use only while holding the store lock.

    :param path: the log file
    :param durable: fsync each record and each checkpoint
    """

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        self.synced_path = path.with_name(path.name + ".synced")
        #: the log's folder, opened by the session that uses the log: every file of the log is
        #: opened through it (see ``_folder``)
        self.folder: Folder | None = None
        #: the number of the checkpoint that started the open log (0: none yet)
        self.base = 0
        #: the open log predates base folders: it must be checkpointed before anything is added to it
        self.legacy = False
        self._synced: tuple[int | None, int] = (None, 0)
        self._synced_fd: int | None = None
        #: whether another process's records were seen: until then no one reads the note, and
        #: it is not written (in place, after every sync, it costs a single writer 5% of its time)
        self._shared = False
        self.durable = durable
        #: names of the files this log has mentioned since its checkpoint
        self.mentioned: set[str] = set()
        self._fd: int | None = None
        self._inode: int | None = None
        self._offset = 0
        self._seq = 0
        #: bytes past the offset that a failed write left and that could not be cut off then
        self._stray = False
        self._boot = boot_id()
        #: the records since the last marker, which the state files may not hold yet, oldest first
        self.pending: list[Record] = []
        #: their changes, by file name, oldest first
        self.pending_changes: dict[str, list[FileChange]] = {}
        #: when this process first saw the oldest pending record (monotonic seconds); a record
        #: found on a first look at the log may be a dead writer's, and counts as old
        self.pending_since = 0.0

    def catch_up(self) -> Catchup:
        """Read what other processes appended since this process last looked; say what needs repair."""
        if self.durable:
            self._synced_file()  # a link planted in its place is refused now, before anything is written
        status = self._folder.identity(self.path.name)
        if status is None:
            self._start()
            return Catchup()
        if status.ino != self._inode:
            # A checkpoint replaced the log: what it added since this process looked is still
            # readable through the old descriptor, and followed rather than read from the files.
            following, previous = self._fd is not None, self.base
            self._shared = self._shared or following
            tail = self._read_events() if following else []
            self._open(status.ino)
            header = self._stored_header()
            self._offset = len(header) + 1
            events = self._read_events(first_look=not following)
            magic, boot, base, seq = _parse_header(header)
            # Numbers go on rising across logs: a marker covers every record numbered up to its own.
            self._seq = max(self._seq, seq)
            self.base, self.legacy = base or 0, magic != _MAGIC
            if boot != self._boot_name():
                return Catchup(replay=[event for event in events if isinstance(event, Record)], base=base)
            if following and base != previous + 1:
                return Catchup(stale=True)
            # A first look: the log's records are older than anything cached, so there is nothing to follow.
            return Catchup(seen=tail + events if following else [])
        if status.size == self._offset or os.pread(self._log, 1, self._offset) in (b"", b"\0"):
            return Catchup()
        self._shared = True
        return Catchup(seen=self._read_events())

    def last_changes(self) -> dict[str, FileChange]:
        """Return, by file name, the last change the log records to each file it names since its checkpoint."""
        start = len(self._stored_header()) + 1
        lines = self._read_from(start).split(b"\n")[:-1]
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
        self._add_pending(record, time.monotonic())
        return record

    def mark_materialized(self, keys: dict[str, FileKey | None]) -> bool:
        """Note that the state files now hold every pending record (not synced: a power loss replays anyway).

        :param keys: the identity of each file written (None: removed), so that other processes
            know those versions without reading them
        :returns: False when the note could not be written; the records then stay pending, and
            are written into the files again later, which does no harm
        """
        if not self.pending:
            return True
        seq = self.pending[-1].seq
        start = self._offset
        try:
            self._write(b"%s %d %s\n" % (_APPLIED, seq, orjson.dumps(keys)))
        except OSError:
            self._cut(start)
            return False
        self._settle_pending(seq)
        if self._inode is not None and (self._synced == (self._inode, start) or self._noted(self._inode, start)):
            # The marker need not be durable (after a power loss the files are rebuilt from the
            # records alone): count it as synced, so that neither this process nor its readers sync for it.
            self._synced = (self._inode, self._offset)
            self._note(self._inode, self._offset)
        return True

    def release(self) -> None:
        """Close the log's descriptors; the next :meth:`catch_up` opens the log as if for the first time."""
        for fd in (self._fd, self._synced_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._synced_fd = self._inode = None
        self._offset = 0
        self.forget_pending()

    def forget_pending(self) -> None:
        """Take the files as holding every record (they were rebuilt from the log)."""
        self.pending, self.pending_changes = [], {}

    def _add_pending(self, record: Record, seen: float, *, new: bool = True) -> None:
        if not self.pending:
            self.pending_since = seen
        self.pending.append(record)
        for name, change in record.files.items():
            if new:
                change.begins = change.before is None and not change.delete and name not in self.pending_changes
            self.pending_changes.setdefault(name, []).append(change)

    def _settle_pending(self, seq: int) -> None:
        """Forget the pending records up to ``seq``: the files hold them."""
        if self.pending and self.pending[-1].seq <= seq:
            self.pending, self.pending_changes = [], {}
            return
        kept = [record for record in self.pending if record.seq > seq]
        self.pending, self.pending_changes = [], {}
        for record in kept:
            self._add_pending(record, self.pending_since, new=False)

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
        if fd is not None and self._shared:
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

    def size(self) -> int:
        """The bytes of records (and markers) in the open log."""
        return self._offset

    def checkpoint(self, base: int) -> None:
        """Start a new, empty log numbered ``base``; the caller has made every state file durable."""
        self.base = base
        self._start()

    def _stored_header(self) -> bytes:
        """The first line of the open log."""
        return os.pread(self._log, 4096, 0).split(b"\n", 1)[0]

    def _boot_name(self) -> str:
        return self._boot or f"unknown-{os.getpid()}"

    def _header(self) -> bytes:
        return b"%s boot=%s base=%d seq=%d" % (_MAGIC, self._boot_name().encode(), self.base, self._seq)

    def _start(self) -> None:
        folder = self._folder
        key = write_atomic(folder, self.path.name, self._header() + b"\n", durable=self.durable)
        self._open(key[1])
        self._offset = len(self._header()) + 1
        self.mentioned = set()
        self.legacy = False
        self.pending, self.pending_changes = [], {}
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
            self._fd = None  # should the open below fail, no closed number stays to be closed again
        self._fd = self._folder.open_writable(self.path.name, 0)  # read-only on a read-only store: followed, never written
        self._inode = inode
        self._offset = 0
        self._stray = False
        self.mentioned = set()
        # A new log means a checkpoint, which first wrote every pending record into the files.
        self.forget_pending()

    def _write(self, data: bytes) -> None:
        if self._stray:
            self._cut(self._offset)
            if self._stray:
                raise OSError(errno.EIO, "the log's torn bytes could not be cleared", str(self.path))
        self._reserve(len(data))
        view, offset = memoryview(data), self._offset
        try:
            while view:
                written = os.pwrite(self._log, view, offset)
                view, offset = view[written:], offset + written
        except BaseException:
            self._stray = True  # part of the line may be written: it is no part of the log
            raise
        self._offset += len(data)

    def _reserve(self, length: int) -> None:
        """Make room for ``length`` bytes past the offset, ahead of need.

        A sync of an append that grows the file must also commit the file's new size to the
        filesystem's journal; writes into room already allocated sync only their data. The room
        reads as zero bytes, which no record holds: the log ends at its first zero byte.
        """
        size = os.lseek(self._log, 0, os.SEEK_END)  # not fstat: see Folder.identity
        if self._offset + length <= size:
            return
        grow = max(length, min(max(size, _ROOM_FIRST), _ROOM_MOST))
        # Zeros written, not fallocated: writing into fallocated room must still record in the
        # journal that the room now holds data, which is what the room is there to avoid.
        zeros = bytes(self._offset + grow - size)
        view = memoryview(zeros)
        while view:
            view = view[os.pwrite(self._log, view, size + len(zeros) - len(view)) :]

    def _cut(self, offset: int) -> None:
        """Clear what lies past ``offset``, up to the log's end: a line that failed to be written, or a torn tail.

        The bytes are zeroed rather than cut off, so that the room stays allocated. Should the
        disk refuse even this, the next write of this process clears first; a read-only store
        never writes, and needs no clearing.
        """
        end = offset + len(self._read_from(offset))
        self._offset = offset
        try:
            if end > offset:
                os.pwrite(self._log, bytes(end - offset), offset)
        except OSError:
            self._stray = True
        else:
            self._stray = False

    def _read_from(self, offset: int) -> bytes:
        """The log's bytes from ``offset`` to its end: the first zero byte, or the end of the file."""
        chunks, length = [], _READ_FIRST  # usually a few records: read little, then more
        while True:
            chunk = os.pread(self._log, length, offset)
            zero = chunk.find(b"\0")
            if zero >= 0:
                chunks.append(chunk[:zero])
                break
            chunks.append(chunk)
            if len(chunk) < length:
                break
            offset += len(chunk)
            length = min(length * 4, _READ_MOST)
        return b"".join(chunks)

    def _read_events(self, first_look: bool = False) -> list[Record | Marker]:
        """Parse the lines after the offset, cutting off a torn tail; note the records still pending.

        :param first_look: the records are this process's first sight of the log: any still
            pending may be a dead writer's, so they count as old
        """
        data = self._read_from(self._offset)
        *lines, tail = data.split(b"\n")
        events: list[Record | Marker] = []
        position = 0
        now = float("-inf") if first_look else time.monotonic()
        for number, line in enumerate(lines):
            parsed = self._parse(line)
            if parsed is None:
                if any(self._parse(later) is not None for later in lines[number + 1 :]):
                    raise CorruptStoreError(str(self.path), f"a damaged record at byte {self._offset + position}")
                break
            events.append(parsed)
            if isinstance(parsed, Marker):
                self._settle_pending(parsed.seq)
            else:
                self._seq = max(self._seq, parsed.seq)
                self.mentioned.update(parsed.names)
                self._add_pending(parsed, now)
            position += len(line) + 1
        if position < len(data):
            # A torn tail: a writer died inside its append, before its write counted. Cut it off.
            self._cut(self._offset + position)
        else:
            self._offset += position
        return events

    def _parse(self, line: bytes) -> Record | Marker | None:
        """A record, a marker, or None for a line that is not whole."""
        if line.startswith(_APPLIED + b" "):
            number, _, keys = line[len(_APPLIED) + 1 :].partition(b" ")
            if not number.isdigit():
                return None
            if not keys:  # as the first logs wrote it: the files hold the record of that number
                return Marker(int(number))
            try:
                parsed = orjson.loads(keys)
            except orjson.JSONDecodeError:
                return None  # torn
            return Marker(int(number), {name: _file_key(key) for name, key in parsed.items()} if isinstance(parsed, dict) else {})
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
