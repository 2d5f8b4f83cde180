"""Builds the wide tag table for one as-of day as a single Ibis expression.

One grouped pass per source table (transactions, bindings, events, referrals), one two-stage
aggregation per mode tag, then derived tags, the lifecycle stage and the value scores. Nothing is
executed here: the caller materialises the expression on whichever engine it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir

from bankgrowth.insight.lifecycle import Thresholds, stage_expr
from bankgrowth.insight.tags import BUILTIN_TAGS, Tag, context
from bankgrowth.insight.value import with_value_scores

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

_FILL_TYPES = {"int": "int64", "float": "float64", "bool": "boolean"}


def _attach(wide: ir.Table, part: ir.Table) -> ir.Table:
    """Left-join a per-customer table (keyed ``_cid``) onto the wide table."""
    return wide.left_join(part, wide.customer_id == part._cid).drop("_cid")


def _mode(
    source: ir.Table, tag: Tag, ctx_for: ir.Table, as_of: date, timezone: str, th: Thresholds, engine: str
) -> ir.Table:
    value, where = tag.expr(context(ctx_for, as_of, timezone, th, engine))  # type: ignore[misc]
    counts = source.filter(where).mutate(_key=value).group_by(["customer_id", "_key"]).aggregate(_n=ibis._.count())
    rank = ibis.row_number().over(group_by=counts.customer_id, order_by=[ibis.desc(counts._n), counts._key])
    top = counts.mutate(_rank=rank).filter(lambda t: t._rank == 0)
    return top.select(_cid=top.customer_id, **{tag.name: top._key})


def build_tags(
    con: BaseBackend,
    as_of: date,
    *,
    timezone: str = "Asia/Shanghai",
    thresholds: Thresholds | None = None,
    tags: Sequence[Tag] = BUILTIN_TAGS,
    scratch: str | None = None,
) -> ir.Table:
    """The wide tag table (customer_id, every tag, stage, value scores) as of the end of ``as_of``.

    The value scores read the per-customer table twice (ranked among active customers, joined
    back). Given a ``scratch`` table name, that table is written there first — so the engine
    aggregates the transactions once — and the caller drops it after materialising the result.
    Without it the expression stays lazy and the engine may compute the aggregation twice.
    """
    th = thresholds or Thresholds()
    engine = con.name
    by_source: dict[str, list[Tag]] = {}
    for tag in tags:
        by_source.setdefault(tag.source, []).append(tag)

    customers = con.table("customers")
    customers = customers.filter(customers.registered_on <= as_of)
    end = context(customers, as_of, timezone, th).end
    c_ctx = context(customers, as_of, timezone, th)
    wide = customers.select("customer_id", **{t.name: t.expr(c_ctx) for t in by_source.get("customers", [])})

    txns = con.table("transactions")
    txns = txns.filter(txns.txn_at < end)
    bindings = con.table("quickpay_bindings")
    events = con.table("events")
    events = events.filter(events.event_at < end)
    referrals = customers.filter(customers.referrer_id.notnull()).select(customer_id=customers.referrer_id)
    sources = {"transactions": txns, "bindings": bindings, "events": events, "referrals": referrals}
    for name, table in sources.items():
        group = by_source.get(name, [])
        if not group:
            continue
        ctx = context(table, as_of, timezone, th, engine)
        part = table.group_by(_cid=table.customer_id).aggregate(**{t.name: t.expr(ctx) for t in group})
        wide = _attach(wide, part)
    for tag in by_source.get("mode", []):
        wide = _attach(wide, _mode(txns, tag, txns, as_of, timezone, th, engine))

    fills = {t.name: wide[t.name].fill_null(t.fill) for t in tags if t.fill is not None and t.source != "derived"}
    casts = {t.name: fills[t.name].cast(_FILL_TYPES[t.dtype]) for t in tags if t.name in fills}
    wide = wide.mutate(**casts)
    derived = by_source.get("derived", [])
    if derived:
        d_ctx = context(wide, as_of, timezone, th)
        wide = wide.mutate(**{t.name: t.expr(d_ctx) for t in derived})
    wide = wide.mutate(stage=stage_expr(wide, end, th))
    if scratch is not None:
        con.create_table(scratch, wide, overwrite=True)
        wide = con.table(scratch)
    return with_value_scores(wide)
