"""The rights commands an operator runs: reconcile (clean, then after a counter was changed behind
the ledger's back), the periodic jobs, and settlement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bankgrowth.cli.main import app
from bankgrowth.operational import db
from bankgrowth.platform import service as platform_service
from bankgrowth.rights import ledger
from bankgrowth.rights import service as rights_service
from bankgrowth.rights.ledger import GrantRequest, Source
from bankgrowth.rights.schemas import PoolCreate, RightCreate


def test_reconcile_jobs_and_settlement_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a store with three vouchers granted yesterday, one of them valid for a day only
    monkeypatch.setenv("BANKGROWTH_DATA_DIR", str(tmp_path))
    engine = db.make_engine(f"sqlite:///{tmp_path / 'operational.sqlite'}")
    db.upgrade(engine)
    yesterday = datetime.now(UTC) - timedelta(days=1, minutes=1)
    with Session(engine) as session, session.begin():
        platform_service.ensure_root(session)
        hq = platform_service.system_principal(session, source="test")
        right = rights_service.create_right(
            session,
            principal=hq,
            data=RightCreate(
                code="v5",
                kind="voucher",
                name_zh="立减金",
                name_en="Voucher",
                face_value_fen=500,
                unit_cost_fen=500,
                valid_days=1,
            ),
        )
        pool = rights_service.create_pool(
            session, principal=hq, data=PoolCreate(code="p", name_zh="池", name_en="Pool", limit_units=10)
        )
        ledger.grant_many(
            session,
            right=right,
            pool=pool,
            requests=[GrantRequest(f"k{i}", f"C{i}") for i in range(3)],
            source=Source("campaign", "c9"),
            actor="test",
            at=yesterday,
        )
    runner = CliRunner()
    # when
    jobs = runner.invoke(app, ["rights", "jobs"])
    clean = runner.invoke(app, ["rights", "reconcile"])
    report = runner.invoke(app, ["rights", "settlement"], env={"COLUMNS": "200"})
    with engine.begin() as conn:
        conn.execute(text("UPDATE pool_stripes SET used_units = limit_units"))
    dirty = runner.invoke(app, ["rights", "reconcile"])
    engine.dispose()
    # then
    assert jobs.exit_code == 0 and "expired holdings: 3" in jobs.output
    assert clean.exit_code == 0 and "clean" in clean.output
    assert report.exit_code == 0 and "campaign:c9" in report.output and "¥15.00" in report.output  # 3 × 500 fen
    assert dirty.exit_code != 0 and "used 10 units / 1500 fen, ledger 3 / 1500" in dirty.output
