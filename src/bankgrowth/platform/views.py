"""Platform routes: login, orgs, users, channel API keys, audit. Each route calls one service."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from bankgrowth.api.deps import SessionDep, SettingsDep, allow, bearer_of, source_of
from bankgrowth.errors import Invalid, Unauthenticated
from bankgrowth.platform import audit
from bankgrowth.platform import service as platform_service
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.platform.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    AuditRead,
    LoginRequest,
    LoginResponse,
    Me,
    OrgRead,
    PasswordChange,
    PasswordReset,
    UserCreate,
    UserRead,
    UserUpdate,
)

router = APIRouter(prefix="/api/v1", tags=["platform"])

Reader = Annotated[Principal, allow("console", Permission.READ, scope="subtree")]
Manager = Annotated[Principal, allow("console", Permission.MANAGE, scope="subtree")]
Auditor = Annotated[Principal, allow("console", Permission.AUDIT, scope="subtree")]
Myself = Annotated[Principal, allow("console", scope="self")]
UserId = Annotated[int, Path(ge=1, le=2**62)]
KeyId = Annotated[int, Path(ge=1, le=2**62)]


@router.post("/auth/login", response_model=LoginResponse, summary="Log in to the console (控制台登录)")
def login(
    body: LoginRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _: None = allow("public", scope="self"),
) -> LoginResponse:
    with session.begin():
        result = platform_service.login(
            session,
            username=body.username,
            password=body.password,
            source=source_of(request),
            request_id=getattr(request.state, "request_id", None),
            ttl=timedelta(minutes=settings.session_ttl_minutes),
            max_failures=settings.max_failed_logins,
            lockout=timedelta(minutes=settings.lockout_minutes),
        )
    if result is None:
        raise Unauthenticated(
            "wrong username or password, or the account is locked",
            "用户名或密码错误，或账户已锁定",
            code="login_failed",
        )
    return LoginResponse(token=result.token, expires_at=result.expires_at, user=UserRead.model_validate(result.user))


@router.post("/auth/logout", status_code=204, summary="End this console session (退出登录)")
def logout(principal: Myself, request: Request, session: SessionDep) -> Response:
    bearer: HTTPAuthorizationCredentials | None = bearer_of(request)
    assert bearer is not None
    with session.begin():
        platform_service.logout(session, principal=principal, token=bearer.credentials)
    return Response(status_code=204)


@router.get("/auth/me", response_model=Me, summary="Who am I (当前用户)")
def me(principal: Myself) -> Me:
    return Me(
        kind=principal.kind,
        name=principal.name,
        org_id=principal.scope.org_id,
        roles=sorted(principal.roles),
        permissions=sorted(str(p) for p in principal.permissions),
    )


@router.post("/auth/password", status_code=204, summary="Change my password (修改密码)")
def change_password(principal: Myself, body: PasswordChange, session: SessionDep) -> Response:
    with session.begin():
        platform_service.change_own_password(
            session, principal=principal, old_password=body.old_password, new_password=body.new_password
        )
    return Response(status_code=204)


@router.get("/orgs", response_model=list[OrgRead], summary="Orgs in my subtree (机构)")
def list_orgs(principal: Reader, session: SessionDep) -> list[OrgRead]:
    return [OrgRead.model_validate(o) for o in platform_service.list_orgs(session, principal=principal)]


@router.get("/orgs/{org_id}", response_model=OrgRead, summary="One org")
def get_org(principal: Reader, org_id: str, session: SessionDep) -> OrgRead:
    return OrgRead.model_validate(platform_service.get_org_or_raise(session, principal=principal, org_id=org_id))


@router.get("/users", response_model=list[UserRead], summary="Users in my subtree (用户)")
def list_users(principal: Reader, session: SessionDep) -> list[UserRead]:
    return [UserRead.model_validate(u) for u in platform_service.list_users(session, principal=principal)]


@router.post("/users", response_model=UserRead, status_code=201, summary="Create a user")
def create_user(principal: Manager, body: UserCreate, session: SessionDep) -> UserRead:
    with session.begin():
        user = platform_service.create_user(session, principal=principal, data=body)
    return UserRead.model_validate(user)


@router.get("/users/{user_id}", response_model=UserRead, summary="One user")
def get_user(principal: Reader, user_id: UserId, session: SessionDep) -> UserRead:
    return UserRead.model_validate(platform_service.get_user_or_raise(session, principal=principal, user_id=user_id))


@router.patch("/users/{user_id}", response_model=UserRead, summary="Change a user's name, org, roles or status")
def update_user(principal: Manager, user_id: UserId, body: UserUpdate, session: SessionDep) -> UserRead:
    with session.begin():
        user = platform_service.update_user(session, principal=principal, user_id=user_id, data=body)
    return UserRead.model_validate(user)


@router.post("/users/{user_id}/password", status_code=204, summary="Reset a user's password (ends their sessions)")
def reset_password(principal: Manager, user_id: UserId, body: PasswordReset, session: SessionDep) -> Response:
    with session.begin():
        platform_service.reset_password(session, principal=principal, user_id=user_id, password=body.password)
    return Response(status_code=204)


@router.get("/api-keys", response_model=list[ApiKeyRead], summary="Channel API keys in my subtree (渠道密钥)")
def list_keys(principal: Manager, session: SessionDep) -> list[ApiKeyRead]:
    return [ApiKeyRead.model_validate(k) for k in platform_service.list_keys(session, principal=principal)]


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, summary="Create a channel API key")
def create_key(principal: Manager, body: ApiKeyCreate, session: SessionDep) -> ApiKeyCreated:
    with session.begin():
        key, plaintext = platform_service.create_key(session, principal=principal, data=body)
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=plaintext)


@router.post("/api-keys/{key_id}/rotate", response_model=ApiKeyCreated, status_code=201, summary="Rotate a key")
def rotate_key(principal: Manager, key_id: KeyId, session: SessionDep, settings: SettingsDep) -> ApiKeyCreated:
    with session.begin():
        key, plaintext = platform_service.rotate_key(
            session, principal=principal, key_id=key_id, grace=timedelta(hours=settings.key_grace_hours)
        )
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=plaintext)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyRead, summary="Revoke a key at once")
def revoke_key(principal: Manager, key_id: KeyId, session: SessionDep) -> ApiKeyRead:
    with session.begin():
        key = platform_service.revoke_key(session, principal=principal, key_id=key_id)
    return ApiKeyRead.model_validate(key)


@router.get("/audit", response_model=list[AuditRead], summary="The audit log, newest first (审计日志)")
def audit_log(
    principal: Auditor,
    session: SessionDep,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="Prefix, e.g. users. or api_keys.rotate")] = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRead]:
    entries = audit.query(
        session,
        principal=principal,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        since=_aware(since),
        until=_aware(until),
        limit=limit,
    )
    return [AuditRead.model_validate(e) for e in entries]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise Invalid(
            "give a time zone, e.g. 2026-11-01T00:00:00+08:00",
            "请带时区，例如 2026-11-01T00:00:00+08:00",
            details={"field": "since/until"},
        )
    return value
