"""The isolation suite: it walks every route of the application.

- every route declares an access rule (audience, permission, scope);
- without credentials a protected route answers 401;
- a channel key cannot call a console route, a console session cannot call a channel route;
- an analyst cannot call a mutating route;
- a branch-A credential can neither read nor change a branch-B object.

A new route joins every check by itself. A route with a path parameter or body the suite cannot
fill fails until a probe for it is added below — the suite never skips a route silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from bankgrowth.api.app import create_app
from bankgrowth.api.deps import api_routes, rule_of
from bankgrowth.config import Settings
from tests.api.conftest import MUTATING, World

ROUTES: list[tuple[str, APIRoute]] = sorted(
    ((method, route) for route in api_routes(create_app(Settings(operational_url="sqlite://")))
     for method in route.methods),
    key=lambda mr: (mr[1].path, mr[0]),
)  # fmt: skip
IDS = [f"{m} {r.path}" for m, r in ROUTES]
B_MARK = re.compile(r'"B02|b_admin|b_operator|app-b')  # what a branch-A answer must never contain


def branch_b_objects(world: World) -> dict[str, Any]:
    """For each path parameter: an object that belongs to branch B (or a global object)."""
    return {
        "org_id": "B02-S01",
        "user_id": world.user_ids["b_operator"],
        "key_id": world.key_ids["b"],
        "customer_id": world.customers["B"][0],
        "name": "txn_count_30d",  # a tag: a global definition; its statistics are scoped
        **world.rights["B"],
    }


def branch_a_objects(world: World) -> dict[str, Any]:
    return {
        "org_id": "B01-S01",
        "user_id": world.user_ids["a_operator"],
        "key_id": world.key_ids["a"],
        "customer_id": world.customers["A"][0],
        "name": "txn_count_30d",
        **world.rights["A"],
    }


# Request bodies aimed at branch B (for mutating routes). Valid in shape, so only scope can refuse.
INTRUDER_RIGHT = {
    "code": "intruder",
    "kind": "points",
    "name_zh": "积分",
    "name_en": "Points",
    "unit_cost_fen": 1,
    "org_id": "B02",
}
# A body is JSON, or the bytes of a CSV upload ({customer_id} filled as in a JSON body), or None.
BODIES: dict[tuple[str, str], dict[str, Any] | bytes | None] = {
    ("POST", "/api/v1/auth/login"): {"username": "nobody", "password": "wrong-password"},
    ("POST", "/api/v1/auth/logout"): None,
    ("POST", "/api/v1/auth/password"): {"old_password": "not-it-at-all", "new_password": "another-password-2"},
    ("POST", "/api/v1/users"): {
        "username": "intruder",
        "display_name": "x",
        "password": "long-enough-pw",
        "org_id": "B02",
        "roles": ["operator"],
    },
    ("PATCH", "/api/v1/users/{user_id}"): {"display_name": "renamed"},
    ("POST", "/api/v1/users/{user_id}/password"): {"password": "taken-over-pw-1"},
    ("POST", "/api/v1/api-keys"): {"app": "intruder", "channel": "h5", "org_id": "B02"},
    ("POST", "/api/v1/api-keys/{key_id}/rotate"): None,
    ("DELETE", "/api/v1/api-keys/{key_id}"): None,
    ("POST", "/api/v1/customers/{customer_id}/reveal"): None,
    ("POST", "/api/v1/rights"): INTRUDER_RIGHT,
    ("POST", "/api/v1/rights/{right_code}/codes"): {"codes": ["ABC123"]},
    ("POST", "/api/v1/rights/catalog"): {"rights": [INTRUDER_RIGHT]},
    ("POST", "/api/v1/pools"): {
        "code": "intruder",
        "name_zh": "池",
        "name_en": "Pool",
        "limit_units": 5,
        "org_id": "B02",
    },
    ("POST", "/api/v1/pools/{pool_code}/allocations"): {"to_pool": "b_budget", "units": 1, "key": "probe"},
    ("POST", "/api/v1/grants"): {"right": "b_wechat5", "pool": "b_budget", "customer_id": "0", "key": "probe"},
    ("POST", "/api/v1/holdings/{holding_id}/revoke"): {"key": "probe", "reason": "probe"},
    ("POST", "/api/v1/savings-cards"): {
        "code": "intruder",
        "name_zh": "卡",
        "name_en": "Card",
        "org_id": "B02",
        "list_price_fen": 990,
        "price_table": [{"price_fen": 99, "weight": 1}],
        "bundle": [{"right": "b_wechat5", "quantity": 1, "pool": "b_budget"}],
    },
    ("POST", "/channel/v1/savings-cards/{product_code}/purchases"): {"customer_id": "0", "key": "probe"},
    ("POST", "/channel/v1/redemptions"): {"holding_id": 0, "key": "probe"},  # the B holding: see _request
    ("POST", "/api/v1/audiences"): {
        "code": "intruder",
        "name_zh": "x",
        "name_en": "x",
        "org_id": "B02",
        "text": "age >= 30",
    },
    ("POST", "/api/v1/audiences/{code}/versions"): {"text": "age >= 40"},
    ("POST", "/api/v1/audiences/{code}/snapshots"): None,
    ("POST", "/api/v1/audiences/core-segments"): None,
    ("POST", "/api/v1/audiences/{code}/lookalike"): {"target": 10},
    ("POST", "/api/v1/audience-lists"): {
        "code": "intruder",
        "name_zh": "x",
        "name_en": "x",
        "org_id": "B02",
        "customer_ids": ["0"],
    },
    ("POST", "/payments/v1/callbacks"): {"event_id": "e1", "order_no": "SC0", "kind": "paid", "amount_fen": 99},
    ("POST", "/api/v1/campaigns"): {
        "code": "intruder",
        "name_zh": "x",
        "name_en": "x",
        "org_id": "B02",
        "definition": {"audience": "b.active", "arms": [{"name": "note", "message": {"zh": "x", "en": "x"}}]},
    },
    ("POST", "/api/v1/campaign-templates/campaigns"): {
        "template": "activation",
        "code": "intruder",
        "right": "b_wechat5",
        "pool": "b_budget",
        "audience": "b.active",
        "org_id": "B02",
    },
    ("POST", "/api/v1/campaigns/{campaign_code}/versions"): {
        "audience": "b.active",
        "arms": [{"name": "note", "message": {"zh": "改", "en": "changed"}}],
    },
    ("POST", "/api/v1/campaigns/{campaign_code}/submit"): None,
    ("POST", "/api/v1/campaigns/{campaign_code}/decision"): {"approve": True},
    ("POST", "/api/v1/campaigns/{campaign_code}/launch"): None,
    ("POST", "/api/v1/campaigns/{campaign_code}/execute"): None,
    ("POST", "/api/v1/campaigns/{campaign_code}/finish"): None,
    ("POST", "/api/v1/customers/{customer_id}/do-not-contact"): {"channel": "*", "reason": "probe"},
    ("DELETE", "/api/v1/customers/{customer_id}/do-not-contact"): None,
    ("POST", "/connectors/v1/receipts"): {"receipts": []},
    ("PUT", "/api/v1/tags/imported/{name}"): b"customer_id,value\n{customer_id},x\n",
    ("DELETE", "/api/v1/tags/imported/{name}"): None,
}
# Query parameters a route needs to do anything.
QUERIES: dict[str, dict[str, Any]] = {
    "/api/v1/insight/transitions": {"start": "2026-10-31", "end": "2026-10-31"},
    "/api/v1/settlement": {"start": "2026-01-01", "end": "2026-12-31"},
    "/api/v1/audiences/count": {"rule": "stage = 'super'"},
    "/api/v1/audiences/overlap": {"codes": ["core.super_users", "core.young"]},
    "/api/v1/audience-snapshots/{snapshot_id}/diff": {"before": "1"},
    "/api/v1/tags/imported/{name}": {"zh": "标签", "en": "Tag"},
}


def _path(route: APIRoute, objects: dict[str, Any]) -> str:
    names = re.findall(r"{(\w+)}", route.path)
    unknown = [n for n in names if n not in objects]
    assert not unknown, f"{route.path}: add a branch-B probe for path parameter(s) {unknown} to the isolation suite"
    return route.path.format(**{n: objects[n] for n in names})


def _request(world: World, method: str, route: APIRoute, who: str | None, objects: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {"params": QUERIES.get(route.path, {})}
    if method in MUTATING:
        assert (method, route.path) in BODIES, f"{method} {route.path}: add a probe body to the isolation suite"
        body = BODIES[(method, route.path)]
        if isinstance(body, bytes):  # an upload of the customer the path's objects are from
            kwargs["content"] = body.replace(b"{customer_id}", str(objects["customer_id"]).encode())
            kwargs["headers"] = {"Content-Type": "text/csv"}
        elif body is not None:  # customer and holding fields aimed at the same branch as the path's objects
            kwargs["json"] = {
                **body,
                **({"customer_id": str(objects["customer_id"])} if "customer_id" in body else {}),
                **({"holding_id": objects["holding_id"]} if "holding_id" in body else {}),
                **({"customer_ids": [str(objects["customer_id"])]} if "customer_ids" in body else {}),
            }
    return world.call(method, _path(route, objects), who, **kwargs)


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=IDS)
def test_every_route_declares_an_access_rule(method: str, route: APIRoute) -> None:
    # when
    rule = rule_of(route)
    # then
    assert rule is not None, f"{method} {route.path} has no access rule: declare one with api.deps.allow(...)"
    assert route.tags, f"{method} {route.path} is not grouped under a domain tag in the OpenAPI"
    if rule.audience == "console" and method in MUTATING and rule.scope != "self":
        assert rule.permission is not None and rule.permission.value != "read", f"{route.path} mutates with read"


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=IDS)
def test_without_credentials_only_public_routes_answer(world: World, method: str, route: APIRoute) -> None:
    rule = rule_of(route)
    assert rule is not None
    # when
    r = _request(world, method, route, None, branch_a_objects(world))
    # then
    if rule.audience == "public":
        assert r.status_code != 401 or r.json()["error"]["code"] not in {"login_required", "api_key_required"}
    else:
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] in {"login_required", "api_key_required"}


def test_the_caller_is_checked_before_any_store_is_opened(world: World) -> None:
    from tests.conftest import held

    # given: every protected route that reads the warehouse, checked first for the caller
    readers = [(m, r) for m, r in ROUTES if "get_warehouse" in _dependencies(r) and rule_of(r).audience != "public"]
    assert len(readers) > 30
    for method, route in readers:
        assert _dependencies(route)[0] in {"console", "channel"}, f"{method} {route.path}: take the caller first"
    # when: a nightly run (another process) holds the warehouse, and nobody logged in calls them
    with held(Path(world.settings.resolved_warehouse_url.removeprefix("duckdb:///"))):
        answers = {(m, r.path): _request(world, m, r, None, branch_a_objects(world)) for m, r in readers}
    # then: each is refused for want of credentials, not kept waiting for the warehouse
    assert {k: a.status_code for k, a in answers.items() if a.status_code != 401} == {}


def _dependencies(route: APIRoute) -> list[str]:
    return [getattr(d.call, "__name__", "") for d in route.dependant.dependencies]


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=IDS)
def test_channel_keys_and_console_sessions_stay_on_their_side(world: World, method: str, route: APIRoute) -> None:
    rule = rule_of(route)
    assert rule is not None
    if rule.audience == "public":
        pytest.skip("public route")
    # given: the credential of the other side, with every right it can have (HQ key, HQ admin)
    wrong = "hq_admin" if rule.audience == "channel" else "key:hq"
    before = world.audit_count()
    # when
    r = _request(world, method, route, wrong, branch_a_objects(world))
    # then
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] in {"channel_key_not_allowed", "console_token_not_allowed"}
    assert world.audit_count() == before


@pytest.mark.parametrize(("method", "route"), [(m, r) for m, r in ROUTES if m in MUTATING], ids=[
    i for i, (m, _) in zip(IDS, ROUTES, strict=True) if m in MUTATING])  # fmt: skip
def test_an_analyst_cannot_mutate(world: World, method: str, route: APIRoute) -> None:
    rule = rule_of(route)
    assert rule is not None
    if rule.audience != "console" or rule.scope == "self":
        pytest.skip("not a console mutation of shared data (own session or password, login)")
    before = world.audit_count()
    # when: on the analyst's own branch's objects
    r = _request(world, method, route, "a_analyst", branch_a_objects(world))
    # then
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "permission_denied"
    assert world.audit_count() == before


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=IDS)
def test_branch_a_cannot_read_or_change_branch_b(world: World, method: str, route: APIRoute) -> None:
    rule = rule_of(route)
    assert rule is not None
    if rule.audience == "public" or rule.scope == "self":
        pytest.skip("public or about the caller's own session")
    # given: branch A's strongest credential on this side — its admin (which can also reveal), or its key
    who = "key:a" if rule.audience == "channel" else "a_admin"
    b_state = _branch_b_state(world)
    has_b_object = "{" in route.path and rule.scope == "subtree" and not route.path.endswith("{name}")
    # when
    r = _request(world, method, route, who, branch_b_objects(world))
    # then
    if has_b_object or (method in MUTATING):
        assert r.status_code in (403, 404), f"{method} {route.path} let branch A touch a branch-B object: {r.text}"
    else:
        assert r.status_code == 200, r.text
        assert not B_MARK.search(r.text), f"{method} {route.path} showed branch-B data to branch A: {r.text[:300]}"
    assert _branch_b_state(world) == b_state


def _branch_b_state(world: World) -> Any:
    """What branch A must not be able to change: B's users, keys, sessions, pools, wallets, orders,
    campaigns and do-not-contact entries."""
    b = world.call("GET", "/api/v1/users", "b_admin").json()
    keys = world.call("GET", "/api/v1/api-keys", "b_admin").json()
    me = world.call("GET", "/api/v1/auth/me", "b_operator").status_code
    pools = world.call("GET", "/api/v1/pools", "b_admin").json()
    wallet = world.call("GET", f"/api/v1/customers/{world.customers['B'][0]}/wallet", "b_admin").json()
    order = world.call("GET", f"/api/v1/savings-card-orders/{world.rights['B']['order_no']}", "b_admin").json()
    campaign = world.call("GET", f"/api/v1/campaigns/{world.rights['B']['campaign_code']}", "b_admin").json()
    contact = world.call("GET", f"/api/v1/customers/{world.customers['B'][0]}/do-not-contact", "b_admin").json()
    return b, keys, me, pools, wallet, order, campaign, contact


def test_branch_aggregates_count_only_the_branch(world: World) -> None:
    # when
    hq = world.call("GET", "/api/v1/insight/lifecycle", "hq_admin").json()
    a = world.call("GET", "/api/v1/insight/lifecycle", "a_admin").json()
    grid_a = world.call("GET", "/api/v1/insight/grid", "a_analyst").json()
    # then
    total_hq = sum(s["customers"] for s in hq)
    assert total_hq == sum(len(v) for v in world.customers.values()) + _others(world)
    assert sum(s["customers"] for s in a) == len(world.customers["A"])
    assert grid_a["total"] == len(world.customers["A"])
    # the trend's last day is the same distribution
    trend_hq = world.call("GET", "/api/v1/insight/lifecycle/trend", "hq_admin").json()
    trend_a = world.call("GET", "/api/v1/insight/lifecycle/trend", "a_analyst").json()
    assert [s["customers"] for s in trend_hq["stages"]] == [s["customers"] for s in hq]
    assert [s["customers"] for s in trend_a["stages"]] == [s["customers"] for s in a]
    assert [v[-1] for v in trend_a["counts"].values()] == [s["customers"] for s in a]
    tag_a = world.call("GET", "/api/v1/tags/txn_count_30d", "a_admin").json()
    assert tag_a["rows"] == len(world.customers["A"])
    assert sum(b["customers"] for b in tag_a["histogram"]) == len(world.customers["A"])  # the chart too
    # the nightly runs' log: bank-wide counts for HQ only
    runs_hq = world.call("GET", "/api/v1/insight/runs", "hq_admin").json()
    runs_a = world.call("GET", "/api/v1/insight/runs", "a_admin").json()
    assert runs_hq[0]["customers"] == total_hq
    assert [r["as_of"] for r in runs_a] == [r["as_of"] for r in runs_hq]
    assert {(r["customers"], r["changed"], r["transitions"]) for r in runs_a} == {(None, None, None)}


def _others(world: World) -> int:
    from bankgrowth.warehouse import engine as wh

    con = wh.connect(world.settings.resolved_warehouse_url)
    c = con.table("customers")
    n = int(c.filter(~c.branch_id.startswith("B01") & ~c.branch_id.startswith("B02")).count().execute())
    con.disconnect()
    return n
