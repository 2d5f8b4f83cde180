"""The platform through the API as a console user and a channel application would use it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bankgrowth.api.app import create_app
from bankgrowth.api.deps import api_routes
from bankgrowth.platform.models import AuditEntry, ConsoleSession
from tests.api.conftest import MUTATING, PASSWORD, World
from tests.api.test_audiences_api import AUDIENCE_MUTATIONS
from tests.api.test_campaigns_api import CAMPAIGN_MUTATIONS
from tests.api.test_rights_api import RIGHTS_MUTATIONS
from tests.api.test_tags_api import TAG_MUTATIONS


def success_requests(w: World) -> list[tuple[str, str, str, dict[str, Any]]]:
    """One successful request for every mutating route: (method, path template, who, request kwargs)."""
    a_customer = w.customers["A"][0]
    return [
        ("POST", "/api/v1/auth/login", "", {"json": {"username": "a_analyst", "password": PASSWORD}}),
        (
            "POST",
            "/api/v1/users",
            "a_admin",
            {
                "json": {
                    "username": "a_new",
                    "display_name": "新同事",
                    "password": "long-enough-pw",
                    "org_id": "B01-S02",
                    "roles": ["operator", "approver"],
                }
            },
        ),
        ("PATCH", "/api/v1/users/{user_id}", "a_admin", {"json": {"display_name": "王运营", "roles": ["analyst"]}}),
        ("POST", "/api/v1/users/{user_id}/password", "a_admin", {"json": {"password": "reset-password-9"}}),
        ("POST", "/api/v1/api-keys", "a_admin", {"json": {"app": "h5-campaigns", "channel": "h5", "org_id": "B01"}}),
        ("POST", "/api/v1/api-keys/{key_id}/rotate", "a_admin", {}),
        ("DELETE", "/api/v1/api-keys/{key_id}", "a_admin", {}),
        ("POST", "/api/v1/customers/{customer_id}/reveal", "a_auditor", {"customer_id": a_customer}),
        (
            "POST",
            "/api/v1/auth/password",
            "a_approver",
            {"json": {"old_password": PASSWORD, "new_password": "my-new-password-3"}},
        ),
        ("POST", "/api/v1/auth/logout", "b_operator", {}),
    ]


def test_every_mutating_route_succeeds_once_and_leaves_an_audit_entry(fresh_world: World) -> None:
    # given: a successful request for every mutating route of the application
    w = fresh_world
    planned = success_requests(w)
    routes = {(m, r.path) for r in api_routes(w.client.app) for m in r.methods if m in MUTATING}  # type: ignore[arg-type]
    # rights, audience, campaign and tag routes succeed in their own walks (test_rights_api,
    # test_audiences_api, test_campaigns_api, test_tags_api)
    walked = RIGHTS_MUTATIONS | AUDIENCE_MUTATIONS | CAMPAIGN_MUTATIONS | TAG_MUTATIONS
    planned_routes = {(m, p) for m, p, *_ in planned} | walked
    assert routes == planned_routes, "add a successful request for each new mutating route"
    objects = {"user_id": w.user_ids["a_operator"], "key_id": w.key_ids["a"]}
    before = w.audit_count()
    # when
    for method, template, who, kwargs in planned:
        kwargs = dict(kwargs)
        path = template.format(**{**objects, "customer_id": kwargs.pop("customer_id", 0)})
        r = w.call(method, path, who or None, **kwargs)  # World.call checks the audit entry per request id
        # then
        assert r.is_success, f"{method} {path}: {r.status_code} {r.text}"
    assert w.audit_count() - before >= len(planned)
    with Session(w.engine) as s:
        update_entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "users.update")).one()
    assert update_entry.before["display_name"] == "a_operator" and update_entry.after["display_name"] == "王运营"
    assert update_entry.actor == "user:a_admin" and update_entry.org_id == "B01-S01"


def test_personal_data_is_masked_and_every_reveal_is_audited(fresh_world: World) -> None:
    w = fresh_world
    cid = w.customers["A"][0]
    # when
    masked = w.call("GET", f"/api/v1/customers/{cid}", "a_operator")
    refused = w.call("POST", f"/api/v1/customers/{cid}/reveal", "a_operator")
    clear = w.call("POST", f"/api/v1/customers/{cid}/reveal", "a_auditor")
    # then
    assert masked.status_code == 200 and re.fullmatch(r"1\d\d\*{4}\d{4}", masked.json()["profile"]["phone"])
    assert "*" in masked.json()["profile"]["name"] and masked.json()["revealed"] is False
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert re.fullmatch(r"1\d{10}", clear.json()["profile"]["phone"]) and clear.json()["revealed"] is True
    entries = w.call("GET", "/api/v1/audit", "hq_admin", params={"action": "customers.reveal"}).json()
    assert [(e["actor"], e["object_id"]) for e in entries] == [("user:a_auditor", str(cid))]


def test_wrong_passwords_lock_the_account_with_one_answer_for_every_failure(fresh_world: World) -> None:
    w = fresh_world
    login = "/api/v1/auth/login"
    # when: five wrong passwords, then the right one
    wrong = [w.call("POST", login, json={"username": "a_operator", "password": f"guess-{i}"}) for i in range(5)]
    locked = w.call("POST", login, json={"username": "a_operator", "password": PASSWORD})
    unknown = w.call("POST", login, json={"username": "nobody", "password": PASSWORD})
    # then
    assert {r.status_code for r in [*wrong, locked, unknown]} == {401}
    assert len({json.dumps(r.json()["error"]["message"]) for r in [*wrong, locked, unknown]}) == 1
    denied = w.call("GET", "/api/v1/audit", "hq_admin", params={"action": "auth.login"}).json()
    reasons = [e["after"]["reason"] for e in denied if e["outcome"] == "denied"]
    assert reasons.count("wrong_password") == 4 and "wrong_password_locked" in reasons and "locked" in reasons


def test_sessions_end_on_logout_expiry_and_deactivation(fresh_world: World) -> None:
    w = fresh_world
    # when: logout
    assert w.call("POST", "/api/v1/auth/logout", "a_operator").status_code == 204
    # then
    assert w.call("GET", "/api/v1/auth/me", "a_operator").json()["error"]["code"] == "session_invalid"
    # when: a session passes its expiry
    with Session(w.engine) as s, s.begin():
        s.execute(
            update(ConsoleSession)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            .where(ConsoleSession.user_id == w.user_ids["a_analyst"])
        )
    # then
    assert w.call("GET", "/api/v1/auth/me", "a_analyst").status_code == 401
    # when: an admin deactivates a user
    r = w.call("PATCH", f"/api/v1/users/{w.user_ids['a_approver']}", "a_admin", json={"active": False})
    # then
    assert r.status_code == 200 and w.call("GET", "/api/v1/auth/me", "a_approver").status_code == 401
    relogin = w.call("POST", "/api/v1/auth/login", json={"username": "a_approver", "password": PASSWORD})
    assert relogin.status_code == 401


def test_an_admin_cannot_lock_themself_out(fresh_world: World) -> None:
    r = fresh_world.call(
        "PATCH", f"/api/v1/users/{fresh_world.user_ids['a_admin']}", "a_admin", json={"roles": ["analyst"]}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "self_lockout"


def test_channel_keys_rotate_with_grace_and_revoke_at_once(fresh_world: World) -> None:
    w = fresh_world
    old = w.keys["a"]
    # when
    rotated = w.call("POST", f"/api/v1/api-keys/{w.key_ids['a']}/rotate", "a_admin").json()
    # then: both work during the grace period; the channel sees only its own subtree
    for key in (old, rotated["key"]):
        me = w.call("GET", "/channel/v1/me", headers={"X-API-Key": key})
        assert me.status_code == 200 and me.json()["org_id"] == "B01"
    a_cust, b_cust = w.customers["A"][0], w.customers["B"][0]
    profile = w.call("GET", f"/channel/v1/customers/{a_cust}/profile", headers={"X-API-Key": rotated["key"]})
    assert profile.status_code == 200 and profile.json()["stage"] is not None and "phone" not in profile.json()
    assert w.call("GET", f"/channel/v1/customers/{b_cust}/profile", headers={"X-API-Key": old}).status_code == 404
    # when: the old key is revoked
    assert w.call("DELETE", f"/api/v1/api-keys/{w.key_ids['a']}", "a_admin").status_code == 200
    # then
    assert w.call("GET", "/channel/v1/me", headers={"X-API-Key": old}).json()["error"]["code"] == "api_key_invalid"
    assert w.call("GET", "/channel/v1/me", headers={"X-API-Key": rotated["key"]}).status_code == 200
    forged = rotated["key"][:-4] + "AAAA"
    assert w.call("GET", "/channel/v1/me", headers={"X-API-Key": forged}).status_code == 401


def test_one_error_model_with_a_stable_code_and_both_languages(world: World) -> None:
    # when
    missing = world.call("GET", "/api/v1/nothing-here", "a_admin")
    invalid = world.call("GET", "/api/v1/users/not-a-number", "a_admin")
    unknown_tag = world.call("GET", "/api/v1/tags/no_such_tag", "a_admin")
    # then
    for r, code in ((missing, "not_found"), (invalid, "invalid_request"), (unknown_tag, "unknown_tag")):
        error = r.json()["error"]
        assert error["code"] == code and error["message"]["zh"] and error["message"]["en"]
        assert error["request_id"] == r.headers["X-Request-ID"]
    assert invalid.json()["error"]["details"]["problems"][0]["where"] == "path.user_id"


def test_health_readiness_and_metrics(world: World) -> None:
    world.call("GET", f"/api/v1/users/{world.user_ids['a_operator']}", "a_admin")
    # when
    health = world.call("GET", "/health")
    ready = world.call("GET", "/ready")
    metrics = world.call("GET", "/metrics")
    # then
    assert health.json()["status"] == "ok" and ready.json()["status"] == "ready"
    assert 'route="/api/v1/users/{user_id}"' in metrics.text and "bankgrowth_http_request_seconds" in metrics.text


def test_openapi_groups_routes_by_domain_and_documents_auth(world: World) -> None:
    spec = world.call("GET", "/openapi.json").json()
    tags = {t for path in spec["paths"].values() for op in path.values() for t in op["tags"]}
    assert tags == {
        "platform", "insight", "rights", "audiences", "campaigns", "channel", "payments", "connectors", "system"
    }  # fmt: skip
    assert set(spec["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}


def test_logs_are_json_lines_with_the_request_id(world: World, capsys) -> None:  # type: ignore[no-untyped-def]
    # given
    structlog.reset_defaults()
    from fastapi.testclient import TestClient

    client = TestClient(create_app(world.settings, engine=world.engine))
    # when
    r = client.get("/health", headers={"X-Request-ID": "req-123"})
    # then
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert r.headers["X-Request-ID"] == "req-123"
    assert any(e["request_id"] == "req-123" and e["route"] == "/health" and e["status"] == 200 for e in lines)
