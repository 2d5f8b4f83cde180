"""SQLite writers in one process take turns in the order they came, and a transaction that ends any
way at all — committed, rolled back, its connection closed, invalidated or dropped — lets the next
one in."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, exc, text

from bankgrowth.operational import db


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    # a short wait for a turn, so that a turn never handed back fails the test quickly
    monkeypatch.setattr(db, "SQLITE_BUSY_SECONDS", 3)
    e = db.make_engine(f"sqlite:///{tmp_path / 'operational.sqlite'}", pool_size=10)
    with e.begin() as conn:
        conn.execute(text("CREATE TABLE turns (writer TEXT)"))
    yield e
    e.dispose()


def _write(engine: Engine, writer: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO turns VALUES (:w)"), {"w": writer})


def _turns(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [w for (w,) in conn.execute(text("SELECT writer FROM turns ORDER BY rowid"))]


def test_writers_that_wait_get_their_turns_in_the_order_they_came(engine: Engine) -> None:
    # given: a transaction holding the write turn, and eight writers arriving after it one by one
    first = engine.connect()
    first.begin()
    first.execute(text("INSERT INTO turns VALUES ('first')"))
    writers = [threading.Thread(target=_write, args=(engine, f"w{i}")) for i in range(8)]
    for w in writers:
        w.start()
        time.sleep(0.2)  # each is waiting before the next arrives

    # when
    first.commit()
    first.close()
    for w in writers:
        w.join()

    # then
    assert _turns(engine) == ["first"] + [f"w{i}" for i in range(8)]


@pytest.mark.parametrize("end", ["rollback", "close", "invalidate", "drop"])
def test_a_transaction_ended_without_a_commit_hands_the_turn_on(engine: Engine, end: str) -> None:
    # given: a transaction that wrote and then ends without committing
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO turns VALUES ('lost')"))

    # when
    if end == "rollback":
        conn.rollback()
    elif end == "close":
        conn.close()
    elif end == "invalidate":
        conn.invalidate()
    else:  # dropped unclosed: collected, and rolled back by the pool
        del conn
        gc.collect()
    _write(engine, "next")

    # then: the next writer got its turn, and the ended transaction's row is gone
    assert _turns(engine) == ["next"]


def test_a_writer_that_waits_out_the_busy_timeout_fails_as_sqlite_would(engine: Engine) -> None:
    holder = engine.connect()
    holder.begin()
    with pytest.raises(exc.OperationalError, match="database is locked"):
        _write(engine, "late")
    holder.rollback()
    holder.close()
    _write(engine, "later")
    assert _turns(engine) == ["later"]
