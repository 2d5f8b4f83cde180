"""Audiences through the API as a branch operator and a channel application would use them."""

from __future__ import annotations

import csv
import io

from tests.api.conftest import World
from tests.api.test_rights_api import Walk

AUDIENCE_MUTATIONS = {
    ("POST", "/api/v1/audiences"),
    ("POST", "/api/v1/audiences/{code}/versions"),
    ("POST", "/api/v1/audiences/{code}/snapshots"),
    ("POST", "/api/v1/audiences/core-segments"),
    ("POST", "/api/v1/audience-lists"),
    ("POST", "/api/v1/audiences/{code}/lookalike"),
}


def test_audiences_end_to_end_through_the_api(fresh_world: World) -> None:
    w = fresh_world
    call = Walk(w)
    a_ids = [c for c in w.customers["A"] if w.branch_of[c].startswith("B01-S01")]

    # a live count while typing, then the saved audience counts the same, over the branch only
    text = "txn_count_30d >= 1 and stage in ('transacting', 'super')"
    live = call("GET", "/api/v1/audiences/count", "a_operator", 200, params={"rule": text}).json()
    body = {"code": "s01.active", "name_zh": "活跃客户", "name_en": "Active", "text": text}
    created = call("POST", "/api/v1/audiences", "a_operator", 201, json=body).json()
    assert created["org_id"] == "B01-S01" and created["definition"]["text"] == text
    saved = call("GET", "/api/v1/audiences/{code}/count", "a_operator", 200, path={"code": "s01.active"}).json()
    assert saved["customers"] == live["customers"] > 0
    hq = call("GET", "/api/v1/audiences/count", "hq_admin", 200, params={"rule": text}).json()
    assert hq["customers"] > saved["customers"]  # HQ counts the whole bank, the sub-branch its own customers

    # a mistake is answered with its line and column
    bad = call("GET", "/api/v1/audiences/count", "a_operator", params={"rule": "stage = 'super' and\nagee > 3"})
    assert (
        bad.status_code == 422
        and bad.json()["error"]["details"] | {"line": 2, "column": 1} == bad.json()["error"]["details"]
    )

    # a new version, two snapshots and their diff; the preview is masked
    first = call("POST", "/api/v1/audiences/{code}/snapshots", "a_operator", 201, path={"code": "s01.active"}).json()
    tightened = {
        "rule": {
            "and": [{"field": "txn_count_30d", "op": ">=", "value": 1}, {"field": "stage", "op": "=", "value": "super"}]
        }
    }
    call("POST", "/api/v1/audiences/{code}/versions", "a_operator", 200, path={"code": "s01.active"}, json=tightened)
    second = call("POST", "/api/v1/audiences/{code}/snapshots", "a_operator", 201, path={"code": "s01.active"}).json()
    diff = call(
        "GET", f"/api/v1/audience-snapshots/{second['id']}/diff", "a_operator", 200, params={"before": first["id"]}
    )
    d = diff.json()
    assert (first["version"], second["version"]) == (1, 2)
    assert d["before"] == first["members"] and d["after"] == second["members"]
    assert d["before"] - d["only_before"] + d["only_after"] == d["after"]
    rows = call("GET", "/api/v1/audiences/s01.active/preview", "a_analyst", 200, params={"limit": 3}).json()
    assert rows and all("*" in r["name"] for r in rows)

    # export the snapshot as CSV, with a tag
    exported = call("GET", f"/api/v1/audience-snapshots/{second['id']}/export", "a_operator", 200,
                    params={"columns": ["stage"]})  # fmt: skip
    members = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(members) == second["members"] and {r["stage"] for r in members} == {"super"}

    # an uploaded list: unknown ids reported, the rest kept
    upload = {
        "code": "s01.vip",
        "name_zh": "贵宾",
        "name_en": "VIP",
        "customer_ids": [str(a_ids[0]), str(a_ids[1]), "0", "x"],
    }
    listed = call("POST", "/api/v1/audience-lists", "a_operator", 201, json=upload).json()
    assert (listed["accepted"], listed["unknown"], listed["unknown_count"]) == (2, ["0"], 1)
    assert (listed["malformed"], listed["malformed_count"]) == ([{"position": 4, "value": "x"}], 1)

    # the core segments are HQ's to install (here already installed), and every branch can use it
    assert call("POST", "/api/v1/audiences/core-segments", "hq_admin", 200).json() == []
    assert call("POST", "/api/v1/audiences/core-segments", "a_admin").status_code == 403
    overlap = call("GET", "/api/v1/audiences/overlap", "a_operator", 200,
                   params={"codes": ["s01.active", "core.super_users"]}).json()  # fmt: skip
    assert overlap["counts"][0][0] == second["members"] == overlap["counts"][0][1]  # all its members are supers

    # a channel asks about one customer: the in-memory evaluator agrees with the batch membership
    for customer in a_ids[:15]:
        answer = call("GET", f"/channel/v1/customers/{customer}/audiences/s01.active", "key:a", 200).json()
        assert answer["member"] == (str(customer) in {r["customer_id"] for r in members}), customer
    assert (
        call("GET", f"/channel/v1/customers/{w.customers['B'][0]}/audiences/core.super_users", "key:a").status_code
        == 404
    )

    # a lookalike of HQ's super users within the branch, saved as a list; clusters of the branch
    like = call("POST", "/api/v1/audiences/{code}/lookalike", "a_admin", 200, path={"code": "core.super_users"},
                json={"target": 40, "save_as": "b01.like_supers"}).json()  # fmt: skip
    assert like["target"] == 40 and like["saved_as"] == "b01.like_supers" and like["holdout_auc"] > 0.7
    assert all(w.branch_of[c].startswith("B01") for c in like["sample"])
    groups = call("GET", "/api/v1/audiences/clusters", "a_analyst", 200, params={"k": 3}).json()
    assert sum(c["customers"] for c in groups["clusters"]) == sum(1 for c in w.customers["A"])

    assert call.succeeded == AUDIENCE_MUTATIONS


def test_the_rule_schema_is_published(world: World) -> None:
    schema = world.call("GET", "/api/v1/audiences/rule-schema", "a_analyst").json()
    assert schema["$ref"] == "#/$defs/rule" and "behaviour" in schema["$defs"]
