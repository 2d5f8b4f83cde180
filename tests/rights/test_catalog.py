"""A catalog kept as a file: installed once, installed again without change, an entry with other
terms named and left alone, and an entry that cannot be created leaving nothing half-installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bankgrowth.cli.main import app
from bankgrowth.errors import NotFound
from bankgrowth.platform.access import Principal
from bankgrowth.rights import catalog
from bankgrowth.rights.models import CardProduct, Pool, Right
from bankgrowth.rights.schemas import Catalog


def _counts(store: Engine) -> tuple[int, int, int]:
    with Session(store) as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) or 0 for m in (Right, Pool, CardProduct))  # type: ignore[return-value]


def test_the_demo_catalog_installs_once_and_again_changes_nothing(store: Engine, hq: Principal) -> None:
    # when
    with Session(store) as s, s.begin():
        first = catalog.install(s, principal=hq, catalog=catalog.demo_catalog())
    with Session(store) as s, s.begin():
        again = catalog.install(s, principal=hq, catalog=catalog.demo_catalog())
    # then
    assert first.created == [
        "right demo.voucher5",
        "right demo.card_voucher",
        "pool demo.activation",
        "pool demo.cards",
        "savings card demo.card",
    ]
    assert again.created == [] and again.differing == [] and sorted(again.kept) == sorted(first.created)
    assert _counts(store) == (2, 2, 1)
    with Session(store) as s:
        voucher = s.scalar(select(Right).where(Right.code == "demo.voucher5"))
        assert voucher is not None and (voucher.face_value_fen, voucher.min_spend_fen, voucher.org_id) == (
            500,
            1000,
            "HQ",
        )


def test_an_entry_present_with_other_terms_is_named_and_left_as_it_is(store: Engine, hq: Principal) -> None:
    # given: the demo catalog installed, then a file that says the voucher is worth ¥6 and the pool is B01's
    with Session(store) as s, s.begin():
        catalog.install(s, principal=hq, catalog=catalog.demo_catalog())
    changed = catalog.demo_catalog().model_dump()
    changed["rights"][0]["face_value_fen"] = 600
    changed["pools"][0]["org_id"] = "B01"
    # when
    with Session(store) as s, s.begin():
        done = catalog.install(s, principal=hq, catalog=Catalog.model_validate(changed))
    # then
    assert done.created == []
    assert done.differing == [
        "right demo.voucher5: face_value_fen is 500 here, 600 in the catalog",
        "pool demo.activation: org_id is 'HQ' here, 'B01' in the catalog",
    ]
    with Session(store) as s:
        assert s.scalar(select(Right.face_value_fen).where(Right.code == "demo.voucher5")) == 500


def test_an_entry_that_cannot_be_created_leaves_nothing_installed(store: Engine, hq: Principal) -> None:
    # given: a card whose bundle names a right that is neither in the file nor in the store
    data = catalog.demo_catalog().model_dump()
    data["savings_cards"][0]["bundle"][0]["right"] = "demo.nowhere"
    # when
    with pytest.raises(NotFound) as raised, Session(store) as s, s.begin():
        catalog.install(s, principal=hq, catalog=Catalog.model_validate(data))
    # then
    assert str(raised.value) == "savings_cards[0] demo.card: no right demo.nowhere"
    assert _counts(store) == (0, 0, 0)


def test_install_from_the_command_line_names_each_problem_of_a_bad_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the demo catalog as a file, and a file with three problems in two pools
    monkeypatch.setenv("BANKGROWTH_DATA_DIR", str(tmp_path))
    good = tmp_path / "catalog.json"
    good.write_text(json.dumps(catalog.demo_catalog().model_dump(mode="json"), ensure_ascii=False), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"pools": [{"code": "p1", "name_zh": "池", "name_en": "Pool", "limit_fen": "lots"}, {"code": "p2"}]}
        ),
        encoding="utf-8",
    )
    runner = CliRunner()
    # when
    installed = runner.invoke(
        app, ["admin", "create", "--username", "admin"], env={"BANKGROWTH_ADMIN_PASSWORD": "a-long-password-1"}
    )
    first = runner.invoke(app, ["rights", "install", str(good)])
    again = runner.invoke(app, ["rights", "install", str(good)])
    refused = runner.invoke(app, ["rights", "install", str(bad)])
    listed = runner.invoke(app, ["rights", "pools"])
    # then
    assert installed.exit_code == 0, installed.output
    assert first.exit_code == 0, first.output
    assert "5 created, 0 already present, 0 different" in first.output and "+ savings card demo.card" in first.output
    assert "0 created, 5 already present, 0 different" in again.output
    assert refused.exit_code == 1
    assert "bad.json: 3 problems" in refused.output
    assert (
        "pools[0].limit_fen: Input should be a valid integer" in refused.output and '(found "lots")' in refused.output
    )
    assert "pools[1].name_zh: Field required" in refused.output and "pools[1].name_en: Field required" in refused.output
    assert "p1" not in listed.output and "demo.activation" in listed.output
