"""The rights tests run on both operational stores: a SQLite file, and a real PostgreSQL server
started once per test session from the machine's binaries (one fresh database per test)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bankgrowth.operational import db, localpg
from bankgrowth.platform import service as platform_service
from bankgrowth.platform.access import Principal

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[localpg.LocalPostgres]:
    with localpg.local_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated operational store with the HQ org, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'operational.sqlite'}"
    else:
        server = request.getfixturevalue("postgres")
        url = localpg.create_database(server, f"rights_{next(_databases)}")
    engine = db.make_engine(url, pool_size=70, max_overflow=10)
    db.upgrade(engine)
    with Session(engine) as session, session.begin():
        platform_service.ensure_root(session)
        platform_service.sync_orgs(
            session,
            principal=platform_service.system_principal(session, source="test"),
            rows=[
                {"branch_id": "HQ", "parent_id": None, "level": "hq", "name_zh": "总行", "name_en": "Head office"},
                {"branch_id": "B01", "parent_id": "HQ", "level": "branch", "name_zh": "一分行", "name_en": "Branch 1"},
                {"branch_id": "B02", "parent_id": "HQ", "level": "branch", "name_zh": "二分行", "name_en": "Branch 2"},
            ],
        )
    yield engine
    engine.dispose()


@pytest.fixture
def hq(store: Engine) -> Principal:
    with Session(store) as session:
        return platform_service.system_principal(session, source="test")
