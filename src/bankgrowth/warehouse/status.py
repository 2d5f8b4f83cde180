"""What the warehouse holds: row counts, date ranges, quarantine and recent loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ibis

from bankgrowth.warehouse import schema

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

_TIME_COLUMN = {
    "customers": "registered_on",
    "cards": "opened_on",
    "quickpay_bindings": "bound_at",
    "transactions": "txn_at",
    "events": "event_at",
}


@dataclass(frozen=True)
class TableStatus:
    table: str
    rows: int
    first: Any
    last: Any
    quarantined: int


@dataclass(frozen=True)
class WarehouseStatus:
    tables: list[TableStatus]
    recent_loads: list[dict[str, Any]]
    problems_by_field: list[dict[str, Any]]


def warehouse_status(con: BaseBackend, *, recent: int = 10) -> WarehouseStatus:
    quarantine = con.table(schema.QUARANTINE)
    q_rows = (
        quarantine.group_by("table_name")
        .aggregate(lines=(quarantine.load_id.cast("string") + ":" + quarantine.line.cast("string")).nunique())
        .to_pyarrow()
        .to_pylist()
    )
    q_by_table = {r["table_name"]: int(r["lines"]) for r in q_rows}
    tables = []
    for name in schema.TABLES:
        t = con.table(name)
        col = _TIME_COLUMN.get(name)
        if col is None:
            stats = t.aggregate(rows=t.count()).to_pyarrow().to_pylist()[0]
            first = last = None
        else:
            stats = t.aggregate(rows=t.count(), first=t[col].min(), last=t[col].max()).to_pyarrow().to_pylist()[0]
            first, last = stats["first"], stats["last"]
        tables.append(TableStatus(name, int(stats["rows"]), first, last, q_by_table.get(name, 0)))
    loads = con.table(schema.LOADS)
    recent_loads = loads.order_by(ibis.desc("loaded_at")).limit(recent).to_pyarrow().to_pylist()
    problems = (
        quarantine.group_by(["table_name", "field", "expected"])
        .aggregate(rows=quarantine.count())
        .order_by(ibis.desc("rows"))
        .limit(20)
        .to_pyarrow()
        .to_pylist()
    )
    return WarehouseStatus(tables, recent_loads, problems)
