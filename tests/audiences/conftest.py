"""A copy of the small bank with one tag version, an operational store with its org tree, and the
core segments installed — shared by a module's tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ibis
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bankgrowth.audiences import service as audiences
from bankgrowth.insight import store as tag_store
from bankgrowth.operational import db
from bankgrowth.platform import service as platform_service
from bankgrowth.platform.access import Principal
from bankgrowth.warehouse import engine as wh


@dataclass
class Bank:
    con: ibis.BaseBackend
    store: Engine
    tags: list[dict[str, object]]  # the latest tag version, as rows

    def principal(self, session: Session, org: str | None = None) -> Principal:
        return platform_service.system_principal(session, source="test", org_id=org)

    def ids(self, keep) -> set[int]:  # type: ignore[no-untyped-def]
        return {int(r["customer_id"]) for r in self.tags if keep(r)}  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def bank(insight_bank: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    tmp = tmp_path_factory.mktemp("audiences")
    shutil.copy(insight_bank, tmp / "warehouse.duckdb")
    con = wh.connect(f"duckdb:///{tmp / 'warehouse.duckdb'}")
    store = db.make_engine(f"sqlite:///{tmp / 'operational.sqlite'}")
    db.upgrade(store)
    with Session(store) as s, s.begin():
        platform_service.sync_orgs(
            s,
            principal=platform_service.system_principal(s, source="test"),
            rows=con.table("branches").to_pyarrow().to_pylist(),
        )
        audiences.install_core_segments(s, con, principal=platform_service.system_principal(s, source="test"))
    tags = tag_store.tags_table(con).to_pyarrow().to_pylist()
    yield Bank(con, store, tags)
    con.disconnect()
    store.dispose()
