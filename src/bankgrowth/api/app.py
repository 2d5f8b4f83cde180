"""The application: one place that mounts every domain's router, the error model, health,
readiness, metrics and request logging. ``bankgrowth serve`` runs it with uvicorn."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from bankgrowth import __version__
from bankgrowth.api import observability
from bankgrowth.api.deps import allow, request_warehouse
from bankgrowth.audiences import views as audience_views
from bankgrowth.campaigns import views as campaign_views
from bankgrowth.config import Settings
from bankgrowth.errors import BankgrowthError, NotFound, Unavailable
from bankgrowth.insight import views as insight_views
from bankgrowth.operational import db
from bankgrowth.platform import views as platform_views
from bankgrowth.rights import payments
from bankgrowth.rights import views as rights_views
from bankgrowth.warehouse.engine import WarehouseBusy, WarehouseError

API_TAGS = [
    {"name": "platform", "description": "登录、机构、用户、渠道密钥与审计 · Login, orgs, users, channel keys, audit."},
    {"name": "insight", "description": "生命周期、宫格、标签与客户视图 · Lifecycle, grid, tags, customer view."},
    {
        "name": "rights",
        "description": "权益、预算池、发放、钱包、省钱卡、结算 · Rights, pools, grants, wallets, savings cards.",
    },
    {
        "name": "audiences",
        "description": "客群圈选：规则、人数、快照、重叠与名单 · Audiences: rules, counts, snapshots, lists.",
    },
    {
        "name": "campaigns",
        "description": "营销活动：定义、审批、启动、执行、效果评估、免打扰 · "
        "Campaigns: define, approve, launch, execute, measure; do-not-contact.",
    },
    {"name": "channel", "description": "渠道应用接口（X-API-Key）· Endpoints for channel applications."},
    {"name": "connectors", "description": "触达渠道回执（签名校验）· Signed delivery receipts from channel providers."},
    {"name": "payments", "description": "支付机构回调（签名校验）· Signed callbacks from the payment provider."},
    {"name": "system", "description": "健康、就绪与指标 · Health, readiness, metrics."},
]

HTTP_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
HTTP_ZH = {401: "未登录", 403: "无权访问", 404: "资源不存在", 405: "不支持该请求方法"}


WAREHOUSE_RETRY_AFTER = 10  # seconds: about an incremental nightly run on a million customers


def _error(request: Request, exc: BankgrowthError, headers: dict[str, str] | None = None) -> JSONResponse:
    body = exc.body(getattr(request.state, "request_id", None))
    return JSONResponse(body, status_code=exc.status, headers=headers)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The API over the operational store at ``settings.resolved_operational_url`` (or ``engine``)."""
    engine = engine or db.make_engine(settings.resolved_operational_url)
    app = FastAPI(
        title="bankgrowth",
        version=__version__,
        description="银行卡与快捷支付客户增长运营平台 · Customer growth operations for banks' cards and quick pay.",
        openapi_tags=API_TAGS,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = db.session_factory(engine)
    app.state.payments = payments.simulated(settings.secret_key.get_secret_value())
    if not structlog.is_configured():
        observability.configure_logging()
    metrics = observability.Metrics()
    observability.install(app, metrics)
    log = structlog.get_logger("bankgrowth.api")

    @app.exception_handler(BankgrowthError)
    async def domain_error(request: Request, exc: BankgrowthError) -> JSONResponse:
        return _error(request, exc)

    @app.exception_handler(WarehouseError)
    async def warehouse_error(request: Request, exc: WarehouseError) -> JSONResponse:
        if isinstance(exc, WarehouseBusy):  # a nightly run or a load holds the file: soon free again
            busy = Unavailable(str(exc), f"数据仓库正被其他任务占用，请稍后重试：{exc}", code="warehouse_busy")
            return _error(request, busy, headers={"Retry-After": str(WAREHOUSE_RETRY_AFTER)})
        down = Unavailable(
            f"the warehouse does not open: {exc}", f"数据仓库无法打开：{exc}", code="warehouse_unavailable"
        )
        return _error(request, down)

    @app.exception_handler(LookupError)
    async def lookup_error(request: Request, exc: LookupError) -> JSONResponse:
        return _error(request, NotFound(str(exc).strip("'\""), f"未找到：{exc}"))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg"), "found": _short(e)}
            for e in exc.errors()
        ]
        err = BankgrowthError(
            "the request is not valid", "请求参数不合法", code="invalid_request", details={"problems": problems}
        )
        err.status = 422  # type: ignore[misc]
        return _error(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        err = BankgrowthError(str(exc.detail), HTTP_ZH.get(exc.status_code, str(exc.detail)), code=code)
        response = JSONResponse(err.body(getattr(request.state, "request_id", None)), status_code=exc.status_code)
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error=type(exc).__name__)
        err = BankgrowthError(
            "internal error; quote the request id when reporting it",
            "系统内部错误；报告时请提供请求编号",
            code="internal",
        )
        return JSONResponse(err.body(getattr(request.state, "request_id", None)), status_code=500)

    @app.get("/health", tags=["system"], summary="Liveness: the process answers")
    def health(_: None = allow("public", scope="global")) -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/ready", tags=["system"], summary="Readiness: the operational store is migrated, the warehouse opens")
    def ready(_: None = allow("public", scope="global")) -> dict[str, Any]:
        db.require_current(engine)
        with request_warehouse(settings):
            pass  # a WarehouseError is answered 503 (warehouse_busy or warehouse_unavailable)
        return {"status": "ready", "schema": db.current_revision(engine)}

    @app.get("/metrics", tags=["system"], summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus(_: None = allow("public", scope="global")) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in (
        platform_views.router,
        insight_views.router,
        rights_views.router,
        audience_views.router,
        campaign_views.router,
        insight_views.channel_router,
        audience_views.channel_router,
        rights_views.channel_router,
        rights_views.payments_router,
        campaign_views.connectors_router,
    ):
        app.include_router(router)
    return app


def _short(error: Any) -> Any:
    value = error.get("input")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
