"""Orgs, users, console sessions and channel API keys.

Every function takes the caller (``principal``) and enforces its permission and scope itself.
Objects outside the caller's scope are reported as not found, so scope does not reveal existence.
Functions only ``flush()``; the caller owns the transaction (``with session.begin():``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from bankgrowth.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from bankgrowth.operational.base import utcnow
from bankgrowth.platform import audit, security
from bankgrowth.platform.access import (
    SYSTEM_PERMISSIONS,
    Permission,
    Principal,
    Role,
    Scope,
    permissions_of,
)
from bankgrowth.platform.models import ApiKey, ConsoleSession, Org, User
from bankgrowth.platform.schemas import ApiKeyCreate, UserCreate, UserUpdate

# ---------------------------------------------------------------------------------------------- orgs


def _not_found(kind: str, key: object, zh_kind: str) -> NotFound:
    return NotFound(f"no {kind} {key}", f"没有{zh_kind} {key}", details={"object": kind, "id": str(key)})


def scope_of(session: Session, org_id: str) -> Scope:
    org = session.get(Org, org_id)
    if org is None:
        raise _not_found("org", org_id, "机构")
    if org.parent_id is None:
        return Scope(org.id, org.path, None)
    ids = session.scalars(select(Org.id).where(Org.path.startswith(org.path, autoescape=True)))
    return Scope(org.id, org.path, frozenset(ids))


def system_principal(session: Session, *, source: str, org_id: str | None = None) -> Principal:
    """The CLI and scheduled jobs act as the system, at HQ unless narrowed to ``org_id``."""
    if org_id is None:
        root = session.scalars(select(Org).where(Org.parent_id.is_(None))).first()
        scope = Scope(root.id, root.path, None) if root else Scope("HQ", "/HQ/", None)
    else:
        scope = scope_of(session, org_id)
    return Principal("system", source.removeprefix("cli:") or "cli", scope, SYSTEM_PERMISSIONS, source=source)


def list_orgs(session: Session, *, principal: Principal) -> list[Org]:
    principal.require(Permission.READ)
    stmt = select(Org).order_by(Org.path)
    if not principal.scope.is_root:
        stmt = stmt.where(Org.path.startswith(principal.scope.path, autoescape=True))
    return list(session.scalars(stmt))


def get_org_or_raise(session: Session, *, principal: Principal, org_id: str) -> Org:
    principal.require(Permission.READ)
    return in_scope_org(session, principal, org_id)


@dataclass(frozen=True)
class OrgSync:
    created: list[str]
    updated: list[str]
    unchanged: int
    absent: list[str]  # in the store but no longer in the source; kept, since users may belong to them


def sync_orgs(session: Session, *, principal: Principal, rows: Iterable[Mapping[str, Any]]) -> OrgSync:
    """Mirror the warehouse's ``branches`` (branch_id, parent_id, level, name_zh, name_en)."""
    principal.require_hq(Permission.MANAGE, "change the org tree", "修改机构树")
    by_id = {str(r["branch_id"]): r for r in rows}
    roots = [k for k, r in by_id.items() if not r.get("parent_id")]
    if len(roots) != 1:
        raise Invalid(f"the org tree needs exactly one root, found {roots}", f"机构树必须恰有一个根，实际为 {roots}")

    paths: dict[str, str] = {}

    def path_of(org_id: str, seen: tuple[str, ...] = ()) -> str:
        if org_id in paths:
            return paths[org_id]
        if org_id in seen:
            raise Invalid(f"the org tree has a cycle through {org_id}", f"机构树在 {org_id} 处有环")
        row = by_id.get(org_id)
        if row is None:
            raise Invalid(f"parent org {org_id} is not in the tree", f"上级机构 {org_id} 不在机构树中")
        parent = row.get("parent_id")
        paths[org_id] = (path_of(str(parent), (*seen, org_id)) if parent else "/") + f"{org_id}/"
        return paths[org_id]

    for org_id in by_id:
        path_of(org_id)
    existing = {o.id: o for o in session.scalars(select(Org))}
    created, updated, unchanged = [], [], 0
    # parents before children, so the self-reference holds at every flush
    for org_id in sorted(by_id, key=lambda k: paths[k].count("/")):
        r = by_id[org_id]
        values = {
            "parent_id": r.get("parent_id") or None,
            "level": r["level"],
            "name_zh": r["name_zh"],
            "name_en": r["name_en"],
            "path": paths[org_id],
        }
        org = existing.get(org_id)
        if org is None:
            session.add(Org(id=org_id, **values))
            created.append(org_id)
        elif any(getattr(org, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(org, k, v)
            updated.append(org_id)
        else:
            unchanged += 1
        session.flush()
    result = OrgSync(created, updated, unchanged, sorted(set(existing) - set(by_id)))
    audit.record(
        session,
        principal=principal,
        action="orgs.sync",
        object_type="org",
        object_id=roots[0],
        org_id=roots[0],
        after={"created": created, "updated": updated, "unchanged": unchanged, "absent": result.absent},
    )
    return result


def ensure_root(session: Session, *, org_id: str = "HQ") -> Org:
    """The first run, before any bank data: a single head-office org so an admin can exist."""
    root = session.scalars(select(Org).where(Org.parent_id.is_(None))).first()
    if root is None:
        root = Org(id=org_id, parent_id=None, level="hq", name_zh="总行", name_en="Head Office", path=f"/{org_id}/")
        session.add(root)
        session.flush()
    return root


# --------------------------------------------------------------------------------------------- users


def _user_snapshot(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "org_id": user.org_id,
        "roles": list(user.roles),
        "active": user.active,
    }


def in_scope_org(session: Session, principal: Principal, org_id: str) -> Org:
    org = session.get(Org, org_id)
    if org is None and session.scalars(select(Org.id).limit(1)).first() is None:
        raise Conflict(
            f"no org {org_id}: the org tree is empty; build it from the warehouse's branches with"
            " `bankgrowth orgs sync` (or create the first admin with `bankgrowth admin create`)",
            f"没有机构 {org_id}：机构树为空，请先运行 `bankgrowth orgs sync` 从数仓的机构表同步"
            "（或用 `bankgrowth admin create` 创建首个管理员）",
            code="no_orgs",
            details={"object": "org", "id": org_id},
        )
    if org is None or not principal.scope.allows(org.id):
        raise _not_found("org", org_id, "机构")
    return org


def owned_by_scope(stmt: Select[Any], org_column: Any, principal: Principal) -> Select[Any]:
    """Rows whose owning org is in the caller's subtree (no filter at HQ)."""
    ids = principal.scope.org_ids
    return stmt if ids is None else stmt.where(org_column.in_(ids))


def list_users(session: Session, *, principal: Principal) -> list[User]:
    principal.require(Permission.READ)
    return list(session.scalars(owned_by_scope(select(User).order_by(User.id), User.org_id, principal)))


def get_user_or_raise(session: Session, *, principal: Principal, user_id: int) -> User:
    principal.require(Permission.READ)
    user = session.get(User, user_id)
    if user is None or not principal.scope.allows(user.org_id):
        raise _not_found("user", user_id, "用户")
    return user


def create_user(session: Session, *, principal: Principal, data: UserCreate) -> User:
    principal.require(Permission.MANAGE)
    in_scope_org(session, principal, data.org_id)
    if session.scalars(select(User.id).where(User.username == data.username)).first() is not None:
        raise Conflict(f"username {data.username} is taken", f"用户名 {data.username} 已存在", code="username_taken")
    user = User(
        username=data.username,
        display_name=data.display_name,
        password_hash=security.hash_password(data.password),
        org_id=data.org_id,
        roles=[str(r) for r in data.roles],
        active=True,
        failed_logins=0,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        principal=principal,
        action="users.create",
        object_type="user",
        object_id=user.id,
        org_id=user.org_id,
        after=_user_snapshot(user),
    )
    return user


def update_user(session: Session, *, principal: Principal, user_id: int, data: UserUpdate) -> User:
    principal.require(Permission.MANAGE)
    user = get_user_or_raise(session, principal=principal, user_id=user_id)
    before = _user_snapshot(user)
    if data.org_id is not None:
        in_scope_org(session, principal, data.org_id)
    demoting = data.active is False or (data.roles is not None and Role.ADMIN not in data.roles)
    if principal.kind == "user" and principal.id == user.id and demoting:
        raise Invalid(
            "an administrator cannot deactivate or demote themself",
            "管理员不能停用自己或取消自己的管理员角色",
            code="self_lockout",
        )
    changes = data.model_dump(exclude_none=True)
    for key, value in changes.items():
        setattr(user, key, [str(r) for r in value] if key == "roles" else value)
    if data.active is False or data.org_id is not None or data.roles is not None:
        _revoke_sessions(session, user.id)  # a narrower right takes effect at once, not at expiry
    session.flush()
    audit.record(
        session,
        principal=principal,
        action="users.update",
        object_type="user",
        object_id=user.id,
        org_id=user.org_id,
        before=before,
        after=_user_snapshot(user),
    )
    return user


def reset_password(session: Session, *, principal: Principal, user_id: int, password: str) -> User:
    principal.require(Permission.MANAGE)
    user = get_user_or_raise(session, principal=principal, user_id=user_id)
    user.password_hash = security.hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    _revoke_sessions(session, user.id)
    session.flush()
    audit.record(
        session,
        principal=principal,
        action="users.reset_password",
        object_type="user",
        object_id=user.id,
        org_id=user.org_id,
    )
    return user


def change_own_password(session: Session, *, principal: Principal, old_password: str, new_password: str) -> None:
    user = session.get(User, principal.id) if principal.kind == "user" else None
    if user is None:
        raise Forbidden("only a console user has a password", "只有控制台用户有密码", code="not_a_user")
    if not security.verify_password(user.password_hash, old_password):
        raise Invalid("the current password is wrong", "当前密码错误", code="wrong_password")
    user.password_hash = security.hash_password(new_password)
    session.flush()
    audit.record(
        session,
        principal=principal,
        action="auth.change_password",
        object_type="user",
        object_id=user.id,
        org_id=user.org_id,
    )


def _revoke_sessions(session: Session, user_id: int) -> None:
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


# ------------------------------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class Login:
    token: str
    expires_at: datetime
    user: User


def _user_principal(session: Session, user: User, *, source: str, request_id: str | None) -> Principal:
    roles = frozenset(Role(r) for r in user.roles)
    return Principal(
        "user",
        user.username,
        scope_of(session, user.org_id),
        permissions_of(roles),
        id=user.id,
        roles=roles,
        source=source,
        request_id=request_id,
    )


def login(
    session: Session,
    *,
    username: str,
    password: str,
    source: str,
    request_id: str | None,
    ttl: timedelta,
    max_failures: int,
    lockout: timedelta,
) -> Login | None:
    """A new console session, or ``None`` (the failure is counted and audited; the caller commits
    and then answers 401 — the same answer for an unknown name, a wrong password or a lock)."""
    now = utcnow()
    user = session.scalars(select(User).where(User.username == username)).first()
    anonymous = Principal(
        "user", username, Scope("-", "/", frozenset()), frozenset(), source=source, request_id=request_id
    )
    reason = None
    if user is None:
        security.verify_password(security.dummy_hash(), password)  # same time as a real check
        reason = "unknown_user"
    elif not user.active:
        reason = "inactive"
    elif user.locked_until is not None and user.locked_until > now:
        reason = "locked"
    elif not security.verify_password(user.password_hash, password):
        reason = "wrong_password"
        session.execute(update(User).where(User.id == user.id).values(failed_logins=User.failed_logins + 1))
        session.refresh(user)
        if user.failed_logins >= max_failures:
            user.locked_until = now + lockout
            user.failed_logins = 0
            reason = "wrong_password_locked"
    if reason is not None:
        audit.record(
            session,
            principal=anonymous,
            action="auth.login",
            object_type="user",
            object_id=None if user is None else user.id,
            org_id=None if user is None else user.org_id,
            outcome="denied",
            after={"reason": reason},
        )
        return None
    assert user is not None
    if security.needs_rehash(user.password_hash):
        user.password_hash = security.hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    token = security.new_token()
    row = ConsoleSession(
        token_hash=security.token_hash(token), user_id=user.id, created_at=now, expires_at=now + ttl, source=source
    )
    session.add(row)
    session.flush()
    principal = _user_principal(session, user, source=source, request_id=request_id)
    audit.record(
        session,
        principal=principal,
        action="auth.login",
        object_type="user",
        object_id=user.id,
        org_id=user.org_id,
        after={"session_id": row.id, "expires_at": row.expires_at},
    )
    return Login(token, row.expires_at, user)


def principal_for_token(session: Session, *, token: str, source: str, request_id: str | None) -> Principal:
    row = session.scalars(select(ConsoleSession).where(ConsoleSession.token_hash == security.token_hash(token))).first()
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthenticated(
            "the session is unknown, expired or ended", "会话不存在、已过期或已退出", code="session_invalid"
        )
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise Unauthenticated("the user is deactivated", "用户已停用", code="session_invalid")
    return _user_principal(session, user, source=source, request_id=request_id)


def logout(session: Session, *, principal: Principal, token: str) -> None:
    row = session.scalars(select(ConsoleSession).where(ConsoleSession.token_hash == security.token_hash(token))).first()
    if row is None or row.user_id != principal.id:
        raise Unauthenticated("the session is unknown", "会话不存在", code="session_invalid")
    row.revoked_at = utcnow()
    session.flush()
    audit.record(
        session,
        principal=principal,
        action="auth.logout",
        object_type="session",
        object_id=row.id,
        org_id=principal.scope.org_id,
    )


# ------------------------------------------------------------------------------------------ api keys


def _key_snapshot(key: ApiKey) -> dict[str, Any]:
    return {
        "prefix": key.prefix,
        "app": key.app,
        "channel": key.channel,
        "org_id": key.org_id,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "replaced_by_id": key.replaced_by_id,
    }


def list_keys(session: Session, *, principal: Principal) -> list[ApiKey]:
    principal.require(Permission.MANAGE)
    return list(session.scalars(owned_by_scope(select(ApiKey).order_by(ApiKey.id), ApiKey.org_id, principal)))


def get_key_or_raise(session: Session, *, principal: Principal, key_id: int) -> ApiKey:
    principal.require(Permission.MANAGE)
    key = session.get(ApiKey, key_id)
    if key is None or not principal.scope.allows(key.org_id):
        raise _not_found("API key", key_id, "API 密钥")
    return key


def _new_key(
    session: Session, principal: Principal, *, app: str, channel: str, org_id: str, expires_at: datetime | None
) -> tuple[ApiKey, str]:
    prefix, plaintext = security.new_api_key()
    key = ApiKey(
        prefix=prefix,
        key_hash=security.token_hash(plaintext),
        app=app,
        channel=channel,
        org_id=org_id,
        created_by=principal.actor,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def create_key(session: Session, *, principal: Principal, data: ApiKeyCreate) -> tuple[ApiKey, str]:
    """A new channel key; the plaintext is returned once and never stored."""
    principal.require(Permission.MANAGE)
    in_scope_org(session, principal, data.org_id)
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise Invalid("expires_at is in the past", "过期时间早于当前时间", details={"field": "expires_at"})
    key, plaintext = _new_key(
        session, principal, app=data.app, channel=data.channel, org_id=data.org_id, expires_at=data.expires_at
    )
    audit.record(
        session,
        principal=principal,
        action="api_keys.create",
        object_type="api_key",
        object_id=key.id,
        org_id=key.org_id,
        after=_key_snapshot(key),
    )
    return key, plaintext


def rotate_key(session: Session, *, principal: Principal, key_id: int, grace: timedelta) -> tuple[ApiKey, str]:
    """A replacement key for the same application; the old one keeps working for ``grace``."""
    old = get_key_or_raise(session, principal=principal, key_id=key_id)
    if old.revoked_at is not None or old.replaced_by_id is not None:
        raise Conflict("the key is already revoked or rotated", "该密钥已吊销或已轮换", code="key_inactive")
    before = _key_snapshot(old)
    new, plaintext = _new_key(
        session, principal, app=old.app, channel=old.channel, org_id=old.org_id, expires_at=old.expires_at
    )
    cutoff = utcnow() + grace
    old.expires_at = cutoff if old.expires_at is None else min(old.expires_at, cutoff)
    old.replaced_by_id = new.id
    session.flush()
    audit.record(
        session,
        principal=principal,
        action="api_keys.rotate",
        object_type="api_key",
        object_id=old.id,
        org_id=old.org_id,
        before=before,
        after={**_key_snapshot(old), "new_key_id": new.id},
    )
    return new, plaintext


def revoke_key(session: Session, *, principal: Principal, key_id: int) -> ApiKey:
    key = get_key_or_raise(session, principal=principal, key_id=key_id)
    before = _key_snapshot(key)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    audit.record(
        session,
        principal=principal,
        action="api_keys.revoke",
        object_type="api_key",
        object_id=key.id,
        org_id=key.org_id,
        before=before,
        after=_key_snapshot(key),
    )
    return key


def principal_for_key(session: Session, *, key: str, source: str, request_id: str | None) -> Principal:
    prefix = security.key_prefix(key)
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first() if prefix else None
    now = utcnow()
    if (
        row is None
        or not security.same(row.key_hash, security.token_hash(key))
        or row.revoked_at is not None
        or (row.expires_at is not None and row.expires_at <= now)
    ):
        raise Unauthenticated(
            "the API key is unknown, revoked or expired", "API 密钥无效、已吊销或已过期", code="api_key_invalid"
        )
    return Principal(
        "channel",
        f"{row.app}:{row.prefix}",
        scope_of(session, row.org_id),
        frozenset({Permission.CHANNEL}),
        id=row.id,
        source=source,
        request_id=request_id,
    )
