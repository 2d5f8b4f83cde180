"""Insight routes for the console (lifecycle, grid, tags, customer view) and for channels."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import date
from email.message import Message
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as InPath
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from bankgrowth.api.deps import SessionDep, SettingsDep, WarehouseDep, allow, request_warehouse
from bankgrowth.config import Settings
from bankgrowth.errors import Invalid, NotFound, TooLarge, UnsupportedMediaType
from bankgrowth.insight import flows, imported, service
from bankgrowth.insight.schemas import (
    BinRead,
    ChannelProfile,
    CustomerViewRead,
    ImportedTagRead,
    InsightRunRead,
    InsightStatusRead,
    LineProblem,
    MatrixRead,
    StageCountRead,
    TagCoverageRead,
    TagImported,
    TagRead,
    TagStatsRead,
    TrendRead,
)
from bankgrowth.insight.tags import Category, Tag
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.warehouse.ingest import IngestFileError, LoadReport

router = APIRouter(prefix="/api/v1", tags=["insight"])
channel_router = APIRouter(prefix="/channel/v1", tags=["channel"])

Reader = Annotated[Principal, allow("console", Permission.READ, scope="subtree")]
Revealer = Annotated[Principal, allow("console", Permission.REVEAL, scope="subtree")]
TagReader = Annotated[Principal, allow("console", Permission.READ, scope="global")]
TagManager = Annotated[Principal, allow("console", Permission.MANAGE, scope="global")]
ImportedName = Annotated[
    str, InPath(pattern=r"^[a-z][a-z0-9_]{1,47}$", description="The imported tag's name: a-z, 0-9 and _.")
]
UPLOADS = {"text/csv": ".csv", "application/vnd.apache.parquet": ".parquet"}  # media type → file suffix
MAX_UPLOAD = 256 << 20  # bytes of one uploaded tag file
ChannelApp = Annotated[Principal, allow("channel", Permission.CHANNEL, scope="subtree")]
CustomerId = Annotated[int, InPath(ge=1, le=2**62, description="The bank's customer number.")]
AsOf = Annotated[date | None, Query(description="As-of day of a stored version; default the latest.")]
AnyDay = Annotated[
    date | None, Query(description="As-of day of a stored version, or with compute=true any day; default the latest.")
]
Compute = Annotated[
    bool,
    Query(
        description=(
            "For a day that was never run, compute its stages from the data as of that day with the current "
            "thresholds, storing nothing (a run of a day before the latest version would replace every later one). "
            "Takes seconds on a large bank. The days computed are named in the X-Computed-Days header."
        )
    ),
]
T = TypeVar("T")
COMPUTED = "X-Computed-Days"
COMPUTED_HEADER: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            COMPUTED: {
                "description": "Comma-separated days whose stages were computed from the data, not read from "
                "a stored version (only with compute=true).",
                "schema": {"type": "string"},
            }
        }
    }
}


def _matrix(m: service.Matrix) -> MatrixRead:
    counts = [[m.counts.get((r, c), 0) for c in m.columns] for r in m.rows]
    return MatrixRead(rows=list(m.rows), columns=list(m.columns), counts=counts, total=m.total())


def _tag(tag: Tag) -> dict[str, Any]:
    return {
        "name": tag.name,
        "zh": tag.zh,
        "en": tag.en,
        "description": tag.description,
        "category": tag.category,
        "kind": tag.kind,
        "type": tag.dtype,
        "unit": tag.unit,
        "refresh": tag.refresh,
    }


def _stored_or_computed(
    response: Response,
    settings: Settings | None,
    read: Callable[[Settings | None], T],
    computed: Callable[[], list[date]],
    *,
    offer: bool,
) -> T:
    """``read(settings)``: with settings (``compute=true``) a day never run is computed, and the
    days computed are named in the header; without, a missing day is a 404 that says ``compute=true``
    shows it (when ``offer``: a day was named)."""
    try:
        result = read(settings)
    except LookupError as e:
        if settings is not None or not offer or isinstance(e, NotFound):
            raise
        en = f"{e}; or add compute=true to this request"
        raise NotFound(en, f"未找到：{e}；加上 compute=true 可按数据计算该日阶段（不保存）") from e
    if settings is not None and (days := computed()):
        response.headers[COMPUTED] = ",".join(str(d) for d in days)
    return result


@router.get(
    "/insight/lifecycle",
    response_model=list[StageCountRead],
    summary="Customers by lifecycle stage",
    responses=COMPUTED_HEADER,
)
def lifecycle(
    principal: Reader,
    con: WarehouseDep,
    settings: SettingsDep,
    response: Response,
    as_of: AnyDay = None,
    compute: Compute = False,
) -> list[StageCountRead]:
    rows = _stored_or_computed(
        response,
        settings if compute else None,
        lambda given: service.lifecycle_distribution(con, as_of, scope=principal.scope, settings=given),
        lambda: service.computed_days(con, as_of),
        offer=as_of is not None,
    )
    return [StageCountRead(**vars(r)) for r in rows]


@router.get(
    "/insight/lifecycle/trend",
    response_model=TrendRead,
    summary="Customers by lifecycle stage, day by day (生命周期趋势)",
)
def lifecycle_trend(
    principal: Reader,
    con: WarehouseDep,
    end: Annotated[date | None, Query(description="Last day of the span; default the latest day run.")] = None,
    days: Annotated[int, Query(ge=1, le=3660, description="Length of the span in days.")] = 30,
) -> TrendRead:
    trend = service.lifecycle_trend(con, end=end, days=days, scope=principal.scope)
    stages = [StageCountRead(**vars(s)) for s in trend.last_day()]
    return TrendRead(days=trend.days, stages=stages, counts=trend.counts, gaps=trend.gaps)


@router.get(
    "/insight/transitions",
    response_model=MatrixRead,
    summary="Stage flow between two days (流转矩阵)",
    responses=COMPUTED_HEADER,
)
def transitions(
    principal: Reader,
    con: WarehouseDep,
    settings: SettingsDep,
    response: Response,
    start: Annotated[date, Query(description="The day of the rows' stages.")],
    end: Annotated[date, Query(description="The day of the columns' stages.")],
    compute: Compute = False,
) -> MatrixRead:
    matrix = _stored_or_computed(
        response,
        settings if compute else None,
        lambda given: service.transition_matrix(con, start, end, scope=principal.scope, settings=given),
        lambda: service.computed_days(con, end, start),
        offer=True,
    )
    return _matrix(matrix)


@router.get(
    "/insight/grid",
    response_model=MatrixRead,
    summary="The customer grid: stage × value tier (宫格)",
    responses=COMPUTED_HEADER,
)
def grid(
    principal: Reader,
    con: WarehouseDep,
    settings: SettingsDep,
    response: Response,
    as_of: AnyDay = None,
    compute: Compute = False,
) -> MatrixRead:
    matrix = _stored_or_computed(
        response,
        settings if compute else None,
        lambda given: service.grid(con, as_of, scope=principal.scope, settings=given),
        lambda: service.computed_days(con, as_of, counts=False),
        offer=as_of is not None,
    )
    return _matrix(matrix)


@router.get("/insight/runs", response_model=list[InsightRunRead], summary="The nightly runs, newest first (跑批记录)")
def runs(
    principal: Reader,
    con: WarehouseDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many runs.")] = 30,
) -> list[InsightRunRead]:
    return [InsightRunRead(**vars(r)) for r in service.run_history(con, limit=limit, scope=principal.scope)]


@router.get(
    "/insight/status",
    response_model=InsightStatusRead,
    summary="Where the nightly run stands: the latest version, whether it is current (跑批状态)",
)
def insight_status(principal: Reader, con: WarehouseDep, settings: SettingsDep) -> InsightStatusRead:
    s = service.insight_status(con, settings, scope=principal.scope)
    return InsightStatusRead(
        kept=s.kept,
        last_data_day=s.last_data_day,
        current=s.current,
        outdated=s.outdated,
        stale=s.stale,
        last_run=InsightRunRead(**vars(s.last_run)) if s.last_run else None,
    )


@router.get(
    "/insight/tags",
    response_model=list[TagCoverageRead],
    summary="Every tag with its coverage in my subtree (标签覆盖率)",
)
def tag_coverage(principal: Reader, con: WarehouseDep, as_of: AsOf = None) -> list[TagCoverageRead]:
    """The catalog of `bankgrowth tags list`: each tag's definition, the share of customers with a
    value and, for numeric tags, a summary — in one pass over the version. One tag's distribution
    (its most common values or a histogram) is `GET /api/v1/tags/{name}`."""
    return [
        TagCoverageRead(
            **_tag(stats.tag), rows=stats.rows, coverage=stats.coverage, nonzero=stats.nonzero, summary=stats.summary
        )
        for stats in service.catalog(con, as_of, scope=principal.scope)
    ]


@router.get("/tags", response_model=list[TagRead], summary="The tag catalog's definitions (标签目录)")
def list_tags(principal: TagReader, con: WarehouseDep) -> list[TagRead]:
    return [TagRead(**_tag(t)) for t in service.catalog_tags(con)]


@router.get(
    "/tags/imported",
    response_model=list[ImportedTagRead],
    summary="The imported tags: each one's definition and the file its values came from",
)
def list_imported_tags(principal: TagReader, con: WarehouseDep) -> list[ImportedTagRead]:
    return [
        ImportedTagRead(**_tag(i.tag), file=i.file, rows=i.rows, rejected=i.rejected, imported_at=i.imported_at)
        for i in imported.imported(con)
    ]


@router.put(
    "/tags/imported/{name}",
    response_model=TagImported,
    summary="Import the bank's own tag from a CSV or Parquet file (导入标签)",
    description=(
        "The body is what `bankgrowth tags import FILE` reads: a file with the columns `customer_id,value`, "
        "sent as `text/csv` (its charset, or `encoding`, says how it is encoded: utf-8, gb18030, …) or "
        "`application/vnd.apache.parquet`. It is validated like every load: a bad line is listed with its "
        "line, field, what was expected and what was found, and kept in the warehouse's quarantine; the good "
        "lines become the tag's values, replacing those of an earlier import in one step. When no line is "
        "good the tag keeps its values and the answer is 422 `nothing_loaded`, with the problems. HQ only: "
        f"a tag covers every branch. At most {MAX_UPLOAD >> 20} MiB; `bankgrowth tags import` takes any size."
    ),
    responses={
        413: {"description": "The body is larger than the API takes; import the file with the CLI."},
        415: {"description": "The body is neither text/csv nor application/vnd.apache.parquet."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}, "example": "customer_id,value\n1,A\n2,B\n"},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def import_tag(
    principal: TagManager,
    name: ImportedName,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    zh: Annotated[str, Query(min_length=1, max_length=100, description="Chinese label, e.g. 风险等级.")],
    en: Annotated[str, Query(min_length=1, max_length=100, description="English label, e.g. KYC grade.")],
    dtype: Annotated[Literal["string", "int", "bool", "date"], Query(alias="type", description="Value type.")] = (
        "string"
    ),
    category: Annotated[Category, Query(description="Where the tag is listed in the catalog.")] = "finance",
    description: Annotated[str, Query(max_length=400, description="What the tag means.")] = "",
    encoding: Annotated[
        str | None, Query(max_length=40, description="Text encoding of a CSV body; default its charset, or utf-8.")
    ] = None,
    filename: Annotated[
        str | None,
        Query(max_length=200, description="The file's name, kept with the tag and in the load log; default NAME.csv."),
    ] = None,
) -> TagImported:
    flows.check_tag_import(principal)  # before the body is received
    header = request.headers.get("content-type", "")
    declared = Message()
    declared["content-type"] = header
    media = declared.get_content_type() if header else ""
    suffix = UPLOADS.get(media)
    if suffix is None:
        raise UnsupportedMediaType(
            f"send the file as {' or '.join(UPLOADS)}; found {media or 'no Content-Type'}",
            f"请以 {' 或 '.join(UPLOADS)} 发送文件；收到的是 {media or '无 Content-Type'}",
        )
    charset = declared.get_content_charset()
    source = Path(filename).name if filename else f"{name}{suffix}"
    with tempfile.TemporaryDirectory(prefix="bankgrowth-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        await _receive(request, path)
        report, tag = await run_in_threadpool(
            _import_file,
            session,
            settings,
            principal,
            path,
            source=source,
            name=name,
            zh=zh,
            en=en,
            dtype=dtype,
            category=category,
            description=description,
            encoding=encoding or charset or "utf-8",
        )
    problems = [LineProblem(line=p.line, field=p.field, expected=p.expected, found=p.found) for p in report.problems]
    if tag is None:  # nothing was loaded: the import is audited as rejected, the tag is as it was
        raise Invalid(
            f"no line of {source} was loaded; tag {name} keeps its previous values",
            f"{source} 没有一行可以导入；标签 {name} 保持原值",
            code="nothing_loaded",
            details={
                "read": report.read,
                "problems": [p.model_dump() for p in problems],
                "problem_count": report.problem_count,
            },
        )
    return TagImported(
        tag=TagRead(**_tag(tag)),
        file=report.file,
        load_id=report.load_id,
        read=report.read,
        loaded=report.loaded,
        quarantined=report.quarantined,
        duplicates=report.duplicates,
        problems=problems,
        problem_count=report.problem_count,
        warnings=report.warnings,
    )


async def _receive(request: Request, path: Path) -> None:
    """Write the request's body to ``path`` as it arrives, refusing one over :data:`MAX_UPLOAD`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD:
        raise _too_large()
    size = 0
    with path.open("wb") as fh:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise _too_large()
            fh.write(chunk)


def _too_large() -> TooLarge:
    mib = MAX_UPLOAD >> 20
    return TooLarge(
        f"the file is larger than {mib} MiB; import it with `bankgrowth tags import`",
        f"文件超过 {mib} MiB；请用 `bankgrowth tags import` 导入",
    )


def _import_file(
    session: Session, settings: Settings, principal: Principal, path: Path, **definition: Any
) -> tuple[LoadReport, Tag | None]:
    """Import the received file; the tag as the catalog now shows it (None when nothing was loaded)."""
    with request_warehouse(settings) as con, session.begin():
        try:
            report = flows.import_tag(
                session, con, principal=principal, path=path, timezone=settings.timezone, **definition
            )
        except IngestFileError as exc:
            raise Invalid(str(exc), f"文件无法读取：{exc}", code="unreadable_file") from None
        found = [i.tag for i in imported.imported(con) if i.tag.name == definition["name"]]
        return report, found[0] if report.loaded and found else None


@router.delete("/tags/imported/{name}", status_code=204, summary="Remove an imported tag and its values")
def remove_imported_tag(principal: TagManager, name: ImportedName, session: SessionDep, con: WarehouseDep) -> Response:
    with session.begin():
        flows.remove_imported_tag(session, con, principal=principal, name=name)
    return Response(status_code=204)


@router.get("/tags/{name}", response_model=TagStatsRead, summary="One tag: coverage and distribution in my subtree")
def show_tag(
    principal: Reader,
    name: Annotated[str, InPath(pattern=r"^[a-z][a-z0-9_]{0,63}$")],
    con: WarehouseDep,
    as_of: AsOf = None,
) -> TagStatsRead:
    stats = service.catalog(con, as_of, names=[name], scope=principal.scope)[0]
    return TagStatsRead(
        **_tag(stats.tag),
        rows=stats.rows,
        coverage=stats.coverage,
        nonzero=stats.nonzero,
        summary=stats.summary,
        top=stats.top,
        histogram=[BinRead(low=b.low, high=b.high, customers=b.customers) for b in stats.histogram],
    )


def _view(view: service.CustomerView, revealed: bool) -> CustomerViewRead:
    return CustomerViewRead(
        customer_id=view.customer_id,
        profile=view.profile,
        revealed=revealed,
        tags_as_of=view.tags_as_of,
        tags=view.tags,
        stage_history=view.stage_history,
        stage_history_since=view.history_since,
        bindings=view.bindings,
        recent_transactions=view.recent_transactions,
    )


@router.get("/customers/{customer_id}", response_model=CustomerViewRead, summary="Customer view, masked (客户视图)")
def customer(
    principal: Reader, customer_id: CustomerId, session: SessionDep, con: WarehouseDep, settings: SettingsDep
) -> CustomerViewRead:
    view = flows.customer_view(session, con, principal=principal, customer_id=customer_id, timezone=settings.timezone)
    return _view(view, revealed=False)


@router.post(
    "/customers/{customer_id}/reveal", response_model=CustomerViewRead, summary="Customer view in clear (audited)"
)
def reveal_customer(
    principal: Revealer, customer_id: CustomerId, session: SessionDep, con: WarehouseDep, settings: SettingsDep
) -> CustomerViewRead:
    with session.begin():
        view = flows.customer_view(
            session, con, principal=principal, customer_id=customer_id, reveal=True, timezone=settings.timezone
        )
    return _view(view, revealed=True)


@channel_router.get("/me", summary="The calling channel application")
def channel_me(principal: ChannelApp) -> dict[str, str]:
    return {"app": principal.name, "org_id": principal.scope.org_id}


@channel_router.get(
    "/customers/{customer_id}/profile", response_model=ChannelProfile, summary="Stage and value for personalisation"
)
def channel_profile(principal: ChannelApp, customer_id: CustomerId, con: WarehouseDep) -> ChannelProfile:
    return ChannelProfile(**service.channel_profile(con, customer_id, scope=principal.scope))
