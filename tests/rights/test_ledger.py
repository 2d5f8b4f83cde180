"""Grants, caps, reservations, redemption, spending, expiry, revocation and reconciliation, on
SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from bankgrowth.errors import Conflict
from bankgrowth.platform.access import Principal
from bankgrowth.rights import ledger
from bankgrowth.rights import service as rights_service
from bankgrowth.rights.counters import Cap
from bankgrowth.rights.ledger import GrantRequest, Source
from bankgrowth.rights.models import Holding, LedgerEntry, Pool, PoolStripe, Right
from bankgrowth.rights.schemas import Allocation, CodesImport, PoolCreate, RightCreate

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Monday
CAMPAIGN = Source("campaign", "c1")


def make(
    store: Engine,
    hq: Principal,
    *,
    kind: str = "voucher",
    limit_units: int | None = 100,
    limit_fen: int | None = None,
    period: str = "none",
    stripes: int = 4,
    valid_days: int | None = 30,
) -> tuple[int, int]:
    with Session(store) as session, session.begin():
        right = rights_service.create_right(
            session,
            principal=hq,
            data=RightCreate(
                code=f"r-{kind}",
                kind=kind,
                name_zh="微信立减金5元",
                name_en="WeChat Pay ¥5 voucher",
                face_value_fen=500 if kind in ("voucher", "coupon_code") else None,
                min_spend_fen=1000,
                institution="wechat_pay",
                unit_cost_fen=500 if kind in ("voucher", "coupon_code") else 1,
                valid_days=valid_days,
            ),
        )
        pool = rights_service.create_pool(
            session,
            principal=hq,
            data=PoolCreate(
                code="p1",
                name_zh="激活预算",
                name_en="Activation budget",
                limit_units=limit_units,
                limit_fen=limit_fen,
                period=period,
                stripes=stripes,
            ),
        )
        return right.id, pool.id


def grant(
    store: Engine, right_id: int, pool_id: int, requests: list[GrantRequest], **kwargs: object
) -> list[ledger.GrantResult]:
    with Session(store) as session, session.begin():
        right, pool = session.get_one(Right, right_id), session.get_one(Pool, pool_id)
        return ledger.grant_many(
            session,
            right=right,
            pool=pool,
            requests=requests,
            source=CAMPAIGN,
            actor="test",
            at=kwargs.pop("at", T0),
            **kwargs,  # type: ignore[arg-type]
        )


def reconciled(store: Engine) -> ledger.Reconciliation:
    with Session(store) as session:
        report = ledger.reconcile(session)
    assert report.problems == []
    return report


def test_a_grant_creates_a_holding_and_an_entry_and_a_retry_changes_nothing(store: Engine, hq: Principal) -> None:
    # given
    right_id, pool_id = make(store, hq)
    # when
    first = grant(store, right_id, pool_id, [GrantRequest("k1", "C1")])
    again = grant(store, right_id, pool_id, [GrantRequest("k1", "C1"), GrantRequest("k1", "C1")])
    # then
    assert first[0].status == "granted"
    assert [r.status for r in again] == ["duplicate", "duplicate"]
    assert {r.holding_id for r in again} == {first[0].holding_id}
    with Session(store) as session:
        holding = session.get_one(Holding, first[0].holding_id)
        assert (holding.remaining, holding.status, holding.expires_at) == (1, "active", T0 + timedelta(days=30))
        assert session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "grant")) == 1
        assert rights_service.usage(session, pool=session.get_one(Pool, pool_id)).left_units == 99
    reconciled(store)


def test_a_batch_stops_exactly_at_the_limit_and_says_why_each_was_refused(store: Engine, hq: Principal) -> None:
    # given: a pool of 10 units and ¥30, vouchers costing ¥5 — the money limit binds at 6
    right_id, pool_id = make(store, hq, limit_units=10, limit_fen=3000)
    # when
    results = grant(store, right_id, pool_id, [GrantRequest(f"k{i}", f"C{i}") for i in range(9)])
    # then
    assert [r.status for r in results] == ["granted"] * 6 + ["exhausted"] * 3
    with Session(store) as session:
        used = session.execute(select(func.sum(PoolStripe.used_units), func.sum(PoolStripe.used_fen))).one()
        assert tuple(used) == (6, 3000)
    reconciled(store)


def test_two_batches_of_one_pool_in_flight_at_once_do_not_wait_for_each_other(store: Engine, hq: Principal) -> None:
    # given: a pool with room on every stripe, and a batch granted in a transaction still open
    if store.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    right_id, pool_id = make(store, hq, limit_units=1000, stripes=4)
    with Session(store) as first, first.begin():
        right, pool = first.get_one(Right, right_id), first.get_one(Pool, pool_id)
        kwargs = {"right": right, "pool": pool, "source": CAMPAIGN, "actor": "test", "at": T0}
        a = ledger.grant_many(first, requests=[GrantRequest(f"a{i}", f"A{i}") for i in range(50)], **kwargs)
        # when: a second executor grants its batch from the same pool meanwhile; it must not queue
        # behind the first one's budget lock (waiting would fail the statement after 2 s)
        with Session(store) as second, second.begin():
            second.execute(text("SET LOCAL lock_timeout = '2s'"))
            b = ledger.grant_many(
                second,
                requests=[GrantRequest(f"b{i}", f"B{i}") for i in range(50)],
                **{**kwargs, "right": second.get_one(Right, right_id), "pool": second.get_one(Pool, pool_id)},
            )
    # then: both batches granted in full, on two different stripes, and the pool counts all 100
    assert [r.status for r in a + b] == ["granted"] * 100
    with Session(store) as session:
        used = session.scalars(select(PoolStripe.used_units).where(PoolStripe.used_units > 0)).all()
        assert sorted(used) == [50, 50]
        assert rights_service.usage(session, pool=session.get_one(Pool, pool_id)).left_units == 900
    reconciled(store)


def test_single_grants_reach_the_limit_across_stripes_and_never_pass_it(store: Engine, hq: Principal) -> None:
    # given: 10 units over 4 stripes (3, 3, 2, 2)
    right_id, pool_id = make(store, hq, limit_units=10, stripes=4)
    # when: one grant per transaction, 15 times
    statuses = [grant(store, right_id, pool_id, [GrantRequest(f"k{i}", f"C{i}")])[0].status for i in range(15)]
    # then
    assert statuses == ["granted"] * 10 + ["exhausted"] * 5
    reconciled(store)


def test_per_customer_caps_count_within_a_batch_and_across_batches(store: Engine, hq: Principal) -> None:
    # given
    right_id, pool_id = make(store, hq)
    cap = [Cap("campaign:c1", 2)]
    # when
    first = grant(store, right_id, pool_id, [GrantRequest(f"a{i}", "C1") for i in range(3)], caps=cap)
    second = grant(store, right_id, pool_id, [GrantRequest("b1", "C1"), GrantRequest("b2", "C2")], caps=cap)
    # then
    assert [r.status for r in first] == ["granted", "granted", "capped"]
    assert [r.status for r in second] == ["capped", "granted"]
    reconciled(store)


def test_a_refused_grant_gives_its_cap_count_back(store: Engine, hq: Principal) -> None:
    # given: one unit left, a cap of one per customer
    right_id, pool_id = make(store, hq, limit_units=1)
    cap = [Cap("right:x", 1)]
    grant(store, right_id, pool_id, [GrantRequest("a", "C1")], caps=cap)
    # when: C2 is refused for the budget; then the budget is given back by a revoke
    refused = grant(store, right_id, pool_id, [GrantRequest("b", "C2")], caps=cap)
    with Session(store) as session, session.begin():
        holding = session.scalars(select(Holding)).one()
        assert ledger.revoke(session, holding=holding, key="rv", actor="test", reason="test")
    retried = grant(store, right_id, pool_id, [GrantRequest("b", "C2")], caps=cap)
    # then: C2's cap was not used up by the refusal
    assert refused[0].status == "exhausted"
    assert retried[0].status == "granted"
    reconciled(store)


def test_a_daily_pool_starts_each_day_afresh_in_the_banks_timezone(store: Engine, hq: Principal) -> None:
    # given: 2 a day; 15:59 UTC is 23:59 in Shanghai, 16:00 UTC is the next day there
    right_id, pool_id = make(store, hq, limit_units=2, period="day")
    late, next_day = datetime(2026, 11, 2, 15, 59, tzinfo=UTC), datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
    # when
    day1 = grant(store, right_id, pool_id, [GrantRequest(f"d1-{i}", f"C{i}") for i in range(3)], at=late)
    day2 = grant(store, right_id, pool_id, [GrantRequest(f"d2-{i}", f"C{i}") for i in range(3)], at=next_day)
    # then
    assert [r.status for r in day1] == ["granted", "granted", "exhausted"]
    assert [r.status for r in day2] == ["granted", "granted", "exhausted"]
    assert reconciled(store).periods == 2


def test_coupon_codes_are_each_given_once_and_running_out_is_reported(store: Engine, hq: Principal) -> None:
    # given: three imported codes, one of them twice in the file
    right_id, pool_id = make(store, hq, kind="coupon_code")
    with Session(store) as session, session.begin():
        added = rights_service.add_codes(
            session, principal=hq, code="r-coupon_code", data=CodesImport(codes=["A1", "A2", "A3", "A1"])
        )
    # when
    results = grant(store, right_id, pool_id, [GrantRequest(f"k{i}", f"C{i}") for i in range(4)])
    # then
    assert added == (3, 1)
    assert [r.status for r in results] == ["granted"] * 3 + ["no_code"]
    with Session(store) as session:
        assert sorted(session.scalars(select(Holding.code))) == ["A1", "A2", "A3"]
        assert rights_service.usage(session, pool=session.get_one(Pool, pool_id)).used_units == 3
    reconciled(store)


def test_reservations_commit_or_release_once_and_expired_ones_are_released(store: Engine, hq: Principal) -> None:
    # given
    right_id, pool_id = make(store, hq, limit_units=2)
    with Session(store) as session, session.begin():
        right, pool = session.get_one(Right, right_id), session.get_one(Pool, pool_id)
        kw = {
            "right": right,
            "pool": pool,
            "quantity": 1,
            "ttl": timedelta(minutes=15),
            "source": CAMPAIGN,
            "actor": "t",
            "at": T0,
        }
        a = ledger.reserve(session, key="a", customer_id="C1", **kw)  # type: ignore[arg-type]
        b = ledger.reserve(session, key="b", customer_id="C2", **kw)  # type: ignore[arg-type]
        full = ledger.reserve(session, key="c", customer_id="C3", **kw)  # type: ignore[arg-type]
        same = ledger.reserve(session, key="a", customer_id="C1", **kw)  # type: ignore[arg-type]
        assert a is not None and b is not None and same is a and full is None
        # when
        holding = ledger.commit(session, reservation=a, actor="t", at=T0)
        twice = ledger.commit(session, reservation=a, actor="t", at=T0)
        released_after_commit = ledger.release(session, reservation=a, actor="t", reason="late", at=T0)
        expired = ledger.release_expired(session, actor="job", now=T0 + timedelta(minutes=16))
    # then
    assert holding is not None and twice is None and not released_after_commit
    assert expired == 1
    with Session(store) as session:
        assert rights_service.usage(session, pool=session.get_one(Pool, pool_id)).used_units == 1
    reconciled(store)


def test_redemption_is_idempotent_and_refuses_expired_or_used_vouchers(store: Engine, hq: Principal) -> None:
    # given
    right_id, pool_id = make(store, hq, valid_days=7)
    [a, b] = grant(store, right_id, pool_id, [GrantRequest("a", "C1"), GrantRequest("b", "C1")])
    with Session(store) as session, session.begin():
        ha, hb = session.get_one(Holding, a.holding_id), session.get_one(Holding, b.holding_id)
        # when
        first = ledger.redeem(session, holding=ha, key="pay-1", actor="pay", at=T0 + timedelta(days=1))
        again = ledger.redeem(session, holding=ha, key="pay-1", actor="pay", at=T0 + timedelta(days=1))
        with pytest.raises(Conflict) as used:
            ledger.redeem(session, holding=ha, key="pay-2", actor="pay", at=T0 + timedelta(days=1))
        with pytest.raises(Conflict) as late:
            ledger.redeem(session, holding=hb, key="pay-3", actor="pay", at=T0 + timedelta(days=8))
        expired = ledger.expire_due(session, actor="job", now=T0 + timedelta(days=8))
        ids = (ha.id, hb.id)
    # then
    assert (first.status, again.status) == ("redeemed", "duplicate")
    assert used.value.code == late.value.code == "not_redeemable"
    assert expired == 1
    with Session(store) as session:
        assert {i: st for i, st in session.execute(select(Holding.id, Holding.status))} == {
            ids[0]: "redeemed",
            ids[1]: "expired",
        }
    reconciled(store)


def test_points_are_spent_from_the_lot_that_expires_first(store: Engine, hq: Principal) -> None:
    # given: lots of 100 (expires in 30 days) and 50 (in 10 days)
    right_id, pool_id = make(store, hq, kind="points", limit_units=1000, valid_days=None)
    with Session(store) as session, session.begin():
        right, pool = session.get_one(Right, right_id), session.get_one(Pool, pool_id)
        right.valid_days = 30
        ledger.grant(
            session, right=right, pool=pool, request=GrantRequest("g1", "C1", 100), source=CAMPAIGN, actor="t", at=T0
        )
        right.valid_days = 10
        ledger.grant(
            session, right=right, pool=pool, request=GrantRequest("g2", "C1", 50), source=CAMPAIGN, actor="t", at=T0
        )
        # when
        spent = ledger.spend(session, customer_id="C1", right=right, units=70, key="order-9", actor="shop", at=T0)
        replay = ledger.spend(session, customer_id="C1", right=right, units=70, key="order-9", actor="shop", at=T0)
        with pytest.raises(Conflict):
            ledger.spend(session, customer_id="C1", right=right, units=81, key="order-10", actor="shop", at=T0)
    # then
    assert [s.units for s in spent] == [50, 20]
    assert {s.status for s in replay} == {"duplicate"}
    with Session(store) as session:
        lots = {h.units: h.remaining for h in session.scalars(select(Holding))}
    assert lots == {100: 80, 50: 0}
    reconciled(store)


def test_hq_allocates_budget_to_a_branch_pool_once(store: Engine, hq: Principal) -> None:
    # given
    make(store, hq, limit_units=100)
    with Session(store) as session, session.begin():
        branch_pool = rights_service.create_pool(
            session,
            principal=hq,
            data=PoolCreate(code="b01", name_zh="分行", name_en="Branch", org_id="B01", limit_units=0),
        )
        parent = rights_service.get_pool_or_raise(session, principal=hq, code="p1")
        # when
        for _ in range(2):
            rights_service.allocate(
                session, principal=hq, pool=parent, data=Allocation(to_pool="b01", units=30, key="q4")
            )
        with pytest.raises(Conflict):
            rights_service.allocate(
                session, principal=hq, pool=parent, data=Allocation(to_pool="b01", units=71, key="q5")
            )
        # then
        assert rights_service.usage(session, pool=parent).left_units == 70
        assert rights_service.usage(session, pool=branch_pool).left_units == 30
    reconciled(store)


def test_the_ledger_refuses_updates_and_deletes(store: Engine, hq: Principal) -> None:
    # given
    right_id, pool_id = make(store, hq)
    grant(store, right_id, pool_id, [GrantRequest("k1", "C1")])
    # when / then
    for statement in ("UPDATE ledger_entries SET units = 5", "DELETE FROM ledger_entries"):
        with Session(store) as session, pytest.raises((IntegrityError, DBAPIError)), session.begin():
            session.execute(text(statement))


def test_reconciliation_finds_a_counter_changed_behind_the_ledgers_back(store: Engine, hq: Principal) -> None:
    # given
    right_id, pool_id = make(store, hq)
    grant(store, right_id, pool_id, [GrantRequest("k1", "C1")])
    # when
    with Session(store) as session, session.begin():
        session.execute(text("UPDATE holdings SET remaining = 0, status = 'redeemed'"))
        session.execute(text("UPDATE pool_stripes SET used_units = used_units + 1 WHERE stripe = 0"))
    with Session(store) as session:
        report = ledger.reconcile(session)
    # then
    assert len(report.problems) == 2
    assert "remaining 0, ledger sum 1" in report.problems[0]
    assert "used 2 units" in report.problems[1]
