"""Commands of the operational side: the store's schema, first admin, orgs, channel keys, audit,
and the API server. Each parses, calls one service, and renders."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from bankgrowth.cli import render
from bankgrowth.cli.common import console, fail, principal, settings, store, transaction, warehouse
from bankgrowth.platform.access import Role
from bankgrowth.platform.schemas import ApiKeyCreate, ApiKeyRead, AuditRead, Channel, OrgRead, UserCreate

db_app = typer.Typer(help="The operational store's schema (Alembic migrations).", no_args_is_help=True)
admin_app = typer.Typer(help="First run: administrators.", no_args_is_help=True)
orgs_app = typer.Typer(help="The org tree (HQ → branches → sub-branches).", no_args_is_help=True)
keys_app = typer.Typer(help="Channel API keys (mobile bank app, mini-program, H5).", no_args_is_help=True)

Org = Annotated[str | None, typer.Option("--org", help="Act within this org's subtree (default: HQ).")]


@db_app.command("upgrade")
def db_upgrade_cmd() -> None:
    """Create or migrate the operational store to the code's schema."""
    from bankgrowth.operational import db

    s = settings()
    with store(s, migrated=False) as eng:
        before = db.current_revision(eng)
        after = db.upgrade(eng)
    console.print(f"operational store {s.resolved_operational_url}: {before or 'empty'} → {after}")


@db_app.command("current")
def db_current_cmd() -> None:
    """Show the store's schema revision and the one the code needs."""
    from bankgrowth.operational import db

    s = settings()
    with store(s, migrated=False) as eng:
        console.print(f"current: {db.current_revision(eng) or 'none'}   code needs: {db.head_revision()}")


@admin_app.command("create")
def admin_create_cmd(
    username: Annotated[str, typer.Option(help="Login name (lower case).")],
    display_name: Annotated[str | None, typer.Option(help="Name shown in the console.")] = None,
    org: Annotated[str | None, typer.Option(help="Org of the admin (default: the root, HQ).")] = None,
) -> None:
    """Create an administrator. The password comes from BANKGROWTH_ADMIN_PASSWORD or a prompt.

    Migrates the store first and, on a store with no orgs yet, creates the head office, so this is
    the first command of a new installation."""
    from sqlalchemy.orm import Session

    from bankgrowth.operational import db
    from bankgrowth.platform import service as platform_service

    s = settings()
    password = os.environ.get("BANKGROWTH_ADMIN_PASSWORD") or typer.prompt(
        "password", hide_input=True, confirmation_prompt=True
    )
    with store(s, migrated=False) as eng:
        db.upgrade(eng)
        with Session(eng, expire_on_commit=False) as session, session.begin():
            root = platform_service.ensure_root(session)
            system = principal(session, None)
            data = UserCreate(
                username=username,
                display_name=display_name or username,
                password=password,
                org_id=org or root.id,
                roles=[Role.ADMIN],
            )
            user = platform_service.create_user(session, principal=system, data=data)
    console.print(f"created administrator {user.username} (id {user.id}) at {user.org_id}")


@orgs_app.command("sync")
def orgs_sync_cmd() -> None:
    """Mirror the warehouse's branches table into the operational store."""
    from bankgrowth.platform import flows as platform_flows

    s = settings()
    with warehouse(s) as con, transaction(s) as session:
        result = platform_flows.sync_orgs_from_warehouse(session, con, principal=principal(session, None))
    console.print(
        f"orgs: {len(result.created)} created, {len(result.updated)} updated, {result.unchanged} unchanged"
        + (f"; kept {len(result.absent)} no longer in the source: {', '.join(result.absent)}" if result.absent else "")
    )


@orgs_app.command("list")
def orgs_list_cmd(org: Org = None) -> None:
    """The org tree (or one subtree)."""
    from bankgrowth.platform import service as platform_service

    s = settings()
    with transaction(s) as session:
        orgs = platform_service.list_orgs(session, principal=principal(session, org))
        rows = [OrgRead.model_validate(o).model_dump() for o in orgs]
    render.records(console, "orgs", rows, s.tz)


def _key_row(key: Any) -> dict[str, Any]:
    return ApiKeyRead.model_validate(key).model_dump()


@keys_app.command("create")
def keys_create_cmd(
    app_name: Annotated[str, typer.Option("--app", help="Channel application, e.g. mobile-bank.")],
    channel: Annotated[Channel, typer.Option(help="app, mini_program or h5.")],
    org: Annotated[str | None, typer.Option(help="Owner org (default: HQ); the key sees its subtree.")] = None,
) -> None:
    """Create a key; it is printed once."""
    from bankgrowth.platform import service as platform_service

    s = settings()
    with transaction(s) as session:
        system = principal(session, None)
        data = ApiKeyCreate(app=app_name, channel=channel, org_id=org or system.scope.org_id)
        key, plaintext = platform_service.create_key(session, principal=system, data=data)
        row = _key_row(key)
    render.records(console, "API key", [row], s.tz)
    console.print(f"key (shown once): {plaintext}", highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list_cmd(org: Org = None) -> None:
    """Keys and their state."""
    from bankgrowth.platform import service as platform_service

    s = settings()
    with transaction(s) as session:
        rows = [_key_row(k) for k in platform_service.list_keys(session, principal=principal(session, org))]
    render.records(console, "API keys", rows, s.tz)


@keys_app.command("rotate")
def keys_rotate_cmd(key_id: Annotated[int, typer.Argument(help="Key id.")]) -> None:
    """A new key for the same application; the old one works for the grace period (key_grace_hours)."""
    from bankgrowth.platform import service as platform_service

    s = settings()
    with transaction(s) as session:
        key, plaintext = platform_service.rotate_key(
            session, principal=principal(session, None), key_id=key_id, grace=timedelta(hours=s.key_grace_hours)
        )
        row = _key_row(key)
    render.records(console, "new API key", [row], s.tz)
    console.print(f"key (shown once): {plaintext}", highlight=False, soft_wrap=True)


@keys_app.command("revoke")
def keys_revoke_cmd(key_id: Annotated[int, typer.Argument(help="Key id.")]) -> None:
    """Stop a key at once."""
    from bankgrowth.platform import service as platform_service

    s = settings()
    with transaction(s) as session:
        key = platform_service.revoke_key(session, principal=principal(session, None), key_id=key_id)
        console.print(f"revoked key {key.id} ({key.app}, prefix {key.prefix})")


def _instant(value: str | None, tz: Any) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"not a date or time: {value!r} (expected e.g. 2026-11-01 or 2026-11-01T09:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def audit_cmd(
    actor: Annotated[str | None, typer.Option(help="e.g. user:alice, channel:mobile-bank:1a2b3c4d.")] = None,
    action: Annotated[str | None, typer.Option(help="Action or prefix, e.g. users. or api_keys.rotate.")] = None,
    object_type: Annotated[str | None, typer.Option("--object-type", help="user, api_key, customer, org…")] = None,
    object_id: Annotated[str | None, typer.Option("--object-id")] = None,
    since: Annotated[str | None, typer.Option(help="From this local date/time.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this local date/time.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    changes: Annotated[bool, typer.Option("--changes", help="Show before and after.")] = False,
    org: Org = None,
) -> None:
    """Query the audit log, newest first."""
    from bankgrowth.platform import audit as audit_service

    s = settings()
    with transaction(s) as session:
        entries = audit_service.query(
            session,
            principal=principal(session, org),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            since=_instant(since, s.tz),
            until=_instant(until, s.tz),
            limit=limit,
        )
        rows = [AuditRead.model_validate(e).model_dump() for e in entries]
    keep = ["id", "at", "actor", "action", "outcome", "object_type", "object_id", "org_id", "source"]
    if changes:
        keep += ["before", "after"]
    render.records(console, "audit log", [{k: r[k] for k in keep} for r in rows], s.tz)


def serve_cmd(
    host: Annotated[str | None, typer.Option(help="Listen address (default: api_host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api_port).")] = None,
) -> None:
    """Serve the REST API (OpenAPI docs at /docs)."""
    import uvicorn

    from bankgrowth.api.app import create_app
    from bankgrowth.api.observability import configure_logging

    s = settings()
    with store(s):
        pass  # refuse to start on a store that is not migrated
    configure_logging()
    console.print(f"bankgrowth API on http://{host or s.api_host}:{port or s.api_port} (docs at /docs)")
    uvicorn.run(create_app(s), host=host or s.api_host, port=port or s.api_port, log_config=None, access_log=False)
