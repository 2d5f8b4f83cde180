"""Rights routes: the catalog, pools, grants, wallets, savings cards and settlement for the console;
wallets, savings-card purchases and redemptions for channels; the payment provider's callback.
Each route calls one service or flow; the route owns the transaction."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from bankgrowth.api.deps import SessionDep, SettingsDep, WarehouseDep, allow, source_of
from bankgrowth.config import Settings
from bankgrowth.errors import Invalid
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.rights import catalog, flows, savings_card, settlement
from bankgrowth.rights import service as rights_service
from bankgrowth.rights.models import Pool
from bankgrowth.rights.payments import PaymentProvider
from bankgrowth.rights.schemas import (
    CODE,
    Allocation,
    CallbackResult,
    Catalog,
    CatalogInstalled,
    CodesImport,
    CodesImported,
    GrantCreate,
    GrantRead,
    HoldingRead,
    OrderRead,
    PoolCreate,
    PoolRead,
    PoolUsage,
    ProductCreate,
    ProductRead,
    PurchaseCreate,
    RedeemCreate,
    RedemptionRead,
    RevokeCreate,
    RightCreate,
    RightRead,
    SettlementRead,
)

router = APIRouter(prefix="/api/v1", tags=["rights"])
channel_router = APIRouter(prefix="/channel/v1", tags=["channel"])
payments_router = APIRouter(prefix="/payments/v1", tags=["payments"])

Reader = Annotated[Principal, allow("console", Permission.READ, scope="subtree")]
Writer = Annotated[Principal, allow("console", Permission.WRITE, scope="subtree")]
ChannelApp = Annotated[Principal, allow("channel", Permission.CHANNEL, scope="subtree")]
Code = Annotated[str, Path(pattern=CODE)]
CustomerId = Annotated[int, Path(ge=1, le=2**62, description="The bank's customer number.")]
HoldingId = Annotated[int, Path(ge=1, le=2**62)]
OrderNo = Annotated[str, Path(pattern=r"^SC[0-9A-F]{8,40}$", description="Savings-card order number.")]
MAX_SETTLEMENT_DAYS = 366
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)  # the ledger's datetimes stay representable


def _usage(session: Session, settings: Settings, pool: Pool) -> PoolUsage:
    u = rights_service.usage(session, pool=pool, timezone=settings.timezone)
    return PoolUsage(
        pool=PoolRead.model_validate(u.pool),
        period_start=u.period_start,
        used_units=u.used_units,
        used_fen=u.used_fen,
        left_units=u.left_units,
        left_fen=u.left_fen,
    )


def provider_of(request: Request) -> PaymentProvider:
    provider: PaymentProvider = request.app.state.payments
    return provider


# --- catalog ------------------------------------------------------------------------------------


@router.get("/rights", response_model=list[RightRead], summary="The rights catalog (权益目录): mine and HQ's")
def list_rights(principal: Reader, session: SessionDep) -> list[RightRead]:
    return [RightRead.model_validate(r) for r in rights_service.list_rights(session, principal=principal)]


@router.post("/rights", response_model=RightRead, status_code=201, summary="Create a right (新建权益)")
def create_right(principal: Writer, body: RightCreate, session: SessionDep) -> RightRead:
    with session.begin():
        right = rights_service.create_right(session, principal=principal, data=body)
    return RightRead.model_validate(right)


@router.post(
    "/rights/catalog",
    response_model=CatalogInstalled,
    summary="Install a catalog (安装权益目录): its missing rights, pools and savings cards",
    description=(
        "The body is what `bankgrowth rights install FILE` reads: rights, pools and savings cards, each in "
        "the shape its own create route takes. Entries that are missing are created; entries present are "
        "left as they are, and those present with other values are listed with what differs. One "
        "transaction: if an entry cannot be created, none is, and the error names the entry."
    ),
)
def install_catalog(principal: Writer, body: Catalog, session: SessionDep) -> CatalogInstalled:
    with session.begin():
        done = catalog.install(session, principal=principal, catalog=body)
    return CatalogInstalled(created=done.created, kept=done.kept, differing=done.differing)


@router.get("/rights/{right_code}", response_model=RightRead, summary="One right")
def get_right(principal: Reader, right_code: Code, session: SessionDep) -> RightRead:
    return RightRead.model_validate(rights_service.get_right_or_raise(session, principal=principal, code=right_code))


@router.post(
    "/rights/{right_code}/codes", response_model=CodesImported, summary="Import or generate coupon codes (导入券码)"
)
def add_codes(principal: Writer, right_code: Code, body: CodesImport, session: SessionDep) -> CodesImported:
    with session.begin():
        added, present = rights_service.add_codes(session, principal=principal, code=right_code, data=body)
    return CodesImported(added=added, already_present=present)


# --- pools --------------------------------------------------------------------------------------


@router.get("/pools", response_model=list[PoolUsage], summary="Budget pools in my subtree, spent and left (预算池)")
def list_pools(principal: Reader, session: SessionDep, settings: SettingsDep) -> list[PoolUsage]:
    return [_usage(session, settings, p) for p in rights_service.list_pools(session, principal=principal)]


@router.post("/pools", response_model=PoolRead, status_code=201, summary="Create a budget pool")
def create_pool(principal: Writer, body: PoolCreate, session: SessionDep) -> PoolRead:
    with session.begin():
        pool = rights_service.create_pool(session, principal=principal, data=body)
    return PoolRead.model_validate(pool)


@router.get("/pools/{pool_code}", response_model=PoolUsage, summary="One pool: spent and left this period")
def get_pool(principal: Reader, pool_code: Code, session: SessionDep, settings: SettingsDep) -> PoolUsage:
    return _usage(session, settings, rights_service.get_pool_or_raise(session, principal=principal, code=pool_code))


@router.post(
    "/pools/{pool_code}/allocations",
    response_model=PoolUsage,
    summary="Give part of this pool's budget to a branch pool (下拨预算); idempotent on key",
)
def allocate(
    principal: Writer, pool_code: Code, body: Allocation, session: SessionDep, settings: SettingsDep
) -> PoolUsage:
    with session.begin():
        pool = rights_service.get_pool_or_raise(session, principal=principal, code=pool_code)
        child = rights_service.allocate(session, principal=principal, pool=pool, data=body)
    return _usage(session, settings, child)


# --- grants, wallets, revocation ----------------------------------------------------------------


@router.post(
    "/grants",
    response_model=GrantRead,
    summary="Grant a right to one customer (发放权益); a retry with the same key grants nothing more",
    description="status: granted; duplicate (the key was used: holding_id is the first grant's); "
    "exhausted (the pool has no room); capped (the customer reached the per-customer limit); "
    "no_code (no coupon code left).",
)
def grant(
    principal: Writer, body: GrantCreate, session: SessionDep, con: WarehouseDep, settings: SettingsDep
) -> GrantRead:
    with session.begin():
        result = flows.grant(session, con, principal=principal, data=body, timezone=settings.timezone)
    return GrantRead(key=result.key, customer_id=result.customer_id, status=result.status, holding_id=result.holding_id)


@router.get(
    "/customers/{customer_id}/wallet", response_model=list[HoldingRead], summary="A customer's rights (权益钱包)"
)
def wallet(
    principal: Reader,
    customer_id: CustomerId,
    session: SessionDep,
    con: WarehouseDep,
    include_closed: Annotated[bool, Query(description="Also redeemed, expired and revoked holdings.")] = False,
) -> list[HoldingRead]:
    holdings = flows.wallet(
        session, con, principal=principal, customer_id=str(customer_id), include_closed=include_closed
    )
    return [HoldingRead.model_validate(h) for h in holdings]


@router.post(
    "/holdings/{holding_id}/revoke",
    response_model=HoldingRead,
    summary="Revoke what is left of a holding (撤销); its budget goes back to the pool",
)
def revoke(principal: Writer, holding_id: HoldingId, body: RevokeCreate, session: SessionDep) -> HoldingRead:
    with session.begin():
        holding = rights_service.revoke(
            session, principal=principal, holding_id=holding_id, key=body.key, reason=body.reason
        )
    return HoldingRead.model_validate(holding)


# --- savings card -------------------------------------------------------------------------------


@router.get("/savings-cards", response_model=list[ProductRead], summary="Savings-card products (省钱卡)")
def list_cards(principal: Reader, session: SessionDep) -> list[ProductRead]:
    return [ProductRead.model_validate(p) for p in savings_card.list_products(session, principal=principal)]


@router.post("/savings-cards", response_model=ProductRead, status_code=201, summary="Create a savings-card product")
def create_card(principal: Writer, body: ProductCreate, session: SessionDep) -> ProductRead:
    with session.begin():
        product = savings_card.create_product(session, principal=principal, data=body)
    return ProductRead.model_validate(product)


@router.get("/savings-cards/{product_code}", response_model=ProductRead, summary="One savings-card product")
def get_card(principal: Reader, product_code: Code, session: SessionDep) -> ProductRead:
    return ProductRead.model_validate(
        savings_card.get_product_or_raise(session, principal=principal, code=product_code)
    )


@router.get("/savings-card-orders/{order_no}", response_model=OrderRead, summary="One savings-card order and its draw")
def get_order(principal: Reader, order_no: OrderNo, session: SessionDep) -> OrderRead:
    return OrderRead.model_validate(savings_card.get_order_or_raise(session, principal=principal, order_no=order_no))


# --- settlement ---------------------------------------------------------------------------------


@router.get(
    "/settlement",
    response_model=list[SettlementRead],
    summary="Cost of rights by day, org, source and right (结算), from the ledger",
)
def settlement_report(
    principal: Reader,
    session: SessionDep,
    settings: SettingsDep,
    start: Annotated[date, Query(description="First day, in the bank's timezone.")],
    end: Annotated[date, Query(description="Last day, inclusive.")],
) -> list[SettlementRead]:
    if end < start or end - start > timedelta(days=MAX_SETTLEMENT_DAYS) or not (FIRST_DAY <= start <= LAST_DAY):
        raise Invalid(
            f"the period runs from start to end, at most {MAX_SETTLEMENT_DAYS} days, "
            f"within {FIRST_DAY} to {LAST_DAY}; found {start} to {end}",
            f"结算区间应为开始日至结束日，不超过 {MAX_SETTLEMENT_DAYS} 天，且在 {FIRST_DAY} 至 {LAST_DAY} 之间",
            code="bad_period",
        )
    rows = settlement.report(session, principal=principal, start=start, end=end, timezone=settings.timezone)
    return [SettlementRead(**vars(r)) for r in rows]


# --- channel applications -----------------------------------------------------------------------


@channel_router.get(
    "/customers/{customer_id}/wallet", response_model=list[HoldingRead], summary="A customer's usable rights"
)
def channel_wallet(
    principal: ChannelApp, customer_id: CustomerId, session: SessionDep, con: WarehouseDep
) -> list[HoldingRead]:
    return [
        HoldingRead.model_validate(h)
        for h in flows.wallet(session, con, principal=principal, customer_id=str(customer_id))
    ]


@channel_router.get("/savings-cards", response_model=list[ProductRead], summary="Savings cards on offer")
def channel_cards(principal: ChannelApp, session: SessionDep) -> list[ProductRead]:
    return [ProductRead.model_validate(p) for p in savings_card.list_products(session, principal=principal)]


@channel_router.post(
    "/savings-cards/{product_code}/purchases",
    response_model=OrderRead,
    status_code=201,
    summary="Draw the price and open an order (抽取价格并下单); a retry with the same key returns the same order",
    description="The draw and the order are one step, so a customer cannot draw again for a lower price. "
    "The answer carries the drawn price and the recorded randomness (draw.u, draw.row). "
    "The provider's callback later issues the bundle, or the payment window passes and the "
    "reserved inventory returns. 409 purchase_limit or sold_out when it cannot be bought.",
)
def purchase(
    principal: ChannelApp,
    product_code: Code,
    body: PurchaseCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    con: WarehouseDep,
    settings: SettingsDep,
) -> OrderRead:
    with session.begin():
        bought = flows.purchase(
            session,
            con,
            principal=principal,
            product_code=product_code,
            customer_id=body.customer_id,
            key=body.key,
            method=body.payment_method,  # type: ignore[arg-type]
            provider=provider_of(request),
            timezone=settings.timezone,
        )
    if bought.replayed:
        response.status_code = 200
    return OrderRead.model_validate(bought.order)


@channel_router.get("/savings-card-orders/{order_no}", response_model=OrderRead, summary="One order and its status")
def channel_order(principal: ChannelApp, order_no: OrderNo, session: SessionDep) -> OrderRead:
    return OrderRead.model_validate(savings_card.get_order_or_raise(session, principal=principal, order_no=order_no))


@channel_router.post(
    "/redemptions",
    response_model=RedemptionRead,
    summary="Report a voucher or points used at payment (核销); idempotent on key",
)
def redeem(principal: ChannelApp, body: RedeemCreate, session: SessionDep) -> RedemptionRead:
    with session.begin():
        result = flows.redeem(
            session,
            principal=principal,
            holding_id=body.holding_id,
            units=body.units,
            key=body.key,
            reason=body.reason,
        )
    return RedemptionRead(key=body.key, holding_id=result.holding_id, units=result.units, status=result.status)


# --- payment provider ---------------------------------------------------------------------------

CALLBACK_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["event_id", "order_no", "kind", "amount_fen"],
                "properties": {
                    "event_id": {"type": "string"},
                    "order_no": {"type": "string"},
                    "kind": {"type": "string", "enum": ["paid", "failed", "refunded"]},
                    "amount_fen": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"},
                },
            }
        }
    },
}


@payments_router.post(
    "/callbacks",
    response_model=CallbackResult,
    summary="The payment provider's signed callback (支付回调)",
    description="X-Signature is hex(HMAC-SHA256(secret, raw body)). A body whose signature does not verify is "
    "refused before it is read. A repeated event, or one that no longer applies, changes nothing.",
    openapi_extra={"requestBody": CALLBACK_BODY},
)
async def payment_callback(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    x_signature: Annotated[str, Header(max_length=128)] = "",
    _: None = allow("public", scope="global"),
) -> CallbackResult:
    body = await request.body()
    provider = provider_of(request)
    source, request_id = source_of(request), getattr(request.state, "request_id", None)

    def apply() -> CallbackResult:
        with session.begin():
            outcome = flows.payment_callback(
                session,
                provider=provider,
                body=body,
                signature=x_signature,
                source=source,
                request_id=request_id,
                timezone=settings.timezone,
            )
        return CallbackResult(**vars(outcome))

    return await run_in_threadpool(apply)
