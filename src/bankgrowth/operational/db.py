"""Engines, sessions and migrations of the operational store.

SQLite (the default) runs in WAL mode with a busy timeout and foreign keys on, and every transaction
takes the write lock when it begins (``BEGIN IMMEDIATE``), so writers queue instead of failing; PostgreSQL is used
as configured. The schema is owned by Alembic (``bankgrowth db upgrade``); nothing calls
``create_all`` outside the migration scripts' own tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bankgrowth.errors import Unavailable

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; for SQLite the file's folder is created and the pragmas set."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is turned off: transactions start in ``_sqlite_begin_immediate``.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    """Take SQLite's write lock when a transaction begins, not at its first write: a transaction that
    read first and then tried to write could otherwise fail at once with "database is locked" (the
    busy timeout does not apply to that upgrade), which concurrent grants would hit."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


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
