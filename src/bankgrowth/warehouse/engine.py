"""The one place that turns a warehouse URL into an Ibis connection.

Everything else in bankgrowth builds Ibis expressions and hands them to the backend this module
returns; no other module writes engine-specific SQL. Supported URLs:

- ``duckdb:///abs/path/warehouse.duckdb`` or ``duckdb://relative.duckdb`` — embedded, the default;
- ``duckdb://:memory:`` — throwaway, for tests;
- ``pyspark://local[2]`` — a local Spark; ``pyspark://spark://host:7077`` or
  ``pyspark://yarn`` — a cluster master; ``pyspark://active`` — the SparkSession already running
  in this process (for a notebook or ``spark-submit`` job).

Another Ibis backend (Trino, ClickHouse, BigQuery, …) plugs in by adding one branch to
:func:`connect` and one :class:`Capabilities` entry; tag, audience and measurement code does not
change, because it only ever sees ``ibis.BaseBackend``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import ibis

from bankgrowth.warehouse import schema

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

    from bankgrowth.config import Settings


class WarehouseError(Exception):
    """A warehouse URL or connection problem a person can act on."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, so callers branch on a flag rather than on an engine name."""

    name: str
    transactional_ddl: bool
    cheap_small_queries: bool  # millisecond counts (embedded) vs job start-up (cluster)


CAPABILITIES = {
    "duckdb": Capabilities("duckdb", transactional_ddl=True, cheap_small_queries=True),
    "pyspark": Capabilities("pyspark", transactional_ddl=False, cheap_small_queries=False),
}


def capabilities(con: BaseBackend) -> Capabilities:
    return CAPABILITIES[con.name]


def connect(url: str, *, timezone: str = "Asia/Shanghai") -> BaseBackend:
    """Open the warehouse named by ``url`` and make sure the canonical tables exist."""
    if url.startswith("duckdb://"):
        target = url.removeprefix("duckdb://")
        if target in ("", ":memory:"):
            con = ibis.duckdb.connect()
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                con = ibis.duckdb.connect(str(path))
            except Exception as exc:  # duckdb raises IOException for locks and bad files
                raise WarehouseError(f"cannot open DuckDB warehouse {path}: {exc}") from exc
        con.raw_sql(f"SET TimeZone = '{timezone}'")  # session setting, not a query
    elif url.startswith("pyspark://"):
        con = _connect_spark(url.removeprefix("pyspark://"), timezone)
    else:
        raise WarehouseError(f"unsupported warehouse URL {url!r}: use duckdb:// or pyspark://")
    ensure_tables(con)
    return con


def _connect_spark(master: str, timezone: str) -> BaseBackend:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # the spark extra is optional
        raise WarehouseError(
            "pyspark is not installed: install bankgrowth with the 'spark' extra"
        ) from exc
    if master == "active":
        session = SparkSession.getActiveSession()
        if session is None:
            raise WarehouseError("pyspark://active needs a running SparkSession in this process")
    else:
        session = (
            SparkSession.builder.master(master)
            .appName("bankgrowth")
            .config("spark.sql.session.timeZone", timezone)
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "8")
            .getOrCreate()
        )
    session.conf.set("spark.sql.session.timeZone", timezone)
    return ibis.pyspark.connect(session)


def ensure_tables(con: BaseBackend) -> None:
    """Create every canonical and bookkeeping table that is missing (never alters existing ones)."""
    existing = set(con.list_tables())
    wanted = {name: spec.ibis_schema for name, spec in schema.TABLES.items()}
    wanted[schema.QUARANTINE] = schema.QUARANTINE_SCHEMA
    wanted[schema.LOADS] = schema.LOADS_SCHEMA
    for name, sch in wanted.items():
        if name not in existing:
            con.create_table(name, schema=sch)


@contextmanager
def open_warehouse(settings: Settings) -> Iterator[BaseBackend]:
    """Connect from settings and always disconnect, so the DuckDB file is released cleanly."""
    con = connect(settings.resolved_warehouse_url, timezone=settings.timezone)
    try:
        yield con
    finally:
        con.disconnect()
