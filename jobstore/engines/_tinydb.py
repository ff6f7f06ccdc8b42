"""The JSON-file engine: each state's table in TinyDB-format segment files under the store's root.

A state's table is split into segments of at most ``segment_size`` jobs: ``pending.json``, then
``pending-0002.json`` and so on; new jobs join the last segment, so a write rewrites one small
file however long the history grows. Each file is in TinyDB's own layout,
``{"<state>": {"<job id>": {...}}}``.

The engine's own files live in ``.jobstore/``: the lock that serializes sessions across
processes and the write-ahead log that is the commit point of every write (see ``_wal``). A
write logs its record and changes this process's tables; the files are written later, in
batches (:class:`LazyWrites`), each replaced whole and synced, so that no other copy of a table
is ever kept.
"""

from __future__ import annotations

import errno
import os
import atexit
import re
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

import orjson
from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document as TinyDocument
from tinydb.table import Table

from ._base import Batch, Document, StoreProblem
from ._due import SegmentSchedule
from .._errors import CorruptStoreError, JobStoreError, NotAStoreError, StoreWriteError, UnsafeStoreError
from .._files import (
    TEMP_SUFFIX,
    FileKey,
    encode,
    file_key,
    read_json,
    remove_temporary_files,
    write_atomic,
)
from .._folder import Folder
from .._lock import StoreLock
from .._schedule import depends_on
from .._status import STATES, JobStatus
from .._wal import FileChange, Marker, Record, WriteAheadLog
from .._watch import POLL_INTERVAL, ChangeWaiter

#: The folder of the engine's own files, beside the state files.
META_DIR = ".jobstore"
#: Jobs per segment file unless the store says otherwise.
DEFAULT_SEGMENT_SIZE = 500
#: Bytes a segment file grows to before new jobs start the next one, unless the store says
#: otherwise: finishing a job rewrites the last segment, so with large results this bounds what
#: each write costs (a job larger than this has a segment of its own).
DEFAULT_SEGMENT_BYTES = 256 << 10
#: Base folders, in the engine's folder, as earlier releases made them at each checkpoint (hard
#: links to every state file as it then was): read by a replay when present, and removed by the
#: next checkpoint, since they hold old versions of the tables.
BASE_PREFIX = "base-"
#: The store's own schema, in the engine's folder, when it was opened with one (see JobStore).
SCHEMA_FILE = "schema.json"
#: The folder of spares earlier releases wrote files through, removed by the next checkpoint.
LEGACY_SPARES = "spare"
#: The log is started afresh once it outgrows the state files, but never under this size, nor
#: over :data:`MOST_LOG_BYTES` (see :meth:`TinyDBEngine._log_limit`).
LEAST_LOG_BYTES = 64 << 10
MOST_LOG_BYTES = 16 << 20

#: The longest the state files lag behind the log while the writer lives: a writer's helper
#: thread writes them this long after its first write they lack, at the latest.
MAX_DELAY = 1.0

#: Seconds a claim trusts what it knows of segments holding no job due: each one is checked for
#: changes made by hand at least this often (changes made by jobstore are followed from the log).
HAND_EDIT_LOOK = 1.0

#: The pause after a writer's last write before its helper thread writes the files, so that a
#: burst of writes costs one rewrite of each file.
QUIET_DELAY = 0.05

#: An identity no file has: a storage holding it reads its file at the next refresh.
_UNKNOWN: FileKey = (-1, -1, -1, -1)

_SEGMENT_FILE = re.compile(r"^(?P<state>[a-z]+)(?:-(?P<number>\d{4,}))?\.json$")


def segment_file_name(state: JobStatus, number: int) -> str:
    """Return the name of a segment file: ``pending.json`` for the first, ``pending-0002.json`` after."""
    return f"{state.value}.json" if number == 1 else f"{state.value}-{number:04d}.json"


def parse_segment_file_name(name: str) -> tuple[JobStatus, int] | None:
    """Return the state and number a segment file name stands for, or None for any other name."""
    match = _SEGMENT_FILE.match(name)
    if match is None or match["state"] not in JobStatus._value2member_map_:
        return None
    number = int(match["number"]) if match["number"] else 1
    if match["number"] and number < 2:
        return None
    return JobStatus(match["state"]), number


def check_table(path: Path, state: JobStatus, value: Any) -> dict[str, Document]:
    """Return the table in a parsed state file, after checking it is in the layout jobstore writes.

    :raises CorruptStoreError: naming the file and what is out of place
    """

    def damaged(detail: str) -> CorruptStoreError:
        return CorruptStoreError(str(path), detail)

    if not isinstance(value, dict):
        raise damaged(f"expected an object holding the table {state.value!r}, found {type(value).__name__}")
    for name in value:
        if name != state.value:
            raise damaged(f"unexpected table {name!r}; this file holds only {state.value!r}")
    table = value.get(state.value, {})
    if not isinstance(table, dict):
        raise damaged(f"table {state.value!r} is not an object")
    for job_id, document in table.items():
        if not isinstance(document, dict):
            raise damaged(f"job {job_id!r} is not an object")
        if document.get("id") != job_id:
            raise damaged(f"job {job_id!r} has the id {document.get('id')!r}")
        if document.get("status") != state.value:
            raise damaged(f"job {job_id!r} has the status {document.get('status')!r} in the {state.value!r} table")
    return table


class SegmentStorage(Storage):
    """One segment file as a TinyDB storage: parsed only when it changed, written when the engine commits.

    A write is staged, not written: the engine logs every staged file of a batch in one record
    before any file is replaced, so that a batch touching several files is all or nothing.
    """

    def __init__(self, path: Path, state: JobStatus, folder: Callable[[], Folder]) -> None:
        self.path = path
        self.state = state
        self._folder = folder
        self.table: dict[str, Document] = {}
        #: the identity of the file version the table was built on (the table itself may be newer:
        #: records not yet written into the file); unknown until first read
        self.key: FileKey | None = _UNKNOWN
        #: bytes of documents added to the table since that version, for the segment's size bound
        self.added = 0
        self.staged: dict[str, Document] | None = None

    def refresh(self, key: FileKey | None) -> bool:
        """Parse the file again if ``key`` (its identity now) differs from the one read; True if it did."""
        if key == self.key:
            return False
        loaded = None if key is None else read_json(self._folder(), self.path.name)
        if loaded is None:
            self.table, self.key = {}, None
        else:
            value, key = loaded
            self.table, self.key = check_table(self.path, self.state, value), key
        self.added = 0
        return True

    def loaded(self) -> bool:
        """Whether the table was read (or written) in this process, and so follows the log."""
        return self.key != _UNKNOWN

    def size(self) -> int:
        """The table's size in bytes, roughly: the file's as last read or written, plus the documents added since."""
        return self.added + (0 if self.key is None or self.key == _UNKNOWN else self.key[2])

    def known_key(self) -> FileKey | None:
        """The identity of the file as last read or written; None when unknown or there is no file."""
        return None if self.key == _UNKNOWN else self.key

    def forget(self) -> None:
        """Drop what was staged and make the next refresh read the file whatever its identity."""
        self.staged = None
        self.key = _UNKNOWN

    def read(self) -> dict[str, dict[str, Document]]:
        # A new outer mapping each time: TinyDB writes its result into the one it is given.
        return {self.state.value: self.table if self.staged is None else self.staged}

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self.staged = data.get(self.state.value, {})


class JobTable(Table):
    """A TinyDB table keyed by job id, with no query cache that could answer from stale data."""

    # TinyDB's types say int: its ids are counters; ours are job ids, and TinyDB supports any class.
    document_id_class = str  # type: ignore[assignment]
    default_query_cache_capacity = 0

    def apply(self, puts: Mapping[str, Document], removes: set[str]) -> None:
        """Upsert and remove documents in one read-modify-write of the table.

        A job already in the table keeps its place; a new one goes last, so the table stays in
        the order jobs entered it.
        """

        def change(table: dict[str, Any]) -> None:
            for job_id in removes:
                table.pop(job_id, None)
            table.update(puts)

        self._update_table(change)

    def _update_table(self, updater: Callable[[dict[str, Document]], None]) -> None:  # type: ignore[override]
        # TinyDB rebuilds the table key by key to turn string ids into ints and back; ids here are
        # strings already, so one copy (the staged table must not alias the committed one) will do.
        tables = self._storage.read() or {}
        table = dict(tables.get(self.name, {}))
        updater(table)
        tables[self.name] = table
        self._storage.write(tables)
        self.clear_cache()


class SegmentDatabase(TinyDB):
    """A TinyDB database holding one segment of one state's table."""

    table_class = JobTable
    default_storage_class = SegmentStorage  # type: ignore[assignment]  # typed as JSONStorage by TinyDB, used as any Storage


class Segment:
    """One segment file: its number in the state's sequence, its storage and its TinyDB table."""

    def __init__(self, root: Path, state: JobStatus, number: int, folder: Callable[[], Folder]) -> None:
        self.number = number
        self.name = segment_file_name(state, number)
        database = SegmentDatabase(root / self.name, state, folder)
        self.storage = cast(SegmentStorage, database.storage)
        self.table = cast(JobTable, database.table(state.value))
        self._schedule: SegmentSchedule | None = None

    def __len__(self) -> int:
        return len(self.storage.table)

    def document(self, job_id: str) -> TinyDocument | None:
        """The job's document in this segment, or None."""
        found = self.table.get(doc_id=job_id)  # type: ignore[call-overload]  # TinyDB types doc ids as int
        return cast("TinyDocument | None", found)

    def schedule(self) -> SegmentSchedule:
        """The segment's jobs in claim order, with their keys and dependencies, as its table is now."""
        if self._schedule is None or self._schedule.table is not self.storage.table:
            self._schedule = SegmentSchedule(self.storage.table)
        return self._schedule

    def replace_table(self, table: dict[str, Document], puts: Mapping[str, Document], removes: Iterable[str]) -> None:
        """Take the table a change made (``removes`` out, then ``puts`` in), its schedule following without a rebuild."""
        if self._schedule is not None and self._schedule.table is self.storage.table:
            self._schedule.changed(table, puts, removes)
        self.storage.table = table


class StateTable:
    """One state's table: its segments in order, and an index from job id to segment number.

    Segments are checked against their files one at a time, when first needed in a session: an
    append needs only the last one, a lookup by id all of them.
    """

    def __init__(
        self,
        root: Path,
        state: JobStatus,
        folder: Callable[[], Folder],
        pending: Callable[[str], list[FileChange]],
    ) -> None:
        self.root = root
        self.state = state
        self.folder = folder
        self.pending = pending
        self.segments: dict[int, Segment] = {}
        self.index: dict[str, int] = {}
        self._fresh: set[int] = set()
        #: every segment was checked this session: a lookup by id need not go through them again
        self._all_fresh = False
        #: when a claim last checked every segment (time.monotonic)
        self._all_looked = -HAND_EDIT_LOOK

    def sync(self, numbers: set[int]) -> None:
        """Start a session: take the numbers of the segment files present now."""
        if numbers != self.segments.keys():
            for number in [n for n in self.segments if n not in numbers]:
                self.unindex(number, self.segments.pop(number).storage.table)
            for number in numbers:
                if number not in self.segments:
                    self.segments[number] = Segment(self.root, self.state, number, self.folder)
            self.segments = dict(sorted(self.segments.items()))
        self._fresh = set()
        self._all_fresh = False

    def ensure(self, number: int) -> Segment:
        """Return the segment, re-read first if its file changed since this process read it.

        A file read afresh gets the pending records' changes to it, in order: the file may hold
        some of them already (a writer that died part way through writing the files), and
        applying a change again to a table that has it changes nothing.
        """
        segment = self.segment(number)
        if number not in self._fresh:
            storage = segment.storage
            key = file_key(self.folder(), segment.name)
            old = storage.table
            if storage.refresh(key):
                for change in self.pending(segment.name):
                    storage.table = change.applied_to(storage.table) or {}
                    storage.added += sum(len(orjson.dumps(document)) for document in change.puts.values())
                self.unindex(number, old)
                for job_id in storage.table:
                    self.index[job_id] = number
            self._fresh.add(number)
        return segment

    def ensure_all(self) -> None:
        if not self._all_fresh:
            for number in list(self.segments):
                self.ensure(number)
            self._all_fresh = True

    def known(self, job_id: str) -> int | None:
        """Return the number of the segment holding the job if the index says so and that segment, checked, agrees; else None.

        A job found so needs one segment checked, not all: the index follows every write of
        every jobstore process, and a file changed by hand is read again when checked.
        """
        number = self.index.get(job_id)
        if number is not None:
            self.ensure(number)
            if self.index.get(job_id) == number:
                return number
        return None

    def locate(self, job_id: str) -> int | None:
        """Return the number of the segment holding the job, or None."""
        number = self.known(job_id)
        if number is None:
            self.ensure_all()  # only every segment can tell that the job is not here
            number = self.index.get(job_id)
        return number

    def get(self, job_id: str) -> TinyDocument | None:
        number = self.locate(job_id)
        return None if number is None else self.segments[number].document(job_id)

    def due(self, moment: str, ready: Callable[[Mapping[str, Any]], bool]) -> TinyDocument | None:
        """The first job in claim order due by ``moment`` and ``ready``; ties go to the job that entered first."""
        if time.monotonic() - self._all_looked >= HAND_EDIT_LOOK:
            self.ensure_all()
            self._all_looked = time.monotonic()
        while True:
            best: tuple[float, str, int, int, str] | None = None
            for number, segment in list(self.segments.items()):
                if not segment.storage.loaded():
                    segment = self.ensure(number)
                entry = segment.schedule().first_due(moment, ready)
                if entry is not None and (best is None or (entry[0], entry[1], number, entry[2]) < best[:4]):
                    best = (entry[0], entry[1], number, entry[2], entry[3])
            if best is None:
                return None
            chosen = self.segments[best[2]]
            before = chosen.storage.table
            self.ensure(best[2])
            if chosen.storage.table is before:
                return chosen.document(best[4])
            self.ensure_all()  # changed by hand: look again at every segment as it is now

    def needing(self, job_id: str) -> list[TinyDocument]:
        """The jobs of the table whose dependsOn names the job."""
        self.ensure_all()
        return [
            document
            for segment in self.segments.values()
            for needy in segment.schedule().needed_by.get(job_id, ())
            if (document := segment.document(needy)) is not None
        ]

    def keyed(self, key: str) -> TinyDocument | None:
        """The job of the table whose key is ``key``, or None."""
        self.ensure_all()
        for segment in self.segments.values():
            holders = segment.schedule().keys.get(key)
            if holders:
                return segment.document(holders[0])
        return None

    def all(self) -> list[TinyDocument]:
        self.ensure_all()
        return [document for segment in self.segments.values() for document in segment.table.all()]

    def segment(self, number: int) -> Segment:
        """Return the segment with that number, making an empty one when there is none yet."""
        segment = self.segments.get(number)
        if segment is None:
            segment = self.segments[number] = Segment(self.root, self.state, number, self.folder)
            self.segments = dict(sorted(self.segments.items()))
            self._all_fresh = False
        return segment

    def last(self) -> Segment:
        """Return the segment new jobs join (checked against its file)."""
        return self.ensure(max(self.segments, default=1))

    def last_number(self) -> int:
        return max(self.segments, default=1)

    def reindex(self, number: int, puts: Mapping[str, Document], removes: set[str]) -> None:
        """Record in the index what a committed change did to segment ``number``."""
        self.unindex(number, removes)
        for job_id in puts:
            self.index[job_id] = number

    def unindex(self, number: int, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            if self.index.get(job_id) == number:
                del self.index[job_id]


class _SegmentChange:
    """What a batch does to one segment."""

    def __init__(self, state: JobStatus, number: int) -> None:
        self.state = state
        self.number = number
        self.puts: dict[str, Document] = {}
        self.removes: set[str] = set()
        #: bytes of the documents the change appends, roughly
        self.added = 0


class TinyDBSession:
    """A session of the JSON-file engine: reads through TinyDB tables, writes all or nothing."""

    def __init__(self, engine: TinyDBEngine) -> None:
        self._engine = engine

    def get(self, state: JobStatus, job_id: str) -> TinyDocument | None:
        return self._engine.table(state).get(job_id)

    def find(self, job_id: str) -> tuple[JobStatus, TinyDocument] | None:
        for state in STATES:
            document = self._engine.table(state).get(job_id)
            if document is not None:
                return state, document
        return None

    def jobs(self, state: JobStatus) -> list[TinyDocument]:
        return self._engine.table(state).all()

    def lapsed(self, moment: str) -> list[TinyDocument]:
        return self.jobs(JobStatus.RUNNING)  # in memory already: the caller's check of each is as cheap

    def due(self, moment: str) -> TinyDocument | None:
        finished = self._engine.table(JobStatus.FINISHED)
        return self._engine.table(JobStatus.PENDING).due(
            moment, lambda job: all(finished.get(needed) is not None for needed in depends_on(job))
        )

    def dependents(self, job_id: str) -> list[TinyDocument]:
        return [job for state in (JobStatus.IDLE, JobStatus.PENDING) for job in self._engine.table(state).needing(job_id)]

    def hold(self, topic: str) -> None:
        """Nothing to do: the store lock excludes every other session already."""

    def holding(self, key: str) -> TinyDocument | None:
        for state in (JobStatus.IDLE, JobStatus.PENDING, JobStatus.RUNNING):
            found = self._engine.table(state).keyed(key)
            if found is not None:
                return found
        return None

    def apply(self, batch: Batch) -> None:
        self._engine.commit(batch)

    def recorded_schema(self) -> dict[str, Any] | None:
        return self._engine.recorded_schema()

    def record_schema(self, schema: Mapping[str, Any]) -> None:
        engine = self._engine
        folder = engine._meta_folder()
        with engine._reported("the schema was not recorded"):
            write_atomic(folder, SCHEMA_FILE, encode(schema), durable=engine.durable)
            if engine.durable:
                folder.sync()

    def schema_token(self) -> Hashable:
        return self._engine._meta_folder().identity(SCHEMA_FILE)


class LazyWrites:
    """Writes the state files in a helper thread, :data:`QUIET_DELAY` after the last write, at most :data:`MAX_DELAY` after the first.

    The thread ends once nothing is due, and starts again with the next write; at the
    interpreter's exit, what is due is written before it ends. Should writing fail (the lock
    held too long, a full disk), the records stay pending: the next session of any process that
    finds them older than :data:`MAX_DELAY` writes them.

    :param flush: writes the files, in a session of its own
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._condition = threading.Condition()
        self._first: float | None = None
        self._due: float | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def wrote(self) -> None:
        """Note a write the files lack."""
        now = time.monotonic()
        with self._condition:
            if self._first is None:
                self._first = now
            self._due = min(self._first + MAX_DELAY, now + QUIET_DELAY)
            if self._thread is None or self._pid != os.getpid():
                # A forked child has none of its parent's threads: it starts its own.
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="jobstore-files", daemon=True)
                self._thread.start()
                _DUE.add(self)
            # No notify: a later write only moves the time later, and the sleeper looks again when it wakes.

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._due is not None and (left := self._due - time.monotonic()) > 0:
                    self._condition.wait(left)
                if self._due is None:
                    self._thread = None
                    return
                self._first = self._due = None
            with suppress(Exception):
                self._flush()

    def close(self) -> None:
        """Write what is due now, in the caller's thread."""
        with self._condition:
            due, self._first, self._due = self._due, None, None
            self._condition.notify()
        if due is not None:
            self._flush()


#: The lazy writers that may have files to write at the interpreter's exit.
_DUE: weakref.WeakSet[LazyWrites] = weakref.WeakSet()


@atexit.register
def _write_due_files() -> None:
    for writer in list(_DUE):
        with suppress(Exception):
            writer.close()


class _Folders(threading.local):
    """The store's folders as one thread's session opened them (each thread opens its own)."""

    root: Folder | None = None
    meta: Folder | None = None

    def close(self) -> None:
        for folder in (self.meta, self.root):
            if folder is not None:
                folder.close()
        self.root = self.meta = None


def _make_store(root: Path) -> None:
    """Make ``root`` a store's directory unless it is one: a new or empty directory becomes one.

    A store is a directory holding the engine's folder; state files alone (copied by hand, say)
    make one too. Any other file there means the directory is someone else's, and is refused
    rather than filled with jobs.

    :raises NotAStoreError: for a file, a place no directory can be made, or a directory of other files
    """
    try:
        top = Folder.root(root, create=True)
    except OSError as error:
        raise NotAStoreError(str(root), _refused(error), error) from None
    with top:
        names = top.names()
        if META_DIR in names:
            # Whatever it is: a link there is refused by the first operation that needs it, and
            # reported by check(); opening the store is not yet an operation.
            return
        others = sorted(name for name in names if parse_segment_file_name(name) is None and not name.endswith(TEMP_SUFFIX))
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise NotAStoreError(str(root), f"it is a directory of other files ({shown}), not a job store")
        try:
            top.child(META_DIR, create=True).close()
        except OSError as error:
            raise NotAStoreError(str(root), _refused(error), error) from None


def _refused(error: OSError) -> str:
    """Say in a few words why the operating system refused a store's directory."""
    if isinstance(error, NotADirectoryError):
        return "it is a file, or inside one, not a directory"
    if isinstance(error, (FileNotFoundError, PermissionError)) or error.errno in (errno.EROFS, errno.EACCES):
        return f"no directory can be made there ({error.strerror})"
    return error.strerror or str(error)


class TinyDBEngine:
    """Jobs in segmented JSON files per state under ``root``, safe across processes, threads and crashes.

    :param root: the store's directory, created when missing
    :param lock_timeout: seconds to wait for the store lock; a negative value waits for ever
    :param durable: sync every write to disk, so a power loss loses nothing acknowledged
    :param segment_size: the most jobs one segment file holds
    :param segment_bytes: the size in bytes past which a segment file takes no new job
    """

    def __init__(
        self,
        root: Path,
        *,
        lock_timeout: float = 10.0,
        durable: bool = True,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if segment_size < 1:
            raise ValueError(f"segment_size must be at least 1, not {segment_size}")
        self.segment_bytes = segment_bytes
        self.root = root
        self.meta = root / META_DIR
        _make_store(root)
        self.lock_timeout = lock_timeout
        self.durable = durable
        self.segment_size = segment_size
        self.lock_path = self.meta / "lock"
        self.wal = WriteAheadLog(self.meta / "wal", durable=durable)
        self._folders = _Folders()
        self._tables = {state: StateTable(root, state, self._root_folder, self._pending_changes) for state in STATES}
        self._writer = LazyWrites(self.flush)
        self._fresh: set[JobStatus] = set()
        self._listing: dict[JobStatus, set[int]] | None = None
        self._listing_key: tuple[object, int] | None = None
        self._lock = StoreLock(self.lock_path, lock_timeout, self._open_lock_file, self._lock_status)
        self._swept = False
        #: the log size past which the next write checkpoints, as last worked out (None: not yet)
        self._log_limit_bytes: int | None = None

    @contextmanager
    def session(self) -> Iterator[TinyDBSession]:
        with self._opened(), self._lock.held():
            self._begin()
            yield TinyDBSession(self)
            mark = self.wal.mark()
        # The disk's confirmation is awaited outside the lock: the next session meanwhile runs.
        try:
            self.wal.settle(mark)
        except OSError as error:
            outcome = "the write was logged, but the disk did not confirm it is durable: a power loss may undo it"
            raise self._write_error(error, outcome) from error

    @contextmanager
    def _opened(self) -> Iterator[None]:
        """Open the root and the engine's folder for this thread's session, never through a link inside the store.

        Opened again each session: a folder removed and made anew by hand is the new one.
        """
        folders = self._folders
        try:
            folders.root = Folder.root(self.root, create=True)
            folders.meta = folders.root.child(META_DIR, create=True)
            yield
        finally:
            folders.close()

    def _pending_changes(self, name: str) -> list[FileChange]:
        return self.wal.pending_changes.get(name, [])

    def close(self) -> None:
        """Write what the files lack now, and close the store's files (opened again by the next operation)."""
        self._writer.close()
        with self._opened(), self._lock.held():
            self.wal.release()
            self._forget_tables()
        self._lock.release()

    def __del__(self) -> None:
        # Descriptors are plain numbers: nothing closes them unless this does.
        with suppress(Exception):
            self.wal.release()
            self._lock.release()

    def _root_folder(self) -> Folder:
        assert self._folders.root is not None, "the store's folders are used outside a session"
        return self._folders.root

    def _meta_folder(self) -> Folder:
        assert self._folders.meta is not None, "the store's folders are used outside a session"
        return self._folders.meta

    def _begin(self) -> None:
        """Start a session under the lock: forget what was checked last time, complete logged writes."""
        self._fresh.clear()
        self.wal.folder = self._meta_folder()
        self._recover()

    def check(self, inspect: Callable[[Mapping[str, Any]], list[str]]) -> list[StoreProblem]:
        """List every problem of the store's files, reading them afresh and changing nothing.

        A damaged log is reported too, and the files are still checked: nothing here depends on
        a repair having run.
        """
        try:
            with self._opened(), self._lock.held():
                return self._check(inspect)
        except UnsafeStoreError as error:
            # The engine's folder or lock is a link: nothing can be locked or read safely.
            return [self._problem(error)]

    def _check(self, inspect: Callable[[Mapping[str, Any]], list[str]]) -> list[StoreProblem]:
        problems = [self._problem(UnsafeStoreError(link, "it is a symbolic link")) for link in self._links()]
        try:
            self._begin()
            with suppress(OSError):
                self.materialize()  # what the files lack is checked as it will be written, not as it was
            expected = self.wal.last_changes()
        except CorruptStoreError as error:
            if not isinstance(error, UnsafeStoreError):  # links are listed already
                problems.append(self._problem(error))
            expected = {}
        holders: dict[str, str] = {}
        root = self._root_folder()
        names = sorted(root.names())
        links = set(root.links())
        for name in names:
            parsed = parse_segment_file_name(name)
            if name in links:
                continue
            if parsed is None:
                if name != META_DIR and not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
                    problems.append(StoreProblem(name, "unknown file: not a state file of this store, and left alone"))
                continue
            try:
                loaded = read_json(root, name)
                table = {} if loaded is None else check_table(self.root / name, parsed[0], loaded[0])
            except CorruptStoreError as error:
                problems.append(self._problem(error))
                continue
            for job_id, document in table.items():
                problems += [StoreProblem(name, detail, job_id) for detail in inspect(document)]
                if job_id in holders:
                    problems.append(StoreProblem(name, f"the job is also in {holders[job_id]}", job_id))
                holders.setdefault(job_id, name)
        for name, change in sorted(expected.items()):
            if not change.delete and name not in names:
                problems.append(StoreProblem(name, "missing: the last write logged to it left it in place, and none removed it"))
        return problems

    def _links(self) -> list[str]:
        """The paths of the symbolic links among the store's files and folders (the root's own aside)."""
        found = [self.root / name for name in self._root_folder().links()]
        meta = self._meta_folder()
        found += [self.meta / name for name in meta.links()]
        for name in meta.names():
            if name == LEGACY_SPARES or name.startswith(BASE_PREFIX):
                try:
                    with meta.child(name) as folder:
                        found += [folder.path / entry for entry in folder.links()]
                except (CorruptStoreError, OSError):
                    pass  # a link (listed above) or a file in a folder's place
        return [str(path) for path in sorted(found)]

    def _problem(self, error: CorruptStoreError) -> StoreProblem:
        path = Path(error.path)
        name = str(path.relative_to(self.root)) if path.is_relative_to(self.root) else error.path
        where = "" if error.line is None else f" (line {error.line}, column {error.column})"
        return StoreProblem(name, error.detail + where)

    def recorded_schema(self) -> dict[str, Any] | None:
        # Read without the lock (the file is only ever replaced whole) and through folders of its
        # own, so that check() reads it even when the log is damaged, and a session's stay open.
        try:
            with Folder.root(self.root) as top, top.child(META_DIR) as meta:
                loaded = read_json(meta, SCHEMA_FILE)
        except FileNotFoundError:
            return None
        if loaded is None:
            return None
        if not isinstance(loaded[0], dict):
            raise CorruptStoreError(str(self.meta / SCHEMA_FILE), f"the store's schema is a JSON {type(loaded[0]).__name__}, not an object")
        return loaded[0]

    def waiter(self, interval: float = POLL_INTERVAL) -> ChangeWaiter:
        """Every write appends to the log in the engine's folder; a file edited by hand changes the root."""
        ignored = [self.wal.synced_path.name, self.lock_path.name]
        return ChangeWaiter([self.root, self.meta], self.change_token, interval, ignored)

    def change_token(self) -> tuple[int, int, int, int] | None:
        """Every write through jobstore grows or replaces the log; a file made or removed by hand changes the directory."""
        try:
            log, directory = os.lstat(self.wal.path), os.stat(self.root)
        except FileNotFoundError:
            return None
        return log.st_ino, log.st_size, log.st_mtime_ns, directory.st_mtime_ns

    def _open_lock_file(self) -> int:
        return self._meta_folder().open_writable(self.lock_path.name, os.O_CREAT)

    def _lock_status(self) -> os.stat_result | None:
        return self._meta_folder().stat(self.lock_path.name)

    def table(self, state: JobStatus) -> StateTable:
        """Return the state's table, in line with the files present this session."""
        table = self._tables[state]
        if state not in self._fresh:
            table.sync(self._list()[state])
            self._fresh.add(state)
        return table

    def _list(self) -> dict[JobStatus, set[int]]:
        """The segment numbers present per state, listed again only when a file may have come or gone.

        Every write by a jobstore process first grows the log, and any file made, renamed or
        removed by hand changes the directory's modification time: while neither moved, the
        last listing stands.
        """
        root = self._root_folder()
        key = (self.wal.position(), os.fstat(root.fd).st_mtime_ns)
        if self._listing is None or key != self._listing_key:
            listing: dict[JobStatus, set[int]] = {state: set() for state in STATES}
            for name in root.names():
                parsed = parse_segment_file_name(name)
                if parsed is not None:
                    listing[parsed[0]].add(parsed[1])
            # The files pending records made or removed, which the folder may not show yet.
            for name, changes in self.wal.pending_changes.items():
                parsed = parse_segment_file_name(name)
                if parsed is not None:
                    (listing[parsed[0]].discard if changes[-1].delete else listing[parsed[0]].add)(parsed[1])
            self._listing, self._listing_key = listing, key
        return self._listing

    def _relist(self, changed: list[tuple[Segment, _SegmentChange]]) -> None:
        """Bring the listing up to date with this process's own commit, instead of reading the directory again."""
        if self._listing is None:
            return
        for segment, change in changed:
            numbers = self._listing[change.state]
            if segment.number in self._tables[change.state].segments:
                numbers.add(segment.number)
            else:
                numbers.discard(segment.number)
        self._listing_key = (self.wal.position(), os.fstat(self._root_folder().fd).st_mtime_ns)

    # Writing

    def commit(self, batch: Batch) -> None:
        """Log the batch's changes in one record: the write is then done, and the state files follow within :data:`MAX_DELAY`.

        :raises StoreWriteError: when the record could not be written; nothing changed
        """
        self._check_writable()
        changes = self._plan(batch)
        touched: list[tuple[Segment, _SegmentChange]] = []
        try:
            for change in changes:
                segment = self._tables[change.state].segment(change.number)
                segment.table.apply(change.puts, change.removes)
                touched.append((segment, change))
            files = {segment.name: self._file_change(segment, change) for segment, change in touched}
            self.wal.append(files)
        except BaseException as error:
            for segment, _ in touched:
                segment.storage.staged = None
            if isinstance(error, OSError) and not isinstance(error, JobStoreError):
                raise self._write_error(error) from error
            raise
        for segment, change in touched:
            storage = segment.storage
            assert storage.staged is not None
            if files[segment.name].delete:
                self._tables[change.state].segments.pop(segment.number, None)
            if not storage.loaded():
                storage.key = None  # a segment this write began: no file has it yet
            segment.replace_table(storage.staged, change.puts, change.removes)
            storage.staged = None
            storage.added += change.added
            self._tables[change.state].reindex(segment.number, change.puts, change.removes)
        self._relist(touched)
        self._writer.wrote()
        self._after_write(bool(batch.deletes))

    def _check_writable(self) -> None:
        """Refuse a write, before it starts, where a file it needs could not be replaced.

        Otherwise a directory made read-only under writable files would let the record be logged
        and then stop every later session, each failing to apply it.
        """
        root, meta = self._root_folder(), self._meta_folder()
        for folder, name in ((root, os.curdir), (meta, os.curdir), (meta, self.wal.path.name)):
            if not os.access(name, os.W_OK, dir_fd=folder.fd) and os.access(name, os.F_OK, dir_fd=folder.fd):
                path = folder.path / name
                read_only = os.statvfs(path).f_flag & os.ST_RDONLY
                code = errno.EROFS if read_only else errno.EACCES
                raise StoreWriteError(str(path), OSError(code, os.strerror(code)))

    def _plan(self, batch: Batch) -> list[_SegmentChange]:
        changes: dict[tuple[JobStatus, int], _SegmentChange] = {}

        def change(state: JobStatus, number: int) -> _SegmentChange:
            if (state, number) not in changes:
                changes[state, number] = _SegmentChange(state, number)
            return changes[state, number]

        # state -> (segment number, its jobs and bytes with the additions)
        appending: dict[JobStatus, tuple[int, int, int]] = {}
        for job_id, (state, document) in batch.puts.items():
            holder = None if job_id in batch.new else self._holder(job_id)
            if holder is not None and holder[0] is state and job_id not in batch.reentered:
                number = holder[1]
            else:
                if holder is not None:
                    change(*holder).removes.add(job_id)
                if state not in appending:
                    last = self.table(state).last()
                    appending[state] = (last.number, len(last), last.storage.size())
                number, jobs, size = appending[state]
                # Compact JSON: the file's indentation adds a little, and the bound is a rough one.
                added = len(orjson.dumps(document))
                if jobs >= self.segment_size or (jobs and size + added > self.segment_bytes):
                    number, jobs, size = number + 1, 0, 0
                appending[state] = (number, jobs + 1, size + added)
                change(state, number).added += added
            change(state, number).puts[job_id] = document
        for job_id in batch.deletes:
            holder = self._holder(job_id)
            if holder is not None:
                change(*holder).removes.add(job_id)
        return list(changes.values())

    def _holder(self, job_id: str) -> tuple[JobStatus, int] | None:
        """Return the state and segment number of the job; a job is in one table, so the search stops there.

        Where the index knows the job, one segment is checked: the job was read in this session
        (a write follows a read), so every file that could hold it was checked then, or it came
        from the one segment a claim took it from.
        """
        for state in STATES:
            number = self.table(state).known(job_id)
            if number is not None:
                return state, number
        for state in STATES:
            number = self.table(state).locate(job_id)
            if number is not None:
                return state, number
        return None

    def _file_change(self, segment: Segment, change: _SegmentChange) -> FileChange:
        """Describe the change for the log."""
        staged = segment.storage.staged
        assert staged is not None
        before = segment.storage.known_key()
        if not staged and segment.number != self._tables[change.state].last_number():
            return FileChange(change.state.value, delete=True, before=before)
        return FileChange(change.state.value, puts=change.puts, removes=sorted(change.removes), before=before)

    def materialize(self) -> None:
        """Write every pending record into the state files, then note it in the log; call under the lock.

        The records are made durable first, and each file is replaced whole and synced (when the
        store is durable): a file then never holds a write a power loss could take back, and
        after one the files as they are, with the log's records replayed over them, are the
        store. So no older copy of a table need be kept anywhere.

        The files are written in the order later states first: a job moving on (pending to
        running, running to finished) is then in its new file before it leaves its old one, so a
        person reading the files at that instant sees it twice, never nowhere.

        :raises OSError: when a file could not be written; the records stay pending, and are
            written by a later session (they count already: every process reads them from the log)
        """
        if not self.wal.pending:
            return
        self.wal.settle(self.wal.mark())
        root = self._root_folder()
        keys: dict[str, FileKey | None] = {}
        rank = {state: number for number, state in enumerate(STATES)}
        names = sorted(self.wal.pending_changes, key=lambda name: (-rank[self._parse(name)[0]], name))
        for name in names:
            state, number = self._parse(name)
            if self.wal.pending_changes[name][-1].delete:
                self._delete_file(name)
                keys[name] = None
                continue
            segment = self.table(state).ensure(number)
            storage = segment.storage
            after = write_atomic(root, name, encode({state.value: storage.table}), durable=self.durable, current=storage.known_key())
            storage.key, storage.added = after, 0
            keys[name] = after
        self._listing = None
        self.wal.mark_materialized(keys)

    def flush(self) -> None:
        """Write every job's current state into the state files now, in one session."""
        with self.session(), self._reported("the jobs are safe in the log; the files are written when the disk allows"):
            self.materialize()

    @staticmethod
    def _parse(name: str) -> tuple[JobStatus, int]:
        parsed = parse_segment_file_name(name)
        if parsed is None:
            raise CorruptStoreError(name, "the log names a file that is not a state file")
        return parsed

    def _delete_file(self, name: str) -> None:
        self._root_folder().remove(name)

    def _after_write(self, erased: bool) -> None:
        """Checkpoint when the log has outgrown its limit, or when a write removed jobs, so that no copy of them stays on disk."""
        if erased or self.wal.size() > self._log_limit():
            # The write is done whatever happens here; a checkpoint that fails is tried again next write.
            with suppress(OSError):
                self._checkpoint()

    def _log_limit(self) -> int:
        """The log size past which the next write checkpoints: the state files' size, within :data:`LEAST_LOG_BYTES` and :data:`MOST_LOG_BYTES`.

        A log no larger than the jobs it describes stays small beside them, and a checkpoint's
        cost (one sync of each file written since) is spread over as many bytes of records as
        the store holds. The files' size is looked up only when the log passes the last limit.
        """
        limit = self._log_limit_bytes
        if limit is None or self.wal.size() > limit:
            root = self._root_folder()
            data = 0
            for name in self._state_file_names():
                status = root.stat(name)
                data += 0 if status is None else status.st_size
            limit = self._log_limit_bytes = min(MOST_LOG_BYTES, max(LEAST_LOG_BYTES, data))
        return limit

    def _checkpoint(self) -> None:
        """Write every pending record into the state files, make them durable, and start the log afresh.

        The old log then goes, with the documents of removed jobs it held; so do the base folders
        and spares of earlier releases, which hold old versions of the tables.
        """
        self.materialize()
        root, meta = self._root_folder(), self._meta_folder()
        if self.durable:
            # Files this release wrote are synced already; a file written by hand or by an
            # earlier release may not be, and the log that could rebuild it is about to go.
            for name in self.wal.mentioned & self._state_file_names():
                with suppress(FileNotFoundError):
                    fd = root.open(name, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            root.sync()
        self.wal.checkpoint(self.wal.base + 1)
        self._log_limit_bytes = None
        for name in meta.names():
            if name.startswith(BASE_PREFIX) or name == LEGACY_SPARES:
                meta.remove_folder(name)

    def _state_file_names(self) -> set[str]:
        return {name for name in self._root_folder().names() if parse_segment_file_name(name) is not None}

    # Recovery

    def _recover(self) -> None:
        with self._reported("a write already logged could not be completed; the next operation tries again"):
            self._complete_logged_writes()

    @contextmanager
    def _reported(self, outcome: str) -> Iterator[None]:
        """Raise the operating system's refusals in the block as :class:`StoreWriteError`, saying what became of the write."""
        try:
            yield
        except OSError as error:
            if isinstance(error, JobStoreError):
                raise
            raise self._write_error(error, outcome) from error

    def _write_error(self, error: OSError, outcome: str = "nothing was changed") -> StoreWriteError:
        """The operating system's refusal to write, as jobstore reports it: naming the file, saying what became of the write."""
        return StoreWriteError(error.filename or str(self.root), error, outcome)

    def _complete_logged_writes(self) -> None:
        if not self._swept:
            try:
                remove_temporary_files(self._root_folder())
                remove_temporary_files(self._meta_folder())
                self._swept = True
            except OSError:
                pass  # a read-only store keeps its leftovers, which no reader looks at
        catchup = self.wal.catch_up()
        if catchup.stale:
            self._forget_tables()
        for event in catchup.seen:
            self._follow(event)
        if catchup.replay is not None:
            self._replay(catchup.replay, catchup.base)
        if self.wal.legacy or self.wal.base == 0:
            # A new log, or one of whole-table images: give it a base before anything else is logged.
            with suppress(OSError):
                self._checkpoint()
        elif self.wal.pending and time.monotonic() - self.wal.pending_since > MAX_DELAY:
            # Records no living writer has written into the files (their writer died, say): any
            # session does it, and should the disk refuse, a later one tries again.
            with suppress(OSError):
                self.materialize()

    def _follow(self, event: Record | Marker) -> None:
        """Bring this process's tables up to date with another process's write, from its record.

        Only tables this process has read follow: any other is read when first needed, with the
        pending records applied to it then. A marker says which file versions hold the tables
        as they now are, so that they are not read again.
        """
        if isinstance(event, Marker):
            for name, key in event.keys.items():
                parsed = parse_segment_file_name(name)
                segment = None if parsed is None else self._tables[parsed[0]].segments.get(parsed[1])
                if segment is not None and segment.storage.loaded() and key is not None:
                    segment.storage.key, segment.storage.added = key, 0
            return
        for name, change in event.files.items():
            parsed = parse_segment_file_name(name)
            if parsed is None:
                continue
            table = self._tables[parsed[0]]
            segment = table.segments.get(parsed[1])
            if segment is None or not segment.storage.loaded():
                # A file the record begins (none was there, and no earlier pending record names
                # it) needs no reading: its table is the record's.
                if not change.begins:
                    continue
                segment = table.segment(parsed[1])
                segment.storage.table, segment.storage.key = {}, None
            if segment.storage.staged is not None:
                continue
            storage = segment.storage
            updated = change.applied_to(storage.table)
            if updated is None or change.image is not None:
                table.unindex(segment.number, storage.table)
            if updated is None:
                table.segments.pop(segment.number, None)
                continue
            if change.image is None:
                segment.replace_table(updated, change.puts, change.removes)
            else:
                storage.table = updated
            if change.image is not None:
                table.reindex(segment.number, updated, set())
            else:
                table.reindex(segment.number, change.puts, set(change.removes))

    def _replay(self, records: list[Record], base: int | None) -> None:
        """Bring every state file up to date with the log's records that reached the disk, after a power loss.

        The files start from what they hold (a file never holds a record that had not reached
        the disk): applying a record again to a file that has it changes nothing. A base folder
        an earlier release left is the start instead, and a file neither it nor the log has was
        made by a write the power loss took back, and goes.

        :param base: the base folder the records start from; None for a log of whole-table images,
            which rebuilds only the files it names
        """
        tables: dict[str, tuple[JobStatus, dict[str, Any] | None]] = {}
        if base is not None:
            for name in self._state_file_names():
                parsed = parse_segment_file_name(name)
                assert parsed is not None
                tables[name] = (parsed[0], None)
            # A base removed by hand: the files as they are are the best base left.
            meta = self._meta_folder()
            base_name = f"{BASE_PREFIX}{base}"
            source = meta.child(base_name) if meta.stat(base_name) is not None else None
            try:
                folder = source or self._root_folder()
                for name in folder.names():
                    parsed = parse_segment_file_name(name)
                    loaded = None if parsed is None else read_json(folder, name)
                    if parsed is not None and loaded is not None:
                        tables[name] = (parsed[0], check_table(folder.path / name, parsed[0], loaded[0]))
            finally:
                if source is not None:
                    source.close()
        for record in records:
            for name, change in record.files.items():
                before = tables.get(name, (None, None))[1]
                tables[name] = (JobStatus(change.state), change.applied_to(before))
        for name, (state, table) in tables.items():
            self._write_table(name, state, table, durable=self.durable)
        self._listing = None
        self.wal.forget_pending()  # the files were rebuilt with every record
        self._forget_tables()
        self._checkpoint()

    def _forget_tables(self) -> None:
        """Read every table from its file when next needed."""
        for table in self._tables.values():
            for segment in table.segments.values():
                segment.storage.forget()
        self._listing = None

    def _write_table(self, name: str, state: JobStatus, table: dict[str, Any] | None, *, durable: bool) -> None:
        if table is None:
            self._delete_file(name)
        else:
            write_atomic(self._root_folder(), name, encode({state.value: table}), durable=durable)
