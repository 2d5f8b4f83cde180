"""Inserting many rows in one statement, on both operational backends.

On PostgreSQL the rows travel as one array per column and the server unnests them:
``INSERT INTO t (a, b) SELECT * FROM unnest(%(a)s::type[], %(b)s::type[]) [ON CONFLICT (k) DO
NOTHING] [RETURNING …]``. The statement text is the same for every batch, so neither the driver
nor the server parses a thousand-row VALUES list again and again — for a campaign's batches this
is several times faster than a multi-row VALUES insert. Elsewhere (SQLite) it is SQLAlchemy's own
multi-row insert. Values pass through each column's type first (aware datetimes to UTC, JSON to
text), exactly as an ORM insert would bind them.

A caller with many rows hands over columns (:func:`insert_columns`): one list per column, or
:class:`Same` for a value every row shares, which is bound and sent once. Building a dict per row
only to take it apart again per column was a third of a campaign batch's Python time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import JSON, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bankgrowth.operational.base import Base


@dataclass(frozen=True)
class Same:
    """One value for every row of a column."""

    value: Any


def insert_rows(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (all with the same keys) into ``model``'s table in the caller's transaction; with
    ``conflict``, a row whose key exists is skipped. Returns the ``returning`` columns of the rows
    inserted (in no particular order)."""
    if not rows:
        return []
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    return insert_columns(session, model, columns, conflict=conflict, returning=returning)


def insert_columns(
    session: Session,
    model: type[Base],
    columns: Mapping[str, Sequence[Any] | Same],
    *,
    conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """:func:`insert_rows` given by column: each a list with a value per row (all of one length,
    which the first column must be) or :class:`Same`."""
    names = list(columns)
    first = columns[names[0]]
    if isinstance(first, Same):
        raise ValueError("the first column needs a value per row")
    count = len(first)
    if count == 0:
        return []
    for name in names:
        values = columns[name]
        if not isinstance(values, Same) and len(values) != count:
            raise ValueError(f"column {name} has {len(values)} values for {count} rows")
    table = cast("Table", model.__table__)
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        rows = [{name: v.value if isinstance(v, Same) else v[i] for name, v in columns.items()} for i in range(count)]
        stmt: Any = sqlite.insert(table) if dialect.name == "sqlite" else postgresql.insert(table)
        if conflict:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
        if returning:
            return [tuple(r) for r in session.execute(stmt.returning(*(table.c[c] for c in returning)), rows)]
        session.execute(stmt, rows)
        return []
    session.flush()  # the statement goes past the ORM: what the ORM holds must be written first
    params: dict[str, Any] = {}
    selected, unnested, aliases = [], [], []
    for i, name in enumerate(names):
        column = table.c[name]
        given = columns[name]
        # binary parameters (%b): no text escaping of every value. A column with one value for
        # every row (the right, the pool, the time of a grant) travels once, not once per row,
        # and is bound once.
        if isinstance(given, Same):
            values, constant = [given.value], True
        else:
            values = list(given)
            constant = i > 0 and values.count(values[0]) == count
            if constant:
                values = values[:1]
        if isinstance(column.type, JSON):
            values = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
            sql_type = "json"
        else:
            process = column.type.bind_processor(dialect)
            if process is not None:
                values = [process(v) for v in values]
            sql_type = column.type.compile(dialect=dialect)
        if constant:
            params[f"p{i}"] = values[0]
            selected.append(f"%(p{i})b::{sql_type}")
        else:
            params[f"p{i}"] = values
            unnested.append(f"%(p{i})b::{sql_type}[]")
            aliases.append(f"c{i}")
            selected.append(f"c{i}")
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({', '.join(quote(n) for n in names)}) "
        f"SELECT {', '.join(selected)} FROM unnest({', '.join(unnested)}) AS u({', '.join(aliases)})"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(c) for c in returning)}"
    driver = session.connection().connection.driver_connection
    with driver.cursor(binary=True) as cursor:  # type: ignore[union-attr]
        cursor.execute(sql, params)
        found = cursor.fetchall() if returning else []
    processors = [table.c[c].type.result_processor(dialect, None) for c in returning]
    if not any(processors):
        return found
    return [tuple(p(v) if p is not None else v for p, v in zip(processors, row, strict=True)) for row in found]
