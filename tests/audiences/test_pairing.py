"""The warehouse's snapshots, lists and assignments are keyed by the operational store's ids: a
second store is refused before it mixes its members with the first's, and the remains of a write
killed before its commit are replaced rather than added to."""

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
from bankgrowth.audiences import store as members_store
from bankgrowth.audiences.schemas import AudienceCreate, ListUpload
from bankgrowth.errors import Conflict
from bankgrowth.operational import db
from bankgrowth.platform import service as platform_service
from bankgrowth.warehouse import engine as wh

RULE = "stage in ('super', 'transacting')"


@dataclass
class Warehouse:
    con: ibis.BaseBackend
    folder: Path

    def store(self, name: str) -> Engine:
        """A new operational store with the org tree and one audience, as a bank would set one up."""
        engine = db.make_engine(f"sqlite:///{self.folder / name}")
        db.upgrade(engine)
        with Session(engine) as s, s.begin():
            system = platform_service.system_principal(s, source="test")
            platform_service.sync_orgs(s, principal=system, rows=self.con.table("branches").to_pyarrow().to_pylist())
            audiences.create(
                s, self.con, principal=system, data=AudienceCreate(code="a", name_zh="甲", name_en="A", text=RULE)
            )
        return engine


@pytest.fixture
def warehouse(insight_bank: Path, tmp_path: Path) -> Iterator[Warehouse]:
    shutil.copy(insight_bank, tmp_path / "warehouse.duckdb")
    con = wh.connect(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    yield Warehouse(con, tmp_path)
    con.disconnect()


def _snapshot(store: Engine, con: ibis.BaseBackend) -> int:
    with Session(store, expire_on_commit=False) as s, s.begin():
        snap = audiences.snapshot(s, con, principal=platform_service.system_principal(s, source="test"), code="a")
        return snap.id


def _members(con: ibis.BaseBackend, snapshot_id: int) -> list[int]:
    return members_store.snapshot_members(con, snapshot_id).customer_id.to_pyarrow().to_pylist()


def test_a_second_operational_store_is_refused_before_it_writes(warehouse: Warehouse) -> None:
    # given: a snapshot by the first store (its id 1)
    first = warehouse.store("first.sqlite")
    kept = _snapshot(first, warehouse.con)
    before = sorted(_members(warehouse.con, kept))
    # when: a new store, whose first snapshot would also be id 1, snapshots and uploads
    second = warehouse.store("second.sqlite")
    with pytest.raises(Conflict) as snapshot_refused:
        _snapshot(second, warehouse.con)
    with pytest.raises(Conflict) as upload_refused, Session(second) as s, s.begin():
        audiences.upload(
            s,
            warehouse.con,
            principal=platform_service.system_principal(s, source="test"),
            data=ListUpload(code="vip", name_zh="贵宾", name_en="VIP", customer_ids=["1", "2", "3"]),
        )
    # then: both refused with what to do; the first store's members are as they were
    assert kept == 1
    assert snapshot_refused.value.code == upload_refused.value.code == "warehouse_of_another_store"
    assert "BANKGROWTH_OPERATIONAL_URL" in str(snapshot_refused.value)
    assert sorted(_members(warehouse.con, kept)) == before and len(before) > 0
    # and the first store goes on writing
    assert _snapshot(first, warehouse.con) == 2


def test_members_left_by_a_snapshot_killed_before_its_commit_are_replaced(warehouse: Warehouse) -> None:
    # given: members under id 1 whose operational row never committed (written, then the process died)
    store = warehouse.store("operational.sqlite")
    members_store.ensure(warehouse.con)
    orphans = ibis.memtable({"snapshot_id": [1, 1, 1], "customer_id": [999_001, 999_002, 999_003]})
    warehouse.con.insert(members_store.SNAPSHOTS, orphans)
    # when: the next snapshot is given the same id
    snapshot_id = _snapshot(store, warehouse.con)
    # then: it holds its own members only
    with Session(store) as s:
        expected = audiences.count(
            s, warehouse.con, principal=platform_service.system_principal(s, source="test"), code="a"
        )
    members = _members(warehouse.con, snapshot_id)
    assert snapshot_id == 1
    assert len(members) == len(set(members)) == expected.customers
    assert not {999_001, 999_002, 999_003} & set(members)
