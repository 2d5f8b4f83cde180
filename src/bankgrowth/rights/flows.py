"""Rights work that spans domains: operations on one customer's rights check the customer in the
warehouse first (it must exist and belong to the caller's subtree), then call the rights services.
The savings-card purchase, the provider's callback and a channel's redemption are audited here.
The caller owns the operational transaction.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from bankgrowth.errors import NotFound
from bankgrowth.insight import service as insight_service
from bankgrowth.platform import audit
from bankgrowth.platform.access import Permission, Principal, Scope
from bankgrowth.platform.service import system_principal
from bankgrowth.rights import ledger, savings_card
from bankgrowth.rights import service as rights_service
from bankgrowth.rights.ledger import GrantResult, Redemption
from bankgrowth.rights.models import CardOrder, Holding
from bankgrowth.rights.payments import Method, PaymentProvider
from bankgrowth.rights.schemas import GrantCreate

if TYPE_CHECKING:
    from ibis.backends import BaseBackend


def require_customer(con: BaseBackend, customer_id: str, scope: Scope) -> None:
    """``NotFound`` unless the customer is in the warehouse and owned by an org in ``scope``: a
    branch cannot grant to, sell to or read the wallet of another branch's customer, and a typo in
    an id is an error rather than a holding nobody can use."""
    if not customer_id.isdigit() or len(customer_id) > 18:
        raise NotFound(f"no customer {customer_id}", f"没有客户 {customer_id}", details={"customer_id": customer_id})
    insight_service.customer_or_raise(con, int(customer_id), scope=scope)


def grant(session: Session, con: BaseBackend, *, principal: Principal, data: GrantCreate, timezone: str) -> GrantResult:
    principal.require(Permission.WRITE)
    require_customer(con, data.customer_id, principal.scope)
    return rights_service.grant(session, principal=principal, data=data, timezone=timezone)


def wallet(
    session: Session, con: BaseBackend, *, principal: Principal, customer_id: str, include_closed: bool = False
) -> list[Holding]:
    if not principal.can(Permission.CHANNEL):
        principal.require(Permission.READ)
    require_customer(con, customer_id, principal.scope)
    return ledger.wallet(session, customer_id=customer_id, include_closed=include_closed)


def purchase(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    product_code: str,
    customer_id: str,
    key: str,
    method: Method,
    provider: PaymentProvider,
    timezone: str,
) -> savings_card.Purchase:
    """A channel sells a savings card to its customer: draw, reserve, request the payment."""
    principal.require(Permission.CHANNEL)
    product = savings_card.get_product_or_raise(session, principal=principal, code=product_code)
    require_customer(con, customer_id, principal.scope)
    bought = savings_card.purchase(
        session,
        product=product,
        customer_id=customer_id,
        key=f"{principal.actor}:{key}",  # two apps cannot collide on the same key
        method=method,
        provider=provider,
        actor=principal.actor,
        timezone=timezone,
    )
    order = bought.order
    audit.record(
        session,
        principal=principal,
        action="cards.purchase",
        object_type="card_order",
        object_id=order.order_no,
        org_id=order.org_id,
        after={
            "product": product.code,
            "customer": customer_id,
            "price_fen": order.price_fen,
            "status": order.status,
            "replayed": bought.replayed,
        },
    )
    return bought


def payment_callback(
    session: Session,
    *,
    provider: PaymentProvider,
    body: bytes,
    signature: str,
    source: str,
    request_id: str | None,
    timezone: str,
) -> savings_card.CallbackOutcome:
    """A signed callback from the payment provider; public, so the signature is its only credential.
    The provider acts as the system at HQ, and what it changed is audited under its name."""
    outcome = savings_card.handle_callback(
        session, provider=provider, body=body, signature=signature, actor=f"provider:{provider.name}", timezone=timezone
    )
    caller = replace(system_principal(session, source=source), name=f"provider-{provider.name}", request_id=request_id)
    audit.record(
        session,
        principal=caller,
        action="cards.callback",
        object_type="card_order",
        object_id=outcome.order_no,
        org_id=session.scalar(select(CardOrder.org_id).where(CardOrder.order_no == outcome.order_no)),
        after={"event": outcome.event_id, "outcome": outcome.outcome, "status": outcome.status},
    )
    return outcome


def redeem(
    session: Session, *, principal: Principal, holding_id: int, units: int, key: str, reason: str = ""
) -> Redemption:
    """The payment side reports a voucher used; idempotent on ``key``. A replay is audited too, as
    a duplicate, so every accepted request leaves its trace."""
    result = rights_service.redeem(
        session, principal=principal, holding_id=holding_id, units=units, key=key, reason=reason
    )
    holding = session.get_one(Holding, holding_id)
    audit.record(
        session,
        principal=principal,
        action="rights.redeem",
        object_type="holding",
        object_id=holding_id,
        org_id=holding.org_id,
        outcome="ok" if result.status == "redeemed" else "duplicate",
        after={"key": key, "units": units, "remaining": holding.remaining, "status": holding.status},
    )
    return result
