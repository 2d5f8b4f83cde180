"""The batch evaluator (Ibis on DuckDB) and the in-memory evaluator give the same members for random
rules over random customers — nulls, local-midnight edges, behaviour windows, transitions, nested
audiences and uploaded lists included — and every random rule round-trips through JSON and text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import ibis
import jsonschema_rs
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bankgrowth.audiences import rules
from bankgrowth.audiences.evaluate import Moment, Profile, Sources, matches, predicate
from bankgrowth.audiences.rules import All, Any_, Behaviour, Catalog, Cond, Entered, Member, Not, Rule

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
AS_OF = date(2026, 10, 31)
STAGES = ("bound", "transacting", "super", "at_risk", "churned")
WORDS = ("wechat_pay", "alipay", "jd_pay", "", "O'Brien")
INSTITUTIONS = ("wechat_pay", "alipay", "jd_pay")
CATEGORIES = ("dining", "grocery", "travel")
SCENES = ("online", "offline", "withdrawal")
FIELDS: dict[str, rules.FieldType] = {
    "n": "int",
    "x": "float",
    "s": "string",
    "b": "bool",
    "ts": "timestamp",
    "d": "date",
    "stage": "string",
}
SCHEMA = ibis.schema(
    {
        "customer_id": "int64",
        "n": "int64",
        "x": "float64",
        "s": "string",
        "b": "boolean",
        "ts": "timestamp('UTC')",
        "d": "date",
        "stage": "string",
    }
)
NESTED = All((Cond("n", ">=", 2), Not(Cond("s", "=", "alipay"))))
CATALOG = Catalog(
    fields=FIELDS,
    enums={"stage": STAGES},
    behaviour_columns={"institution": INSTITUTIONS, "merchant_category": CATEGORIES, "scene": SCENES},
    stages=STAGES,
    audience=lambda code: {"nested": NESTED, "uploaded": None}[code],
)

# --- random data: values near every edge the rules test -----------------------------------------

days = st.integers(-40, 5).map(lambda k: AS_OF + timedelta(days=k))
midnight_edges = st.builds(
    lambda d, sec: (datetime.combine(d, datetime.min.time(), TZ) + timedelta(seconds=sec)).astimezone(UTC),
    days,
    st.sampled_from([-1, 0, 1, 3600, 86399]),
)
customers = st.lists(
    st.fixed_dictionaries(
        {
            "n": st.none() | st.integers(-3, 6),
            "x": st.none() | st.sampled_from([-1.5, 0.0, 0.25, 2.0, 2.5, 7.0]),
            "s": st.none() | st.sampled_from(WORDS),
            "b": st.none() | st.booleans(),
            "ts": st.none() | midnight_edges,
            "d": st.none() | days,
            "stage": st.none() | st.sampled_from(STAGES),
            "transactions": st.lists(
                st.fixed_dictionaries(
                    {
                        "txn_at": midnight_edges,
                        "amount_fen": st.integers(1, 5000),
                        "institution": st.sampled_from(INSTITUTIONS),
                        "merchant_category": st.sampled_from(CATEGORIES),
                        "scene": st.sampled_from(SCENES),
                    }
                ),
                max_size=6,
            ),
            "transitions": st.lists(
                st.fixed_dictionaries(
                    {"from_stage": st.sampled_from(STAGES), "to_stage": st.sampled_from(STAGES), "as_of": days}
                ),
                max_size=3,
            ),
        }
    ),
    min_size=1,
    max_size=25,
)

# --- random rules over those fields -------------------------------------------------------------

VALUES: dict[str, st.SearchStrategy[object]] = {
    "n": st.integers(-3, 6),
    "x": st.sampled_from([-1.5, 0, 0.25, 2, 2.5, 7.0]),
    "s": st.sampled_from(WORDS),
    "b": st.booleans(),
    "ts": days,
    "d": days,
    "stage": st.sampled_from(STAGES),
}


@st.composite
def conditions(draw: st.DrawFn) -> Rule:
    name = draw(st.sampled_from(sorted(FIELDS)))
    kind = FIELDS[name]
    ops = ["is_null", "is_not_null", "in", "not_in", "=", "!="]
    if kind != "bool":
        ops += [">", ">=", "<", "<=", "between"]
    if kind in ("timestamp", "date"):
        ops.append("in_last_days")
    op = draw(st.sampled_from(ops))
    value = VALUES[name]
    if op in ("is_null", "is_not_null"):
        return Cond(name, op)
    if op == "in_last_days":
        return Cond(name, op, draw(st.integers(1, 45)))
    if op in ("in", "not_in"):
        return Cond(name, op, tuple(draw(st.lists(value, min_size=1, max_size=3))))
    if op == "between":
        lo, hi = sorted([draw(value), draw(value)])  # type: ignore[type-var]
        return Cond(name, op, (lo, hi))
    return Cond(name, op, draw(value))


behaviours = st.builds(
    Behaviour,
    measure=st.sampled_from(["count", "amount"]),
    days=st.sampled_from([1, 7, 30]),
    op=st.sampled_from(rules.COMPARISONS),
    value=st.sampled_from([0, 1, 2, 3, 1000, 4000]),
    where=st.lists(
        st.sampled_from(
            [
                ("institution", ("wechat_pay",)),
                ("institution", ("alipay", "jd_pay")),
                ("merchant_category", ("dining",)),
                ("scene", ("withdrawal",)),
                ("scene", ("online", "offline")),
            ]
        ),
        max_size=2,
        unique_by=lambda cv: cv[0],
    ).map(lambda w: tuple(sorted(w))),
)
entered = st.builds(
    Entered,
    stage=st.sampled_from(STAGES),
    days=st.sampled_from([1, 7, 30]),
    from_stage=st.none() | st.sampled_from(STAGES),
)
leaves = conditions() | behaviours | entered | st.sampled_from([Member("nested"), Member("uploaded")])
random_rules = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: All(tuple(xs)))
        | st.lists(inner, min_size=2, max_size=3).map(lambda xs: Any_(tuple(xs)))
        | inner.map(Not)
    ),
    max_leaves=8,
)


def _tables(rows: list[dict[str, object]]) -> tuple[pa.Table, pa.Table, pa.Table]:
    people = pa.Table.from_pylist(
        [{"customer_id": i + 1, **{k: r[k] for k in FIELDS}} for i, r in enumerate(rows)],
        schema=SCHEMA.to_pyarrow(),
    )
    txns = pa.Table.from_pylist(
        [{"customer_id": i + 1, **t} for i, r in enumerate(rows) for t in r["transactions"]],  # type: ignore[attr-defined]
        schema=pa.schema(
            [
                ("customer_id", pa.int64()),
                ("txn_at", pa.timestamp("us", tz="UTC")),
                ("amount_fen", pa.int64()),
                ("institution", pa.string()),
                ("merchant_category", pa.string()),
                ("scene", pa.string()),
            ]
        ),
    )
    moves = pa.Table.from_pylist(
        [{"customer_id": i + 1, **t} for i, r in enumerate(rows) for t in r["transitions"]],  # type: ignore[attr-defined]
        schema=pa.schema(
            [
                ("customer_id", pa.int64()),
                ("from_stage", pa.string()),
                ("to_stage", pa.string()),
                ("as_of", pa.date32()),
            ]
        ),
    )
    return people, txns, moves


@pytest.fixture(scope="module")
def con() -> ibis.BaseBackend:
    return ibis.duckdb.connect()


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(rows=customers, rule=random_rules, uploaded=st.sets(st.integers(1, 30), max_size=8))
def test_batch_and_in_memory_evaluators_agree(con: ibis.BaseBackend, rows, rule: Rule, uploaded: set[int]) -> None:  # type: ignore[no-untyped-def]
    # given: the customers as tables, and as profiles
    people, txns, moves = _tables(rows)
    lists = pa.table({"customer_id": pa.array(sorted(uploaded), pa.int64())})
    t = con.create_table("people", people, overwrite=True)
    src = Sources(
        table=t,
        as_of=AS_OF,
        timezone=TZ_NAME,
        transactions=con.create_table("txns", txns, overwrite=True),
        transitions=con.create_table("moves", moves, overwrite=True),
        audience=lambda code: {"nested": NESTED, "uploaded": con.create_table("up", lists, overwrite=True)}[code],
    )
    at = Moment(AS_OF, TZ_NAME, audience=lambda code: {"nested": NESTED, "uploaded": uploaded}[code])
    # when
    batch = set(t.filter(predicate(rule, src)).customer_id.to_pyarrow().to_pylist())
    memory = {
        i + 1
        for i, r in enumerate(rows)
        if matches(
            rule,
            Profile(i + 1, {k: r[k] for k in FIELDS}, r["transactions"], r["transitions"]),  # type: ignore[arg-type]
            at,
        )
    }
    # then
    assert batch == memory, rules.to_text(rule)


@settings(max_examples=300, deadline=None, database=None)
@given(rule=random_rules)
def test_every_rule_round_trips_through_json_and_text_and_fits_the_schema(rule: Rule) -> None:
    # given
    validator = jsonschema_rs.validator_for(rules.JSON_SCHEMA)
    # when
    as_json = rules.to_json(rule)
    text = rules.to_text(rule)
    # then
    assert validator.is_valid(as_json), as_json
    assert rules.normalize_values(rules.from_json(as_json), CATALOG) == rule
    assert rules.parse(text, CATALOG) is not None
    assert rules.normalize_values(rules.parse(text, CATALOG), CATALOG) == _flat(rule), text
    assert rules.to_text(rules.parse(text)) == rules.to_text(_flat(rule))


def _flat(rule: Rule) -> Rule:
    """What text reads back: nested and-inside-and (or or-inside-or) flatten into one group."""
    if isinstance(rule, All | Any_):
        items: list[Rule] = []
        for item in (_flat(i) for i in rule.items):
            items.extend(item.items if type(item) is type(rule) else (item,))  # type: ignore[union-attr]
        return type(rule)(tuple(items))
    if isinstance(rule, Not):
        return Not(_flat(rule.item))
    return rule
