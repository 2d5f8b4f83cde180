"""Campaigns through the API, as a branch's operator and approver, and a channel provider would use
them: a template, a rejected definition, maker-checker, launch, execution in the background,
do-not-contact, signed receipts, results, finish."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bankgrowth.campaigns.connectors import Outgoing, Receipt, Sent, sign
from bankgrowth.campaigns.models import Message
from bankgrowth.campaigns.reach import ContactPolicy, dispatch
from tests.api.conftest import PASSWORD, World
from tests.api.test_rights_api import Walk

# Every mutating campaign route; the scenario below must make each succeed at least once.
CAMPAIGN_MUTATIONS = {
    ("POST", "/api/v1/campaigns"),
    ("POST", "/api/v1/campaign-templates/campaigns"),
    ("POST", "/api/v1/campaigns/{campaign_code}/versions"),
    ("POST", "/api/v1/campaigns/{campaign_code}/submit"),
    ("POST", "/api/v1/campaigns/{campaign_code}/decision"),
    ("POST", "/api/v1/campaigns/{campaign_code}/launch"),
    ("POST", "/api/v1/campaigns/{campaign_code}/execute"),
    ("POST", "/api/v1/campaigns/{campaign_code}/finish"),
    ("POST", "/api/v1/customers/{customer_id}/do-not-contact"),
    ("DELETE", "/api/v1/customers/{customer_id}/do-not-contact"),
    ("POST", "/connectors/v1/receipts"),
}


class Provider:
    """A channel provider that accepts every message and answers with a reference; its receipts
    come back later through the signed callback."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def send(self, messages: Sequence[Outgoing], *, now: datetime) -> list[Sent]:
        return [Sent(m.key, True, f"ref-{m.key}") for m in messages]

    def receipts(self) -> list[Receipt]:
        return []


def _signed(w: World, payload: Any) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    return {
        "content": body,
        "headers": {
            "X-Signature": sign(w.settings.resolved_connector_secret, body),
            "Content-Type": "application/json",
        },
    }


def test_a_campaign_from_template_to_results_through_the_api(fresh_world: World) -> None:
    w = fresh_world
    walk = Walk(w)
    # given: a branch-A user who may both define and approve campaigns — but not approve their own
    walk(
        "POST",
        "/api/v1/users",
        "a_admin",
        201,
        json={
            "username": "a_both",
            "display_name": "both",
            "password": PASSWORD,
            "org_id": "B01",
            "roles": ["operator", "approver"],
        },
    )
    w.tokens["a_both"] = walk("POST", "/api/v1/auth/login", None, 200, json={"username": "a_both", "password": PASSWORD}).json()["token"]  # fmt: skip
    names = {t["name"] for t in walk("GET", "/api/v1/campaign-templates", "a_analyst", 200).json()}
    assert names == {"acquisition", "activation", "retention", "revenue", "referral"}

    # a template that grants a right, without the budget pool to pay for it: a named 422
    no_pool = walk(
        "POST",
        "/api/v1/campaign-templates/campaigns",
        "a_both",
        422,
        json={"template": "activation", "code": "a.nopool", "right": "a_wechat5", "audience": "a.active"},
    ).json()
    assert no_pool["error"]["code"] == "template_needs_pool" and no_pool["error"]["message"]["zh"]

    # when: the Activation template on branch A's audience, voucher and budget
    made = walk(
        "POST",
        "/api/v1/campaign-templates/campaigns",
        "a_both",
        201,
        json={
            "template": "activation",
            "code": "a.act",
            "right": "a_wechat5",
            "pool": "a_budget",
            "audience": "a.active",
        },
    ).json()
    path = {"campaign_code": "a.act"}
    # then: a draft owned by the maker's org, with the template's 10% control group
    assert made["status"] == "draft" and made["org_id"] == "B01" and made["definition"]["control_share"] == 0.1

    # a definition with an unknown template variable is refused with its path; a good one is version 2
    bad = {
        **made["definition"],
        "arms": [{**made["definition"]["arms"][0], "message": {"zh": "{nickname}", "en": "x"}}],
    }
    r = walk("POST", "/api/v1/campaigns/{campaign_code}/versions", "a_both", 422, path=path, json=bad)
    assert "nickname" in r.text and "arms.0.message" in r.text
    good = {**made["definition"], "control_share": 0.2}
    assert (
        walk("POST", "/api/v1/campaigns/{campaign_code}/versions", "a_both", 200, path=path, json=good).json()[
            "version"
        ]
        == 2
    )
    walk("POST", "/api/v1/campaigns/{campaign_code}/launch", "a_both", 409, path=path)  # not approved yet
    walk("POST", "/api/v1/campaigns/{campaign_code}/submit", "a_both", 200, path=path)

    # maker-checker: the maker is refused; an operator lacks the permission; the approver approves
    approve = {"approve": True, "comment": "ok"}
    r = walk("POST", "/api/v1/campaigns/{campaign_code}/decision", "a_both", 403, path=path, json=approve)
    assert r.json()["error"]["code"] == "maker_checker"
    r = walk("POST", "/api/v1/campaigns/{campaign_code}/decision", "a_operator", 403, path=path, json=approve)
    assert r.json()["error"]["code"] == "permission_denied"
    done = walk("POST", "/api/v1/campaigns/{campaign_code}/decision", "a_approver", 200, path=path, json=approve)
    assert done.json()["status"] == "approved" and done.json()["approved_by"] == "user:a_approver"

    # launch, then execution in the background; its progress is read back
    walk("POST", "/api/v1/campaigns/{campaign_code}/execute", "a_both", 409, path=path)  # not launched
    assert (
        walk("POST", "/api/v1/campaigns/{campaign_code}/launch", "a_both", 200, path=path).json()["status"] == "running"
    )
    walk("POST", "/api/v1/campaigns/{campaign_code}/execute", "a_both", 202, path=path)
    e = walk("GET", "/api/v1/campaigns/{campaign_code}/execution", "a_analyst", 200, path=path).json()
    treated = e["planned"] - e["control"]
    assert e["status"] == "done" and e["treated"] == treated > 0 and e["control"] > 0
    assert e["granted"] + e["refused"] == treated
    assert sum(e["messages_by_status"].values()) == e["messages"] > 0
    again = walk("POST", "/api/v1/campaigns/{campaign_code}/execute", "a_both", 202, path=path).json()
    assert again["treated"] == treated and again["granted"] == e["granted"]  # nothing granted twice

    # do-not-contact on one treated customer: registered, then their message is suppressed at dispatch
    with Session(w.engine) as s:
        queued = s.scalars(select(Message).where(Message.status == "queued").order_by(Message.id)).all()
    blocked = queued[0].customer_id
    customer = {"customer_id": blocked}
    walk("POST", "/api/v1/customers/{customer_id}/do-not-contact", "a_both", 201, path=customer, json={"reason": "complaint"})  # fmt: skip
    listed = walk("GET", "/api/v1/customers/{customer_id}/do-not-contact", "a_analyst", 200, path=customer).json()
    assert [(d["channel"], d["reason"]) for d in listed] == [("*", "complaint")]
    providers = {c: Provider(c) for c in ("sms", "app_push", "wechat_template", "enterprise_wechat", "display_slot", "outbound_call")}  # fmt: skip
    noon = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(4, 0), UTC)  # 12:00 in Shanghai
    report = dispatch(w.engine, providers, ContactPolicy({"*": {"day": 5}}), now=noon)
    assert report.suppressed == 1 and report.sent == len(queued) - 1

    # the provider's signed receipts: applied, the unknown reference and the bad status reported
    with Session(w.engine) as s:
        sent = s.scalars(select(Message).where(Message.status == "sent").order_by(Message.id)).all()
    at = (noon + timedelta(minutes=1)).isoformat()
    payload = {
        "receipts": [
            {"ref": sent[0].provider_ref, "status": "delivered", "at": at},
            {"ref": sent[1].provider_ref, "status": "opened", "at": at},
            {"ref": "ref-nobody", "status": "delivered", "at": at},
            {"ref": sent[2].provider_ref, "status": "bounced", "at": at},
        ]
    }
    r = walk("POST", "/connectors/v1/receipts", None, 200, **_signed(w, payload)).json()
    assert (r["received"], r["matched"], r["unknown"]) == (4, 2, ["ref-nobody"])
    assert [(i["index"], i["field"]) for i in r["invalid"]] == [(3, "status")]
    forged = _signed(w, payload)
    forged["headers"]["X-Signature"] = "0" * 64
    assert walk("POST", "/connectors/v1/receipts", None, 403, **forged).json()["error"]["code"] == "bad_signature"
    outbox = walk("GET", "/api/v1/campaigns/{campaign_code}/execution", "a_analyst", 200, path=path).json()
    assert outbox["messages_by_status"]["delivered"] == 2 and outbox["messages_by_status"]["suppressed"] >= 1

    walk("DELETE", "/api/v1/customers/{customer_id}/do-not-contact", "a_both", 200, path=customer)
    walk("DELETE", "/api/v1/customers/{customer_id}/do-not-contact", "a_both", 404, path=customer)

    # results: one arm against control, the window not complete (no data after the launch yet)
    res = walk("GET", "/api/v1/campaigns/{campaign_code}/results", "a_analyst", 200, path=path).json()
    assert res["complete"] is False and res["control"] == e["control"]
    [arm] = res["arms"]
    assert arm["arm"] == "treatment" and arm["n"] == treated
    assert set(arm["lifts"]) == {"conversion", "transactions", "amount"}
    assert res["messages"]["delivered"] == 2

    # a campaign defined from JSON, and the end of the first one
    walk("POST", "/api/v1/campaigns", "a_both", 201, json={
        "code": "a.msg", "name_zh": "提醒", "name_en": "Reminder",
        "definition": {"audience": "a.active", "arms": [{"name": "note", "message": {"zh": "您好{surname}", "en": "Hi"}}]},
    })  # fmt: skip
    assert (
        walk("POST", "/api/v1/campaigns/{campaign_code}/finish", "a_both", 200, path=path).json()["status"]
        == "finished"
    )
    listed_a = walk("GET", "/api/v1/campaigns", "a_analyst", 200, params={"status": "finished"}).json()
    assert [c["code"] for c in listed_a] == ["a.act"]
    assert walk.succeeded >= CAMPAIGN_MUTATIONS, CAMPAIGN_MUTATIONS - walk.succeeded


def test_the_openapi_documents_the_campaign_routes_and_the_signed_receipts(world: World) -> None:
    # when
    spec = world.call("GET", "/openapi.json").json()
    # then
    receipts = spec["paths"]["/connectors/v1/receipts"]["post"]
    assert any(p["name"] == "x-signature" for p in receipts["parameters"])
    assert receipts["requestBody"]["content"]["application/json"]["schema"]["required"] == ["receipts"]
    assert "HMAC-SHA256" in receipts["description"]
    for route in ("/api/v1/campaigns/{campaign_code}/decision", "/api/v1/campaigns/{campaign_code}/results"):
        assert route in spec["paths"]
    assert {t["name"] for t in spec["tags"]} >= {"campaigns", "connectors"}
