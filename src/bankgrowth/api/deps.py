"""What every route receives: settings, an operational session, the warehouse, and the caller.

Every route declares an access rule with ``allow(...)``: who may call it (public, console user,
channel application), the permission it needs, and how its data is scoped. The isolation test suite
walks every route and fails on one without a rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from ibis.backends import BaseBackend
from sqlalchemy.orm import Session, sessionmaker

from bankgrowth.config import Settings
from bankgrowth.errors import Forbidden, Unauthenticated
from bankgrowth.platform import service as platform_service
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.warehouse.engine import open_warehouse

Audience = Literal["public", "console", "channel"]
# subtree: objects and aggregates are limited to the caller's org subtree;
# self: the caller's own session or identity; global: data not owned by any org (the tag catalog's
# definitions, health) — aggregates over customers are never global.
ScopeRule = Literal["subtree", "self", "global"]


@dataclass(frozen=True)
class Rule:
    audience: Audience
    permission: Permission | None
    scope: ScopeRule


_bearer = HTTPBearer(auto_error=False, description="Console session token from POST /api/v1/auth/login.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="Channel application key.")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as session:
        yield session


API_WAREHOUSE_WAIT = 2.0  # seconds a request waits for a warehouse another process holds


def get_warehouse(request: Request) -> Iterator[BaseBackend]:
    """Opened per request and released at once: DuckDB lets one process write a file, so the nightly
    run can take the file between requests. While another process holds it, a request waits up to
    :data:`API_WAREHOUSE_WAIT` seconds, then is answered 503 with ``Retry-After``."""
    with request_warehouse(request.app.state.settings) as con:
        yield con


@contextmanager
def request_warehouse(settings: Settings) -> Iterator[BaseBackend]:
    """The warehouse as a request opens it (see :func:`get_warehouse`), for a route that opens it
    only once it has received its body (an upload)."""
    with open_warehouse(settings, wait=min(settings.warehouse_wait_seconds, API_WAREHOUSE_WAIT)) as con:
        yield con


def source_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _resolve(
    request: Request, rule: Rule, bearer: HTTPAuthorizationCredentials | None, key: str | None
) -> Principal | None:
    if rule.audience == "public":
        return None
    factory: sessionmaker[Session] = request.app.state.sessions
    request_id = getattr(request.state, "request_id", None)
    source = source_of(request)
    if rule.audience == "console":
        if bearer is None:
            if key is not None:
                raise Forbidden(
                    "a channel key cannot call console endpoints",
                    "渠道密钥不能调用控制台接口",
                    code="channel_key_not_allowed",
                )
            raise Unauthenticated("log in first: Authorization: Bearer <token>", "请先登录", code="login_required")
        with factory() as session:
            principal = platform_service.principal_for_token(
                session, token=bearer.credentials, source=source, request_id=request_id
            )
    else:
        if key is None:
            if bearer is not None:
                raise Forbidden(
                    "channel endpoints take a channel API key, not a console session",
                    "渠道接口需要渠道密钥，而不是控制台会话",
                    code="console_token_not_allowed",
                )
            raise Unauthenticated(
                "send the channel key: X-API-Key", "请提供渠道密钥 X-API-Key", code="api_key_required"
            )
        with factory() as session:
            principal = platform_service.principal_for_key(session, key=key, source=source, request_id=request_id)
    if rule.permission is not None:
        principal.require(rule.permission)
    return principal


def allow(audience: Audience, permission: Permission | None = None, *, scope: ScopeRule) -> Any:
    """The access rule of a route, as a dependency that returns the caller (``None`` when public)."""
    rule = Rule(audience, permission, scope)
    if audience == "console":

        def console(
            request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
        ) -> Principal:
            principal = _resolve(request, rule, bearer, request.headers.get("x-api-key"))
            assert principal is not None
            return principal

        dependency: Callable[..., Any] = console
    elif audience == "channel":

        def channel(request: Request, key: Annotated[str | None, Depends(_api_key)]) -> Principal:
            bearer = bearer_of(request)
            principal = _resolve(request, rule, bearer, key)
            assert principal is not None
            return principal

        dependency = channel
    else:

        def public() -> None:
            return None

        dependency = public
    dependency.__access_rule__ = rule  # type: ignore[attr-defined]
    return Depends(dependency)


def bearer_of(request: Request) -> HTTPAuthorizationCredentials | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)
    return None


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of the application, routers included (FastAPI nests included routers)."""
    return [c.original_route for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]


def rule_of(route: APIRoute) -> Rule | None:
    """The access rule a route declared, or ``None``."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        rule = getattr(dep.call, "__access_rule__", None)
        if rule is not None:
            return rule  # type: ignore[no-any-return]
        stack.extend(dep.dependencies)
    return None


SessionDep = Annotated[Session, Depends(get_session)]
WarehouseDep = Annotated[BaseBackend, Depends(get_warehouse)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
