"""Engines, sessions and migrations of the operational store.

SQLite (the default) runs in WAL mode with a busy timeout and foreign keys on, and every transaction
takes the write lock when it begins (``BEGIN IMMEDIATE``), so writers queue instead of failing. Writers
in one process queue in order on a lock of their engine before they ask SQLite: SQLite's own wait
polls with growing sleeps, so under load a writer that has backed off keeps losing to newcomers
(64 threads granting rights waited up to 26 s of the 30 s timeout, with a median of 0.1 ms).
PostgreSQL is used as configured. The schema is owned by Alembic (``bankgrowth db upgrade``); nothing calls
``create_all`` outside the migration scripts' own tests.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bankgrowth.errors import Unavailable

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_SECONDS = 30


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; for SQLite the file's folder is created and the pragmas set."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS}, **kwargs)
        writers = _WriterQueue()
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: _sqlite_begin_immediate(conn, writers))
        # the transaction ends: committed or rolled back, or its connection reset, invalidated or
        # closed without either (a connection dropped mid-transaction is rolled back by the pool)
        event.listen(engine, "commit", writers.leave)
        event.listen(engine, "rollback", writers.leave)
        for ended in ("reset", "invalidate", "close"):
            event.listen(engine, ended, lambda raw, *_: writers.leave(raw))
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


class _WriterQueue:
    """A first-come, first-served lock: each waiter sleeps on its own event and the holder wakes the
    first in line as it leaves, so no writer waits behind ones that came after it."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Event] = deque()
        # the turn's connection (weakly: one dropped unclosed must still be collected and rolled
        # back by the pool) and its DBAPI connection
        self._holder: tuple[weakref.ref[Any], object] | None = None

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held and not self._waiting:
                self._held = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return True  # the lock was handed over: ``_held`` stayed True
        with self._mutex:
            if turn.is_set():  # handed over just as the wait ran out
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            self._release()

    def _release(self) -> None:
        self._holder = None
        if self._waiting:
            self._waiting.popleft().set()
        else:
            self._held = False

    def hold(self, conn: Any) -> None:
        """Record the connection whose transaction has the turn, to let it go when that ends."""
        with self._mutex:
            self._holder = (weakref.ref(conn), conn.connection.dbapi_connection)

    def leave(self, conn: Any) -> None:
        """The next writer's turn, if ``conn`` (a connection or its DBAPI connection) has this one.
        SQLAlchemy's commit and rollback events come just before the COMMIT or ROLLBACK, so the next
        writer's BEGIN IMMEDIATE waits in SQLite only for this one's commit."""
        with self._mutex:
            if self._holder is not None and (conn is self._holder[0]() or conn is self._holder[1]):
                self._release()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is turned off: transactions start in ``_sqlite_begin_immediate``.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(conn: Any, writers: _WriterQueue) -> None:
    """Take SQLite's write lock when a transaction begins, not at its first write: a transaction that
    read first and then tried to write could otherwise fail at once with "database is locked" (the
    busy timeout does not apply to that upgrade), which concurrent grants would hit. The engine's
    writers first queue in turn; one that waits out the busy timeout there fails as SQLite would."""
    if not writers.acquire(SQLITE_BUSY_SECONDS):
        raise exc.OperationalError(
            "BEGIN IMMEDIATE", None, Exception(f"database is locked: no turn to write within {SQLITE_BUSY_SECONDS} s")
        )
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        writers.release()
        raise
    writers.hold(conn)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; returns the revision now current."""
    command.upgrade(alembic_config(engine), revision)
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def require_current(engine: Engine) -> None:
    """Refuse to serve from a store whose schema is missing or behind the code."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise Unavailable(
            f"the operational store is at revision {current or 'none'}, the code needs {head}: "
            "run `bankgrowth db upgrade`",
            f"业务库结构版本为 {current or '无'}，程序需要 {head}：请运行 `bankgrowth db upgrade`",
            code="schema_out_of_date",
        )


@contextmanager
def open_store(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
