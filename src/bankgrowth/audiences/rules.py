"""The audience rule language (客群规则): one condition tree, written as JSON or as text.

JSON (the stored form; its JSON Schema is :data:`JSON_SCHEMA`)::

    {"and": [...]}  {"or": [...]}  {"not": {...}}
    {"field": "txn_count_30d", "op": ">=", "value": 3}
    {"behaviour": "transactions", "measure": "count", "days": 30,
     "where": {"institution": ["wechat_pay"]}, "op": ">=", "value": 3}
    {"entered": "super", "days": 7}            {"entered": "super", "days": 7, "from": "at_risk"}
    {"audience": "active_wechat"}

Text (what operators type; it round-trips with the JSON)::

    stage = 'super' and txn_count_30d >= 3 and preferred_institution in ('wechat_pay', 'alipay')
    last_txn_at in last 30 days and not (age between 18 and 25) and gender is not null
    txn_count(30 days, institution = 'wechat_pay') >= 3 or entered('super', 7 days, from 'at_risk')
    audience('active_wechat') and txn_amount(90 days, merchant_category in ('dining', 'grocery')) >= 10000

Field operators: ``= != > >= < <=``, ``in (…)``, ``not in (…)``, ``between a and b`` (inclusive),
``is null``, ``is not null``, and for timestamps and dates ``in last N days`` (the N local days
ending on the as-of day). A timestamp compared with a date (``last_txn_at >= '2026-10-01'``)
compares the local day the timestamp falls on. ``not`` binds tighter than ``and``, ``and`` tighter
than ``or``.

Semantics shared by both evaluators: a condition on a missing value (NULL) is false, and ``not`` of
it is true (two-valued logic, so a rule reads the same in SQL and in memory). A behaviour aggregate
counts or sums the customer's transactions in the last ``days`` local days matching ``where``;
withdrawals back to the card (scene ``withdrawal``) are left out unless ``where`` names the scene.

Errors are :class:`RuleError` and name the place: a JSON path (``$.and[1].op``) or a line and
column of the text, with what was expected and what was found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Union

from bankgrowth.errors import Invalid, closest

Scalar = Union[int, float, str, bool, date, None]  # noqa: UP007 - a runtime alias used in isinstance checks
FieldType = Literal["int", "float", "string", "bool", "timestamp", "date"]

COMPARISONS = ("=", "!=", ">", ">=", "<", "<=")
FIELD_OPS = (*COMPARISONS, "in", "not_in", "between", "is_null", "is_not_null", "in_last_days")
MEASURES = ("count", "amount")
MAX_DAYS = 3660
MAX_DEPTH = 32


class RuleError(Invalid):
    """A rule that cannot be read or does not fit the catalog; ``details`` says where."""

    def __init__(self, en: str, zh: str, *, where: str, expected: str = "", found: str = "", **place: int) -> None:
        details: dict[str, Any] = {"where": where, "expected": expected, "found": found, **place}
        super().__init__(f"{where}: {en}", f"{where}：{zh}", code="bad_rule", details=details)


# --- the tree -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class All:
    items: tuple[Rule, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    item: Rule


@dataclass(frozen=True)
class Cond:
    field: str
    op: str
    value: Any = None  # a scalar; a tuple for in / not_in / between; days for in_last_days


@dataclass(frozen=True)
class Behaviour:
    measure: str  # count | amount
    days: int
    op: str
    value: int
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, allowed values), columns sorted


@dataclass(frozen=True)
class Entered:
    stage: str
    days: int
    from_stage: str | None = None


@dataclass(frozen=True)
class Member:
    audience: str


Rule = All | Any_ | Not | Cond | Behaviour | Entered | Member


def walk(rule: Rule) -> Iterator[Rule]:
    """Every node, depth first."""
    yield rule
    if isinstance(rule, All | Any_):
        for item in rule.items:
            yield from walk(item)
    elif isinstance(rule, Not):
        yield from walk(rule.item)


def audiences_named(rule: Rule) -> set[str]:
    return {n.audience for n in walk(rule) if isinstance(n, Member)}


# --- the catalog a rule is checked against ------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """What a rule may name: fields with their types, the allowed values of enumerated fields, the
    transaction columns a behaviour may filter on, the lifecycle stages, and a lookup of other
    audiences (their rules, to check for cycles; ``None`` for an uploaded list)."""

    fields: Mapping[str, FieldType]
    enums: Mapping[str, Sequence[str]] = field(default_factory=dict)
    behaviour_columns: Mapping[str, Sequence[str]] = field(default_factory=dict)
    stages: Sequence[str] = ()
    audience: Callable[[str], Rule | None] | None = None  # KeyError when unknown


# --- JSON ---------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _json_error(path: str, en: str, zh: str, expected: str, found: Any) -> RuleError:
    return RuleError(en, zh, where=path, expected=expected, found=repr(found)[:80])


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _json_error(path, f"expected a whole number {lo}–{hi}", f"应为 {lo}–{hi} 的整数", f"{lo}..{hi}", value)
    return value


def from_json(obj: Any, path: str = "$", depth: int = 0) -> Rule:
    """The rule a JSON value describes; :class:`RuleError` naming the JSON path otherwise."""
    if depth > MAX_DEPTH:
        raise _json_error(path, "the rule nests too deep", "规则嵌套过深", f"at most {MAX_DEPTH} levels", "...")
    if not isinstance(obj, dict):
        raise _json_error(path, f"expected a condition object, found {_kind(obj)}", "应为条件对象", "object", obj)
    keys = set(obj)
    for group, cls in (("and", All), ("or", Any_)):
        if group in keys:
            _only(obj, {group}, path)
            items = obj[group]
            if not isinstance(items, list) or not items:
                raise _json_error(
                    f"{path}.{group}", "expected a non-empty list of conditions", "应为非空条件列表", "list", items
                )
            return cls(tuple(from_json(x, f"{path}.{group}[{i}]", depth + 1) for i, x in enumerate(items)))
    if "not" in keys:
        _only(obj, {"not"}, path)
        return Not(from_json(obj["not"], f"{path}.not", depth + 1))
    if "field" in keys:
        _only(obj, {"field", "op", "value"}, path)
        name, op = obj["field"], obj.get("op")
        if not isinstance(name, str) or not name:
            raise _json_error(f"{path}.field", "expected a field name", "应为字段名", "string", name)
        if op not in FIELD_OPS:
            raise _json_error(f"{path}.op", "unknown operator", "未知运算符", " ".join(FIELD_OPS), op)
        value = obj.get("value")
        if op in ("in", "not_in", "between"):
            if not isinstance(value, list) or not value or (op == "between" and len(value) != 2):
                want = "a list of two values" if op == "between" else "a non-empty list"
                raise _json_error(f"{path}.value", f"{op} takes {want}", f"{op} 需要列表", want, value)
            bad = [v for v in value if isinstance(v, list | dict) or v is None]
            if bad:
                raise _json_error(f"{path}.value", "list items must be values", "列表项应为值", "scalar", bad[0])
            return Cond(name, op, tuple(value))
        if op in ("is_null", "is_not_null"):
            if value is not None:
                raise _json_error(f"{path}.value", f"{op} takes no value", f"{op} 不带值", "no value", value)
            return Cond(name, op)
        if op == "in_last_days":
            return Cond(name, op, _int(value, f"{path}.value", 1, MAX_DAYS))
        if isinstance(value, list | dict) or value is None:
            raise _json_error(f"{path}.value", f"{op} takes one value", f"{op} 需要一个值", "scalar", value)
        return Cond(name, op, value)
    if "behaviour" in keys:
        _only(obj, {"behaviour", "measure", "days", "where", "op", "value"}, path)
        if obj["behaviour"] != "transactions":
            raise _json_error(f"{path}.behaviour", "unknown behaviour", "未知行为", "transactions", obj["behaviour"])
        measure = obj.get("measure", "count")
        if measure not in MEASURES:
            raise _json_error(f"{path}.measure", "unknown measure", "未知度量", "count or amount", measure)
        if obj.get("op") not in COMPARISONS:
            raise _json_error(f"{path}.op", "unknown comparison", "未知比较符", " ".join(COMPARISONS), obj.get("op"))
        where = obj.get("where", {})
        if not isinstance(where, dict):
            raise _json_error(f"{path}.where", "expected an object of column: values", "应为对象", "object", where)
        filters = []
        for column, values in sorted(where.items()):
            values = [values] if isinstance(values, str) else values
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise _json_error(
                    f"{path}.where.{column}",
                    "expected a value or a list of values",
                    "应为值或值列表",
                    "strings",
                    values,
                )
            filters.append((column, tuple(values)))
        return Behaviour(
            measure,
            _int(obj.get("days"), f"{path}.days", 1, MAX_DAYS),
            obj["op"],
            _int(obj.get("value"), f"{path}.value", 0, 10**15),
            tuple(filters),
        )
    if "entered" in keys:
        _only(obj, {"entered", "days", "from"}, path)
        stage, source = obj["entered"], obj.get("from")
        if not isinstance(stage, str) or (source is not None and not isinstance(source, str)):
            raise _json_error(f"{path}.entered", "expected a stage code", "应为阶段代码", "string", stage)
        return Entered(stage, _int(obj.get("days"), f"{path}.days", 1, MAX_DAYS), source)
    if "audience" in keys:
        _only(obj, {"audience"}, path)
        if not isinstance(obj["audience"], str) or not obj["audience"]:
            raise _json_error(
                f"{path}.audience", "expected an audience code", "应为客群代码", "string", obj["audience"]
            )
        return Member(obj["audience"])
    raise _json_error(
        path,
        "not a condition: expected one of and, or, not, field, behaviour, entered, audience",
        "不是条件：应包含 and、or、not、field、behaviour、entered 或 audience",
        "and|or|not|field|behaviour|entered|audience",
        sorted(keys),
    )


def _only(obj: dict[str, Any], allowed: set[str], path: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise _json_error(f"{path}.{extra[0]}", "unexpected key", "多余的键", " ".join(sorted(allowed)), extra[0])


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def to_json(rule: Rule) -> dict[str, Any]:
    """The stored JSON of a rule (``from_json(to_json(r)) == r``)."""
    if isinstance(rule, All):
        return {"and": [to_json(i) for i in rule.items]}
    if isinstance(rule, Any_):
        return {"or": [to_json(i) for i in rule.items]}
    if isinstance(rule, Not):
        return {"not": to_json(rule.item)}
    if isinstance(rule, Cond):
        out: dict[str, Any] = {"field": rule.field, "op": rule.op}
        if rule.op in ("in", "not_in", "between"):
            out["value"] = [_jsonable(v) for v in rule.value]
        elif rule.op not in ("is_null", "is_not_null"):
            out["value"] = _jsonable(rule.value)
        return out
    if isinstance(rule, Behaviour):
        return {
            "behaviour": "transactions",
            "measure": rule.measure,
            "days": rule.days,
            "where": {c: list(v) for c, v in rule.where},
            "op": rule.op,
            "value": rule.value,
        }
    if isinstance(rule, Entered):
        out = {"entered": rule.stage, "days": rule.days}
        if rule.from_stage is not None:
            out["from"] = rule.from_stage
        return out
    return {"audience": rule.audience}


_SCALAR_SCHEMA = {"type": ["string", "number", "boolean"]}
JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://bankgrowth.dev/schemas/audience-rule.json",
    "title": "bankgrowth audience rule",
    "$ref": "#/$defs/rule",
    "$defs": {
        "rule": {
            "oneOf": [
                {"$ref": "#/$defs/and"},
                {"$ref": "#/$defs/or"},
                {"$ref": "#/$defs/not"},
                {"$ref": "#/$defs/field"},
                {"$ref": "#/$defs/behaviour"},
                {"$ref": "#/$defs/entered"},
                {"$ref": "#/$defs/audience"},
            ]
        },
        "and": {
            "type": "object",
            "properties": {"and": {"type": "array", "items": {"$ref": "#/$defs/rule"}, "minItems": 1}},
            "required": ["and"],
            "additionalProperties": False,
        },
        "or": {
            "type": "object",
            "properties": {"or": {"type": "array", "items": {"$ref": "#/$defs/rule"}, "minItems": 1}},
            "required": ["or"],
            "additionalProperties": False,
        },
        "not": {
            "type": "object",
            "properties": {"not": {"$ref": "#/$defs/rule"}},
            "required": ["not"],
            "additionalProperties": False,
        },
        "field": {
            "type": "object",
            "description": "A condition on one tag (or stage, score, profile column).",
            "properties": {"field": {"type": "string", "minLength": 1}, "op": {"enum": list(FIELD_OPS)}},
            "required": ["field", "op"],
            "additionalProperties": True,
            "oneOf": [
                {
                    "properties": {"op": {"enum": list(COMPARISONS)}, "value": _SCALAR_SCHEMA},
                    "required": ["value"],
                    "additionalProperties": False,
                    "patternProperties": {"^(field|op)$": {}},
                },
                {
                    "properties": {
                        "op": {"enum": ["in", "not_in"]},
                        "value": {"type": "array", "items": _SCALAR_SCHEMA, "minItems": 1},
                    },
                    "required": ["value"],
                    "additionalProperties": False,
                    "patternProperties": {"^(field|op)$": {}},
                },
                {
                    "properties": {
                        "op": {"const": "between"},
                        "value": {"type": "array", "items": _SCALAR_SCHEMA, "minItems": 2, "maxItems": 2},
                    },
                    "required": ["value"],
                    "additionalProperties": False,
                    "patternProperties": {"^(field|op)$": {}},
                },
                {
                    "properties": {"op": {"enum": ["is_null", "is_not_null"]}},
                    "additionalProperties": False,
                    "patternProperties": {"^(field|op)$": {}},
                },
                {
                    "properties": {
                        "op": {"const": "in_last_days"},
                        "value": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
                    },
                    "required": ["value"],
                    "additionalProperties": False,
                    "patternProperties": {"^(field|op)$": {}},
                },
            ],
        },
        "behaviour": {
            "type": "object",
            "description": "Count or sum of the customer's transactions in the last `days` local days.",
            "properties": {
                "behaviour": {"const": "transactions"},
                "measure": {"enum": list(MEASURES)},
                "days": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
                "where": {
                    "type": "object",
                    "additionalProperties": {
                        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]
                    },
                },
                "op": {"enum": list(COMPARISONS)},
                "value": {"type": "integer", "minimum": 0},
            },
            "required": ["behaviour", "days", "op", "value"],
            "additionalProperties": False,
        },
        "entered": {
            "type": "object",
            "description": "Entered a lifecycle stage in the last `days` days (optionally from a given stage).",
            "properties": {
                "entered": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
                "from": {"type": "string"},
            },
            "required": ["entered", "days"],
            "additionalProperties": False,
        },
        "audience": {
            "type": "object",
            "description": "Member of another audience (its current definition, or its uploaded list).",
            "properties": {"audience": {"type": "string", "minLength": 1}},
            "required": ["audience"],
            "additionalProperties": False,
        },
    },
}


# --- text ---------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<str>'(?:[^']|'')*')
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<op><>|!=|>=|<=|=|>|<)
      | (?P<punct>[(),])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<bad>.)""",
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "in", "between", "is", "null", "true", "false", "last", "days", "day", "from"}
FUNCTIONS = {"txn_count": "count", "txn_amount": "amount"}


@dataclass(frozen=True)
class Token:
    kind: str  # str, num, op, punct, name, end
    text: str
    value: Any
    line: int
    column: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    line, line_start = 1, 0
    for m in _TOKEN.finditer(text):
        kind, raw = m.lastgroup or "bad", m.group()
        column = m.start() - line_start + 1
        if kind == "ws":
            for i, ch in enumerate(raw):
                if ch == "\n":
                    line, line_start = line + 1, m.start() + i + 1
            continue
        if kind == "bad":
            if raw == "'":
                raise RuleError(
                    "a string is not closed", "字符串未闭合", where=f"line {line}, column {column}",
                    expected="a closing '", found="end of text", line=line, column=column,
                )  # fmt: skip
            raise RuleError(
                f"unexpected character {raw!r}", f"无法识别的字符 {raw!r}", where=f"line {line}, column {column}",
                expected="a name, value, operator or parenthesis", found=raw, line=line, column=column,
            )  # fmt: skip
        value: Any = raw
        if kind == "str":
            value = raw[1:-1].replace("''", "'")
        elif kind == "num":
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif kind == "op" and raw == "<>":
            value = "!="
        elif kind == "name" and raw.lower() in KEYWORDS:
            kind, value = "kw", raw.lower()
        tokens.append(Token(kind, raw, value, line, column))
    tokens.append(Token("end", "", None, line, len(text) - line_start + 1))
    return tokens


class _Parser:
    def __init__(self, text: str, catalog: Catalog | None) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.catalog = catalog
        self.depth = 0
        self.value_toks: list[Token] = []  # the values of the condition being read

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, expected: str, tok: Token | None = None, en: str | None = None, zh: str | None = None) -> RuleError:
        tok = tok or self.tok
        found = "end of text" if tok.kind == "end" else repr(tok.text)
        return RuleError(
            en or f"expected {expected}, found {found}",
            zh or f"此处应为 {expected}，实际为 {found}",
            where=f"line {tok.line}, column {tok.column}",
            expected=expected,
            found=found,
            line=tok.line,
            column=tok.column,
        )

    def take(self, kind: str, value: Any = None) -> Token | None:
        tok = self.tok
        if tok.kind == kind and (value is None or tok.value == value):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, value: Any = None, what: str | None = None) -> Token:
        tok = self.take(kind, value)
        if tok is None:
            raise self.fail(what or (repr(value) if value is not None else kind))
        return tok

    def parse(self) -> Rule:
        rule = self.or_()
        if self.tok.kind != "end":
            raise self.fail("and, or, or the end of the rule")
        return rule

    def or_(self) -> Rule:
        items = [self.and_()]
        while self.take("kw", "or"):
            items.append(self.and_())
        return items[0] if len(items) == 1 else Any_(tuple(items))

    def and_(self) -> Rule:
        items = [self.not_()]
        while self.take("kw", "and"):
            items.append(self.not_())
        return items[0] if len(items) == 1 else All(tuple(items))

    def not_(self) -> Rule:
        if self.take("kw", "not"):
            return Not(self.not_())
        return self.atom()

    def atom(self) -> Rule:
        self.depth += 1
        if self.depth > MAX_DEPTH * 4:
            raise self.fail("a shallower rule", en="the rule nests too deep", zh="规则嵌套过深")
        try:
            if self.take("punct", "("):
                rule = self.or_()
                self.expect("punct", ")", "')'")
                return rule
            start = self.tok
            if start.kind != "name":
                raise self.fail("a condition (a field name, txn_count(…), entered(…), audience(…) or '(')")
            name = start.value
            if name in FUNCTIONS and self.tokens[self.i + 1].text == "(":
                return self.behaviour()
            if name == "entered" and self.tokens[self.i + 1].text == "(":
                return self.entered()
            if name == "audience" and self.tokens[self.i + 1].text == "(":
                self.i += 2
                code = self.expect("str", what="an audience code in quotes")
                self.expect("punct", ")", "')'")
                member = Member(code.value)
                self.check(member, code)
                return member
            self.i += 1
            self.value_toks = []
            cond = self.condition(name)
            self.check(cond, start, self.value_toks)  # a wrong name points at the name, a wrong value at it
            return cond
        finally:
            self.depth -= 1

    def value(self) -> Any:
        tok = self.tok
        self.value_toks.append(tok)
        if tok.kind in ("str", "num"):
            self.i += 1
            return tok.value
        if tok.kind == "kw" and tok.value in ("true", "false"):
            self.i += 1
            return tok.value == "true"
        raise self.fail("a value: a number, 'text', true or false")

    def values(self) -> tuple[Any, ...]:
        self.expect("punct", "(", "'(' and a list of values")
        out = [self.value()]
        while self.take("punct", ","):
            out.append(self.value())
        self.expect("punct", ")", "',' or ')'")
        return tuple(out)

    def days(self) -> int:
        tok = self.tok
        if tok.kind != "num" or not isinstance(tok.value, int) or not 1 <= tok.value <= MAX_DAYS:
            raise self.fail(f"a whole number of days, 1–{MAX_DAYS}")
        self.i += 1
        if not (self.take("kw", "days") or self.take("kw", "day")):
            raise self.fail("'days'")
        return int(tok.value)

    def condition(self, name: str) -> Cond:
        tok = self.tok
        if tok.kind == "op":
            self.i += 1
            return Cond(name, tok.value, self.value())
        if self.take("kw", "in"):
            if self.take("kw", "last"):
                return Cond(name, "in_last_days", self.days())
            return Cond(name, "in", self.values())
        if self.take("kw", "not"):
            self.expect("kw", "in", "'in' after 'not'")
            return Cond(name, "not_in", self.values())
        if self.take("kw", "between"):
            lo = self.value()
            self.expect("kw", "and", "'and' between the two bounds")
            return Cond(name, "between", (lo, self.value()))
        if self.take("kw", "is"):
            negated = self.take("kw", "not") is not None
            self.expect("kw", "null", "'null'")
            return Cond(name, "is_not_null" if negated else "is_null")
        raise self.fail("an operator (= != > >= < <=, in, not in, between, is null, in last N days)")

    def behaviour(self) -> Behaviour:
        start = self.tok
        measure = FUNCTIONS[start.value]
        self.i += 2
        days = self.days()
        filters: list[tuple[str, tuple[str, ...]]] = []
        while self.take("punct", ","):
            column = self.expect("name", what="a transaction column (institution, merchant_category, scene)")
            if self.take("op", "="):
                value = self.value()
                filters.append((column.value, (value,)))
            elif self.take("kw", "in"):
                filters.append((column.value, self.values()))
            else:
                raise self.fail("'=' or 'in' after the column")
        self.expect("punct", ")", "',' or ')'")
        op = self.tok
        if op.kind != "op":
            raise self.fail("a comparison (= != > >= < <=) after txn_count(…) or txn_amount(…)")
        self.i += 1
        limit = self.tok
        if limit.kind != "num" or not isinstance(limit.value, int) or limit.value < 0:
            raise self.fail("a whole number, 0 or more")
        self.i += 1
        if any(not isinstance(v, str) for _, vs in filters for v in vs):
            raise self.fail("text values in quotes", start)
        rule = Behaviour(measure, days, op.value, int(limit.value), tuple(sorted(filters)))
        self.check(rule, start)
        return rule

    def entered(self) -> Entered:
        start = self.tok
        self.i += 2
        stage = self.expect("str", what="a stage code in quotes, e.g. 'super'")
        self.expect("punct", ",", "',' and a number of days")
        days = self.days()
        source = None
        if self.take("punct", ","):
            self.expect("kw", "from", "'from'")
            source = self.expect("str", what="a stage code in quotes").value
        self.expect("punct", ")", "')'")
        rule = Entered(stage.value, days, source)
        self.check(rule, start)
        return rule

    def check(self, rule: Rule, tok: Token, values: Sequence[Token] = ()) -> None:
        if self.catalog is None:
            return
        problem = check_node(rule, self.catalog)
        if problem is not None:
            en, zh, expected, found = problem
            tok = next((v for v in values if repr(v.value) == found), tok)
            raise RuleError(
                en, zh, where=f"line {tok.line}, column {tok.column}", expected=expected, found=found,
                line=tok.line, column=tok.column,
            )  # fmt: skip


def parse(text: str, catalog: Catalog | None = None) -> Rule:
    """The rule a text describes; with a ``catalog``, every name and value is checked too."""
    if not text.strip():
        raise RuleError("the rule is empty", "规则为空", where="line 1, column 1", expected="a condition", found="")
    rule = _Parser(text, catalog).parse()
    if catalog is not None:
        check_cycles(rule, catalog)
    return rule


def _lit(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = value.isoformat() if isinstance(value, date) else str(value)
    return "'" + text.replace("'", "''") + "'"


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def to_text(rule: Rule, parent: int = 0) -> str:
    """The readable form (``parse(to_text(r)) == r``). Precedence: or 1, and 2, not 3."""
    if isinstance(rule, Any_):
        text = " or ".join(to_text(i, 1) for i in rule.items)
        return f"({text})" if parent > 1 else text
    if isinstance(rule, All):
        text = " and ".join(to_text(i, 2) for i in rule.items)
        return f"({text})" if parent > 2 else text
    if isinstance(rule, Not):
        return f"not {to_text(rule.item, 3)}"
    if isinstance(rule, Cond):
        if rule.op in ("in", "not_in"):
            return (
                f"{rule.field} {'not in' if rule.op == 'not_in' else 'in'} ({', '.join(_lit(v) for v in rule.value)})"
            )
        if rule.op == "between":
            return f"{rule.field} between {_lit(rule.value[0])} and {_lit(rule.value[1])}"
        if rule.op == "is_null":
            return f"{rule.field} is null"
        if rule.op == "is_not_null":
            return f"{rule.field} is not null"
        if rule.op == "in_last_days":
            return f"{rule.field} in last {_days(rule.value)}"
        return f"{rule.field} {rule.op} {_lit(rule.value)}"
    if isinstance(rule, Behaviour):
        filters = "".join(
            f", {c} = {_lit(v[0])}" if len(v) == 1 else f", {c} in ({', '.join(_lit(x) for x in v)})"
            for c, v in rule.where
        )
        fn = "txn_count" if rule.measure == "count" else "txn_amount"
        return f"{fn}({_days(rule.days)}{filters}) {rule.op} {rule.value}"
    if isinstance(rule, Entered):
        source = f", from {_lit(rule.from_stage)}" if rule.from_stage is not None else ""
        return f"entered({_lit(rule.stage)}, {_days(rule.days)}{source})"
    return f"audience({_lit(rule.audience)})"


# --- checking against the catalog ---------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _as_day(v: Any) -> date | None:
    if isinstance(v, date) and not isinstance(v, datetime):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v)
        except ValueError:
            return None
    return None


def check_node(rule: Rule, catalog: Catalog) -> tuple[str, str, str, str] | None:
    """What is wrong with one node against the catalog, as (en, zh, expected, found); ``None`` if fine."""
    if isinstance(rule, Cond):
        ftype = catalog.fields.get(rule.field)
        if ftype is None:
            near = closest(rule.field, catalog.fields)
            return (
                f"unknown tag {rule.field!r}" + (f"; did you mean {near!r}?" if near else ""),
                f"未知标签 {rule.field!r}" + (f"，是否为 {near!r}？" if near else ""),
                "a tag name from the catalog",
                rule.field,
            )
        if rule.op in ("is_null", "is_not_null"):
            return None
        if rule.op == "in_last_days":
            if ftype not in ("timestamp", "date"):
                return (
                    f"'in last N days' needs a timestamp or date; {rule.field} is {ftype}",
                    f"“最近 N 天”只适用于时间或日期；{rule.field} 的类型为 {ftype}",
                    "a timestamp or date field",
                    ftype,
                )
            return None
        values = rule.value if rule.op in ("in", "not_in", "between") else (rule.value,)
        for v in values:
            ok = {
                "int": _is_number(v),
                "float": _is_number(v),
                "string": isinstance(v, str),
                "bool": isinstance(v, bool),
                "timestamp": _as_day(v) is not None,
                "date": _as_day(v) is not None,
            }[ftype]
            if not ok:
                want = {
                    "int": "a whole number",
                    "float": "a number",
                    "string": "text in quotes",
                    "bool": "true or false",
                    "timestamp": "a date 'YYYY-MM-DD'",
                    "date": "a date 'YYYY-MM-DD'",
                }[ftype]
                return (
                    f"{rule.field} is {ftype}: expected {want}, found {v!r}",
                    f"{rule.field} 的类型为 {ftype}：应为 {want}，实际为 {v!r}",
                    want,
                    repr(v),
                )
            allowed = catalog.enums.get(rule.field)
            if allowed and isinstance(v, str) and v not in allowed:
                return (
                    f"{v!r} is not a value of {rule.field}",
                    f"{v!r} 不是 {rule.field} 的取值",
                    ", ".join(allowed),
                    repr(v),
                )
        if ftype == "bool" and rule.op not in ("=", "!=", "in", "not_in"):
            return (
                f"{rule.field} is a yes/no tag: use = or !=",
                f"{rule.field} 为是否类标签：请用 = 或 !=",
                "= or !=",
                rule.op,
            )
        if rule.op == "between" and not _ordered(rule.value[0], rule.value[1]):
            return ("between needs the lower bound first", "between 的下限应在前", "low and high", repr(rule.value))
        return None
    if isinstance(rule, Behaviour):
        for column, values in rule.where:
            allowed = catalog.behaviour_columns.get(column)
            if allowed is None:
                return (
                    f"transactions cannot be filtered on {column!r}",
                    f"交易不能按 {column!r} 筛选",
                    ", ".join(catalog.behaviour_columns),
                    column,
                )
            wrong = [v for v in values if allowed and v not in allowed]
            if wrong:
                return (
                    f"{wrong[0]!r} is not a {column}",
                    f"{wrong[0]!r} 不是 {column} 的取值",
                    ", ".join(allowed),
                    wrong[0],
                )
        return None
    if isinstance(rule, Entered):
        for stage in (rule.stage, rule.from_stage):
            if stage is not None and catalog.stages and stage not in catalog.stages:
                return (f"unknown stage {stage!r}", f"未知生命周期阶段 {stage!r}", ", ".join(catalog.stages), stage)
        return None
    if isinstance(rule, Member) and catalog.audience is not None:
        try:
            catalog.audience(rule.audience)
        except KeyError:
            return (
                f"unknown audience {rule.audience!r}",
                f"未知客群 {rule.audience!r}",
                "an audience code",
                rule.audience,
            )
    return None


def _ordered(lo: Any, hi: Any) -> bool:
    if _is_number(lo) and _is_number(hi):
        return bool(lo <= hi)
    a, b = _as_day(lo), _as_day(hi)
    if a is not None and b is not None:
        return a <= b
    if isinstance(lo, str) and isinstance(hi, str):
        return lo <= hi
    return True


def check(rule: Rule, catalog: Catalog) -> None:
    """Every node of a (JSON-read) rule against the catalog, naming the JSON path of a mistake,
    and no cycle through other audiences."""
    _check_json(rule, catalog, "$")
    check_cycles(rule, catalog)


def _check_json(rule: Rule, catalog: Catalog, path: str) -> None:
    if isinstance(rule, All | Any_):
        key = "and" if isinstance(rule, All) else "or"
        for i, item in enumerate(rule.items):
            _check_json(item, catalog, f"{path}.{key}[{i}]")
        return
    if isinstance(rule, Not):
        _check_json(rule.item, catalog, f"{path}.not")
        return
    problem = check_node(rule, catalog)
    if problem is not None:
        en, zh, expected, found = problem
        raise RuleError(en, zh, where=path, expected=expected, found=found)


def check_cycles(rule: Rule, catalog: Catalog, own: str | None = None) -> None:
    """``RuleError`` if following audience references from ``rule`` (the definition of ``own``)
    comes back to an audience already on the way."""
    if catalog.audience is None:
        return
    lookup = catalog.audience

    def visit(r: Rule, trail: tuple[str, ...]) -> None:
        for name in sorted(audiences_named(r)):
            if name in trail:
                chain = " → ".join((*trail, name))
                raise RuleError(
                    f"audiences refer to each other in a cycle: {chain}",
                    f"客群之间循环引用：{chain}",
                    where=f"audience({name!r})",
                    expected="no cycle",
                    found=chain,
                )
            try:
                inner = lookup(name)
            except KeyError:
                continue  # reported by check_node
            if inner is not None:
                visit(inner, (*trail, name))

    visit(rule, (own,) if own else ())


def normalize_values(rule: Rule, catalog: Catalog) -> Rule:
    """Dates given as text on date and timestamp fields become ``date`` values (after checking)."""
    if isinstance(rule, All):
        return All(tuple(normalize_values(i, catalog) for i in rule.items))
    if isinstance(rule, Any_):
        return Any_(tuple(normalize_values(i, catalog) for i in rule.items))
    if isinstance(rule, Not):
        return Not(normalize_values(rule.item, catalog))
    if isinstance(rule, Cond) and catalog.fields.get(rule.field) in ("timestamp", "date"):
        if rule.op in ("in", "not_in", "between"):
            return Cond(rule.field, rule.op, tuple(_as_day(v) for v in rule.value))
        if rule.op in COMPARISONS:
            return Cond(rule.field, rule.op, _as_day(rule.value))
    return rule
