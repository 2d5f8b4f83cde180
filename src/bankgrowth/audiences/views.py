"""Audience routes: definitions and versions, live and saved counts, masked previews, snapshots,
diffs, overlaps, uploaded lists, exports and the core segments for the console; membership of one
customer (the in-memory evaluator) for channels. Each route calls one service."""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from bankgrowth.api.deps import SessionDep, SettingsDep, WarehouseDep, allow
from bankgrowth.audiences import flows, rules
from bankgrowth.audiences import service as audiences
from bankgrowth.audiences.models import Audience
from bankgrowth.audiences.schemas import (
    CODE,
    AudienceCreate,
    AudienceDetail,
    AudienceRead,
    ClusteringRead,
    ClusterRead,
    CountRead,
    Definition,
    DiffRead,
    ListUpload,
    LookalikeCreate,
    LookalikeRead,
    OverlapRead,
    SnapshotRead,
    VersionRead,
)
from bankgrowth.platform.access import Permission, Principal

router = APIRouter(prefix="/api/v1", tags=["audiences"])
channel_router = APIRouter(prefix="/channel/v1", tags=["channel"])

Reader = Annotated[Principal, allow("console", Permission.READ, scope="subtree")]
Writer = Annotated[Principal, allow("console", Permission.WRITE, scope="subtree")]
Definer = Annotated[Principal, allow("console", Permission.READ, scope="global")]
ChannelApp = Annotated[Principal, allow("channel", Permission.CHANNEL, scope="subtree")]
Code = Annotated[str, Path(pattern=CODE, description="Audience code, e.g. core.super_users.")]
SnapshotId = Annotated[int, Path(ge=1, le=2**62)]
CustomerId = Annotated[int, Path(ge=1, le=2**62, description="The bank's customer number.")]
AsOf = Annotated[date | None, Query(description="Tag version day; default the latest.")]


def _detail(session: SessionDep, audience: Audience, version: int | None = None) -> AudienceDetail:
    v = audiences.version_of(session, audience, version)
    return AudienceDetail(
        **AudienceRead.model_validate(audience).model_dump(), definition=VersionRead.model_validate(v)
    )


@router.get("/audiences", response_model=list[AudienceRead], summary="Audiences I can use (客群)")
def list_audiences(principal: Reader, session: SessionDep) -> list[AudienceRead]:
    return [AudienceRead.model_validate(a) for a in audiences.list_audiences(session, principal=principal)]


@router.post("/audiences", response_model=AudienceDetail, status_code=201, summary="Define an audience (新建客群)")
def create_audience(principal: Writer, body: AudienceCreate, session: SessionDep, con: WarehouseDep) -> AudienceDetail:
    with session.begin():
        audience = audiences.create(session, con, principal=principal, data=body)
        return _detail(session, audience)


@router.get("/audiences/rule-schema", summary="The JSON Schema of an audience rule")
def rule_schema(_: Definer) -> dict[str, Any]:
    return rules.JSON_SCHEMA


@router.get(
    "/audiences/count",
    response_model=CountRead,
    summary="Live count of a rule not saved yet (实时预估人数)",
    description="`rule` is the text form, e.g. stage = 'super' and txn_count_30d >= 3.",
)
def count_rule(
    principal: Reader,
    session: SessionDep,
    con: WarehouseDep,
    settings: SettingsDep,
    rule: Annotated[str, Query(min_length=1, max_length=20_000)],
    as_of: AsOf = None,
) -> CountRead:
    started = time.perf_counter()
    n, day = audiences.count_rule(
        session, con, principal=principal, data=Definition(text=rule), as_of=as_of, timezone=settings.timezone
    )
    return CountRead(code="", version=0, as_of=day, customers=n, milliseconds=(time.perf_counter() - started) * 1000)


@router.get("/audiences/overlap", response_model=OverlapRead, summary="Overlap of 2–5 audiences (重叠分析)")
def overlap(
    principal: Reader,
    session: SessionDep,
    con: WarehouseDep,
    settings: SettingsDep,
    codes: Annotated[list[Annotated[str, Query(pattern=CODE)]], Query(min_length=2, max_length=5)],
    as_of: AsOf = None,
) -> OverlapRead:
    counts, day = audiences.overlap(
        session, con, principal=principal, codes=codes, as_of=as_of, timezone=settings.timezone
    )
    return OverlapRead(codes=list(codes), as_of=day, counts=counts)


@router.post(
    "/audiences/core-segments",
    response_model=list[str],
    summary="Install the core segments at HQ (安装核心客群); returns the codes created",
)
def install_core_segments(principal: Writer, session: SessionDep, con: WarehouseDep) -> list[str]:
    with session.begin():
        return audiences.install_core_segments(session, con, principal=principal)


@router.get("/audiences/clusters", response_model=ClusteringRead, summary="k-means clusters of behaviour (聚类分群)")
def clusters(
    principal: Reader,
    session: SessionDep,
    con: WarehouseDep,
    settings: SettingsDep,
    k: Annotated[int, Query(ge=2, le=20)] = 6,
    audience: Annotated[str | None, Query(pattern=CODE, description="Only this audience's members.")] = None,
) -> ClusteringRead:
    result = audiences.clusters(session, con, principal=principal, k=k, code=audience, timezone=settings.timezone)
    return ClusteringRead(
        k=result.k,
        features=result.features,
        customers=result.customers,
        inertia=result.inertia,
        clusters=[ClusterRead(**vars(c)) for c in result.clusters],
    )


@router.get("/audiences/{code}", response_model=AudienceDetail, summary="One audience and its definition")
def get_audience(
    principal: Reader,
    code: Code,
    session: SessionDep,
    version: Annotated[int | None, Query(ge=1, le=2**31)] = None,
) -> AudienceDetail:
    return _detail(session, audiences.get_or_raise(session, principal=principal, code=code), version)


@router.post(
    "/audiences/{code}/versions", response_model=AudienceDetail, summary="A new version of the rule (earlier kept)"
)
def update_audience(
    principal: Writer, code: Code, body: Definition, session: SessionDep, con: WarehouseDep
) -> AudienceDetail:
    with session.begin():
        audience = audiences.update(session, con, principal=principal, code=code, data=body)
        return _detail(session, audience)


@router.get("/audiences/{code}/count", response_model=CountRead, summary="How many customers, in my scope")
def count(
    principal: Reader, code: Code, session: SessionDep, con: WarehouseDep, settings: SettingsDep, as_of: AsOf = None
) -> CountRead:
    c = audiences.count(session, con, principal=principal, code=code, as_of=as_of, timezone=settings.timezone)
    return CountRead(**vars(c))


@router.get("/audiences/{code}/preview", summary="A few members with their main tags, masked (预览)")
def preview(
    principal: Reader,
    code: Code,
    session: SessionDep,
    con: WarehouseDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    as_of: AsOf = None,
) -> list[dict[str, Any]]:
    return audiences.preview(
        session, con, principal=principal, code=code, limit=limit, as_of=as_of, timezone=settings.timezone
    )


@router.post(
    "/audiences/{code}/snapshots",
    response_model=SnapshotRead,
    status_code=201,
    summary="Materialize the members now (快照), with the definition version and tag day",
)
def snapshot(
    principal: Writer, code: Code, session: SessionDep, con: WarehouseDep, settings: SettingsDep, as_of: AsOf = None
) -> SnapshotRead:
    snap = flows.take_snapshot(session, con, principal=principal, code=code, as_of=as_of, timezone=settings.timezone)
    return SnapshotRead.model_validate(snap)


@router.post(
    "/audiences/{code}/lookalike",
    response_model=LookalikeRead,
    summary="Customers most like this audience (相似人群扩展), with the model's held-out quality",
)
def lookalike(
    principal: Writer, code: Code, body: LookalikeCreate, session: SessionDep, con: WarehouseDep, settings: SettingsDep
) -> LookalikeRead:
    with session.begin():
        found = audiences.lookalike(
            session,
            con,
            principal=principal,
            code=code,
            target=body.target,
            save_as=body.save_as,
            timezone=settings.timezone,
        )
    return LookalikeRead(
        seed=found.seed,
        population=found.population,
        target=found.target,
        holdout_recall=found.holdout_recall,
        holdout_auc=found.holdout_auc,
        lift=found.lift,
        top_features=found.top_features,
        sample=found.customers[:100],
        saved_as=body.save_as,
    )


@router.get("/audiences/{code}/snapshots", response_model=list[SnapshotRead], summary="Snapshots of an audience")
def list_snapshots(principal: Reader, code: Code, session: SessionDep) -> list[SnapshotRead]:
    return [SnapshotRead.model_validate(s) for s in audiences.list_snapshots(session, principal=principal, code=code)]


@router.get(
    "/audience-snapshots/{snapshot_id}/diff",
    response_model=DiffRead,
    summary="Who joined and who left since an earlier snapshot",
)
def diff(
    principal: Reader,
    snapshot_id: SnapshotId,
    session: SessionDep,
    con: WarehouseDep,
    before: Annotated[int, Query(ge=1, le=2**62, description="The earlier snapshot.")],
) -> DiffRead:
    d = audiences.diff(session, con, principal=principal, before=before, after=snapshot_id)
    return DiffRead(**vars(d))


@router.get(
    "/audience-snapshots/{snapshot_id}/export",
    summary="Download a snapshot's members as CSV or Parquet (audited)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}},
)
def export(
    principal: Reader,
    snapshot_id: SnapshotId,
    session: SessionDep,
    con: WarehouseDep,
    settings: SettingsDep,
    format: Literal["csv", "parquet"] = "csv",
    columns: Annotated[list[Annotated[str, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] | None, Query()] = None,
    pseudonymize: bool = False,
) -> Response:
    with tempfile.TemporaryDirectory() as tmp, session.begin():
        path = FilePath(tmp) / f"audience-snapshot-{snapshot_id}.{format}"
        audiences.export(
            session,
            con,
            principal=principal,
            snapshot_id=snapshot_id,
            path=path,
            columns=columns or (),
            pseudonymize_with=settings.secret_key.get_secret_value() if pseudonymize else None,
        )
        content = path.read_bytes()
    media = "text/csv" if format == "csv" else "application/vnd.apache.parquet"
    return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{path.name}"'})


@router.post(
    "/audience-lists",
    status_code=201,
    summary="Upload customer ids as a list audience (上传名单); ids that are not customers are reported",
    description=(
        "`unknown`: customer numbers that are not customers in your scope; `malformed`: ids that are not "
        "customer numbers (1 to 18 digits), each with its position in `customer_ids`, from 1. Both lists "
        "hold the first 1,000; `unknown_count` and `malformed_count` say how many there were. The rest "
        "of the list is kept."
    ),
)
def upload(principal: Writer, body: ListUpload, session: SessionDep, con: WarehouseDep) -> dict[str, Any]:
    with session.begin():
        up = audiences.upload(session, con, principal=principal, data=body)
        return {
            "audience": _detail(session, up.audience).model_dump(mode="json"),
            "accepted": up.accepted,
            "duplicates": up.duplicates,
            "unknown": up.unknown[:1000],
            "unknown_count": len(up.unknown),
            "malformed": [{"position": i, "value": v} for i, v in up.malformed[:1000]],
            "malformed_count": len(up.malformed),
        }


@channel_router.get(
    "/customers/{customer_id}/audiences/{code}",
    summary="Is this customer in the audience now? (one customer, evaluated in memory)",
)
def channel_membership(
    principal: ChannelApp,
    customer_id: CustomerId,
    code: Code,
    session: SessionDep,
    con: WarehouseDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    m = audiences.is_member(
        session, con, principal=principal, code=code, customer_id=customer_id, timezone=settings.timezone
    )
    return {"code": m.code, "customer_id": m.customer_id, "member": m.member, "as_of": m.as_of.isoformat()}
