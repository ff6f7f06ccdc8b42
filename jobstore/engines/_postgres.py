"""The PostgreSQL engine: the same tables as the file engine, one per state, in a database schema of the store's name.

Each state's table holds a row per job: its id, its document as ``jsonb``, the order it entered
the table and a version drawn afresh from one sequence at each write (never repeated, even for a
job that left a table and came back); ``jobs`` holds every id once, with its state,
so that no job is ever in two tables. A session is one transaction. Every write to a job holds
its row in ``jobs`` (``FOR UPDATE``), so writes to one job are serialized while writes to others
go on; a claim takes the oldest pending job whose row no one holds (``FOR UPDATE SKIP
LOCKED``), so claiming workers never wait on each other. A job read without holding it (a
listing, the sweep of expired leases) is written only if its version is still the one read; if
not, the operation runs again on the store as it is now.

Imported only when a ``postgresql://`` store is opened: it needs the ``postgres`` extra (psycopg 3
and its pool).
"""

from __future__ import annotations

import errno
import re
import select
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, cast

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from .._errors import InvalidArgumentError, InvalidJobError, StoreLockTimeout, StoreWriteError
from .._status import STATES, JobStatus
from .._watch import POLL_INTERVAL
from ._base import Batch, Conflict, Document, StoreProblem

#: The layout's version, recorded in the store so that a later release can migrate it.
LAYOUT_VERSION = 1
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def table_of(state: JobStatus) -> str:
    """The table holding a state's jobs."""
    return f"jobs_{state.value}"


class PostgresSession:
    """One transaction on the store: reads note the version of each job read, writes check it."""

    def __init__(self, engine: PostgresEngine, connection: psycopg.Connection[Any]) -> None:
        self._engine = engine
        self._db = connection
        #: job id -> (state, version) of each job read, which a write checks is still so
        self._read: dict[str, tuple[JobStatus, int]] = {}
        #: job ids whose row in jobs this transaction holds
        self._held: set[str] = set()

    def _q(self, text: str, *tables: str) -> sql.Composed:
        return sql.SQL(text).format(sql.Identifier(self._engine.name), *(sql.Identifier(t) for t in tables))

    def _hold(self, job_id: str) -> JobStatus | None:
        """Hold the job's row in jobs for the rest of the transaction; return its state, None when it has none."""
        if "\x00" in job_id:
            return None  # no row can have such an id; the query could not even carry it
        row = self._db.execute(self._q("SELECT state FROM {}.jobs WHERE id = %s FOR UPDATE"), (job_id,)).fetchone()
        if row is None:
            return None
        self._held.add(job_id)
        return JobStatus(row[0])

    def _document(self, state: JobStatus, job_id: str) -> Document | None:
        row = self._db.execute(self._q("SELECT doc, version FROM {}.{} WHERE id = %s", table_of(state)), (job_id,)).fetchone()
        if row is None:
            return None
        self._read[job_id] = (state, row[1])
        document: Document = row[0]
        return document

    def get(self, state: JobStatus, job_id: str) -> Document | None:
        found = self.find(job_id)
        return found[1] if found is not None and found[0] is state else None

    def find(self, job_id: str) -> tuple[JobStatus, Document] | None:
        state = self._hold(job_id)
        if state is None:
            return None
        document = self._document(state, job_id)
        return None if document is None else (state, document)

    def jobs(self, state: JobStatus) -> list[Document]:
        rows = self._db.execute(self._q("SELECT doc, version FROM {}.{} ORDER BY entered", table_of(state))).fetchall()
        for document, version in rows:
            self._read[document["id"]] = (state, version)
        return [row[0] for row in rows]

    def first(self, state: JobStatus) -> Document | None:
        # The oldest job of the state no other transaction holds: claimers pass each other by.
        # Both rows are locked, so what is read is their latest version: no second look needed.
        row = self._db.execute(
            self._q(
                "SELECT t.id, t.doc, t.version FROM {0}.{1} t JOIN {0}.jobs j ON j.id = t.id "
                "ORDER BY t.entered LIMIT 1 FOR UPDATE OF t, j SKIP LOCKED",
                table_of(state),
            )
        ).fetchone()
        if row is None:
            return None
        job_id, document, version = row
        self._held.add(job_id)
        self._read[job_id] = (state, version)
        return cast(Document, document)

    def apply(self, batch: Batch) -> None:
        for job_id, (state, document) in batch.puts.items():
            self._put(job_id, state, document, new=job_id in batch.new)
        for job_id in batch.deletes:
            self._delete(job_id)
        # The change token waiters compare, and the wake-up of every listener (sent at commit).
        self._db.execute("SELECT nextval(%s::regclass), pg_notify(%s, '')", (self._engine.sequence, self._engine.channel))

    def _known(self, job_id: str) -> tuple[JobStatus, int] | None:
        """The state and version the job was read at, its row in jobs held; Conflict when it moved since."""
        read = self._read.get(job_id)
        if read is None:
            return None
        if job_id not in self._held and self._hold(job_id) != read[0]:
            raise Conflict(job_id)
        return read

    def _put(self, job_id: str, state: JobStatus, document: Document, *, new: bool) -> None:
        if "\x00" in job_id or b"\\u0000" in orjson.dumps(document):
            raise InvalidJobError(job_id, [(None, "a string holds U+0000 (NUL), which PostgreSQL cannot store")])
        known = None if new else self._known(job_id)
        if known is None:
            if not new and self._hold(job_id) is not None:
                raise Conflict(job_id)  # made meanwhile by another transaction: look again
            # One statement, one round trip: the id is taken in jobs, and only then the row written.
            written = self._db.execute(
                self._q(
                    "WITH taken AS (INSERT INTO {0}.jobs (id, state) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING id) "
                    "INSERT INTO {0}.{1} (id, doc) SELECT id, %s FROM taken RETURNING version",
                    table_of(state),
                ),
                (job_id, state.value, Jsonb(document)),
            ).fetchone()
            if written is None:
                raise Conflict(job_id)
            self._held.add(job_id)
        else:
            was, version = known
            if was is state:
                written = self._db.execute(
                    self._q("UPDATE {0}.{1} SET doc = %s, version = nextval('{0}.versions') WHERE id = %s AND version = %s RETURNING version", table_of(state)),
                    (Jsonb(document), job_id, version),
                ).fetchone()
            else:
                # The move in one statement: out of the old table (at the version read), the state
                # noted in jobs, into the new table.
                written = self._db.execute(
                    self._q(
                        "WITH gone AS (DELETE FROM {0}.{1} WHERE id = %s AND version = %s RETURNING id), "
                        "noted AS (UPDATE {0}.jobs SET state = %s WHERE id IN (SELECT id FROM gone) RETURNING id) "
                        "INSERT INTO {0}.{2} (id, doc) SELECT id, %s FROM noted RETURNING version",
                        table_of(was),
                        table_of(state),
                    ),
                    (job_id, version, state.value, Jsonb(document)),
                ).fetchone()
            if written is None:
                raise Conflict(job_id)
        self._read[job_id] = (state, written[0])

    def _remove_row(self, job_id: str, state: JobStatus, version: int) -> None:
        removed = self._db.execute(self._q("DELETE FROM {}.{} WHERE id = %s AND version = %s", table_of(state)), (job_id, version))
        if removed.rowcount != 1:
            raise Conflict(job_id)

    def _delete(self, job_id: str) -> None:
        known = self._known(job_id)
        if known is None:
            found = self.find(job_id)
            if found is None:
                return
            known = self._read[job_id]
        self._remove_row(job_id, *known)
        self._db.execute(self._q("DELETE FROM {}.jobs WHERE id = %s"), (job_id,))
        self._read.pop(job_id, None)

    def record_schema(self, schema: Mapping[str, Any]) -> None:
        self._db.execute(
            self._q("INSERT INTO {}.meta (key, value) VALUES ('schema', %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"),
            (Jsonb(dict(schema)),),
        )
        self._db.execute(self._q("UPDATE {}.meta SET value = to_jsonb(value::text::bigint + 1) WHERE key = 'schema_version'"))

    def recorded_schema(self) -> dict[str, Any] | None:
        return self._engine.read_schema(self._db)

    def schema_token(self) -> Hashable:
        # The first statement of every operation: a connection found dead here was lost while it
        # sat in the pool (the server ended it), before anything was asked of it. Nothing was
        # done, so the operation runs again, on another connection.
        try:
            row = self._db.execute(self._q("SELECT value FROM {}.meta WHERE key = 'schema_version'")).fetchone()
        except psycopg.OperationalError as error:
            if self._db.broken:
                raise Conflict("the connection was lost while idle") from error
            raise
        return None if row is None else row[0]


class PostgresWaiter:
    """Sleeps until a session commits a write to the store: woken by ``NOTIFY`` on a connection of its own."""

    def __init__(self, engine: PostgresEngine) -> None:
        self._db = psycopg.connect(engine.dsn, autocommit=True)
        self._db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(engine.channel)))

    def wait(self, timeout: float) -> None:
        """Return at the next write (or at once, for one since the last wait), or after ``timeout`` seconds."""
        for _ in self._db.notifies(timeout=max(timeout, 0.0), stop_after=1):
            pass

    def close(self) -> None:
        with suppress(psycopg.Error):
            self._db.close()

    def __enter__(self) -> PostgresWaiter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


def _ended(db: psycopg.Connection[Any]) -> bool:
    """Whether the server has ended a pooled connection meanwhile, told without a round trip.

    An idle connection has nothing to read; one the server ended (a restart,
    ``pg_terminate_backend``) has its last message or the end of the stream waiting.
    """
    return db.broken or bool(select.select([db.fileno()], [], [], 0)[0])


class PostgresEngine:
    """Jobs in PostgreSQL, one table per state in the schema ``name``, safe across hosts.

    :param dsn: the database, as a ``postgresql://`` URL or a libpq connection string
    :param name: the store's name, the database schema of its tables
    :param lock_timeout: seconds a session waits for a job another session holds; negative: for ever
    :param pool_size: the most connections this process opens
    """

    def __init__(self, dsn: str, *, name: str = "jobstore", lock_timeout: float = 10.0, pool_size: int = 4) -> None:
        if not _NAME.match(name):
            raise InvalidArgumentError("name", name, "a store name of lower-case letters, digits and _, not starting with a digit")
        self.dsn = dsn
        self.name = name
        self.channel = f"jobstore_{name}"
        self.sequence = f'"{name}".changes'
        self.lock_timeout = lock_timeout
        # The lock timeout goes with each connection, not with each transaction: no round trip for it.
        options = str(conninfo_to_dict(dsn).get("options") or "")
        if lock_timeout >= 0:
            # 0 would mean no timeout to PostgreSQL; to us it means not waiting at all.
            options += f" -c lock_timeout={max(int(lock_timeout * 1000), 1)}"
        self._pool = ConnectionPool(
            make_conninfo(dsn, options=options.strip()) if options else dsn,
            min_size=1,
            max_size=pool_size,
            open=True,
            kwargs={"autocommit": False},
        )
        self._create()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _create(self) -> None:
        """Make the store's tables on first use (in one transaction: another process may be making them too)."""
        states = ", ".join(f"'{state.value}'" for state in STATES)
        statements = [
            "CREATE SCHEMA IF NOT EXISTS {s}",
            "CREATE SEQUENCE IF NOT EXISTS {s}.changes",
            "CREATE SEQUENCE IF NOT EXISTS {s}.entered",
            "CREATE SEQUENCE IF NOT EXISTS {s}.versions",
            "CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value jsonb NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {{s}}.jobs (id text PRIMARY KEY, state text NOT NULL CHECK (state IN ({states})))",
        ]
        for state in STATES:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {{s}}.{table_of(state)} ("
                "id text PRIMARY KEY REFERENCES {s}.jobs (id) DEFERRABLE INITIALLY DEFERRED, "
                "entered bigint NOT NULL DEFAULT nextval('{s}.entered'), version bigint NOT NULL DEFAULT nextval('{s}.versions'), "
                f"doc jsonb NOT NULL CHECK (doc->>'id' = id AND doc->>'status' = '{state.value}'))"
            )
            statements.append(f"CREATE INDEX IF NOT EXISTS {table_of(state)}_entered ON {{s}}.{table_of(state)} (entered)")
        statements.append("INSERT INTO {s}.meta (key, value) VALUES ('layout', %s), ('schema_version', '0') ON CONFLICT DO NOTHING")
        with self._connection() as db:
            if self._made(db):
                # No DDL on a store in use: even CREATE ... IF NOT EXISTS locks a table against writers.
                return
            # Two processes making the same tables at once would collide: one makes them, the other waits.
            db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.channel,))
            if self._made(db):
                return
            for statement in statements:
                text = statement.replace("{s}", f'"{self.name}"')
                db.execute(text.encode(), (Jsonb(LAYOUT_VERSION),) if "%s" in text else None)

    def _made(self, db: psycopg.Connection[Any]) -> bool:
        """Whether the store's tables are all there: its layout is recorded last, as they are made."""
        if db.execute("SELECT to_regclass(%s)", (f'"{self.name}".meta',)).fetchone()[0] is None:  # type: ignore[index]
            return False
        row = db.execute(sql.SQL("SELECT value FROM {}.meta WHERE key = 'layout'").format(sql.Identifier(self.name))).fetchone()
        return row is not None

    @contextmanager
    def _live(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool the server has not ended; given back (rolled back if need be) after the block.

        Ended ones are closed, so that the pool replaces them; one ended in the instant after this
        look fails its first statement, which the session's first read (the schema token) turns
        into a run on another connection.
        """
        for _ in range(self._pool.max_size):
            db = self._pool.getconn()
            if not _ended(db):
                break
            db.close()
            self._pool.putconn(db)
        else:
            db = self._pool.getconn()  # every one was ended: this one the pool has just made
        try:
            yield db
        finally:
            self._pool.putconn(db)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool in a transaction: committed when the block ends, rolled back on an error."""
        outcome = "the transaction was rolled back: nothing was changed"
        try:
            with self._live() as db:
                yield db
                # Committed here, not by the pool, so that a connection lost at this moment is told
                # apart: the server may have committed before the answer was lost.
                outcome = "the connection was lost as the write was committed: it may or may not have been made"
                db.commit()
        except psycopg.errors.LockNotAvailable:
            raise StoreLockTimeout(f"{self.name} (a job another session holds)", self.lock_timeout) from None
        except psycopg.OperationalError as error:
            # The pool drops a broken connection; the next operation gets a new one.
            raise StoreWriteError(self.name, OSError(errno.ECONNRESET, str(error).strip().splitlines()[0]), outcome) from None

    @contextmanager
    def session(self) -> Iterator[PostgresSession]:
        with self._connection() as db:
            yield PostgresSession(self, db)

    def recorded_schema(self) -> dict[str, Any] | None:
        with self._connection() as db:
            return self.read_schema(db)

    def read_schema(self, db: psycopg.Connection[Any]) -> dict[str, Any] | None:
        """The recorded schema, read on a connection of the caller's (a session's, inside one)."""
        row = db.execute(sql.SQL("SELECT value FROM {}.meta WHERE key = 'schema'").format(sql.Identifier(self.name))).fetchone()
        return None if row is None else dict(row[0])

    def check(self, inspect: Callable[[Mapping[str, Any]], list[str]]) -> list[StoreProblem]:
        problems = []
        with self._connection() as db:
            for state in STATES:
                query = sql.SQL("SELECT id, doc FROM {}.{} ORDER BY entered").format(sql.Identifier(self.name), sql.Identifier(table_of(state)))
                for job_id, document in db.execute(query):
                    problems += [StoreProblem(f"{self.name}.{table_of(state)}", detail, job_id) for detail in inspect(document)]
        return problems

    def flush(self) -> None:
        """Nothing to do: a committed transaction is the stored state."""

    def close(self) -> None:
        """Nothing to do: the pool's connections stay open for the next operation."""

    def waiter(self, interval: float = POLL_INTERVAL) -> PostgresWaiter:
        return PostgresWaiter(self)

    def change_token(self) -> Hashable:
        with self._connection() as db:
            row = db.execute("SELECT last_value, is_called FROM " + self.sequence).fetchone()
        return row
