"""A bank's own tag imported over the API: the file is validated like every load, its bad lines
are answered with line, field, expected and found, the good ones become the tag's values, and the
import is recorded under the name the file was sent with."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bankgrowth.insight import views
from bankgrowth.warehouse import engine as wh
from tests.api.conftest import World

# the mutating routes these tests call with success (test_platform_api checks every route is somewhere)
TAG_MUTATIONS = {("PUT", "/api/v1/tags/imported/{name}"), ("DELETE", "/api/v1/tags/imported/{name}")}
CSV = {"Content-Type": "text/csv"}
KYC = {"zh": "风险等级", "en": "KYC grade", "filename": "kyc.csv"}


def _put(world: World, who: str, body: bytes, headers: dict[str, str] = CSV, **params: Any) -> Any:
    return world.call(
        "PUT", "/api/v1/tags/imported/kyc_grade", who, content=body, headers=headers, params={**KYC, **params}
    )


def _warehouse_rows(world: World, sql: str) -> list[tuple[Any, ...]]:
    con = wh.connect(world.settings.resolved_warehouse_url)
    try:
        return con.raw_sql(sql).fetchall()  # type: ignore[attr-defined, no-any-return]
    finally:
        con.disconnect()


def test_an_uploaded_file_becomes_a_tag_and_its_bad_lines_are_named(fresh_world: World) -> None:
    world = fresh_world
    a, b = world.customers["A"][:2]
    # given: two good lines, a value that is not one of the type, a customer the bank does not have
    body = f"customer_id,value\n{a},3\n{b},5\n{a + b},x\n99999999,4\n".encode()
    # when
    r = _put(world, "hq_admin", body, type="int", category="risk")
    # then: the good lines load, the others are listed by line, and the counts add up
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["read"], done["loaded"], done["quarantined"], done["duplicates"]) == (4, 2, 2, 0)
    assert done["file"] == "kyc.csv"
    problems = {p["line"]: (p["field"], p["expected"], p["found"]) for p in done["problems"]}
    assert problems[4] == ("value", "an integer", "x")
    assert problems[5][0] == "customer_id" and problems[5][2] == "99999999"
    assert done["tag"] == {
        "name": "kyc_grade",
        "zh": "风险等级",
        "en": "KYC grade",
        "description": "Imported from kyc.csv.",
        "category": "risk",
        "kind": "imported",
        "type": "int",
        "unit": "",
        "refresh": "on import",
    }
    # the tag is in the catalog, with its source, and customers carry its value
    listed = world.call("GET", "/api/v1/tags/imported", "a_analyst").json()
    assert [(t["name"], t["file"], t["rows"], t["rejected"]) for t in listed] == [("kyc_grade", "kyc.csv", 2, 2)]
    assert "kyc_grade" in {t["name"] for t in world.call("GET", "/api/v1/tags", "a_analyst").json()}
    view = world.call("GET", f"/api/v1/customers/{a}", "hq_admin").json()
    assert view["tags"]["kyc_grade"] == 3
    # the load log and the audit name the file as it was sent, not where the server kept it
    loads = _warehouse_rows(world, "SELECT file FROM _loads WHERE table_name = 'imported_tag_kyc_grade'")
    assert loads == [("kyc.csv",)]
    quarantined = _warehouse_rows(world, "SELECT DISTINCT file FROM _quarantine WHERE table_name LIKE 'imported%'")
    assert quarantined == [("kyc.csv",)]
    audit = world.call("GET", "/api/v1/audit", "hq_admin", params={"action": "tags.import"}).json()
    assert [(e["outcome"], e["after"]["file"], e["after"]["rejected"]) for e in audit] == [("ok", "kyc.csv", 2)]


def test_a_gb18030_file_is_read_by_its_charset_and_parquet_is_taken_as_well(fresh_world: World) -> None:
    world = fresh_world
    a, b = world.customers["A"][:2]
    # when: a CSV in GB18030 that says so in its Content-Type
    body = f"customer_id,value\n{a},高风险\n{b},低风险\n".encode("gb18030")
    r = _put(world, "hq_admin", body, headers={"Content-Type": "text/csv; charset=gb18030"})
    # then
    assert r.status_code == 200, r.text
    assert world.call("GET", f"/api/v1/customers/{a}", "hq_admin").json()["tags"]["kyc_grade"] == "高风险"
    # when: the next import is Parquet, and replaces the values
    sink = io.BytesIO()
    pq.write_table(pa.table({"customer_id": [b], "value": ["中风险"]}), sink)
    parquet = {"Content-Type": "application/vnd.apache.parquet"}
    r = _put(world, "hq_admin", sink.getvalue(), headers=parquet, filename="kyc.parquet")
    # then
    assert r.status_code == 200, r.text
    assert (r.json()["loaded"], r.json()["file"]) == (1, "kyc.parquet")
    assert world.call("GET", f"/api/v1/customers/{a}", "hq_admin").json()["tags"]["kyc_grade"] is None
    assert world.call("GET", f"/api/v1/customers/{b}", "hq_admin").json()["tags"]["kyc_grade"] == "中风险"


def test_a_file_with_no_good_line_is_refused_and_the_tag_keeps_its_values(fresh_world: World) -> None:
    world = fresh_world
    a = world.customers["A"][0]
    assert _put(world, "hq_admin", f"customer_id,value\n{a},A\n".encode()).status_code == 200
    # when: every line is bad
    r = _put(world, "hq_admin", b"customer_id,value\nabc,B\n99999999,C\n")
    # then: 422 with each line's problem; the values stay; the rejected import is audited
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "nothing_loaded"
    assert "kyc.csv" in error["message"]["en"] and "keeps its previous values" in error["message"]["en"]
    assert error["details"]["read"] == 2 and error["details"]["problem_count"] == 2
    assert [p["line"] for p in error["details"]["problems"]] == [2, 3]
    assert world.call("GET", f"/api/v1/customers/{a}", "hq_admin").json()["tags"]["kyc_grade"] == "A"
    audit = world.call("GET", "/api/v1/audit", "hq_admin", params={"action": "tags.import"}).json()
    assert sorted(e["outcome"] for e in audit) == ["ok", "rejected"]


def test_an_unreadable_or_unwanted_body_is_refused_with_why(fresh_world: World, monkeypatch: Any) -> None:
    world = fresh_world
    # a header without the value column: the message names the file as sent
    r = _put(world, "hq_admin", b"customer_id,grade\n1,A\n")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "unreadable_file"
    message = r.json()["error"]["message"]["en"]
    assert message.startswith("kyc.csv: ") and "value" in message and "upload" not in message
    # a body that is neither CSV nor Parquet
    r = _put(world, "hq_admin", b'{"customer_id": 1}', headers={"Content-Type": "application/json"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    assert "text/csv" in r.json()["error"]["message"]["en"]
    # a body larger than the API takes: the CLI is named
    monkeypatch.setattr(views, "MAX_UPLOAD", 16)
    r = _put(world, "hq_admin", b"customer_id,value\n1,A\n2,B\n")
    assert r.status_code == 413 and "bankgrowth tags import" in r.json()["error"]["message"]["en"]
    # a name a built-in tag has
    r = world.call("PUT", "/api/v1/tags/imported/stage", "hq_admin", content=b"x", headers=CSV, params=KYC)
    assert r.status_code == 422 and r.json()["error"]["code"] == "tag_name_taken"
    # nothing of it was imported
    assert world.call("GET", "/api/v1/tags/imported", "hq_admin").json() == []


@pytest.mark.parametrize("who", ["a_admin", "a_operator"])
def test_only_hq_imports_or_removes_a_tag(fresh_world: World, who: str) -> None:
    world = fresh_world
    a = world.customers["A"][0]
    body = f"customer_id,value\n{a},A\n".encode()
    # when: a branch tries
    r = _put(world, who, body)
    # then
    assert r.status_code == 403, r.text
    assert world.call("GET", "/api/v1/tags/imported", "hq_admin").json() == []
    # when HQ imported one, a branch cannot remove it; HQ can
    assert _put(world, "hq_admin", body).status_code == 200
    assert world.call("DELETE", "/api/v1/tags/imported/kyc_grade", who).status_code == 403
    assert world.call("DELETE", "/api/v1/tags/imported/kyc_grade", "hq_admin").status_code == 204
    assert world.call("GET", "/api/v1/tags/imported", "hq_admin").json() == []
    assert "kyc_grade" not in world.call("GET", f"/api/v1/customers/{a}", "hq_admin").json()["tags"]
    again = world.call("DELETE", "/api/v1/tags/imported/kyc_grade", "hq_admin")
    assert again.status_code == 404 and again.json()["error"]["code"] == "unknown_tag"
