"""Insight work that spans domains: the customer view with its reveal rule and audit, and exports
(with optional pseudonymized customer ids). The caller owns the operational transaction."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from bankgrowth.insight import imported, service, store
from bankgrowth.platform import audit
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.platform.privacy import write_extract

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

    from bankgrowth.warehouse.ingest import LoadReport, ProgressFn


def customer_view(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    customer_id: int,
    reveal: bool = False,
    timezone: str = "Asia/Shanghai",
    recent: int = 20,
) -> service.CustomerView:
    """Masked for everyone; in clear only for the ``reveal`` permission, and then audited."""
    principal.require(Permission.READ)
    if reveal:
        principal.require(Permission.REVEAL)
    view = service.customer_view(
        con, customer_id, timezone=timezone, reveal=reveal, recent=recent, scope=principal.scope
    )
    if reveal:
        audit.record(
            session,
            principal=principal,
            action="customers.reveal",
            object_type="customer",
            object_id=customer_id,
            org_id=view.profile.get("branch_id"),
            after={"fields": ["name", "phone"]},
        )
    return view


def export_tags(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    path: Path,
    as_of: date | None = None,
    columns: list[str] | None = None,
    pseudonymize_with: str | None = None,
) -> int:
    """Write a tag version (the caller's scope only) to Parquet or CSV; returns the row count.

    With ``pseudonymize_with`` (the deployment's secret), ``customer_id`` is replaced by a stable
    keyed pseudonym (``customer_key``), so a data scientist's extract cannot be joined back to a
    person without the secret."""
    principal.require(Permission.READ)
    day = as_of or store.latest(con)
    t = service.scoped(store.tags_table(con, day), principal.scope)
    if columns:
        t = t.select("customer_id", *[c for c in columns if c != "customer_id"])
    rows = write_extract(t.order_by("customer_id").to_pyarrow(), path, pseudonymize_with=pseudonymize_with)
    audit.record(
        session,
        principal=principal,
        action="tags.export",
        object_type="tag_version",
        object_id=str(day),
        org_id=principal.scope.org_id,
        after={"rows": rows, "path": str(path), "pseudonymized": pseudonymize_with is not None},
    )
    return rows


def check_tag_import(principal: Principal) -> None:
    """An imported tag is one for every branch: only HQ, with the manage permission, imports one
    (checked before an upload is received, and again by :func:`import_tag`)."""
    principal.require_hq(Permission.MANAGE, "import a tag", "导入标签")


def import_tag(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    path: Path,
    name: str,
    zh: str,
    en: str,
    dtype: str = "string",
    category: str = "finance",
    description: str = "",
    encoding: str = "utf-8",
    timezone: str = "Asia/Shanghai",
    progress: ProgressFn | None = None,
    source: str | None = None,
) -> LoadReport:
    """Import a bank's customer → value file as the tag ``name`` (HQ only: a tag covers every
    branch), audited with what was loaded and rejected. ``source``: what to call an uploaded file
    (``path`` is then its temporary copy)."""
    check_tag_import(principal)
    report = imported.import_tag(
        con,
        path,
        name=name,
        zh=zh,
        en=en,
        dtype=dtype,
        category=category,
        description=description,
        encoding=encoding,
        timezone=timezone,
        progress=progress,
        source=source,
    )
    audit.record(
        session,
        principal=principal,
        action="tags.import",
        object_type="tag",
        object_id=name,
        org_id=principal.scope.org_id,
        outcome="ok" if report.loaded else "rejected",
        after={
            "file": report.file,
            "load_id": report.load_id,
            "read": report.read,
            "loaded": report.loaded,
            "rejected": report.read - report.loaded,
        },
    )
    return report


def remove_imported_tag(session: Session, con: BaseBackend, *, principal: Principal, name: str) -> None:
    principal.require_hq(Permission.MANAGE, "remove a tag", "删除标签")
    imported.remove(con, name)
    audit.record(
        session,
        principal=principal,
        action="tags.remove",
        object_type="tag",
        object_id=name,
        org_id=principal.scope.org_id,
    )
