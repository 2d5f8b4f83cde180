"""The savings card (省钱卡): a bundle of rights bought at a price drawn from a table.

Purchase: draw the price (the 64-bit random number and the table are kept on the order, so anyone
can recompute the price) → reserve the bundle's inventory → ask the provider for the payment. The
provider's signed callback then moves the order, under a lock on the order row:

- ``paid`` on a pending order: every reservation is committed into holdings, in one transaction;
  ``paid`` on an order already released (failed, expired): ``refund_due`` — the money goes back;
- ``failed`` on a pending order, or the payment window passing (``expire_orders``): the
  reservations are released and the purchase no longer counts against the customer's limit;
- ``refunded`` on an issued order: the vouchers not yet used are revoked;
- anything else — a duplicate event, a ``failed`` after ``paid``, a second ``paid`` — is
  recorded with the outcome ``ignored`` (or ``duplicate``) and changes nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bankgrowth.errors import Conflict, Invalid, NotFound
from bankgrowth.operational.base import utcnow
from bankgrowth.platform import audit
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.platform.service import in_scope_org
from bankgrowth.rights import counters, ledger
from bankgrowth.rights import service as rights_service
from bankgrowth.rights.counters import Cap
from bankgrowth.rights.ledger import DEFAULT_TIMEZONE, Source
from bankgrowth.rights.models import CardOrder, CardProduct, Holding, PaymentEvent, Pool, Reservation, Right
from bankgrowth.rights.payments import Method, PaymentProvider
from bankgrowth.rights.schemas import ProductCreate


def create_product(session: Session, *, principal: Principal, data: ProductCreate) -> CardProduct:
    principal.require(Permission.WRITE)
    org = in_scope_org(session, principal, data.org_id or principal.scope.org_id)
    if session.scalar(select(CardProduct.id).where(CardProduct.code == data.code)) is not None:
        raise Conflict(f"product {data.code} exists", f"产品 {data.code} 已存在", code="product_exists")
    for item in data.bundle:  # every right and pool must exist and be the caller's to use
        rights_service.get_right_or_raise(session, principal=principal, code=item.right)
        rights_service.get_pool_or_raise(session, principal=principal, code=item.pool)
    product = CardProduct(
        code=data.code,
        name_zh=data.name_zh,
        name_en=data.name_en,
        org_id=org.id,
        list_price_fen=data.list_price_fen,
        price_table=[p.model_dump() for p in data.price_table],
        bundle=[b.model_dump() for b in data.bundle],
        purchase_limit=data.purchase_limit,
        limit_period=data.limit_period.value,
        payment_minutes=data.payment_minutes,
    )
    session.add(product)
    session.flush()
    audit.record(
        session,
        principal=principal,
        action="cards.create",
        object_type="card_product",
        object_id=product.id,
        org_id=org.id,
        after=data.model_dump(),
    )
    return product


def list_products(session: Session, *, principal: Principal) -> list[CardProduct]:
    """Products on offer to the caller: its subtree's and its ancestors' (HQ's card sells everywhere)."""
    if not principal.can(Permission.CHANNEL):
        principal.require(Permission.READ)
    products = session.scalars(select(CardProduct).order_by(CardProduct.code))
    return [p for p in products if principal.scope.shares(p.org_id)]


def get_product_or_raise(session: Session, *, principal: Principal, code: str) -> CardProduct:
    if not principal.can(Permission.CHANNEL):
        principal.require(Permission.READ)
    product = session.scalar(select(CardProduct).where(CardProduct.code == code))
    if product is None or not principal.scope.shares(product.org_id):
        raise NotFound(f"no savings card {code}", f"没有省钱卡产品 {code}", code="product_not_found")
    return product


def draw_price(price_table: list[dict[str, int]], u: int) -> tuple[int, int]:
    """The price a 64-bit random number ``u`` draws from the table, and its row: row i is drawn
    when ``u * total_weight // 2**64`` falls in its share of the cumulative weights (exact integers)."""
    total = sum(int(p["weight"]) for p in price_table)
    point = u * total >> 64
    for i, p in enumerate(price_table):
        point -= int(p["weight"])
        if point < 0:
            return int(p["price_fen"]), i
    raise AssertionError("a draw fell outside its table")  # unreachable: point < total


@dataclass(frozen=True)
class Purchase:
    order: CardOrder
    replayed: bool


def purchase(
    session: Session,
    *,
    product: CardProduct,
    customer_id: str,
    key: str,
    method: Method,
    provider: PaymentProvider,
    actor: str,
    at: datetime | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> Purchase:
    """Draw, reserve and request the payment, in the caller's transaction. The same key returns the
    same order. ``Conflict`` ``purchase_limit`` or ``sold_out`` when it cannot be bought: the caller
    rolls its transaction back, so nothing of the attempt remains."""
    at = at or utcnow()
    found = session.scalar(select(CardOrder).where(CardOrder.idempotency_key == key))
    if found is not None:
        return Purchase(found, True)
    if not product.active:
        raise Conflict(
            f"savings card {product.code} is not on sale", f"省钱卡 {product.code} 未在售", code="not_on_sale"
        )
    # claim the key first: a concurrent retry of the same purchase waits here, then finds this order
    u = secrets.randbits(64)
    price, row = draw_price(product.price_table, u)
    order_no = f"SC{at.strftime('%Y%m%d')}{secrets.token_hex(8).upper()}"
    claim = (
        counters.dialect_insert(session)(CardOrder)
        .values(
            order_no=order_no,
            idempotency_key=key,
            product_id=product.id,
            customer_id=customer_id,
            org_id=product.org_id,
            price_fen=price,
            draw={"u": str(u), "row": row, "table": product.price_table, "rule": "u * total_weight >> 64"},
            status="pending",
            payment_method=method,
            created_at=at,
            expires_at=at + timedelta(minutes=product.payment_minutes),
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(CardOrder.id)
    )
    order_id = session.execute(claim).scalar()
    if order_id is None:
        return Purchase(session.scalars(select(CardOrder).where(CardOrder.idempotency_key == key)).one(), True)
    cap = Cap(f"product:{product.id}", product.purchase_limit, product.limit_period)
    if not counters.count_in(session, cap, counters.period_start(cap.period, at, timezone), [customer_id]):
        raise Conflict(
            f"customer {customer_id} has bought {product.code} "
            f"{product.purchase_limit} time(s) this {product.limit_period}",
            f"客户 {customer_id} 本期已购买 {product.code} {product.purchase_limit} 次",
            code="purchase_limit",
        )
    source = Source("purchase", order_no)
    for n, (right, pool, quantity) in enumerate(_bundle(session, product)):
        reservation = ledger.reserve(
            session,
            right=right,
            pool=pool,
            key=f"{order_no}:{n}",
            customer_id=customer_id,
            quantity=quantity,
            ttl=timedelta(minutes=product.payment_minutes),
            source=source,
            actor=actor,
            at=at,
            timezone=timezone,
        )
        if reservation is None:
            raise Conflict(
                f"savings card {product.code} is sold out: pool {pool.code} has no room for {quantity} {right.code}",
                f"省钱卡 {product.code} 已售罄",
                code="sold_out",
            )
    order = session.get_one(CardOrder, order_id)
    order.provider_ref = provider.create_payment(order_no=order_no, amount_fen=price, method=method)
    session.flush()
    return Purchase(order, False)


def _bundle(session: Session, product: CardProduct) -> list[tuple[Right, Pool, int]]:
    """The bundle's (right, pool, quantity), in pool-id order so that purchases lock pools alike."""
    out = []
    for item in product.bundle:
        right = session.scalar(select(Right).where(Right.code == item["right"]))
        pool = session.scalar(select(Pool).where(Pool.code == item["pool"]))
        if right is None or pool is None:
            raise Invalid(
                f"savings card {product.code} names a missing right or pool: {item}",
                f"省钱卡 {product.code} 引用了不存在的权益或预算池",
                code="bad_product",
            )
        out.append((right, pool, int(item["quantity"])))
    return sorted(out, key=lambda t: (t[1].id, t[0].id))


def _reservations(session: Session, order: CardOrder) -> list[Reservation]:
    return list(
        session.scalars(
            select(Reservation)
            .where(Reservation.source_type == "purchase", Reservation.source_id == order.order_no)
            .order_by(Reservation.id)
        )
    )


def _release(session: Session, order: CardOrder, *, actor: str, reason: str, at: datetime, timezone: str) -> None:
    # the cap row before the stripes: every flow takes its locks in the order order → cap → stripes
    product = session.get_one(CardProduct, order.product_id)
    period = counters.period_start(product.limit_period, order.created_at, timezone)
    counters.uncount(session, f"product:{product.id}", period, [order.customer_id])
    for reservation in _reservations(session, order):
        ledger.release(session, reservation=reservation, actor=actor, reason=reason, at=at)


@dataclass(frozen=True)
class CallbackOutcome:
    event_id: str
    order_no: str
    outcome: str  # applied, ignored, duplicate, late
    status: str


def handle_callback(
    session: Session,
    *,
    provider: PaymentProvider,
    body: bytes,
    signature: str,
    actor: str,
    timezone: str = DEFAULT_TIMEZONE,
) -> CallbackOutcome:
    """Apply one signed provider callback, in the caller's transaction; see the module's rules."""
    payload = provider.verify(body, signature)
    event_id, order_no, kind = str(payload["event_id"]), str(payload["order_no"]), str(payload["kind"])
    order = session.scalar(
        select(CardOrder)
        .where(CardOrder.order_no == order_no)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if order is None:
        raise NotFound(f"no order {order_no}", f"没有订单 {order_no}", code="order_not_found")
    if session.scalar(select(PaymentEvent.id).where(PaymentEvent.event_id == event_id)) is not None:
        return CallbackOutcome(event_id, order_no, "duplicate", order.status)
    at = utcnow()
    outcome = "ignored"
    if kind == "paid" and order.status in ("pending", "failed", "expired"):
        if int(payload["amount_fen"]) != order.price_fen:
            raise Invalid(
                f"order {order_no} costs {order.price_fen} fen, the callback says {payload['amount_fen']}",
                f"订单 {order_no} 金额为 {order.price_fen} 分，回调金额为 {payload['amount_fen']} 分",
                code="amount_mismatch",
            )
        reservations = _reservations(session, order)
        if order.status == "pending" and all(r.status == "held" for r in reservations):
            for reservation in reservations:
                ledger.commit(session, reservation=reservation, actor=actor, at=at)
            order.status, order.paid_at, order.closed_at = "issued", at, at
            outcome = "applied"
        else:  # paid after the order was released (failed or expired): the bank owes the money back
            order.status, order.paid_at = "refund_due", at
            outcome = "late"
    elif kind == "failed" and order.status == "pending":
        _release(session, order, actor=actor, reason="payment failed", at=at, timezone=timezone)
        order.status, order.closed_at = "failed", at
        outcome = "applied"
    elif kind == "refunded" and order.status in ("issued", "refund_due"):
        for holding in session.scalars(
            select(Holding).where(Holding.source_type == "purchase", Holding.source_id == order_no).order_by(Holding.id)
        ):
            ledger.revoke(
                session, holding=holding, key=f"refund:{order_no}:{holding.id}", actor=actor, reason="refunded", at=at
            )
        order.status, order.closed_at = "refunded", at
        outcome = "applied"
    session.add(
        PaymentEvent(event_id=event_id, order_no=order_no, kind=kind, outcome=outcome, payload=payload, received_at=at)
    )
    session.flush()
    return CallbackOutcome(event_id, order_no, outcome, order.status)


def expire_orders(
    session: Session, *, actor: str, now: datetime | None = None, timezone: str = DEFAULT_TIMEZONE
) -> int:
    """Pending orders whose payment window passed: released, and no longer counted against the limit."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(CardOrder).where(CardOrder.status == "pending", CardOrder.expires_at <= now).order_by(CardOrder.id)
        )
    )
    n = 0
    for order in due:
        locked = session.scalar(
            select(CardOrder)
            .where(CardOrder.id == order.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if locked is None or locked.status != "pending":
            continue
        _release(session, locked, actor=actor, reason="payment window passed", at=now, timezone=timezone)
        locked.status, locked.closed_at = "expired", now
        n += 1
    session.flush()
    return n


def get_order_or_raise(session: Session, *, principal: Principal, order_no: str) -> CardOrder:
    order = session.scalar(select(CardOrder).where(CardOrder.order_no == order_no))
    if order is None or not principal.scope.allows(order.org_id):
        raise NotFound(f"no order {order_no}", f"没有订单 {order_no}", code="order_not_found")
    return order
