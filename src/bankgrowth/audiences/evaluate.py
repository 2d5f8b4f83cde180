"""The two evaluators of an audience rule, which must always agree (a property test holds them to it):

- :func:`predicate` compiles a rule to an Ibis boolean over a table with one row per customer (the
  tag table of an as-of day), joining behaviour aggregates, lifecycle transitions and other
  audiences as semi-joins — for counts, previews and snapshots, on DuckDB or Spark;
- :func:`matches` evaluates it in memory against one customer's profile — for real-time triggers.

Both follow the semantics in :mod:`bankgrowth.audiences.rules`: a condition on a missing value is
false; days are local days in the bank's timezone, the last N of them ending on the as-of day.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import reduce
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import ibis

from bankgrowth.audiences.rules import All, Any_, Behaviour, Cond, Entered, Member, Not, Rule, RuleError

if TYPE_CHECKING:
    import ibis.expr.types as ir

CMP: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
WITHDRAWAL = "withdrawal"


def day_start(day: date, timezone: str) -> datetime:
    """Local midnight starting ``day``, as an aware datetime."""
    return datetime.combine(day, time(), ZoneInfo(timezone))


def _cycle(trail: tuple[str, ...], name: str) -> RuleError:
    chain = " → ".join((*trail, name))
    return RuleError(
        f"audiences refer to each other in a cycle: {chain}",
        f"客群之间循环引用：{chain}",
        where=f"audience({name!r})",
        expected="no cycle",
        found=chain,
    )


# --- batch: Ibis --------------------------------------------------------------------------------

AudienceSource = Callable[[str], "Rule | ir.Table"]  # a rule, or a table of customer_id (an uploaded list)


@dataclass
class Sources:
    """What a compiled rule reads: the customer table (one row per customer), the transactions and
    the lifecycle transitions, the as-of day and timezone, and other audiences by code."""

    table: ir.Table
    as_of: date
    timezone: str
    transactions: ir.Table | None = None
    transitions: ir.Table | None = None
    audience: AudienceSource | None = None

    def ts(self, day: date) -> ir.Value:
        return ibis.literal(day_start(day, self.timezone), type="timestamp('UTC')")


def predicate(rule: Rule, src: Sources, trail: tuple[str, ...] = (), negated: bool = False) -> ir.BooleanValue:
    """The rule as a filter of ``src.table``. A condition on NULL is false: under a ``not`` it is
    made so explicitly; elsewhere SQL's NULL already filters like false (AND and OR are monotone),
    and leaving the condition bare lets the engine skip blocks by their min/max."""
    t = src.table
    if isinstance(rule, All):
        return reduce(operator.and_, (predicate(i, src, trail, negated) for i in rule.items))
    if isinstance(rule, Any_):
        return reduce(operator.or_, (predicate(i, src, trail, negated) for i in rule.items))
    if isinstance(rule, Not):
        return ~predicate(rule.item, src, trail, True)
    if isinstance(rule, Cond):
        cond = _cond(rule, t[rule.field], src)
        return cond.fill_null(False) if negated else cond
    if isinstance(rule, Behaviour):
        if src.transactions is None:
            raise ValueError("a behaviour condition needs the transactions")
        tx = src.transactions
        keep = [
            tx.txn_at >= src.ts(src.as_of - timedelta(days=rule.days - 1)),
            tx.txn_at < src.ts(src.as_of + timedelta(days=1)),
        ]
        keep += [tx[c].isin(list(v)) for c, v in rule.where]
        if "scene" not in dict(rule.where):
            keep.append(tx.scene != WITHDRAWAL)
        rows = tx.filter(*keep)
        measure = rows.count() if rule.measure == "count" else rows.amount_fen.sum()
        agg = rows.group_by("customer_id").aggregate(m=measure)
        test = CMP[rule.op](agg.m, rule.value)
        if CMP[rule.op](0, rule.value):  # no transactions satisfies it: everyone but those that fail
            return ~t.customer_id.isin(agg.filter(~test).customer_id)
        return t.customer_id.isin(agg.filter(test).customer_id)
    if isinstance(rule, Entered):
        if src.transitions is None:
            raise ValueError("an entered(...) condition needs the lifecycle transitions")
        tr = src.transitions
        keep = [
            tr.to_stage == rule.stage,
            tr.as_of >= src.as_of - timedelta(days=rule.days - 1),
            tr.as_of <= src.as_of,
        ]
        if rule.from_stage is not None:
            keep.append(tr.from_stage == rule.from_stage)
        return t.customer_id.isin(tr.filter(*keep).customer_id)
    assert isinstance(rule, Member)
    if rule.audience in trail:
        raise _cycle(trail, rule.audience)
    if src.audience is None:
        raise ValueError("an audience(...) condition needs the other audiences")
    inner = src.audience(rule.audience)
    if isinstance(inner, All | Any_ | Not | Cond | Behaviour | Entered | Member):
        return predicate(inner, src, (*trail, rule.audience), negated)
    return t.customer_id.isin(inner.customer_id)


def _cond(rule: Cond, col: ir.Value, src: Sources) -> ir.BooleanValue:
    op, v = rule.op, rule.value
    if op == "is_null":
        return col.isnull()
    if op == "is_not_null":
        return col.notnull()
    if col.type().is_timestamp():
        return _on_days(rule, col, src)
    if col.type().is_date() and op == "in_last_days":
        return (col >= src.as_of - timedelta(days=v - 1)) & (col <= src.as_of)
    if op == "in":
        return col.isin(list(v))
    if op == "not_in":
        return col.notin(list(v))
    if op == "between":
        return col.between(v[0], v[1])
    return CMP[op](col, v)  # type: ignore[no-any-return]


def _on_days(rule: Cond, col: ir.Value, src: Sources) -> ir.BooleanValue:
    """A timestamp against local days: [start of the first day, start of the day after the last)."""
    op, v = rule.op, rule.value

    def on(day: date) -> ir.BooleanValue:
        return (col >= src.ts(day)) & (col < src.ts(day + timedelta(days=1)))

    one = timedelta(days=1)
    if op == "in_last_days":
        return (col >= src.ts(src.as_of - timedelta(days=v - 1))) & (col < src.ts(src.as_of + one))
    if op == "between":
        return (col >= src.ts(v[0])) & (col < src.ts(v[1] + one))
    if op == "in":
        return reduce(operator.or_, (on(d) for d in v))
    if op == "not_in":
        return ~reduce(operator.or_, (on(d) for d in v))
    return {
        "=": lambda: on(v),
        "!=": lambda: ~on(v),
        ">": lambda: col >= src.ts(v + one),
        ">=": lambda: col >= src.ts(v),
        "<": lambda: col < src.ts(v),
        "<=": lambda: col < src.ts(v + one),
    }[op]()


# --- real time: one customer in memory ----------------------------------------------------------


@dataclass
class Profile:
    """One customer as a trigger sees it: tag values (timestamps aware), recent transactions
    (``txn_at``, ``amount_fen``, ``institution``, ``merchant_category``, ``scene``) and lifecycle
    transitions (``from_stage``, ``to_stage``, ``as_of``)."""

    customer_id: int
    values: Mapping[str, Any]
    transactions: Sequence[Mapping[str, Any]] = ()
    transitions: Sequence[Mapping[str, Any]] = ()


MemberSource = Callable[[str], "Rule | Collection[int]"]


@dataclass
class Moment:
    as_of: date
    timezone: str
    audience: MemberSource | None = None
    _starts: dict[date, datetime] = field(default_factory=dict)

    def ts(self, day: date) -> datetime:
        found = self._starts.get(day)
        if found is None:
            found = self._starts[day] = day_start(day, self.timezone)
        return found


def matches(rule: Rule, profile: Profile, at: Moment, trail: tuple[str, ...] = ()) -> bool:
    if isinstance(rule, All):
        return all(matches(i, profile, at, trail) for i in rule.items)
    if isinstance(rule, Any_):
        return any(matches(i, profile, at, trail) for i in rule.items)
    if isinstance(rule, Not):
        return not matches(rule.item, profile, at, trail)
    if isinstance(rule, Cond):
        return _holds(rule, profile.values.get(rule.field), at)
    if isinstance(rule, Behaviour):
        since, until = at.ts(at.as_of - timedelta(days=rule.days - 1)), at.ts(at.as_of + timedelta(days=1))
        where = dict(rule.where)
        total = 0
        for txn in profile.transactions:
            if not since <= txn["txn_at"] < until:
                continue
            if "scene" not in where and txn["scene"] == WITHDRAWAL:
                continue
            if all(txn[c] in vs for c, vs in where.items()):
                total += 1 if rule.measure == "count" else int(txn["amount_fen"])
        return bool(CMP[rule.op](total, rule.value))
    if isinstance(rule, Entered):
        first = at.as_of - timedelta(days=rule.days - 1)
        return any(
            tr["to_stage"] == rule.stage
            and first <= tr["as_of"] <= at.as_of
            and (rule.from_stage is None or tr["from_stage"] == rule.from_stage)
            for tr in profile.transitions
        )
    assert isinstance(rule, Member)
    if rule.audience in trail:
        raise _cycle(trail, rule.audience)
    if at.audience is None:
        raise ValueError("an audience(...) condition needs the other audiences")
    inner = at.audience(rule.audience)
    if isinstance(inner, All | Any_ | Not | Cond | Behaviour | Entered | Member):
        return matches(inner, profile, at, (*trail, rule.audience))
    return profile.customer_id in inner


def _holds(rule: Cond, x: Any, at: Moment) -> bool:
    op, v = rule.op, rule.value
    if op == "is_null":
        return x is None
    if op == "is_not_null":
        return x is not None
    if x is None:
        return False
    one = timedelta(days=1)
    if isinstance(x, datetime):

        def on(day: date) -> bool:
            return at.ts(day) <= x < at.ts(day + one)

        if op == "in_last_days":
            return at.ts(at.as_of - timedelta(days=v - 1)) <= x < at.ts(at.as_of + one)
        if op == "between":
            return at.ts(v[0]) <= x < at.ts(v[1] + one)
        if op == "in":
            return any(on(d) for d in v)
        if op == "not_in":
            return not any(on(d) for d in v)
        return {
            "=": lambda: on(v),
            "!=": lambda: not on(v),
            ">": lambda: x >= at.ts(v + one),
            ">=": lambda: x >= at.ts(v),
            "<": lambda: x < at.ts(v),
            "<=": lambda: x < at.ts(v + one),
        }[op]()
    if op == "in_last_days":
        return at.as_of - timedelta(days=v - 1) <= x <= at.as_of
    if op == "in":
        return x in v
    if op == "not_in":
        return x not in v
    if op == "between":
        return bool(v[0] <= x <= v[1])
    return bool(CMP[op](x, v))
