"""The JSON-file engine: one TinyDB database per state, in ``<state>.json`` under the store's root.

Each file is in TinyDB's own layout, ``{"<state>": {"<job id>": {...}}}``. A process-wide
``filelock`` serializes sessions. A change to one file is a crash-atomic replace; a change to
several files (a job moving between states) is first written to a journal, so that a crash in
the middle is completed by the next session instead of leaving a job in two tables or none.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document as TinyDocument
from tinydb.table import Table

from ._engine import Batch, Document
from ._errors import CorruptStoreError, StoreLockTimeout
from ._files import FileKey, encode, file_key, read_json, remove_temporary_files, write_atomic
from ._status import STATES, JobStatus

#: The lock every session holds; it is never deleted, so all processes lock the same inode.
LOCK_NAME = ".jobstore.lock"
#: The changes of a multi-file write while they are being applied; absent between sessions.
JOURNAL_NAME = ".jobstore.journal"


def table_file_name(state: JobStatus) -> str:
    """Return the name of the file that holds ``state``'s table."""
    return f"{state.value}.json"


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


class StateFileStorage(Storage):
    """One state's table in its own file, parsed again only when the file has changed.

    :param path: the file
    :param state: the state whose table the file holds
    :param durable: fsync every write
    """

    def __init__(self, path: Path, state: JobStatus, durable: bool = True) -> None:
        self.path = path
        self.state = state
        self.durable = durable
        self._table: dict[str, Document] = {}
        self._key: FileKey | None = None
        self._checked = False

    def expire(self) -> None:
        """Make the next read check the file again; called when a session starts."""
        self._checked = False

    def read(self) -> dict[str, dict[str, Document]]:
        if not self._checked:
            if file_key(self.path) != self._key:
                self._load()
            self._checked = True
        # A new outer mapping each time: TinyDB writes its result into the one it is given.
        return {self.state.value: self._table}

    def _load(self) -> None:
        loaded = read_json(self.path)
        if loaded is None:
            self._table, self._key = {}, None
        else:
            value, key = loaded
            self._table, self._key = check_table(self.path, self.state, value), key

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        table = data.get(self.state.value, {})
        self._key = write_atomic(self.path, encode({self.state.value: table}), durable=self.durable)
        self._table = table


class JobTable(Table):
    """A TinyDB table keyed by job id, with no query cache that could answer from stale data."""

    document_id_class = str
    default_query_cache_capacity = 0

    def apply(self, puts: Mapping[str, Document], removes: Iterable[str]) -> None:
        """Upsert and remove documents in one read-modify-write of the table's file.

        A job already in the table keeps its place; a new one goes last, so the table stays in
        the order jobs entered the state.
        """

        def change(table: dict[str, Any]) -> None:
            for job_id in removes:
                table.pop(job_id, None)
            table.update(puts)

        self._update_table(change)


class StateDatabase(TinyDB):
    """A TinyDB database holding one state's table."""

    table_class = JobTable
    default_storage_class = StateFileStorage


@dataclass
class TableChange:
    """What one batch does to one table."""

    puts: dict[str, Document] = field(default_factory=dict)
    removes: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {"put": self.puts, "remove": sorted(self.removes)}


class TinyDBSession:
    """A session of the JSON-file engine: reads through TinyDB tables, writes all or nothing."""

    def __init__(self, engine: TinyDBEngine) -> None:
        self._engine = engine
        self._tables = engine.tables

    def get(self, state: JobStatus, job_id: str) -> TinyDocument | None:
        return self._tables[state].get(doc_id=job_id)

    def find(self, job_id: str) -> tuple[JobStatus, TinyDocument] | None:
        for state in STATES:
            document = self._tables[state].get(doc_id=job_id)
            if document is not None:
                return state, document
        return None

    def jobs(self, state: JobStatus) -> list[TinyDocument]:
        return self._tables[state].all()

    def apply(self, batch: Batch) -> None:
        changes: dict[JobStatus, TableChange] = {}
        for job_id, (state, document) in batch.puts.items():
            changes.setdefault(state, TableChange()).puts[job_id] = document
            for other in self._holders(job_id):
                if other is not state:
                    changes.setdefault(other, TableChange()).removes.add(job_id)
        for job_id in batch.deletes:
            for state in self._holders(job_id):
                changes.setdefault(state, TableChange()).removes.add(job_id)
        self._engine.commit(changes)

    def _holders(self, job_id: str) -> Iterator[JobStatus]:
        return (state for state in STATES if self._tables[state].contains(doc_id=job_id))


class TinyDBEngine:
    """Jobs in one JSON file per state under ``root``, safe across processes, threads and crashes.

    :param root: the store's directory, created when missing
    :param lock_timeout: seconds to wait for the store lock; a negative value waits for ever
    :param durable: fsync every write, so a power loss loses nothing acknowledged
    """

    def __init__(self, root: Path, *, lock_timeout: float = 10.0, durable: bool = True) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.lock_timeout = lock_timeout
        self.durable = durable
        self.lock_path = root / LOCK_NAME
        self.journal_path = root / JOURNAL_NAME
        self.tables: dict[JobStatus, JobTable] = {
            state: StateDatabase(root / table_file_name(state), state, durable).table(state.value) for state in STATES
        }
        self._storages = [table.storage for table in self.tables.values()]
        # The file lock excludes other processes; the thread lock, other threads sharing this engine.
        self._file_lock = FileLock(str(self.lock_path), thread_local=False)
        self._thread_lock = threading.Lock()
        self._swept = False

    @contextmanager
    def session(self) -> Iterator[TinyDBSession]:
        started = time.monotonic()
        if not self._thread_lock.acquire(timeout=self.lock_timeout):
            raise StoreLockTimeout(str(self.lock_path), self.lock_timeout)
        try:
            wait = self.lock_timeout
            if wait >= 0:
                wait = max(0.0, wait - (time.monotonic() - started))
            try:
                self._file_lock.acquire(timeout=wait)
            except Timeout:
                raise StoreLockTimeout(str(self.lock_path), self.lock_timeout) from None
            try:
                for storage in self._storages:
                    storage.expire()
                self._recover()
                yield TinyDBSession(self)
            finally:
                self._file_lock.release()
        finally:
            self._thread_lock.release()

    def commit(self, changes: Mapping[JobStatus, TableChange]) -> None:
        """Apply the changes to their tables; through the journal when more than one file changes."""
        journaled = len(changes) > 1
        if journaled:
            journal = {state.value: change.to_json() for state, change in changes.items()}
            write_atomic(self.journal_path, encode(journal), durable=self.durable)
        self._apply(changes)
        if journaled:
            # No fsync needed: the next durable write syncs the directory, and until then replaying
            # this journal again is harmless, as it sets the same documents.
            os.unlink(self.journal_path)

    def _apply(self, changes: Mapping[JobStatus, TableChange]) -> None:
        # Tables that gain documents first: a person reading the files mid-move sees a job twice, never nowhere.
        for state, change in sorted(changes.items(), key=lambda item: not item[1].puts):
            self.tables[state].apply(change.puts, change.removes)

    def _recover(self) -> None:
        if not self._swept:
            remove_temporary_files(self.root)
            self._swept = True
        loaded = read_json(self.journal_path)
        if loaded is None:
            return
        self._apply(self._parse_journal(loaded[0]))
        os.unlink(self.journal_path)
        remove_temporary_files(self.root)

    def _parse_journal(self, value: Any) -> dict[JobStatus, TableChange]:
        def damaged(detail: str) -> CorruptStoreError:
            return CorruptStoreError(str(self.journal_path), detail)

        if not isinstance(value, dict):
            raise damaged("expected an object of table changes")
        changes = {}
        for name, change in value.items():
            try:
                state = JobStatus.parse(name)
            except ValueError:
                raise damaged(f"unknown table {name!r}") from None
            if not isinstance(change, dict) or set(change) != {"put", "remove"}:
                raise damaged(f"the change to {name!r} is not of the form {{'put': ..., 'remove': ...}}")
            puts = check_table(self.journal_path, state, {name: change["put"]})
            if not isinstance(change["remove"], list) or not all(isinstance(i, str) for i in change["remove"]):
                raise damaged(f"the removals from {name!r} are not a list of ids")
            changes[state] = TableChange(puts, set(change["remove"]))
        return changes
