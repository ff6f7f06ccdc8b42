"""The PostgreSQL engine: the same tables as the file engine, one per state, in a database schema of the store's name.

Each state's table holds a row per job: its id, its document as ``jsonb``, the order it entered
the table and a version drawn afresh from one sequence at each write (never repeated, even for a
job that left a table and came back); ``jobs`` holds every id once, with its state,
so that no job is ever in two tables. Reads take no lock, and every write is made only at the
version read: a job changed meanwhile fails it, and the operation runs again on the store as it
is now. A claim takes the oldest pending job no other transaction holds (``FOR UPDATE SKIP
LOCKED``), so claiming workers never wait on each other.

Round trips are what an operation costs here, so a session opens a transaction only when it
needs one (a claim's lock, a batch of several writes), and sends ``BEGIN`` and ``COMMIT`` in the
same round trip as the statement beside them: an operation that reads one job and writes it
is two statements, each a transaction of its own.

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

from .._errors import CorruptStoreError, InvalidArgumentError, InvalidJobError, StoreLockTimeout, StoreWriteError
from .._status import STATES, JobStatus
from .._watch import POLL_INTERVAL
from ._base import Batch, Conflict, Document, StoreProblem

#: The layout's version, recorded in the store so that a later release can migrate it.
LAYOUT_VERSION = 2

#: What a pending job's row holds besides its document, for the claim order (see ``_schedule``):
#: derived from the document by the database itself, so no write can leave them behind it.
_CLAIM_COLUMNS = (
    "priority numeric GENERATED ALWAYS AS (COALESCE((doc->'priority')::numeric, 0)) STORED",
    "due text GENERATED ALWAYS AS (COALESCE(doc->>'runAt', doc->'history'->-1->>'at', doc->>'createdAt', '')) STORED",
)


def _scheduling_indexes() -> list[str]:
    """The indexes a claim (by priority, then due time), a key and a dependency are looked up by (``{s}`` the schema)."""
    return [
        "CREATE INDEX IF NOT EXISTS jobs_pending_due ON {s}.jobs_pending (priority DESC, due, entered)",
        *(f"CREATE INDEX IF NOT EXISTS {table_of(state)}_key ON {{s}}.{table_of(state)} ((doc->>'key'))" for state in _LIVE),
        *(f"CREATE INDEX IF NOT EXISTS {table_of(state)}_needs ON {{s}}.{table_of(state)} USING gin ((doc->'dependsOn'))" for state in _WAITING),
    ]


#: What layout 1 (jobstore 0.x before scheduling) needs to become layout 2.
_TO_LAYOUT_2 = [
    "ALTER TABLE {s}.jobs_pending " + ", ".join(f"ADD COLUMN IF NOT EXISTS {column}" for column in _CLAIM_COLUMNS),
]
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def table_of(state: JobStatus) -> str:
    """The table holding a state's jobs."""
    return f"jobs_{state.value}"


#: The states of jobs not yet ended, which hold their keys.
_LIVE = (JobStatus.IDLE, JobStatus.PENDING, JobStatus.RUNNING)
#: The states of jobs that wait, for their dependencies among other things.
_WAITING = (JobStatus.IDLE, JobStatus.PENDING)

#: The first due job in the claim order whose dependencies have all finished, locked, passing
#: over rows others hold: one index probe per priority present (a skip scan, by the recursive
#: part), then, within a priority, the rows due by now in due order: jobs due later are never read.
_DUE = """
WITH RECURSIVE levels (p) AS (
    (SELECT priority FROM {0}.jobs_pending ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT priority FROM {0}.jobs_pending WHERE priority < levels.p ORDER BY priority DESC LIMIT 1)
    FROM levels WHERE levels.p IS NOT NULL
)
SELECT job.id, job.doc, job.version FROM levels CROSS JOIN LATERAL (
    SELECT id, doc, version FROM {0}.jobs_pending t
    WHERE t.priority = levels.p AND t.due <= %(now)s AND NOT EXISTS (
        SELECT FROM jsonb_array_elements_text(CASE jsonb_typeof(t.doc->'dependsOn') WHEN 'array' THEN t.doc->'dependsOn' ELSE '[]' END) AS needed (id)
        WHERE NOT EXISTS (SELECT FROM {0}.jobs_finished f WHERE f.id = needed.id)
    )
    ORDER BY t.due, t.entered LIMIT 1 FOR UPDATE SKIP LOCKED
) job LIMIT 1
"""

#: The waiting jobs that depend on a job.
_DEPENDENTS = " UNION ALL ".join(
    f"SELECT '{state.value}', doc, version FROM {{0}}.{table_of(state)} WHERE doc->'dependsOn' ? %(id)s" for state in _WAITING
)

#: The job not yet ended that holds a key.
_HOLDING = " UNION ALL ".join(f"SELECT '{state.value}', doc, version FROM {{0}}.{table_of(state)} WHERE doc->>'key' = %(key)s" for state in _LIVE) + " LIMIT 1"

#: A job looked for in every table at once (``{0}`` the store's schema).
_FIND = " UNION ALL ".join(f"SELECT '{state.value}', doc, version FROM {{0}}.{table_of(state)} WHERE id = %(id)s" for state in STATES)


class _Write:
    """One job's write as one statement: data-modifying steps, the last named ``w`` returning the row's new version."""

    def __init__(self, job_id: str, state: JobStatus | None, steps: list[str], tables: list[str], parameters: dict[str, Any]) -> None:
        self.job_id = job_id
        #: where the job is after the write; None when it is deleted
        self.state = state
        self.steps = steps
        self.tables = tables
        self.parameters = parameters


#: What became of an operation whose connection was lost, by when it was lost.
NOTHING_CHANGED = "nothing was changed"
MAYBE_CHANGED = "the connection was lost as the write was committed: it may or may not have been made"


class PostgresSession:
    """One operation on the store: reads note the version of each job read, and a write is made only at that version.

    Reads take no lock (a claim's excepted): a job another transaction changed meanwhile fails
    the version check of the write, and the operation runs again (:class:`Conflict`).
    """

    def __init__(self, engine: PostgresEngine, connection: psycopg.Connection[Any]) -> None:
        self._engine = engine
        self._db = connection
        #: job id -> (state, version) of each job read, which a write checks is still so
        self._read: dict[str, tuple[JobStatus, int]] = {}
        #: a transaction is open (a claim's lock, or writes to commit together)
        self._open = False
        #: the open transaction holds writes, which the session's end commits
        self._wrote = False
        #: what became of the operation, should the connection be lost now
        self.outcome = NOTHING_CHANGED

    def _run(self, statements: list[tuple[sql.Composed | bytes, Mapping[str, Any] | None]], *, begin: bool = False, commit: bool = False) -> list[psycopg.Cursor[Any]]:
        """Run statements in one round trip; ``begin`` opens a transaction first (unless one is open), ``commit`` ends it after."""
        begin = begin and not self._open
        if not (begin or commit or len(statements) > 1):
            return [self._db.execute(*statements[0])]
        if commit:
            self._sending_write()
        with self._db.pipeline():
            if begin:
                self._db.execute(b"BEGIN")
                self._open = True
            cursors = [self._db.execute(*statement) for statement in statements]
            if commit and self._open:
                self._db.execute(b"COMMIT")
                self._open = self._wrote = False
        return cursors

    def _sending_write(self) -> None:
        """Note that what is sent next may commit a write; a connection found ended first has had nothing sent, and the operation runs again."""
        if _ended(self._db):
            self._db.close()  # the pool replaces it
            raise Conflict("the connection was lost before the write was sent")
        self.outcome = MAYBE_CHANGED

    def finish(self) -> None:
        """Commit the transaction left open, if any (the session's end)."""
        if self._open:
            if self._wrote:
                self._sending_write()
            self._db.commit()
            self._open = self._wrote = False

    def _q(self, text: str, *tables: str) -> sql.Composed:
        return sql.SQL(text).format(sql.Identifier(self._engine.name), *(sql.Identifier(t) for t in tables))

    def get(self, state: JobStatus, job_id: str) -> Document | None:
        found = self.find(job_id)
        return found[1] if found is not None and found[0] is state else None

    def find(self, job_id: str) -> tuple[JobStatus, Document] | None:
        if "\x00" in job_id:
            return None  # no row can have such an id; the query could not even carry it
        # Every table in one statement, so one snapshot: the job is seen in exactly one of them.
        row = self._db.execute(self._q(_FIND), {"id": job_id}).fetchone()
        if row is None:
            return None
        state = JobStatus(row[0])
        self._read[job_id] = (state, row[2])
        return state, cast(Document, row[1])

    def jobs(self, state: JobStatus) -> list[Document]:
        rows = self._db.execute(self._q("SELECT doc, version FROM {}.{} ORDER BY entered", table_of(state))).fetchall()
        for document, version in rows:
            self._read[document["id"]] = (state, version)
        return [row[0] for row in rows]

    def lapsed(self, moment: str) -> list[Document]:
        # Compared as text: jobstore writes every time as UTC in one format, whose order is the
        # text's (a time written otherwise by hand is left to the caller's check of each job).
        query = self._q("SELECT doc, version FROM {}.{} WHERE doc->>'leaseExpiresAt' <= %(moment)s ORDER BY entered", table_of(JobStatus.RUNNING))
        rows = self._db.execute(query, {"moment": moment}).fetchall()
        for document, version in rows:
            self._read[document["id"]] = (JobStatus.RUNNING, version)
        return [row[0] for row in rows]

    def due(self, moment: str) -> Document | None:
        # The row is locked, so what is read is its latest version; claimers pass each other by.
        # The lock lasts until the claim's write commits, so the transaction opens here, in the
        # same round trip.
        row = self._run([(self._q(_DUE), {"now": moment})], begin=True)[0].fetchone()
        if row is None:
            return None
        job_id, document, version = row
        self._read[job_id] = (JobStatus.PENDING, version)
        return cast(Document, document)

    def _rows(self, rows: list[tuple[str, Document, int]]) -> list[Document]:
        for state, document, version in rows:
            self._read[document["id"]] = (JobStatus(state), version)
        return [row[1] for row in rows]

    def dependents(self, job_id: str) -> list[Document]:
        statements: list[tuple[sql.Composed | bytes, Mapping[str, Any] | None]] = [(self._q(_DEPENDENTS), {"id": job_id})]
        known = self._read.get(job_id)
        if known is not None:
            # The job locked first: a session submitting a dependent holds it until its commit,
            # so the look that follows, a statement later, sees that dependent.
            statements.insert(0, (self._q("SELECT FROM {0}.{1} WHERE id = %(id)s FOR UPDATE", table_of(known[0])), {"id": job_id}))
        return self._rows(self._run(statements, begin=known is not None)[-1].fetchall())

    def hold(self, topic: str) -> None:
        self._run([self._hold(topic)], begin=True)

    def _hold(self, topic: str) -> tuple[sql.Composed | bytes, Mapping[str, Any] | None]:
        return sql.SQL("SELECT pg_advisory_xact_lock(hashtext(%(name)s), hashtext(%(topic)s))").format(), {"name": self._engine.channel, "topic": topic}

    def holding(self, key: str) -> Document | None:
        # Held until the session ends, so that two sessions submitting with one key take turns: the
        # second sees the job of the first.
        rows = self._run([self._hold(f"key {key}"), (self._q(_HOLDING), {"key": key})], begin=True)[1].fetchall()
        found = self._rows(rows)
        return found[0] if found else None

    def apply(self, batch: Batch) -> None:
        writes = [
            self._put(job_id, state, document, new=job_id in batch.new, reentered=job_id in batch.reentered)
            for job_id, (state, document) in batch.puts.items()
        ]
        writes += [write for job_id in batch.deletes if (write := self._delete(job_id)) is not None]
        # A job relied on is held (FOR SHARE) at the version read, until the commit: one changed
        # meanwhile makes the operation run again; one a session is changing waits for it.
        writes += [self._vouch(job_id) for job_id in sorted(batch.relied_on - batch.puts.keys() - batch.deletes) if job_id in self._read]
        if not writes:
            return
        statements: list[tuple[sql.Composed | bytes, Mapping[str, Any] | None]] = []
        for number, write in enumerate(writes):
            # The last write also moves the change token waiters compare and wakes every listener
            # (the notification goes out at commit), in the same round trip.
            signal = ", nextval({seq}::regclass), pg_notify({channel}, '')" if number == len(writes) - 1 else ""
            query = sql.SQL("WITH " + ", ".join(write.steps) + " SELECT version" + signal + " FROM w").format(
                sql.Identifier(self._engine.name),
                *(sql.Identifier(table) for table in write.tables),
                seq=sql.Literal(self._engine.sequence),
                channel=sql.Literal(self._engine.channel),
            )
            statements.append((query, write.parameters))
        if len(writes) == 1 and not self._wrote:
            # One statement is all or nothing by itself: it is its own transaction, or ends the
            # claim's (a write that finds the job changed writes nothing, and the commit then only
            # lets go of the lock).
            cursors = self._run(statements, commit=True)
        else:
            # Several: sent together in one transaction, committed at the session's end only if
            # every one of them found its job as read.
            cursors = self._run(statements, begin=True)
            self._wrote = True
        for write, cursor in zip(writes, cursors):
            row = cursor.fetchone()
            if row is None:
                raise Conflict(write.job_id)  # changed since it was read, or made meanwhile: look again
            if write.state is None:
                self._read.pop(write.job_id, None)
            else:
                self._read[write.job_id] = (write.state, row[0])

    def _put(self, job_id: str, state: JobStatus, document: Document, *, new: bool, reentered: bool = False) -> _Write:
        if "\x00" in job_id or b"\\u0000" in orjson.dumps(document):
            raise InvalidJobError(job_id, [(None, "a string holds U+0000 (NUL), which PostgreSQL cannot store")])
        parameters: dict[str, Any] = {"id": job_id, "state": state.value, "doc": Jsonb(document)}
        known = None if new else self._read.get(job_id)
        if known is None:
            # A new job: its id is taken in jobs (nothing, if another transaction took it), then its row written.
            steps = [
                "taken AS (INSERT INTO {0}.jobs (id, state) VALUES (%(id)s, %(state)s) ON CONFLICT DO NOTHING RETURNING id)",
                "w AS (INSERT INTO {0}.{1} (id, doc) SELECT id, %(doc)s FROM taken RETURNING version)",
            ]
            return _Write(job_id, state, steps, [table_of(state)], parameters)
        was, parameters["version"] = known
        if was is state:
            # A job that left the table and came back in this batch enters it anew, last.
            again = ", entered = nextval('{0}.entered')" if reentered else ""
            steps = ["w AS (UPDATE {0}.{1} SET doc = %(doc)s, version = nextval('{0}.versions')" + again + " WHERE id = %(id)s AND version = %(version)s RETURNING version)"]
            return _Write(job_id, state, steps, [table_of(state)], parameters)
        # A move: out of the old table at the version read, its state noted in jobs, into the new table.
        steps = [
            "gone AS (DELETE FROM {0}.{1} WHERE id = %(id)s AND version = %(version)s RETURNING id)",
            "noted AS (UPDATE {0}.jobs SET state = %(state)s WHERE id IN (SELECT id FROM gone) RETURNING id)",
            "w AS (INSERT INTO {0}.{2} (id, doc) SELECT id, %(doc)s FROM noted RETURNING version)",
        ]
        return _Write(job_id, state, steps, [table_of(was), table_of(state)], parameters)

    def _vouch(self, job_id: str) -> _Write:
        state, version = self._read[job_id]
        steps = ["w AS (SELECT version FROM {0}.{1} WHERE id = %(id)s AND version = %(version)s FOR SHARE)"]
        return _Write(job_id, state, steps, [table_of(state)], {"id": job_id, "version": version})

    def _delete(self, job_id: str) -> _Write | None:
        known = self._read.get(job_id)
        if known is None:
            if self.find(job_id) is None:
                return None
            known = self._read[job_id]
        steps = [
            "gone AS (DELETE FROM {0}.{1} WHERE id = %(id)s AND version = %(version)s RETURNING id)",
            "w AS (DELETE FROM {0}.jobs WHERE id IN (SELECT id FROM gone) RETURNING 0 AS version)",
        ]
        return _Write(job_id, None, steps, [table_of(known[0])], {"id": job_id, "version": known[1]})

    def record_schema(self, schema: Mapping[str, Any]) -> None:
        record = self._q("INSERT INTO {}.meta (key, value) VALUES ('schema', %(schema)s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
        count = self._q("UPDATE {}.meta SET value = to_jsonb(value::text::bigint + 1) WHERE key = 'schema_version'")
        self._run([(record, {"schema": Jsonb(dict(schema))}), (count, None)], begin=True)
        self._wrote = True

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
            # Transactions are opened by the session, only where one is needed.
            kwargs={"autocommit": True},
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
            if state is JobStatus.PENDING:
                statements[-1] = statements[-1][:-1] + ", " + ", ".join(_CLAIM_COLUMNS) + ")"
            statements.append(f"CREATE INDEX IF NOT EXISTS {table_of(state)}_entered ON {{s}}.{table_of(state)} (entered)")
        statements += _scheduling_indexes()
        statements.append("INSERT INTO {s}.meta (key, value) VALUES ('layout', %s), ('schema_version', '0') ON CONFLICT DO NOTHING")
        with self._connection() as db:
            if self._layout(db) == LAYOUT_VERSION:
                # No DDL on a store in use: even CREATE ... IF NOT EXISTS locks a table against writers.
                return
            with db.transaction():
                # Two processes making the same tables at once would collide: one makes them, the other waits.
                db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.channel,))
                layout = self._layout(db)
                if layout == LAYOUT_VERSION:
                    return
                if layout == 1:
                    statements = [*_TO_LAYOUT_2, *_scheduling_indexes(), "UPDATE {s}.meta SET value = %s WHERE key = 'layout'"]
                for statement in statements:
                    text = statement.replace("{s}", f'"{self.name}"')
                    db.execute(text.encode(), (Jsonb(LAYOUT_VERSION),) if "%s" in text else None)

    def _layout(self, db: psycopg.Connection[Any]) -> int | None:
        """The layout version the store records (recorded last, as its tables are made); None when it has none yet.

        :raises CorruptStoreError: for a layout this release does not know (a later release's)
        """
        if db.execute("SELECT to_regclass(%s)", (f'"{self.name}".meta',)).fetchone()[0] is None:  # type: ignore[index]
            return None
        row = db.execute(sql.SQL("SELECT value FROM {}.meta WHERE key = 'layout'").format(sql.Identifier(self.name))).fetchone()
        if row is None:
            return None
        if row[0] not in (1, LAYOUT_VERSION):
            raise CorruptStoreError(self.name, f"its layout is version {row[0]!r}, which this release of jobstore does not know (it knows 1 to {LAYOUT_VERSION}): use a later release")
        return cast(int, row[0])

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
    def _connection(self, outcome: Callable[[], str] = lambda: NOTHING_CHANGED) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool; a transaction the block left open is rolled back when it fails.

        :param outcome: what became of the operation, should the connection be lost now
        """
        try:
            with self._live() as db:
                try:
                    yield db
                except BaseException:
                    if not db.closed and db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        with suppress(psycopg.Error):
                            db.rollback()
                    raise
        except psycopg.errors.LockNotAvailable:
            raise StoreLockTimeout(f"{self.name} (a job another session holds)", self.lock_timeout) from None
        except psycopg.errors.DeadlockDetected:
            # Two sessions each waiting for a job the other wrote (one relied on what the other
            # changes): the server undid this one whole, and it runs again on the store as it is now.
            raise Conflict("deadlock") from None
        except psycopg.OperationalError as error:
            # The pool drops a broken connection; the next operation gets a new one.
            raise StoreWriteError(self.name, OSError(errno.ECONNRESET, str(error).strip().splitlines()[0]), outcome()) from None

    @contextmanager
    def session(self) -> Iterator[PostgresSession]:
        session: PostgresSession | None = None
        with self._connection(lambda: NOTHING_CHANGED if session is None else session.outcome) as db:
            session = PostgresSession(self, db)
            yield session
            session.finish()

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
