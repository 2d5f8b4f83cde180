"""A bank with two branches' worth of people and keys, served by the real application.

Every request made through ``World.call`` is checked: a successful mutating request must leave an
audit entry carrying its request id."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bankgrowth.api.app import create_app
from bankgrowth.audiences import service as audiences
from bankgrowth.audiences.schemas import AudienceCreate
from bankgrowth.campaigns import service as campaigns
from bankgrowth.campaigns.schemas import Arm, CampaignCreate, Definition
from bankgrowth.campaigns.schemas import Message as Text
from bankgrowth.config import Settings
from bankgrowth.operational import db
from bankgrowth.platform import service as platform_service
from bankgrowth.platform.access import Role
from bankgrowth.platform.models import AuditEntry
from bankgrowth.platform.schemas import ApiKeyCreate, Channel, UserCreate
from bankgrowth.rights import savings_card
from bankgrowth.rights import service as rights_service
from bankgrowth.rights.schemas import (
    BundleItem,
    GrantCreate,
    PoolCreate,
    PricePoint,
    ProductCreate,
    RightCreate,
    RightKind,
)
from bankgrowth.warehouse import engine as wh

PASSWORD = "test-password-1"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# (username, org, roles): branch A is B01, branch B is B02
PEOPLE = [
    ("hq_admin", "HQ", [Role.ADMIN]),
    ("a_admin", "B01", [Role.ADMIN]),
    ("a_operator", "B01-S01", [Role.OPERATOR]),
    ("a_analyst", "B01", [Role.ANALYST]),
    ("a_approver", "B01", [Role.APPROVER]),
    ("a_auditor", "B01", [Role.AUDITOR]),
    ("b_admin", "B02", [Role.ADMIN]),
    ("b_operator", "B02-S01", [Role.OPERATOR]),
]


@dataclass
class World:
    client: TestClient
    engine: Engine
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, int] = field(default_factory=dict)
    customers: dict[str, list[int]] = field(default_factory=dict)  # "A"/"B" → customer ids
    branch_of: dict[int, str] = field(default_factory=dict)  # customer id → owning branch
    rights: dict[str, dict[str, Any]] = field(default_factory=dict)  # "A"/"B" → their rights objects
    mutations: int = 0

    def headers(self, who: str | None) -> dict[str, str]:
        if who is None:
            return {}
        if who.startswith("key:"):
            return {"X-API-Key": self.keys[who.removeprefix("key:")]}
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, method: str, path: str, who: str | None = None, **kwargs: Any) -> Any:
        response = self.client.request(
            method, path, headers={**self.headers(who), **kwargs.pop("headers", {})}, **kwargs
        )
        if method in MUTATING and response.is_success:
            rid = response.headers["X-Request-ID"]
            with Session(self.engine) as s:
                found = s.scalars(select(AuditEntry).where(AuditEntry.request_id == rid)).all()
            assert found, f"{method} {path} succeeded without an audit entry"
            self.mutations += 1
        return response

    def audit_count(self) -> int:
        with Session(self.engine) as s:
            return len(s.scalars(select(AuditEntry.id)).all())


def build_world(tmp: Path, warehouse: Path) -> World:
    own = tmp / "warehouse.duckdb"  # a copy: audience snapshots write members into the warehouse
    shutil.copy(warehouse, own)
    warehouse = own
    settings = Settings(
        data_dir=tmp,
        warehouse_url=f"duckdb:///{warehouse}",
        operational_url=f"sqlite:///{tmp / 'operational.sqlite'}",
    )
    engine = db.make_engine(settings.resolved_operational_url)
    db.upgrade(engine)
    con = wh.connect(settings.resolved_warehouse_url)
    branches = con.table("branches").to_pyarrow().to_pylist()
    cust = con.table("customers").select("customer_id", "branch_id").to_pyarrow().to_pylist()
    con.disconnect()
    world = World(TestClient(create_app(settings, engine=engine), raise_server_exceptions=False), engine, settings)
    world.branch_of = {r["customer_id"]: r["branch_id"] for r in cust}
    world.customers = {
        "A": sorted(r["customer_id"] for r in cust if r["branch_id"].startswith("B01")),
        "B": sorted(r["customer_id"] for r in cust if r["branch_id"].startswith("B02")),
    }
    with Session(engine, expire_on_commit=False) as s, s.begin():
        system = platform_service.system_principal(s, source="test")
        platform_service.sync_orgs(s, principal=system, rows=branches)
        for name, org, roles in PEOPLE:
            user = platform_service.create_user(
                s,
                principal=system,
                data=UserCreate(username=name, display_name=name, password=PASSWORD, org_id=org, roles=roles),
            )
            world.user_ids[name] = user.id
        for label, org in (("hq", "HQ"), ("a", "B01"), ("b", "B02")):
            key, plaintext = platform_service.create_key(
                s, principal=system, data=ApiKeyCreate(app=f"app-{label}", channel=Channel.APP, org_id=org)
            )
            world.keys[label], world.key_ids[label] = plaintext, key.id
    seed_rights(world)
    seed_audiences(world)
    for name, *_ in PEOPLE:
        r = world.call("POST", "/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        world.tokens[name] = r.json()["token"]
    return world


def seed_rights(world: World) -> None:
    """HQ's voucher and pool, and for each of branches A and B: its own voucher, pool and savings
    card, a holding granted to one of its customers and an order opened by another."""
    with Session(world.engine, expire_on_commit=False) as s, s.begin():
        for label, org in (("HQ", "HQ"), ("A", "B01"), ("B", "B02")):
            owner = platform_service.system_principal(s, source="test", org_id=org)
            prefix = label.lower()
            right = rights_service.create_right(
                s,
                principal=owner,
                data=RightCreate(
                    code=f"{prefix}_wechat5",
                    kind=RightKind.VOUCHER,
                    name_zh="微信立减金5元",
                    name_en="WeChat Pay ¥5 voucher",
                    face_value_fen=500,
                    institution="wechat_pay",
                    unit_cost_fen=500,
                    valid_days=30,
                ),
            )
            pool = rights_service.create_pool(
                s,
                principal=owner,
                data=PoolCreate(code=f"{prefix}_budget", name_zh="预算", name_en="Budget", limit_units=1000),
            )
            if label == "HQ":
                continue
            product = savings_card.create_product(
                s,
                principal=owner,
                data=ProductCreate(
                    code=f"{prefix}_card",
                    name_zh="省钱卡",
                    name_en="Savings card",
                    list_price_fen=990,
                    price_table=[PricePoint(price_fen=99, weight=1), PricePoint(price_fen=990, weight=1)],
                    bundle=[BundleItem(right=right.code, quantity=4, pool=pool.code)],
                ),
            )
            customers = world.customers[label]
            granted = rights_service.grant(
                s,
                principal=owner,
                data=GrantCreate(right=right.code, pool=pool.code, customer_id=str(customers[0]), key=f"seed-{label}"),
            )
            order = savings_card.purchase(
                s,
                product=product,
                customer_id=str(customers[1]),
                key=f"seed-{label}",
                method="card",
                provider=world.client.app.state.payments,  # type: ignore[attr-defined]
                actor="test",
            ).order
            world.rights[label] = {
                "right_code": right.code,
                "pool_code": pool.code,
                "product_code": product.code,
                "holding_id": granted.holding_id,
                "order_no": order.order_no,
            }


def seed_audiences(world: World) -> None:
    """The core segments at HQ; for each of branches A and B an audience of its own with a snapshot,
    and a draft campaign to it."""
    con = wh.connect(world.settings.resolved_warehouse_url)
    try:
        with Session(world.engine, expire_on_commit=False) as s, s.begin():
            audiences.install_core_segments(s, con, principal=platform_service.system_principal(s, source="test"))
            for label, org in (("A", "B01"), ("B", "B02")):
                owner = platform_service.system_principal(s, source="test", org_id=org)
                code = f"{label.lower()}.active"
                audiences.create(
                    s,
                    con,
                    principal=owner,
                    data=AudienceCreate(code=code, name_zh="活跃", name_en="Active", text="txn_count_30d >= 1"),
                )
                snap = audiences.snapshot(s, con, principal=owner, code=code)
                campaign = f"{label.lower()}.remind"
                campaigns.create(
                    s,
                    principal=owner,
                    data=CampaignCreate(
                        code=campaign,
                        name_zh="提醒",
                        name_en="Reminder",
                        definition=Definition(
                            audience=code, arms=[Arm(name="note", message=Text(zh="您好{surname}", en="Hello"))]
                        ),
                    ),
                )
                world.rights[label] |= {"code": code, "snapshot_id": snap.id, "campaign_code": campaign}
    finally:
        con.disconnect()


@pytest.fixture(scope="module")
def world(insight_bank: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Shared by a module's tests, which must not change what other tests rely on."""
    w = build_world(tmp_path_factory.mktemp("world"), insight_bank)
    yield w
    w.client.close()
    w.engine.dispose()


@pytest.fixture
def fresh_world(insight_bank: Path, tmp_path: Path) -> Iterator[World]:
    """A world of its own, for tests that change it."""
    w = build_world(tmp_path, insight_bank)
    yield w
    w.client.close()
    w.engine.dispose()
