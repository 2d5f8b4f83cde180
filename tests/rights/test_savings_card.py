"""The savings card: the auditable draw, purchase → signed callbacks → issue / release / refund,
duplicated and out-of-order callbacks, and 64 concurrent buyers against a limited inventory."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bankgrowth.errors import Conflict, Unauthenticated
from bankgrowth.platform.access import Principal
from bankgrowth.rights import savings_card
from bankgrowth.rights import service as rights_service
from bankgrowth.rights.models import CardOrder, CardProduct, Holding, PaymentEvent
from bankgrowth.rights.payments import SimulatedProvider
from bankgrowth.rights.schemas import PoolCreate, ProductCreate, RightCreate
from tests.rights.test_ledger import make, reconciled

PROVIDER = SimulatedProvider(secret=b"test-callback-secret")
TABLE = [{"price_fen": 99, "weight": 50}, {"price_fen": 490, "weight": 30}, {"price_fen": 990, "weight": 20}]


def card(store: Engine, hq: Principal, *, bundles: int = 100, limit: int = 1) -> int:
    """A card of 4 × ¥5 WeChat Pay vouchers plus 1 rural e-commerce voucher, inventory for ``bundles``."""
    make(store, hq, limit_units=4 * bundles)
    with Session(store) as session, session.begin():
        rights_service.create_right(
            session,
            principal=hq,
            data=RightCreate(
                code="rural10",
                kind="voucher",
                name_zh="乡村振兴电商立减金",
                name_en="Rural e-commerce voucher",
                face_value_fen=1000,
                unit_cost_fen=1000,
                valid_days=30,
            ),
        )
        rights_service.create_pool(
            session,
            principal=hq,
            data=PoolCreate(code="rural", name_zh="乡村", name_en="Rural", limit_units=bundles, stripes=4),
        )
        product = savings_card.create_product(
            session,
            principal=hq,
            data=ProductCreate(
                code="card1",
                name_zh="省钱卡",
                name_en="Savings card",
                list_price_fen=990,
                price_table=TABLE,
                bundle=[
                    {"right": "r-voucher", "quantity": 4, "pool": "p1"},
                    {"right": "rural10", "quantity": 1, "pool": "rural"},
                ],
                purchase_limit=limit,
            ),
        )
        return product.id


def buy(store: Engine, product_id: int, customer: str, key: str) -> CardOrder:
    with Session(store, expire_on_commit=False) as session, session.begin():
        product = session.get_one(CardProduct, product_id)
        return savings_card.purchase(
            session, product=product, customer_id=customer, key=key, method="card", provider=PROVIDER, actor="app"
        ).order


def call_back(store: Engine, order: CardOrder, kind: str, event_id: str | None = None) -> savings_card.CallbackOutcome:
    body, signature = PROVIDER.callback(
        order_no=order.order_no,
        kind=kind,
        amount_fen=order.price_fen,
        at=datetime.now(UTC),
        event_id=event_id,  # type: ignore[arg-type]
    )
    with Session(store) as session, session.begin():
        return savings_card.handle_callback(
            session, provider=PROVIDER, body=body, signature=signature, actor="provider"
        )


def test_the_draw_follows_the_table_exactly_and_can_be_recomputed() -> None:
    # given / when: the three shares of 2**64, at their edges
    edge1, edge2 = -(-(50 << 64) // 100), -(-(80 << 64) // 100)  # the first u of each share
    picks = [savings_card.draw_price(TABLE, u) for u in (0, edge1 - 1, edge1, edge2 - 1, edge2, 2**64 - 1)]
    rng = random.Random(1)
    drawn = Counter(savings_card.draw_price(TABLE, rng.getrandbits(64))[0] for _ in range(20_000))
    # then
    assert [p for p, _ in picks] == [99, 99, 490, 490, 990, 990]
    assert abs(drawn[99] / 20_000 - 0.5) < 0.015 and abs(drawn[990] / 20_000 - 0.2) < 0.015


def test_a_paid_card_issues_its_whole_bundle_once_whatever_the_callbacks_do(store: Engine, hq: Principal) -> None:
    # given
    product_id = card(store, hq)
    order = buy(store, product_id, "C1", "buy-1")
    same = buy(store, product_id, "C1", "buy-1")
    # when: paid twice (one event repeated), then a stale 'failed'
    first = call_back(store, order, "paid", event_id="e1")
    repeat = call_back(store, order, "paid", event_id="e1")
    second_paid = call_back(store, order, "paid", event_id="e2")
    stale = call_back(store, order, "failed", event_id="e3")
    # then
    assert same.order_no == order.order_no and order.price_fen in (99, 490, 990)
    assert order.draw["table"] == TABLE and savings_card.draw_price(TABLE, int(order.draw["u"]))[0] == order.price_fen
    assert [o.outcome for o in (first, repeat, second_paid, stale)] == ["applied", "duplicate", "ignored", "ignored"]
    assert stale.status == "issued"
    with Session(store) as session:
        units = Counter(h.units for h in session.scalars(select(Holding).where(Holding.customer_id == "C1")))
        assert units == Counter({4: 1, 1: 1})  # one holding of 4 vouchers, one of the rural voucher
        assert session.scalar(select(func.count()).select_from(PaymentEvent)) == 3
    reconciled(store)


def test_a_failed_or_expired_payment_releases_the_inventory_and_the_limit(store: Engine, hq: Principal) -> None:
    # given: one bundle of inventory, one purchase per customer
    product_id = card(store, hq, bundles=1)
    order = buy(store, product_id, "C1", "buy-1")
    with pytest.raises(Conflict) as sold_out:
        buy(store, product_id, "C2", "buy-2")
    # when
    call_back(store, order, "failed")
    again = buy(store, product_id, "C1", "buy-3")  # C1 may buy again: the failed one does not count
    with Session(store) as session, session.begin():
        expired = savings_card.expire_orders(session, actor="job", now=datetime.now(UTC) + timedelta(minutes=16))
    late = call_back(store, again, "paid")
    # then
    assert sold_out.value.code == "sold_out"
    assert expired == 1
    assert (late.outcome, late.status) == ("late", "refund_due")
    with Session(store) as session:
        assert session.scalar(select(func.count()).select_from(Holding)) == 0
    reconciled(store)


def test_the_purchase_limit_and_a_refund_that_revokes_what_is_unused(store: Engine, hq: Principal) -> None:
    # given
    product_id = card(store, hq)
    order = buy(store, product_id, "C1", "buy-1")
    call_back(store, order, "paid")
    with pytest.raises(Conflict) as limited:
        buy(store, product_id, "C1", "buy-2")
    with Session(store) as session, session.begin():
        rural = session.scalars(select(Holding).where(Holding.units == 1)).one()
        rights_service.redeem(session, principal=hq, holding_id=rural.id, units=1, key="pay-77")
    # when
    refunded = call_back(store, order, "refunded")
    # then
    assert limited.value.code == "purchase_limit"
    assert refunded.status == "refunded"
    with Session(store) as session:
        statuses = {h.units: h.status for h in session.scalars(select(Holding))}
        assert statuses == {4: "revoked", 1: "redeemed"}
    reconciled(store)


def test_a_callback_with_a_wrong_signature_changes_nothing(store: Engine, hq: Principal) -> None:
    # given
    product_id = card(store, hq)
    order = buy(store, product_id, "C1", "buy-1")
    body, _ = PROVIDER.callback(order_no=order.order_no, kind="paid", amount_fen=order.price_fen, at=datetime.now(UTC))
    # when / then
    with Session(store) as session, session.begin(), pytest.raises(Unauthenticated):
        savings_card.handle_callback(session, provider=PROVIDER, body=body, signature="0" * 64, actor="x")
    with Session(store) as session:
        assert session.scalar(select(CardOrder.status)) == "pending"


def test_64_buyers_with_retries_and_duplicated_callbacks_sell_exactly_the_inventory(
    store: Engine, hq: Principal
) -> None:
    # given: inventory for 300 cards; 2,000 purchase attempts over 1,200 keys; every callback sent
    # one to three times, and one order in ten fails before it is (wrongly) reported paid
    product_id = card(store, hq, bundles=300, limit=5)
    rng = random.Random(11)
    attempts = [rng.randrange(1200) for _ in range(2000)]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def client(chunk: list[int]) -> None:
        local = random.Random(chunk[0] if chunk else 0)
        for n in chunk:
            try:
                order = buy(store, product_id, f"C{n % 400}", f"buy-{n}")
            except Conflict as e:
                with lock:
                    outcomes[e.code] += 1
                continue
            kinds = ["failed", "paid"] if local.random() < 0.1 else ["paid"]
            for kind in kinds:
                event = f"{order.order_no}-{kind}"
                for _ in range(local.randint(1, 3)):
                    result = call_back(store, order, kind, event_id=event)
                    with lock:
                        outcomes[result.outcome] += 1

    # when
    with ThreadPoolExecutor(64) as pool:
        list(pool.map(client, [attempts[i::64] for i in range(64)]))

    # then
    with Session(store) as session:
        issued = session.scalar(select(func.count()).select_from(CardOrder).where(CardOrder.status == "issued"))
        holdings = session.execute(select(Holding.units, func.count()).group_by(Holding.units)).all()
        keys = list(session.scalars(select(Holding.grant_key)))
    assert issued == 300
    assert dict((u, n) for u, n in holdings) == {4: 300, 1: 300}
    assert len(keys) == len(set(keys))
    assert outcomes["sold_out"] > 0 and outcomes["duplicate"] > 0
    reconciled(store)
