"""Audiences over the small bank: the core segments, rule errors that name their place, versions,
snapshots and diffs, overlaps, uploaded lists, branch scope, previews and exports."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bankgrowth.audiences import rules
from bankgrowth.audiences import service as audiences
from bankgrowth.audiences.rules import RuleError
from bankgrowth.audiences.schemas import AudienceCreate, Definition, ListUpload
from bankgrowth.audiences.segments import CORE_SEGMENTS
from bankgrowth.errors import Invalid, NotFound
from bankgrowth.platform.models import AuditEntry
from tests.audiences.conftest import Bank


def _count(bank: Bank, code: str, org: str | None = None) -> int:
    with Session(bank.store, expire_on_commit=False) as s:
        return audiences.count(s, bank.con, principal=bank.principal(s, org), code=code).customers


def _members(bank: Bank, code: str, org: str | None = None) -> set[int]:
    with Session(bank.store, expire_on_commit=False) as s:
        who = bank.principal(s, org)
        t, _ = audiences.members(
            s, bank.con, principal=who, audience=audiences.get_or_raise(s, principal=who, code=code)
        )
        return set(t.customer_id.to_pyarrow().to_pylist())


def test_the_core_segments_are_at_least_15_segments_that_select_what_they_say(bank: Bank) -> None:
    # given
    assert len(CORE_SEGMENTS) >= 15
    assert all(seg.zh and seg.en and seg.description_zh and seg.description_en for seg in CORE_SEGMENTS)
    counts = {seg.code: _count(bank, seg.code) for seg in CORE_SEGMENTS}
    # then: every segment selects someone in this bank, and a few agree with the tags read directly
    assert all(0 < n < len(bank.tags) for code, n in counts.items() if code != "core.won_back_30d"), counts
    assert _members(bank, "core.super_users") == bank.ids(lambda r: r["stage"] == "super")
    assert _members(bank, "core.young") == bank.ids(lambda r: r["age"] is not None and 18 <= r["age"] <= 25)
    assert _members(bank, "core.at_risk_super") == bank.ids(
        lambda r: r["stage"] == "at_risk" and r["txn_count_365d"] > 20
    )


def test_rule_errors_name_the_line_and_column_or_the_json_path(bank: Bank) -> None:
    session = Session(bank.store, expire_on_commit=False)
    cat = audiences.catalog(session, bank.con, principal=bank.principal(session))
    cases = [
        ("stage = 'super' and\n  txn_count_30 >= 3", (2, 3), "did you mean 'txn_count_30d'"),
        ("stage in ('super', 'supr')", (1, 20), "'supr' is not a value of stage"),
        ("age >= 'x'", (1, 8), "expected a whole number"),
        ("age >= 3 and (stage = 'super'", (1, 30), "expected ')'"),
        ("first_bound_at in last 0 days", (1, 24), "whole number of days"),
        ("gender in last 7 days", (1, 1), "needs a timestamp or date"),
        ("audience('nope')", (1, 10), "unknown audience"),
    ]
    for text, (line, column), message in cases:
        with pytest.raises(RuleError) as caught:
            rules.parse(text, cat)
        assert (caught.value.details.get("line"), caught.value.details.get("column")) == (line, column), text
        assert message in caught.value.en, caught.value.en
    with pytest.raises(RuleError) as caught:
        rules.check(
            rules.from_json(
                {"and": [{"field": "age", "op": ">=", "value": 1}, {"field": "agee", "op": "=", "value": 1}]}
            ),
            cat,
        )
    assert caught.value.details["where"] == "$.and[1]"
    with pytest.raises(RuleError) as caught:
        rules.from_json({"or": [{"field": "age", "op": ">>", "value": 1}]})
    assert caught.value.details["where"] == "$.or[0].op"
    session.close()


def test_versions_snapshots_and_their_diff(bank: Bank) -> None:
    # given: an audience, snapshotted, then tightened and snapshotted again
    with Session(bank.store, expire_on_commit=False) as s, s.begin():
        who = bank.principal(s)
        audiences.create(
            s,
            bank.con,
            principal=who,
            data=AudienceCreate(code="t.active", name_zh="活跃", name_en="Active", text="txn_count_30d >= 1"),
        )
        first = audiences.snapshot(s, bank.con, principal=who, code="t.active")
        tightened = {
            "and": [
                {"field": "txn_count_30d", "op": ">=", "value": 1},
                {"field": "stage", "op": "=", "value": "super"},
            ]
        }
        audiences.update(s, bank.con, principal=who, code="t.active", data=Definition(rule=tightened))
        second = audiences.snapshot(s, bank.con, principal=who, code="t.active")
        d = audiences.diff(s, bank.con, principal=who, before=first.id, after=second.id)
        v1 = audiences.version_of(s, audiences.get_or_raise(s, principal=who, code="t.active"), 1)
    # then
    active = bank.ids(lambda r: r["txn_count_30d"] >= 1)
    both = bank.ids(lambda r: r["txn_count_30d"] >= 1 and r["stage"] == "super")
    assert (first.version, first.members, second.version, second.members) == (1, len(active), 2, len(both))
    assert (d.before, d.after, d.only_before, d.only_after, d.both) == (
        len(active),
        len(both),
        len(active - both),
        0,
        len(both),
    )
    assert set(d.left_sample) <= active - both
    assert v1.text == "txn_count_30d >= 1"  # the first version is kept as written


def test_overlap_is_the_pairwise_intersection(bank: Bank) -> None:
    codes = ["core.super_users", "core.young", "core.multi_institution"]
    with Session(bank.store, expire_on_commit=False) as s:
        counts, _ = audiences.overlap(s, bank.con, principal=bank.principal(s), codes=codes)
        with pytest.raises(Invalid):
            audiences.overlap(s, bank.con, principal=bank.principal(s), codes=codes[:1])
    sets = [_members(bank, c) for c in codes]
    assert counts == [[len(a & b) for b in sets] for a in sets]


def test_an_uploaded_list_reports_unknown_ids_and_keeps_the_rest_and_nests(bank: Bank) -> None:
    # given: ids of branch B01's customers, one of B02's, a missing one, a typo and a repeat
    b01 = sorted(bank.ids(lambda r: str(r["branch_id"]).startswith("B01")))[:5]
    b02 = sorted(bank.ids(lambda r: str(r["branch_id"]).startswith("B02")))[0]
    ids = [str(i) for i in b01] + [str(b01[0]), str(b02), "999999999", "12a"]
    # when: a B01 operator uploads them
    with Session(bank.store, expire_on_commit=False) as s, s.begin():
        up = audiences.upload(
            s,
            bank.con,
            principal=bank.principal(s, "B01"),
            data=ListUpload(code="t.vip", name_zh="贵宾", name_en="VIP", customer_ids=ids),
        )
        nested = audiences.create(
            s,
            bank.con,
            principal=bank.principal(s, "B01"),
            data=AudienceCreate(
                code="t.vip_super", name_zh="x", name_en="x", text="audience('t.vip') and stage = 'super'"
            ),
        )
    # then
    assert (up.accepted, up.duplicates) == (5, 1)
    assert up.unknown == [str(b02), "999999999"]
    assert up.malformed == [(9, "12a")]  # the ninth id, named apart from the numbers that are not customers
    assert _members(bank, "t.vip", "B01") == set(b01)
    assert _members(bank, nested.code, "B01") == set(b01) & bank.ids(lambda r: r["stage"] == "super")
    with Session(bank.store, expire_on_commit=False) as s, pytest.raises(NotFound):
        audiences.get_or_raise(s, principal=bank.principal(s, "B02"), code="t.vip")  # B01's list is not B02's


def test_a_branch_counts_only_its_own_customers_with_hq_definitions(bank: Bank) -> None:
    # when
    mine = _members(bank, "core.super_users", "B02")
    # then
    assert mine == bank.ids(lambda r: r["stage"] == "super" and str(r["branch_id"]).startswith("B02"))
    assert 0 < len(mine) < _count(bank, "core.super_users")


def test_cycles_are_refused_naming_the_chain(bank: Bank) -> None:
    with Session(bank.store, expire_on_commit=False) as s, s.begin():
        who = bank.principal(s)
        audiences.create(
            s, bank.con, principal=who, data=AudienceCreate(code="t.a", name_zh="a", name_en="a", text="age >= 30")
        )
        audiences.create(
            s,
            bank.con,
            principal=who,
            data=AudienceCreate(code="t.b", name_zh="b", name_en="b", text="audience('t.a')"),
        )
        with pytest.raises(RuleError) as caught:
            audiences.update(
                s, bank.con, principal=who, code="t.a", data=Definition(text="audience('t.b') or age < 20")
            )
    assert "t.a → t.b → t.a" in caught.value.en


def test_preview_is_masked_and_export_is_audited(bank: Bank, tmp_path: Path) -> None:
    with Session(bank.store, expire_on_commit=False) as s, s.begin():
        who = bank.principal(s)
        rows = audiences.preview(s, bank.con, principal=who, code="core.super_users", limit=5)
        snap = audiences.snapshot(s, bank.con, principal=who, code="core.young")
        n = audiences.export(
            s, bank.con, principal=who, snapshot_id=snap.id, path=tmp_path / "young.csv", columns=["age", "stage"]
        )
        audited = s.scalars(select(AuditEntry.action).where(AuditEntry.object_id == str(snap.id))).all()
    assert len(rows) == 5 and all("*" in str(r["name"]) and "****" in str(r["phone"]) for r in rows)
    with (tmp_path / "young.csv").open() as f:
        exported = list(csv.DictReader(f))
    assert n == len(exported) == snap.members and all(18 <= int(r["age"]) <= 25 for r in exported)
    assert set(exported[0]) == {"customer_id", "age", "stage"}
    assert {"audiences.snapshot", "audiences.export"} <= set(audited)


def test_a_live_count_of_an_unsaved_rule_equals_the_saved_audience(bank: Bank) -> None:
    text = "txn_count(30 days, institution in ('wechat_pay', 'alipay')) >= 2 and not (gender = 'F')"
    with Session(bank.store, expire_on_commit=False) as s, s.begin():
        who = bank.principal(s)
        live, _ = audiences.count_rule(s, bank.con, principal=who, data=Definition(text=text))
        audiences.create(
            s, bank.con, principal=who, data=AudienceCreate(code="t.live", name_zh="x", name_en="x", text=text)
        )
    assert live == _count(bank, "t.live") > 0


def test_a_count_after_the_nightly_run_reads_the_new_version(insight_bank: Path, tmp_path: Path) -> None:
    # given: a count on the 2026-10-31 version (profile built, SQL compiled and kept)
    import shutil
    from datetime import date

    from bankgrowth.config import Settings
    from bankgrowth.insight import service as insight
    from bankgrowth.insight import store as tag_store
    from bankgrowth.operational import db
    from bankgrowth.platform import service as platform_service
    from bankgrowth.warehouse import engine as wh

    shutil.copy(insight_bank, tmp_path / "warehouse.duckdb")
    con = wh.connect(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    store = db.make_engine(f"sqlite:///{tmp_path / 'operational.sqlite'}")
    db.upgrade(store)
    text = "stage = 'super' and days_since_last_txn <= 3"
    with Session(store, expire_on_commit=False) as s, s.begin():
        platform_service.ensure_root(s)
        hq = platform_service.system_principal(s, source="test")
        audiences.create(s, con, principal=hq, data=AudienceCreate(code="t.fresh", name_zh="x", name_en="x", text=text))
        before = audiences.count(s, con, principal=hq, code="t.fresh")
        again = audiences.count(s, con, principal=hq, code="t.fresh")
    # when: the next night's version is written
    insight.run(con, Settings(data_dir=tmp_path), as_of=date(2026, 11, 3), beyond_data=True)
    with Session(store, expire_on_commit=False) as s:
        after = audiences.count(s, con, principal=platform_service.system_principal(s, source="test"), code="t.fresh")
    # then: the count follows the new version, and equals the tags read directly
    t = tag_store.tags_table(con, date(2026, 11, 3))
    expected = int(t.filter((t.stage == "super") & (t.days_since_last_txn <= 3)).count().execute())
    con.disconnect()
    assert (before.as_of, again.customers) == (date(2026, 10, 31), before.customers)
    assert after.as_of == date(2026, 11, 3) and after.customers == expected != before.customers


def test_the_first_counts_after_a_nightly_run_arriving_together_all_answer(insight_bank: Path, tmp_path: Path) -> None:
    # given: a bank whose profile table (what counts read) is built, then a night run that makes it stale
    import shutil
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from datetime import date

    from bankgrowth.audiences import store as members_store
    from bankgrowth.config import Settings
    from bankgrowth.insight import service as insight
    from bankgrowth.insight import store as tag_store
    from bankgrowth.warehouse import engine as wh

    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    shutil.copy(insight_bank, tmp_path / "warehouse.duckdb")
    con = wh.connect(url)
    members_store.profile(con, date(2026, 10, 31))
    insight.run(con, Settings(data_dir=tmp_path), as_of=date(2026, 11, 1), beyond_data=True)
    t = tag_store.tags_table(con, date(2026, 11, 1))
    supers = int(t.filter(t.stage == "super").count().execute())
    con.disconnect()
    start = threading.Barrier(6)

    def count() -> int:  # as an API request counts: on its own thread, with its own connection
        c = wh.connect(url)
        try:
            start.wait()
            p = members_store.profile(c, date(2026, 11, 1))
            return int(p.filter(p.stage == "super").count().execute())
        finally:
            c.disconnect()

    # when: six counts at once, each finding the profile stale
    with ThreadPoolExecutor(6) as pool:
        answers = [f.result() for f in [pool.submit(count) for _ in range(6)]]
    # then: every one answers, from the new version
    assert answers == [supers] * 6
