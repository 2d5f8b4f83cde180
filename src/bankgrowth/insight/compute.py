"""Builds the wide tag table for one as-of day as a single Ibis expression.

One grouped pass per source table (transactions, bindings, events, referrals), one two-stage
aggregation per mode tag, then derived tags, the lifecycle stage and the value scores. Nothing is
executed here: the caller materialises the expression on whichever engine it came from.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir

from bankgrowth.insight.lifecycle import Thresholds, stage_expr
from bankgrowth.insight.tags import BUILTIN_TAGS, TIME_COLUMN, Ctx, Tag, context
from bankgrowth.insight.value import with_value_scores
from bankgrowth.warehouse.schema import CUSTOMERS

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

_FILL_TYPES = {"int": "int64", "float": "float64", "bool": "boolean"}


def attach_all(base: ir.Table, key: str, parts: Sequence[ir.Table]) -> ir.Table:
    """``base`` with the columns of per-customer tables (each keyed ``_cid``) left-joined on
    ``base[key]``: one join chain and one projection, which Ibis compiles faster than a
    projection after each join."""
    keyed = [part.rename({f"_cid{i}": "_cid"}) for i, part in enumerate(parts)]
    joined = base
    for i, part in enumerate(keyed):
        joined = joined.left_join(part, base[key] == part[f"_cid{i}"])
    added = [part[c] for i, part in enumerate(keyed) for c in part.columns if c != f"_cid{i}"]
    return joined.select(*(base[c] for c in base.columns), *added)


COUNTED = ("nunique", "mode")
# The tags a day's stages and value scores are computed from (lifecycle.stage_expr's inputs and
# those with_value_scores reads): build_tags on these alone gives every customer's stage.
STAGE_INPUTS = (
    "bindings_ever",
    "bindings_live",
    "last_txn_at",
    "txn_count_365d",
    "txn_amount_365d",
    "last_txn_before_winback",
    "first_txn_in_winback",
    "contribution_365d",
)
COUNTING = "counting values in windows"  # the step of writing the window-count state
COUNTS_SCHEMA = ibis.schema({"tag": "string", "customer_id": "int64", "key": "string", "n": "int64"})


def counted(tags: Sequence[Tag]) -> list[Tag]:
    """Tags computed from per-(customer, value) counts over their window: distinct counts and modes."""
    return [t for t in tags if t.agg is not None and t.agg.fn in COUNTED]


def table_of(source: str) -> str:
    return "transactions" if source == "mode" else source


def counts_by_value(rows: ir.Table, tag: Tag, ctx: Ctx, n: ir.IntegerValue | None = None) -> ir.Table:
    """(tag, customer_id, key, n) of ``rows`` for one counted tag: the tag's value as a string
    key, and per (customer, key) the row count — or the sum of ``n`` when given."""
    agg = tag.agg
    assert agg is not None and agg.value is not None
    key = agg.value(replace(ctx, t=rows)).cast("string")
    part = rows.group_by(customer_id=rows.customer_id, key=key).aggregate(n=ibis._.count() if n is None else n.sum())
    return part.select(tag=ibis.literal(tag.name), customer_id="customer_id", key="key", n="n")


def union_all(parts: Sequence[ir.Table]) -> ir.Table | None:
    return functools.reduce(lambda a, b: a.union(b, distinct=False), parts) if parts else None


def window_counts(
    sources: dict[str, ir.Table], tags: Sequence[Tag], ctx: Ctx, customers: ir.Table | None = None
) -> ir.Table | None:
    """(tag, customer_id, key, n): how many qualifying rows of each value each customer has in the
    window of each counted tag. Stored, it is the state the incremental run moves day by day;
    given ``customers``, only theirs (records of customers not yet registered stay out)."""
    parts = []
    for tag in counted(tags):
        assert tag.agg is not None
        table = sources[table_of(tag.source)]
        read = tag.agg.rows(replace(ctx, t=table), TIME_COLUMN[tag.source])
        part = counts_by_value(table if read is None else table.filter(read), tag, ctx)
        if customers is not None:
            part = part.filter(part.customer_id.isin(customers.customer_id))
        parts.append(part)
    return union_all(parts)


def from_counts(counts: ir.Table, tags: Sequence[Tag]) -> list[ir.Table]:
    """Per counted tag, a table (``_cid``, tag) from :func:`window_counts`: the number of distinct
    non-null values, or the most frequent value (ties: the smallest; NULL last)."""
    out = []
    for tag in counted(tags):
        agg = tag.agg
        assert agg is not None
        mine = counts.filter(counts.tag == tag.name)
        if agg.fn == "nunique":
            out.append(mine.group_by(_cid=mine.customer_id).aggregate(**{tag.name: mine.key.count()}))
            continue
        rank = ibis.row_number().over(
            group_by=mine.customer_id, order_by=[ibis.desc(mine.n), mine.key.asc(nulls_first=False)]
        )
        top = mine.mutate(_rank=rank).filter(lambda t: t._rank == 0)
        out.append(top.select(_cid=top.customer_id, **{tag.name: top.key}))
    return out


def by_source(tags: Sequence[Tag]) -> dict[str, list[Tag]]:
    out: dict[str, list[Tag]] = {}
    for tag in tags:
        out.setdefault(tag.source, []).append(tag)
    return out


AGGREGATE_ORDER = ("transactions", "bindings", "events", "referrals", "mode")


def stored_columns(tags: Sequence[Tag]) -> list[str]:
    """The non-derived tag columns in the order a run attaches them."""
    groups = by_source(tags)
    return [t.name for source in ("customers", *AGGREGATE_ORDER) for t in groups.get(source, [])]


def source_tables(con: BaseBackend, customers: ir.Table, end: ir.TimestampScalar) -> dict[str, ir.Table]:
    """The rows each aggregating source reads for a run ending at ``end``."""
    txns = con.table("transactions")
    events = con.table("events")
    return {
        "transactions": txns.filter(txns.txn_at < end),
        "bindings": con.table("quickpay_bindings"),
        "events": events.filter(events.event_at < end),
        "referrals": customers.filter(customers.referrer_id.notnull()).select(customer_id=customers.referrer_id),
    }


def aggregate(table: ir.Table, group: Sequence[Tag], ctx: Ctx) -> ir.Table:
    """One grouped pass computing ``group``'s tags per customer (keyed ``_cid``)."""
    c = replace(ctx, t=table)
    return table.group_by(_cid=table.customer_id).aggregate(**{t.name: t.value(c) for t in group})


def filled(value: ir.Value, tag: Tag) -> ir.Value:
    """``value`` of an aggregate ``tag``, with the tag's empty value (counts: 0) for NULL."""
    if tag.fill is None or tag.source == "derived":
        return value
    return value.fill_null(tag.fill).cast(_FILL_TYPES[tag.dtype])


def fill(wide: ir.Table, tags: Sequence[Tag]) -> ir.Table:
    """Give customers with no source rows their aggregates' empty values (counts: 0)."""
    aggregates = [t for t in tags if t.fill is not None and t.source != "derived"]
    return wide.mutate(**{t.name: filled(wide[t.name], t) for t in aggregates})


def finish(wide: ir.Table, tags: Sequence[Tag], ctx: Ctx) -> ir.Table:
    """Fill the empty aggregates, then add the derived tags and the stage."""
    wide = fill(wide, tags)
    derived = [t for t in tags if t.source == "derived"]
    if derived:
        c = replace(ctx, t=wide)
        wide = wide.mutate(**{t.name: t.value(c) for t in derived})
    return wide.mutate(stage=stage_expr(wide, ctx.end, ctx.th, ctx.engine))


PROFILE_COLUMNS: tuple[str, ...] = tuple(c.name for c in CUSTOMERS.columns if not c.pii and c.name != "customer_id")
"""The customer record's columns kept with each stored row; profile tags are computed from them
on read, because some depend on the as-of day (age, tenure)."""


def base_columns(tags: Sequence[Tag]) -> list[str]:
    """What a stored row holds: the profile columns and every aggregate tag (already filled)."""
    return [*PROFILE_COLUMNS, *(t.name for t in stored_aggregates(tags))]


def stored_aggregates(tags: Sequence[Tag]) -> list[Tag]:
    groups = by_source(tags)
    return [t for source in AGGREGATE_ORDER for t in groups.get(source, [])]


def present(base: ir.Table, tags: Sequence[Tag], ctx: Ctx) -> ir.Table:
    """From stored rows (:func:`base_columns`) to the tag table without value scores: profile
    tags, derived tags and the stage as of ``ctx``'s day, columns in declaration order."""
    profile = by_source(tags).get("customers", [])
    c = replace(ctx, t=base)
    wide = base.mutate(**{t.name: t.value(c) for t in profile})
    wide = wide.select("customer_id", *stored_columns(tags))
    return finish(wide, tags, ctx)


def registered(con: BaseBackend, as_of: date) -> ir.Table:
    customers = con.table("customers")
    return customers.filter(customers.registered_on <= as_of)


def build_base(
    con: BaseBackend,
    as_of: date,
    *,
    timezone: str = "Asia/Shanghai",
    thresholds: Thresholds | None = None,
    tags: Sequence[Tag] = BUILTIN_TAGS,
    state: str | None = None,
    step: Callable[[str], None] | None = None,
) -> tuple[ir.Table, Ctx]:
    """The stored rows as of the end of ``as_of`` (customer_id and :func:`base_columns`), and the
    context they were computed in.

    Given ``state``, the per-value window counts behind the distinct-count and mode tags are
    written to that table (the incremental run's state) and the tags are read from it; ``step``
    is told (:data:`COUNTING`) before that work starts.
    """
    groups = by_source(tags)
    customers = registered(con, as_of)
    ctx = context(customers, as_of, timezone, thresholds or Thresholds(), con.name)
    wide = customers.select("customer_id", *PROFILE_COLUMNS)
    sources = source_tables(con, customers, ctx.end)
    counts = window_counts(sources, tags, ctx, customers)
    if counts is not None and state is not None:
        if step is not None:
            step(COUNTING)
        con.create_table(state, counts, overwrite=True)
        counts = con.table(state)
    by_counts = (
        {t.name: part for t, part in zip(counted(tags), from_counts(counts, tags), strict=True)}
        if counts is not None
        else {}
    )
    parts = []
    for name in AGGREGATE_ORDER:
        direct = [t for t in groups.get(name, []) if t.name not in by_counts]
        if direct:
            parts.append(aggregate(sources[name], direct, ctx))
        parts += [by_counts[tag.name] for tag in groups.get(name, []) if tag.name in by_counts]
    wide = attach_all(wide, "customer_id", parts)
    return fill(wide.select("customer_id", *base_columns(tags)), tags), ctx


def build_tags(
    con: BaseBackend,
    as_of: date,
    *,
    timezone: str = "Asia/Shanghai",
    thresholds: Thresholds | None = None,
    tags: Sequence[Tag] = BUILTIN_TAGS,
    state: str | None = None,
) -> ir.Table:
    """The wide tag table (customer_id, every tag, stage, value scores) as of the end of ``as_of``,
    computed in full — the reference every other path (stored versions, the incremental run,
    other engines) must equal.

    The value scores read the per-customer table twice (ranked among active customers, joined
    back). Ibis compiles that table once, as a common table expression, and DuckDB materialises a
    CTE that is read twice — so the transactions are aggregated once, in the same statement.
    """
    base, ctx = build_base(con, as_of, timezone=timezone, thresholds=thresholds, tags=tags, state=state)
    return with_value_scores(present(base, tags, ctx))
