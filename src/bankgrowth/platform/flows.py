"""Platform work that spans stores: the org tree mirrored from the warehouse's branches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from bankgrowth.errors import Invalid
from bankgrowth.platform import service as platform_service
from bankgrowth.platform.access import Principal

if TYPE_CHECKING:
    from ibis.backends import BaseBackend


def sync_orgs_from_warehouse(session: Session, con: BaseBackend, *, principal: Principal) -> platform_service.OrgSync:
    """Mirror the warehouse's ``branches`` table into ``orgs`` (the caller owns the transaction)."""
    rows = con.table("branches").to_pyarrow().to_pylist()
    if not rows:
        raise Invalid(
            "the warehouse has no branches yet: load the bank's data first", "数据仓库还没有机构数据：请先加载银行数据"
        )
    return platform_service.sync_orgs(session, principal=principal, rows=rows)
