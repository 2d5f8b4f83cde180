"""Rights through the API, as HQ, a branch operator, a channel application and the payment provider
would use them: catalog, pools and allocation, grants and retries, wallets, redemption, revocation,
the savings card with signed callbacks, settlement."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bankgrowth.platform.models import AuditEntry
from bankgrowth.rights.payments import SimulatedProvider
from tests.api.conftest import World

# Every mutating rights route; the scenario below must make each succeed at least once.
RIGHTS_MUTATIONS = {
    ("POST", "/api/v1/rights"),
    ("POST", "/api/v1/rights/{right_code}/codes"),
    ("POST", "/api/v1/rights/catalog"),
    ("POST", "/api/v1/pools"),
    ("POST", "/api/v1/pools/{pool_code}/allocations"),
    ("POST", "/api/v1/grants"),
    ("POST", "/api/v1/holdings/{holding_id}/revoke"),
    ("POST", "/api/v1/savings-cards"),
    ("POST", "/channel/v1/savings-cards/{product_code}/purchases"),
    ("POST", "/channel/v1/redemptions"),
    ("POST", "/payments/v1/callbacks"),
}


class Walk:
    """Calls routes by template and remembers which mutating ones succeeded."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.succeeded: set[tuple[str, str]] = set()

    def __call__(self, method: str, template: str, who: str | None, ok: int | None = None, **kw: Any) -> Any:
        params = kw.pop("path", {})
        r = self.w.call(method, template.format(**params), who, **kw)
        if ok is not None:
            assert r.status_code == ok, f"{method} {template}: {r.status_code} {r.text}"
        if r.is_success and method != "GET":
            self.succeeded.add((method, template))
        return r


def _voucher(code: str, **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "kind": "voucher",
        "name_zh": "微信立减金5元",
        "name_en": "WeChat Pay ¥5 voucher",
        "face_value_fen": 500,
        "min_spend_fen": 1000,
        "institution": "wechat_pay",
        "unit_cost_fen": 500,
        "valid_days": 30,
        **extra,
    }


def test_rights_end_to_end_through_the_api(fresh_world: World) -> None:
    w = fresh_world
    call = Walk(w)
    a1, a2, a3 = [str(c) for c in w.customers["A"] if w.branch_of[c] == "B01-S01"][2:5]  # a_operator's sub-branch
    b1 = str(w.customers["B"][2])

    # an amount beyond what a 64-bit column holds is refused as bad input, not a server error
    call("POST", "/api/v1/rights", "hq_admin", 422, json={**_voucher("huge"), "face_value_fen": 2**70})
    # HQ builds the catalog and a budget; branch A gets part of it
    call("POST", "/api/v1/rights", "hq_admin", 201, json=_voucher("wx5"))
    # a catalog: what is missing is created, what is present kept, what differs named and left alone
    pool = {"code": "cat_pool", "name_zh": "目录", "name_en": "Catalog pool", "limit_units": 2}
    book = {"rights": [_voucher("wx5"), _voucher("wx6", face_value_fen=600)], "pools": [pool]}
    done = call("POST", "/api/v1/rights/catalog", "hq_admin", 200, json=book).json()
    assert done == {"created": ["right wx6", "pool cat_pool"], "kept": ["right wx5"], "differing": []}
    changed = {**book, "rights": [_voucher("wx5", face_value_fen=800)]}
    differing = call("POST", "/api/v1/rights/catalog", "hq_admin", 200, json=changed).json()["differing"]
    assert differing == ["right wx5: face_value_fen is 500 here, 800 in the catalog"]
    assert call("GET", "/api/v1/rights/wx5", "hq_admin", 200).json()["face_value_fen"] == 500
    # all or nothing: a branch admin's catalog with another branch's pool creates neither entry
    theirs = {"rights": [_voucher("a_cat", org_id="B01-S01")], "pools": [{**pool, "code": "b_cat", "org_id": "B02"}]}
    refused = call("POST", "/api/v1/rights/catalog", "a_admin", json=theirs)
    assert refused.status_code == 404 and "pools[0] b_cat" in refused.json()["error"]["message"]["en"]
    assert call("GET", "/api/v1/rights/a_cat", "a_admin").status_code == 404
    call(
        "POST",
        "/api/v1/pools",
        "hq_admin",
        201,
        json={"code": "hq_act", "name_zh": "激活", "name_en": "Act", "limit_units": 10},
    )
    pool_a = {
        "code": "a_act",
        "name_zh": "支行激活",
        "name_en": "B01-S01 activation",
        "limit_units": 0,
        "org_id": "B01-S01",
    }
    call("POST", "/api/v1/pools", "a_admin", 201, json=pool_a)
    allocation = {"to_pool": "a_act", "units": 3, "key": "alloc-1"}
    child = call(
        "POST", "/api/v1/pools/{pool_code}/allocations", "hq_admin", 200, path={"pool_code": "hq_act"}, json=allocation
    )
    again = call(
        "POST", "/api/v1/pools/{pool_code}/allocations", "hq_admin", 200, path={"pool_code": "hq_act"}, json=allocation
    )
    assert child.json()["left_units"] == again.json()["left_units"] == 3  # a retried allocation gives nothing more
    assert call("GET", "/api/v1/pools/hq_act", "hq_admin", 200).json()["left_units"] == 7
    assert "wx5" in [
        r["code"] for r in call("GET", "/api/v1/rights", "a_operator", 200).json()
    ]  # HQ's catalog flows down

    # a branch operator grants from the branch's pool; a retry is a duplicate pointing at the first holding
    grant = {"right": "wx5", "pool": "a_act", "customer_id": a1, "key": "g-1"}
    first = call("POST", "/api/v1/grants", "a_operator", 200, json=grant).json()
    retry = call("POST", "/api/v1/grants", "a_operator", 200, json=grant).json()
    assert first["status"] == "granted" and retry["status"] == "duplicate"
    assert retry["holding_id"] == first["holding_id"]
    # not from HQ's pool, not to another branch's customer, not to an unknown customer
    assert (
        call("POST", "/api/v1/grants", "a_operator", json={**grant, "pool": "hq_act", "key": "g-2"}).status_code == 404
    )
    assert (
        call("POST", "/api/v1/grants", "a_operator", json={**grant, "customer_id": b1, "key": "g-3"}).status_code == 404
    )
    unknown = call("POST", "/api/v1/grants", "a_operator", json={**grant, "customer_id": "999999999", "key": "g-4"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    for n, customer in enumerate((a2, a3, a3)):
        call("POST", "/api/v1/grants", "a_operator", 200, json={**grant, "customer_id": customer, "key": f"g-{n + 5}"})
    exhausted = call("POST", "/api/v1/grants", "a_operator", 200, json={**grant, "customer_id": a2, "key": "g-9"})
    assert exhausted.json()["status"] == "exhausted"  # 3 units allocated, 3 granted
    assert call("GET", "/api/v1/pools/a_act", "a_analyst", 200).json()["left_units"] == 0

    # the wallet, on the console and for the branch's channel app; another branch's app is refused
    wallet = call("GET", f"/api/v1/customers/{a1}/wallet", "a_analyst", 200).json()
    assert [h["id"] for h in wallet] == [first["holding_id"]] and wallet[0]["remaining"] == 1
    assert call("GET", f"/channel/v1/customers/{a1}/wallet", "key:a", 200).json() == wallet
    assert call("GET", f"/channel/v1/customers/{a1}/wallet", "key:b").status_code == 404

    # the payment side reports the voucher used: once; a replay is a duplicate; nothing is left after
    redemption = {"holding_id": first["holding_id"], "key": "pay-001"}
    used = call("POST", "/channel/v1/redemptions", "key:a", 200, json=redemption).json()
    replay = call("POST", "/channel/v1/redemptions", "key:a", 200, json=redemption).json()
    assert (used["status"], replay["status"]) == ("redeemed", "duplicate")
    spent = call("POST", "/channel/v1/redemptions", "key:a", json={**redemption, "key": "pay-002"})
    assert spent.status_code == 409 and spent.json()["error"]["code"] == "not_redeemable"

    # revoking a holding returns its budget
    holding = call("GET", f"/api/v1/customers/{a2}/wallet", "a_operator", 200).json()[0]
    revoked = call("POST", "/api/v1/holdings/{holding_id}/revoke", "a_operator", 200, path={"holding_id": holding["id"]},
                   json={"key": "r-1", "reason": "granted by mistake"}).json()  # fmt: skip
    assert revoked["status"] == "revoked" and revoked["remaining"] == 0
    assert call("GET", "/api/v1/pools/a_act", "a_analyst", 200).json()["left_units"] == 1

    # coupon codes: a repeated code is reported, not added twice
    coupon = _voucher("jd10", kind="coupon_code", face_value_fen=1000)
    call("POST", "/api/v1/rights", "a_admin", 201, json=coupon)
    codes = call("POST", "/api/v1/rights/{right_code}/codes", "a_admin", 200, path={"right_code": "jd10"},
                 json={"codes": ["JD-1", "JD-2", "JD-1"], "generate": 5}).json()  # fmt: skip
    more = call(
        "POST",
        "/api/v1/rights/{right_code}/codes",
        "a_admin",
        200,
        path={"right_code": "jd10"},
        json={"codes": ["JD-2"]},
    )
    assert codes == {"added": 7, "already_present": 1} and more.json() == {"added": 0, "already_present": 1}

    # the savings card: branch A sells one through its app; the provider's signed callback issues it
    call("POST", "/api/v1/pools", "a_admin", 201, json={**pool_a, "code": "a_card", "limit_units": 40})
    card = {
        "code": "a_saver",
        "name_zh": "省钱卡",
        "name_en": "Savings card",
        "list_price_fen": 990,
        "price_table": [{"price_fen": 99, "weight": 1}, {"price_fen": 199, "weight": 3}],
        "bundle": [{"right": "wx5", "quantity": 4, "pool": "a_card"}],
    }
    call("POST", "/api/v1/savings-cards", "a_admin", 201, json=card)
    assert [p["code"] for p in call("GET", "/channel/v1/savings-cards", "key:a", 200).json()] == ["a_card", "a_saver"]
    buy = {"customer_id": a3, "key": "buy-1", "payment_method": "ecny"}
    order = call(
        "POST",
        "/channel/v1/savings-cards/{product_code}/purchases",
        "key:a",
        201,
        path={"product_code": "a_saver"},
        json=buy,
    ).json()
    same = call(
        "POST",
        "/channel/v1/savings-cards/{product_code}/purchases",
        "key:a",
        200,
        path={"product_code": "a_saver"},
        json=buy,
    ).json()
    assert same["order_no"] == order["order_no"] and order["price_fen"] in (99, 199)
    assert order["status"] == "pending" and order["draw"]["row"] in (0, 1) and int(order["draw"]["u"]) < 2**64
    assert call("GET", "/api/v1/pools/a_card", "a_analyst", 200).json()["left_units"] == 36  # reserved

    provider: SimulatedProvider = w.client.app.state.payments  # type: ignore[attr-defined]
    body, signature = provider.callback(
        order_no=order["order_no"], kind="paid", amount_fen=order["price_fen"], at=_at(order), event_id="evt-1"
    )
    forged = call("POST", "/payments/v1/callbacks", None, content=body, headers={"X-Signature": "0" * 64})
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "bad_signature"
    paid = call("POST", "/payments/v1/callbacks", None, 200, content=body, headers={"X-Signature": signature}).json()
    dup = call("POST", "/payments/v1/callbacks", None, 200, content=body, headers={"X-Signature": signature}).json()
    assert (paid["outcome"], paid["status"], dup["outcome"]) == ("applied", "issued", "duplicate")
    issued = call("GET", f"/channel/v1/customers/{a3}/wallet", "key:a", 200).json()
    assert (
        sum(h["units"] for h in issued if h["source_type"] == "purchase" and h["source_id"] == order["order_no"]) == 4
    )
    assert (
        call("GET", f"/channel/v1/savings-card-orders/{order['order_no']}", "key:a", 200).json()["status"] == "issued"
    )
    assert call("GET", f"/channel/v1/savings-card-orders/{order['order_no']}", "key:b").status_code == 404
    with Session(w.engine) as s:
        audited = s.scalars(select(AuditEntry).where(AuditEntry.action == "cards.callback")).all()
    assert {e.actor for e in audited} == {"system:provider-simulated"} and audited[0].org_id == "B01"

    # settlement from the ledger: branch A sees its own grants and redemptions, and nothing of B's
    today = date.today()
    rows = call(
        "GET",
        "/api/v1/settlement",
        "a_analyst",
        200,
        params={"start": str(today - timedelta(days=1)), "end": str(today + timedelta(days=1))},
    ).json()
    manual = [r for r in rows if r["right"] == "wx5" and r["source"] == "manual:api"]
    assert sum(r["granted"] for r in manual) == 3
    assert sum(r["granted_cost_fen"] for r in manual) == 2 * 500  # the revoked grant's cost was given back
    assert sum(r["redeemed"] for r in manual) == 1 and sum(r["revoked"] for r in manual) == 1
    assert sum(r["granted"] for r in rows if r["source"].startswith("purchase:")) == 4
    assert {r["org_id"] for r in rows} <= {"B01", "B01-S01"}
    bad = call("GET", "/api/v1/settlement", "a_analyst", params={"start": "2026-02-01", "end": "2026-01-01"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_period"

    # then: every mutating rights route was used successfully here (World.call checked each one's audit entry)
    assert call.succeeded == RIGHTS_MUTATIONS


def _at(order: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(order["created_at"])


def test_the_openapi_documents_the_rights_routes_and_the_signed_callback(world: World) -> None:
    spec = world.call("GET", "/openapi.json").json()
    callback = spec["paths"]["/payments/v1/callbacks"]["post"]
    assert "security" not in callback  # public: the signature is its credential
    assert [p["name"] for p in callback["parameters"]] == ["x-signature"]
    assert set(callback["requestBody"]["content"]["application/json"]["schema"]["required"]) >= {"order_no", "kind"}
    for path in ("/api/v1/grants", "/channel/v1/redemptions", "/channel/v1/savings-cards/{product_code}/purchases"):
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        key = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["key"]
        assert key["description"].startswith("Idempotency key")  # documented for every retried request
