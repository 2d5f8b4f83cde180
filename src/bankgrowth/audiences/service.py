"""Audiences (客群圈选): versioned definitions, counts, masked previews, snapshots, diffs, overlaps,
exports and uploaded id lists, scoped to the caller's branch.

A definition is owned by an org and, like a catalog, flows down the tree: a branch can use HQ's
audiences, always counted over its own customers only. It can change only its subtree's. Every
change writes a new version; a snapshot records the version and the tag as-of day it used.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from bankgrowth.audiences import discover, rules
from bankgrowth.audiences import store as members_store
from bankgrowth.audiences.evaluate import Moment, Profile, Sources, day_start, matches, predicate
from bankgrowth.audiences.models import Audience, AudienceSnapshot, AudienceVersion
from bankgrowth.audiences.rules import Catalog, Member, Rule
from bankgrowth.audiences.schemas import AudienceCreate, Definition, ListUpload
from bankgrowth.audiences.segments import CORE_SEGMENTS
from bankgrowth.errors import Conflict, Invalid, NotFound
from bankgrowth.insight import store as tag_store
from bankgrowth.insight.lifecycle import STAGE_CODES
from bankgrowth.insight.service import scoped
from bankgrowth.insight.value import SEGMENTS, VALUE_TIERS
from bankgrowth.operational import installation
from bankgrowth.operational.base import utcnow
from bankgrowth.platform import audit
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.platform.privacy import mask_row, write_extract
from bankgrowth.platform.service import in_scope_org
from bankgrowth.warehouse import schema as wh

if TYPE_CHECKING:
    import ibis.expr.types as ir
    from ibis.backends import BaseBackend

ENUMS: dict[str, Sequence[str]] = {
    "stage": STAGE_CODES,
    "value_tier": VALUE_TIERS,
    "rfm_segment": (*(name for name, _ in SEGMENTS), "none"),
    "preferred_institution": wh.INSTITUTIONS,
    "favourite_category": wh.MERCHANT_CATEGORIES,
    "gender": ("F", "M", "U"),
    "auth_level": wh.AUTH_LEVELS,
}
BEHAVIOUR_COLUMNS: dict[str, Sequence[str]] = {
    "institution": wh.INSTITUTIONS,
    "merchant_category": wh.MERCHANT_CATEGORIES,
    "scene": wh.SCENES,
}
PREVIEW_COLUMNS = (
    "customer_id",
    "branch_id",
    "stage",
    "value_tier",
    "age_band",
    "txn_count_30d",
    "txn_amount_30d",
    "preferred_institution",
)


def _field_type(dtype: Any) -> rules.FieldType:
    if dtype.is_boolean():
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_floating() or dtype.is_decimal():
        return "float"
    if dtype.is_timestamp():
        return "timestamp"
    if dtype.is_date():
        return "date"
    return "string"


def field_types(t: ir.Table) -> dict[str, rules.FieldType]:
    """The rule language's type of every column of a tag table (customer_id aside)."""
    return {name: _field_type(dtype) for name, dtype in t.schema().items() if name != "customer_id"}


# --- definitions --------------------------------------------------------------------------------


def _visible(session: Session, principal: Principal, code: str) -> Audience:
    audience = session.scalar(select(Audience).where(Audience.code == code))
    if audience is None or not audience.active or not principal.scope.shares(audience.org_id):
        raise NotFound(f"no audience {code}", f"没有客群 {code}", code="audience_not_found")
    return audience


def get_or_raise(session: Session, *, principal: Principal, code: str) -> Audience:
    principal.require(Permission.READ)
    return _visible(session, principal, code)


def list_audiences(session: Session, *, principal: Principal) -> list[Audience]:
    principal.require(Permission.READ)
    found = session.scalars(select(Audience).where(Audience.active).order_by(Audience.code))
    return [a for a in found if principal.scope.shares(a.org_id)]


def version_of(session: Session, audience: Audience, version: int | None = None) -> AudienceVersion:
    wanted = audience.version if version is None else version
    found = session.scalar(
        select(AudienceVersion).where(AudienceVersion.audience_id == audience.id, AudienceVersion.version == wanted)
    )
    if found is None:
        raise NotFound(
            f"audience {audience.code} has no version {wanted}",
            f"客群 {audience.code} 没有版本 {wanted}",
            code="version_not_found",
        )
    return found


def rule_of(session: Session, audience: Audience, version: int | None = None) -> Rule:
    """The definition as a rule; an uploaded list is ``audience(its code)``, resolved to its ids."""
    v = version_of(session, audience, version)
    if v.rule is None:
        return Member(audience.code)
    return rules.from_json(v.rule)


def catalog(session: Session, con: BaseBackend, *, principal: Principal, table: ir.Table | None = None) -> Catalog:
    """What a rule may name for this caller: the tag table's columns with their types, enumerated
    values, transaction columns, stages, and the audiences the caller can see."""
    t = table if table is not None else tag_store.tags_table(con)
    fields = field_types(t)

    def lookup(code: str) -> Rule | None:
        audience = session.scalar(select(Audience).where(Audience.code == code))
        if audience is None or not audience.active or not principal.scope.shares(audience.org_id):
            raise KeyError(code)
        v = version_of(session, audience)
        return None if v.rule is None else rules.from_json(v.rule)

    return Catalog(
        fields=fields,
        enums={k: v for k, v in ENUMS.items() if k in fields},
        behaviour_columns=BEHAVIOUR_COLUMNS,
        stages=STAGE_CODES,
        audience=lookup,
    )


def read_definition(
    session: Session, con: BaseBackend, *, principal: Principal, data: Definition, own: str | None = None
) -> Rule:
    """The definition checked against the catalog (names, types, values, no cycle), dates normalized."""
    cat = catalog(session, con, principal=principal)
    if data.text is not None:
        rule = rules.parse(data.text, cat)
    else:
        rule = rules.from_json(data.rule)
        rules.check(rule, cat)
    rules.check_cycles(rule, cat, own=own)
    return rules.normalize_values(rule, cat)


def _new_version(session: Session, audience: Audience, actor: str, rule: Rule | None, **extra: Any) -> AudienceVersion:
    v = AudienceVersion(
        audience_id=audience.id,
        version=audience.version,
        rule=None if rule is None else rules.to_json(rule),
        text=None if rule is None else rules.to_text(rule),
        created_by=actor,
        **extra,
    )
    session.add(v)
    session.flush()
    return v


def _add_audience(
    session: Session, data: AudienceCreate | ListUpload, *, org_id: str, kind: str, actor: str
) -> Audience:
    audience = Audience(
        code=data.code,
        name_zh=data.name_zh,
        name_en=data.name_en,
        description=data.description,
        org_id=org_id,
        kind=kind,
        version=1,
        created_by=actor,
    )
    session.add(audience)
    session.flush()
    return audience


def _claim_code(session: Session, code: str) -> None:
    if session.scalar(select(Audience.id).where(Audience.code == code)) is not None:
        raise Conflict(f"audience {code} exists", f"客群 {code} 已存在", code="audience_exists")


def create(session: Session, con: BaseBackend, *, principal: Principal, data: AudienceCreate) -> Audience:
    principal.require(Permission.WRITE)
    org = in_scope_org(session, principal, data.org_id or principal.scope.org_id)
    _claim_code(session, data.code)
    rule = read_definition(session, con, principal=principal, data=data, own=data.code)
    audience = _add_audience(session, data, org_id=org.id, kind="rule", actor=principal.actor)
    v = _new_version(session, audience, principal.actor, rule)
    audit.record(
        session,
        principal=principal,
        action="audiences.create",
        object_type="audience",
        object_id=audience.code,
        org_id=org.id,
        after={"version": 1, "text": v.text},
    )
    return audience


def update(session: Session, con: BaseBackend, *, principal: Principal, code: str, data: Definition) -> Audience:
    """A new version of a rule audience's definition; earlier versions (and their snapshots) stay."""
    principal.require(Permission.WRITE)
    audience = _visible(session, principal, code)
    if not principal.scope.allows(audience.org_id):
        raise NotFound(f"no audience {code}", f"没有客群 {code}", code="audience_not_found")
    if audience.kind != "rule":
        raise Invalid(
            f"audience {code} is an uploaded list: upload a new list instead",
            f"客群 {code} 为上传名单，请重新上传",
            code="not_a_rule",
        )
    before = version_of(session, audience)
    rule = read_definition(session, con, principal=principal, data=data, own=code)
    audience.version += 1
    audience.updated_at = utcnow()
    v = _new_version(session, audience, principal.actor, rule)
    audit.record(
        session,
        principal=principal,
        action="audiences.update",
        object_type="audience",
        object_id=code,
        org_id=audience.org_id,
        before={"version": before.version, "text": before.text},
        after={"version": v.version, "text": v.text},
    )
    return audience


@dataclass(frozen=True)
class Upload:
    audience: Audience
    accepted: int
    duplicates: int
    unknown: list[str]  # customer numbers that are not customers, or customers outside the caller's scope
    # (position among the uploaded ids, from 1; the id) of each id that is not a customer number
    malformed: list[tuple[int, str]] = field(default_factory=list)


def upload(session: Session, con: BaseBackend, *, principal: Principal, data: ListUpload) -> Upload:
    """Create a list audience, or a new version of one, from customer numbers. Ids that are not
    customer numbers (``malformed``, with their position) and numbers that are not customers in
    the caller's scope (``unknown``) are reported, never silently dropped; the rest are kept."""
    principal.require(Permission.WRITE)
    audience = session.scalar(select(Audience).where(Audience.code == data.code))
    if audience is not None:
        if not principal.scope.allows(audience.org_id) or not audience.active:
            raise NotFound(f"no audience {data.code}", f"没有客群 {data.code}", code="audience_not_found")
        if audience.kind != "list":
            raise Invalid(
                f"audience {data.code} is a rule, not a list", f"客群 {data.code} 为规则客群", code="not_a_list"
            )
    org = in_scope_org(session, principal, audience.org_id if audience else data.org_id or principal.scope.org_id)
    raw = [c.strip() for c in data.customer_ids]
    malformed = [(i, c) for i, c in enumerate(raw, 1) if not _customer_number(c)]
    numbers = [int(c) for c in raw if _customer_number(c)]
    wanted = sorted(set(numbers))
    customers = con.table("customers")
    ids = ibis.memtable(pa.table({"customer_id": pa.array(wanted, pa.int64())}))
    known = customers.semi_join(ids, "customer_id")
    if not principal.scope.is_root:
        known = known.filter(known.branch_id.isin(sorted(principal.scope.org_ids or ())))
    found = set(known.customer_id.to_pyarrow().to_pylist())
    unknown = [c for c in dict.fromkeys(raw) if _customer_number(c) and int(c) not in found]
    if not found:
        raise Invalid(
            f"none of the {len(raw)} ids is a customer in your scope"
            + (f" ({len(malformed)} of them not customer numbers)" if malformed else ""),
            f"{len(raw)} 个编号中没有本机构范围内的客户",
            code="no_known_customers",
            details={"unknown": unknown[:100], "malformed": [{"position": i, "value": c} for i, c in malformed[:100]]},
        )
    if audience is None:
        audience = _add_audience(session, data, org_id=org.id, kind="list", actor=principal.actor)
    else:
        audience.version += 1
        audience.updated_at = utcnow()
    kept = sorted(found)
    rejected = unknown + [c for _, c in malformed]  # kept with the version: every id not taken
    _new_version(session, audience, principal.actor, None, list_size=len(kept), unknown_ids=rejected[:10_000])
    members_store.pair(con, installation.key(session))
    members_store.write_list(con, audience.id, audience.version, kept)
    audit.record(
        session,
        principal=principal,
        action="audiences.upload",
        object_type="audience",
        object_id=audience.code,
        org_id=audience.org_id,
        after={
            "version": audience.version,
            "accepted": len(kept),
            "unknown": len(unknown),
            "malformed": len(malformed),
        },
    )
    return Upload(audience, len(kept), len(numbers) - len(set(numbers)), unknown, malformed)


def _customer_number(text: str) -> bool:
    """A customer number as the warehouse holds one: 1 to 18 ASCII digits (a BIGINT)."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


# --- evaluation ---------------------------------------------------------------------------------


def _no_version() -> NotFound:
    return NotFound("no tag version yet: run bankgrowth insight run", "尚无标签版本：请先运行 insight run")


def sources(session: Session, con: BaseBackend, *, principal: Principal, as_of: date | None, timezone: str) -> Sources:
    """The tables a rule reads on ``as_of`` (default: the latest tag version), in the caller's scope."""
    latest = tag_store.latest(con)
    version = latest if as_of is None else as_of
    if version is None:
        raise _no_version()
    base = members_store.profile(con, version) if version == latest else tag_store.tags_table(con, version)
    t = scoped(base, principal.scope)
    tables = set(con.list_tables())

    def other(code: str) -> Rule | ir.Table:
        audience = _visible(session, principal, code)
        v = version_of(session, audience)
        if v.rule is None:
            return members_store.list_members(con, audience.id, v.version)
        return rules.from_json(v.rule)

    return Sources(
        table=t,
        as_of=version,
        timezone=timezone,
        transactions=con.table("transactions"),
        transitions=con.table(tag_store.TRANSITIONS) if tag_store.TRANSITIONS in tables else None,
        audience=other,
    )


def members(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    audience: Audience,
    as_of: date | None = None,
    version: int | None = None,
    timezone: str = "Asia/Shanghai",
) -> tuple[ir.Table, Sources]:
    """The audience's rows of the tag table (every tag column) on ``as_of``, in the caller's scope."""
    src = sources(session, con, principal=principal, as_of=as_of, timezone=timezone)
    rule = rule_of(session, audience, version)
    return src.table.filter(predicate(rule, src)), src


@dataclass(frozen=True)
class Count:
    code: str
    version: int
    as_of: date
    customers: int
    milliseconds: float


def count(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    code: str,
    as_of: date | None = None,
    timezone: str = "Asia/Shanghai",
) -> Count:
    started = time.perf_counter()
    audience = get_or_raise(session, principal=principal, code=code)
    n, day = _count(session, con, principal=principal, rule=rule_of(session, audience), as_of=as_of, timezone=timezone)
    return Count(code, audience.version, day, n, (time.perf_counter() - started) * 1000)


_COMPILED: OrderedDict[str, tuple[str, date, bool]] = OrderedDict()  # (SQL, day, reads the profile), LRU
_COMPILED_MAX = 1024
_COMPILED_LOCK = threading.Lock()  # the API counts on threads: one change to the cache at a time


def _dependencies(session: Session, principal: Principal, rule: Rule, seen: frozenset[str] = frozenset()) -> list[Any]:
    """The (code, version) of every audience the rule reaches: a compiled count is valid while they stay."""
    out: list[Any] = []
    for code in sorted(rules.audiences_named(rule) - seen):
        audience = _visible(session, principal, code)
        out.append((code, audience.version))
        v = version_of(session, audience)
        if v.rule is not None:
            out.extend(_dependencies(session, principal, rules.from_json(v.rule), seen | {code}))
    return out


def _count(
    session: Session, con: BaseBackend, *, principal: Principal, rule: Rule, as_of: date | None, timezone: str
) -> tuple[int, date]:
    """Count a rule's members. On DuckDB the compiled SQL is kept (keyed by the rule, the audiences
    it reaches and their versions, the requested day, the scope and the timezone); a repeated count
    is then one round trip that scans the profile table and checks, in the same query, that the
    profile is still built from the latest tag version — if not, it is rebuilt and compiled again."""
    if con.name != "duckdb":
        src = sources(session, con, principal=principal, as_of=as_of, timezone=timezone)
        return int(src.table.filter(predicate(rule, src)).count().execute()), src.as_of
    scope = None if principal.scope.org_ids is None else sorted(principal.scope.org_ids)
    key = json.dumps(
        [rules.to_json(rule), _dependencies(session, principal, rule), str(as_of or "latest"), scope, timezone],
        default=str,
    )
    cached = _COMPILED.get(key)
    if cached is not None:
        sql, compiled_day, _ = cached
        answer = members_store.count_with_state(con, sql)
        if answer is not None:
            n, state = answer
            if state.latest == compiled_day and state.profile_fresh:
                with _COMPILED_LOCK:
                    if key in _COMPILED:
                        _COMPILED.move_to_end(key)
                return n, compiled_day
        with _COMPILED_LOCK:  # a new tag version or changed sources: compile against the new profile
            _COMPILED.pop(key, None)
    fast = members_store.state(con)
    latest = fast.latest if fast is not None else tag_store.latest(con)
    day = latest if as_of is None else as_of
    if day is None:
        raise _no_version()
    if day == latest and not (fast is not None and fast.profile_fresh):
        members_store.profile(con, day)  # rebuilt for this tag version, or when its sources changed
    src = sources(session, con, principal=principal, as_of=day, timezone=timezone)
    sql = str(ibis.to_sql(src.table.filter(predicate(rule, src)).count(), dialect="duckdb"))
    if day == latest:  # an older day's SQL embeds that version's cut points: compiled each time
        with _COMPILED_LOCK:
            _COMPILED[key] = (sql, day, True)
            while len(_COMPILED) > _COMPILED_MAX:
                _COMPILED.popitem(last=False)
    return int(con.con.execute(sql).fetchone()[0]), day  # type: ignore[attr-defined]


def count_rule(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    data: Definition,
    as_of: date | None = None,
    timezone: str = "Asia/Shanghai",
) -> tuple[int, date]:
    """How many customers a definition not yet saved would select (the console's live count)."""
    principal.require(Permission.READ)
    rule = read_definition(session, con, principal=principal, data=data)
    return _count(session, con, principal=principal, rule=rule, as_of=as_of, timezone=timezone)


def preview(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    code: str,
    limit: int = 20,
    as_of: date | None = None,
    timezone: str = "Asia/Shanghai",
) -> list[dict[str, Any]]:
    """A few members with their main tags; name and phone masked."""
    audience = get_or_raise(session, principal=principal, code=code)
    t, _ = members(session, con, principal=principal, audience=audience, as_of=as_of, timezone=timezone)
    cols = [c for c in PREVIEW_COLUMNS if c in t.columns]
    people = con.table("customers").select("customer_id", "name", "phone")
    chosen = t.select(*cols).order_by("customer_id").limit(limit)
    shown = [c for c in cols if c != "customer_id"]
    rows = chosen.join(people, "customer_id").select("customer_id", "name", "phone", *shown)
    return [mask_row(r) for r in rows.order_by("customer_id").to_pyarrow().to_pylist()]


# --- snapshots, diffs, overlaps, exports --------------------------------------------------------


def snapshot(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    code: str,
    as_of: date | None = None,
    timezone: str = "Asia/Shanghai",
) -> AudienceSnapshot:
    """Materialize the members now, with the definition version and tag day used. The members are
    written in one warehouse statement under the snapshot's id; the caller commits the operational
    row, and on failure calls :func:`discard` so no orphan members stay behind."""
    principal.require(Permission.WRITE)
    audience = _visible(session, principal, code)
    t, src = members(session, con, principal=principal, audience=audience, as_of=as_of, timezone=timezone)
    snap = AudienceSnapshot(
        audience_id=audience.id,
        version=audience.version,
        as_of=src.as_of,
        org_id=principal.scope.org_id,
        members=0,
        created_by=principal.actor,
    )
    session.add(snap)
    session.flush()
    members_store.pair(con, installation.key(session))
    snap.members = members_store.write_snapshot(con, snap.id, t.select("customer_id"))
    audit.record(
        session,
        principal=principal,
        action="audiences.snapshot",
        object_type="audience_snapshot",
        object_id=snap.id,
        org_id=principal.scope.org_id,
        after={"audience": code, "version": snap.version, "as_of": snap.as_of, "members": snap.members},
    )
    return snap


def discard(con: BaseBackend, snapshot_id: int) -> None:
    members_store.drop_snapshot(con, snapshot_id)


def get_snapshot_or_raise(session: Session, *, principal: Principal, snapshot_id: int) -> AudienceSnapshot:
    principal.require(Permission.READ)
    snap = session.get(AudienceSnapshot, snapshot_id)
    if snap is None or not principal.scope.allows(snap.org_id):
        raise NotFound(f"no snapshot {snapshot_id}", f"没有客群快照 {snapshot_id}", code="snapshot_not_found")
    return snap


def list_snapshots(session: Session, *, principal: Principal, code: str) -> list[AudienceSnapshot]:
    audience = get_or_raise(session, principal=principal, code=code)
    found = session.scalars(
        select(AudienceSnapshot).where(AudienceSnapshot.audience_id == audience.id).order_by(AudienceSnapshot.id)
    )
    return [s for s in found if principal.scope.allows(s.org_id)]


@dataclass(frozen=True)
class Diff:
    before: int
    after: int
    only_before: int
    only_after: int
    both: int
    joined_sample: list[int]
    left_sample: list[int]


def diff(session: Session, con: BaseBackend, *, principal: Principal, before: int, after: int) -> Diff:
    """Who joined and who left between two snapshots (of the same audience or not)."""
    a = members_store.snapshot_members(con, get_snapshot_or_raise(session, principal=principal, snapshot_id=before).id)
    b = members_store.snapshot_members(con, get_snapshot_or_raise(session, principal=principal, snapshot_id=after).id)
    joined = b.anti_join(a, "customer_id")
    left = a.anti_join(b, "customer_id")
    n_a, n_b = int(a.count().execute()), int(b.count().execute())
    n_joined, n_left = int(joined.count().execute()), int(left.count().execute())
    return Diff(
        n_a,
        n_b,
        n_left,
        n_joined,
        n_a - n_left,
        joined.order_by("customer_id").limit(10).customer_id.to_pyarrow().to_pylist(),
        left.order_by("customer_id").limit(10).customer_id.to_pyarrow().to_pylist(),
    )


def overlap(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    codes: Sequence[str],
    as_of: date | None = None,
    timezone: str = "Asia/Shanghai",
) -> tuple[list[list[int]], date]:
    """Customers in both audience i and audience j, for 2–5 audiences on one tag day."""
    if not 2 <= len(codes) <= 5 or len(set(codes)) != len(codes):
        raise Invalid(
            f"overlap compares 2 to 5 different audiences; found {list(codes)}",
            "重叠分析需要 2 到 5 个不同客群",
            code="bad_overlap",
        )
    sets = []
    day: date | None = as_of
    for code in codes:
        audience = get_or_raise(session, principal=principal, code=code)
        t, src = members(session, con, principal=principal, audience=audience, as_of=day, timezone=timezone)
        day = src.as_of
        sets.append(set(t.customer_id.to_pyarrow().to_pylist()))
    assert day is not None
    return [[len(x & y) for y in sets] for x in sets], day


def export(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    snapshot_id: int,
    path: Path,
    columns: Sequence[str] = (),
    pseudonymize_with: str | None = None,
) -> int:
    """Write a snapshot's members (and chosen tag columns of its as-of day) to CSV or Parquet.
    Audited; with ``pseudonymize_with`` the customer id is replaced by a keyed pseudonym."""
    principal.require(Permission.READ)
    snap = get_snapshot_or_raise(session, principal=principal, snapshot_id=snapshot_id)
    t = members_store.snapshot_members(con, snap.id)
    if columns:
        tags = tag_store.tags_table(con, snap.as_of)
        unknown = [c for c in columns if c not in tags.columns]
        if unknown:
            raise Invalid(f"unknown tag columns {unknown}", f"未知标签列 {unknown}", code="unknown_columns")
        wanted = [c for c in dict.fromkeys(columns) if c != "customer_id"]
        extra = tags.select(*wanted, _cid="customer_id")
        t = t.left_join(extra, t.customer_id == extra._cid).select("customer_id", *wanted)
    if path.suffix not in (".csv", ".parquet"):
        raise Invalid(
            f"export to .csv or .parquet, not {path.suffix or 'no suffix'}",
            "仅支持导出 .csv 或 .parquet",
            code="bad_format",
        )
    rows = write_extract(t.order_by("customer_id").to_pyarrow(), path, pseudonymize_with=pseudonymize_with)
    audit.record(
        session,
        principal=principal,
        action="audiences.export",
        object_type="audience_snapshot",
        object_id=snap.id,
        org_id=snap.org_id,
        after={"rows": rows, "path": str(path), "pseudonymized": pseudonymize_with is not None},
    )
    return rows


def install_core_segments(session: Session, con: BaseBackend, *, principal: Principal) -> list[str]:
    """Create the core segments that do not exist yet, as HQ audiences; returns the codes created."""
    principal.require_hq(Permission.WRITE, "install the core segments", "安装核心客群")
    created = []
    for seg in CORE_SEGMENTS:
        if session.scalar(select(Audience.id).where(Audience.code == seg.code)) is None:
            create(
                session,
                con,
                principal=principal,
                data=AudienceCreate(
                    code=seg.code, name_zh=seg.zh, name_en=seg.en, description=seg.description_en, text=seg.rule
                ),
            )
            created.append(seg.code)
    audit.record(
        session,
        principal=principal,
        action="audiences.core_segments",
        object_type="core_segments",
        org_id=principal.scope.org_id,
        after={"created": created, "segments": len(CORE_SEGMENTS)},
    )
    return created


def profile_of(
    con: BaseBackend, customer_id: int, *, as_of: date | None = None, window_days: int = rules.MAX_DAYS
) -> Profile:
    """One customer as the in-memory evaluator reads it: the tag row, the transactions of the last
    ``window_days`` days and the lifecycle transitions."""
    day = tag_store.latest(con) if as_of is None else as_of
    if day is None:
        raise _no_version()
    t = tag_store.tags_table(con, day)
    found = t.filter(t.customer_id == customer_id).to_pyarrow().to_pylist()
    if not found:
        raise NotFound(f"no customer {customer_id}", f"没有客户 {customer_id}", details={"customer_id": customer_id})
    tx = con.table("transactions")
    since = day_start(day - timedelta(days=window_days), "UTC")
    txns = tx.filter(tx.customer_id == customer_id, tx.txn_at >= since).to_pyarrow().to_pylist()
    moves: list[dict[str, Any]] = []
    if tag_store.TRANSITIONS in con.list_tables():
        tr = con.table(tag_store.TRANSITIONS)
        moves = tr.filter(tr.customer_id == customer_id, tr.as_of <= day).to_pyarrow().to_pylist()
    return Profile(customer_id, found[0], txns, moves)


@dataclass(frozen=True)
class Membership:
    code: str
    customer_id: int
    member: bool
    as_of: date


def is_member(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    code: str,
    customer_id: int,
    timezone: str = "Asia/Shanghai",
) -> Membership:
    """Whether one customer (in the caller's scope) is in an audience now, by the in-memory
    evaluator — the path real-time triggers take."""
    if not principal.can(Permission.CHANNEL):
        principal.require(Permission.READ)
    audience = _visible(session, principal, code)
    profile = profile_of(con, customer_id)
    if not principal.scope.allows(str(profile.values.get("branch_id"))):
        raise NotFound(f"no customer {customer_id}", f"没有客户 {customer_id}", details={"customer_id": customer_id})
    day = tag_store.latest(con)
    assert day is not None

    def other(name: str) -> Rule | set[int]:
        inner = _visible(session, principal, name)
        v = version_of(session, inner)
        if v.rule is None:
            return set(members_store.list_members(con, inner.id, v.version).customer_id.to_pyarrow().to_pylist())
        return rules.from_json(v.rule)

    rule = rule_of(session, audience)
    return Membership(code, customer_id, matches(rule, profile, Moment(day, timezone, audience=other)), day)


# --- discovery: lookalike and clustering ----------------------------------------------------------


def lookalike(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    code: str,
    target: int,
    save_as: str | None = None,
    timezone: str = "Asia/Shanghai",
) -> discover.Lookalike:
    """The ``target`` customers in the caller's scope most like the seed audience ``code``, with the
    model's held-out quality. With ``save_as``, they are saved as a list audience of that code."""
    audience = get_or_raise(session, principal=principal, code=code)
    seed_table, src = members(session, con, principal=principal, audience=audience, timezone=timezone)
    seed = set(seed_table.customer_id.to_pyarrow().to_pylist())
    columns = discover.numeric_columns(src.table)
    principal.require(Permission.WRITE)
    try:
        found = discover.lookalike(discover.frame_of(src.table, columns), seed, target, columns=columns)
    except ValueError as exc:
        raise Invalid(str(exc), f"无法建模：{exc}", code="cannot_model") from exc
    audit.record(
        session,
        principal=principal,
        action="audiences.lookalike",
        object_type="audience",
        object_id=code,
        org_id=audience.org_id,
        after={
            "target": found.target,
            "seed": found.seed,
            "holdout_recall": found.holdout_recall,
            "holdout_auc": found.holdout_auc,
            "saved_as": save_as,
        },
    )
    if save_as is not None:
        upload(
            session,
            con,
            principal=principal,
            data=ListUpload(
                code=save_as,
                name_zh=f"{audience.name_zh}（相似扩展）",
                name_en=f"{audience.name_en} (lookalike)",
                description=f"lookalike of {code}: holdout recall {found.holdout_recall}, AUC {found.holdout_auc}",
                customer_ids=[str(c) for c in found.customers],
            ),
        )
    return found


def clusters(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    k: int = 6,
    code: str | None = None,
    timezone: str = "Asia/Shanghai",
) -> discover.Clustering:
    """k-means over the behaviour tags of the caller's customers (or of one audience's members)."""
    principal.require(Permission.READ)
    if code is not None:
        t, _ = members(
            session,
            con,
            principal=principal,
            audience=get_or_raise(session, principal=principal, code=code),
            timezone=timezone,
        )
    else:
        t = sources(session, con, principal=principal, as_of=None, timezone=timezone).table
    columns = discover.behaviour_columns(t)
    frame = discover.frame_of(t, columns)
    if len(frame) < k:
        raise Invalid(
            f"{len(frame)} customers cannot form {k} clusters",
            f"{len(frame)} 个客户无法分成 {k} 类",
            code="cannot_model",
        )
    try:
        return discover.cluster(frame, k=k, columns=columns)
    except ValueError as exc:
        raise Invalid(str(exc), f"无法建模：{exc}", code="cannot_model") from exc
