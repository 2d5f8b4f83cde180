"""The insight routes' view of a day that was never run: refused with the way to see it, computed
from the data when asked, in the caller's branch only, and never stored. And a warehouse another
process holds: a 503 that says when to come back. And the tag catalog's coverage, by branch."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from bankgrowth.insight import service
from bankgrowth.warehouse import engine as wh
from tests.api.conftest import World
from tests.conftest import held

NEVER_RUN = "2026-10-01"  # the world's bank has one stored version, 2026-10-31


def _computed(world: World, prefix: str) -> Counter[str]:
    con = wh.connect(world.settings.resolved_warehouse_url)
    try:
        rows = service.computed_stages(con, world.settings, date.fromisoformat(NEVER_RUN), "branch_id")
        return Counter(r["stage"] for r in rows.to_pyarrow().to_pylist() if r["branch_id"].startswith(prefix))
    finally:
        con.disconnect()


def test_a_day_never_run_is_refused_with_the_way_to_see_it(world: World) -> None:
    # when
    lifecycle = world.call("GET", "/api/v1/insight/lifecycle", "hq_admin", params={"as_of": NEVER_RUN})
    flows = world.call(
        "GET", "/api/v1/insight/transitions", "hq_admin", params={"start": NEVER_RUN, "end": "2026-10-31"}
    )
    grid = world.call("GET", "/api/v1/insight/grid", "hq_admin", params={"as_of": NEVER_RUN})
    # then
    for response in (lifecycle, flows, grid):
        assert response.status_code == 404
        message = response.json()["error"]["message"]
        assert f"no tag version for {NEVER_RUN}" in message["en"]
        assert "compute=true" in message["en"] and "compute=true" in message["zh"]
        assert "X-Computed-Days" not in response.headers


def test_a_day_never_run_is_computed_on_request_in_the_callers_branch_and_not_stored(world: World) -> None:
    # given
    runs = world.call("GET", "/api/v1/insight/runs", "hq_admin").json()
    asked = {"as_of": NEVER_RUN, "compute": "true"}
    # when
    hq = world.call("GET", "/api/v1/insight/lifecycle", "hq_admin", params=asked)
    a = world.call("GET", "/api/v1/insight/lifecycle", "a_analyst", params=asked)
    flows_a = world.call(
        "GET",
        "/api/v1/insight/transitions",
        "a_analyst",
        params={"start": NEVER_RUN, "end": "2026-10-31", "compute": "true"},
    )
    grid_a = world.call("GET", "/api/v1/insight/grid", "a_analyst", params=asked)
    stored = world.call("GET", "/api/v1/insight/lifecycle", "hq_admin", params={"as_of": "2026-10-31", "compute": 1})
    # then: the counts are the computed stages', by the caller's branch, and the header says so
    expected_hq, expected_a = _computed(world, ""), _computed(world, "B01")
    assert hq.status_code == a.status_code == flows_a.status_code == 200
    assert {s["stage"]: s["customers"] for s in hq.json() if s["customers"]} == dict(expected_hq)
    assert {s["stage"]: s["customers"] for s in a.json() if s["customers"]} == dict(expected_a)
    assert hq.headers["X-Computed-Days"] == a.headers["X-Computed-Days"] == NEVER_RUN
    # and: the flows start from the same computed stages; their columns are the stored day's, in A
    matrix = flows_a.json()
    assert flows_a.headers["X-Computed-Days"] == NEVER_RUN
    from_rows = {r: sum(row) for r, row in zip(matrix["rows"], matrix["counts"], strict=True)}
    assert {r: n for r, n in from_rows.items() if r != "new"} == dict(expected_a)
    assert matrix["total"] == len(world.customers["A"])
    # and: the grid's rows are the same stages, by value tier
    cells = grid_a.json()
    assert grid_a.headers["X-Computed-Days"] == NEVER_RUN
    by_stage = {r: sum(row) for r, row in zip(cells["rows"], cells["counts"], strict=True) if sum(row)}
    assert by_stage == dict(expected_a)
    # and: a stored day is read from its version, without the header
    assert stored.status_code == 200 and "X-Computed-Days" not in stored.headers
    # and: nothing was stored
    assert world.call("GET", "/api/v1/insight/runs", "hq_admin").json() == runs
    assert world.call("GET", "/api/v1/insight/lifecycle", "hq_admin", params={"as_of": NEVER_RUN}).status_code == 404


def test_a_day_after_the_data_is_refused_as_invalid(world: World) -> None:
    # when
    response = world.call(
        "GET", "/api/v1/insight/lifecycle", "hq_admin", params={"as_of": "2026-11-30", "compute": "true"}
    )
    # then
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "day_after_data"
    assert error["details"] == {"day": "2026-11-30", "last_data_day": "2026-10-31"}


def test_a_warehouse_another_process_holds_is_answered_503_with_retry_after(world: World) -> None:
    path = Path(world.settings.resolved_warehouse_url.removeprefix("duckdb:///"))
    # given: a nightly run (another process) holding the warehouse
    with held(path) as holder:
        # when
        busy = world.call("GET", "/api/v1/insight/lifecycle", "hq_admin")
        ready = world.call("GET", "/ready")
    # then: unavailable for now, with when to come back, and who holds it
    for response in (busy, ready):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "10"
        error = response.json()["error"]
        assert error["code"] == "warehouse_busy"
        assert f"in use by process {holder.pid}" in error["message"]["en"] and "稍后重试" in error["message"]["zh"]
    # and: once it is released, the same requests are answered
    assert world.call("GET", "/api/v1/insight/lifecycle", "hq_admin").status_code == 200
    assert world.call("GET", "/ready").status_code == 200


def test_the_nightly_runs_status_says_whether_the_latest_version_is_current(world: World) -> None:
    # when
    hq = world.call("GET", "/api/v1/insight/status", "hq_admin")
    branch = world.call("GET", "/api/v1/insight/status", "a_analyst")
    # then: the one version stored is of the last day with data, and nothing arrived since its run
    assert hq.status_code == branch.status_code == 200
    status = hq.json()
    assert (status["kept"], status["last_data_day"]) == (["2026-10-31"], "2026-10-31")
    assert (status["current"], status["outdated"], status["stale"]) == (True, "", [])
    assert status["last_run"]["as_of"] == "2026-10-31" and status["last_run"]["mode"] == "full"
    # and: the run's bank-wide counts are HQ's alone, as in the run log
    assert status["last_run"]["customers"] > 0 and branch.json()["last_run"]["customers"] is None
    assert {k: v for k, v in branch.json().items() if k != "last_run"} == {
        k: v for k, v in status.items() if k != "last_run"
    }


def test_the_customer_view_says_from_when_stage_changes_are_logged(world: World) -> None:
    # when: a customer of the world's bank, which has run one day (2026-10-31)
    view = world.call("GET", f"/api/v1/customers/{world.customers['A'][0]}", "a_analyst").json()
    # then: no change can have been logged yet, and the view says from which day they would be
    assert view["stage_history"] == []
    assert view["stage_history_since"] == "2026-10-31"
    assert view["tags"]["stage"]


def _branch_tags(world: World, prefix: str, *names: str) -> list[dict[str, Any]]:
    from bankgrowth.insight import store

    con = wh.connect(world.settings.resolved_warehouse_url)
    try:
        t = store.tags_table(con)
        t = t.filter(t.branch_id.startswith(prefix)).select(*names)
        return list(t.to_pyarrow().to_pylist())
    finally:
        con.disconnect()


def test_the_tag_coverage_lists_every_tag_counted_in_the_callers_branch(world: World) -> None:
    # given: the catalog's definitions, and a numeric tag's own page for a branch-A analyst
    definitions = world.call("GET", "/api/v1/tags", "hq_admin").json()
    one_a = world.call("GET", "/api/v1/tags/txn_count_30d", "a_analyst").json()
    # when
    hq = world.call("GET", "/api/v1/insight/tags", "hq_admin")
    a = world.call("GET", "/api/v1/insight/tags", "a_analyst")
    never = world.call("GET", "/api/v1/insight/tags", "hq_admin", params={"as_of": NEVER_RUN})
    # then: every tag of the catalog, in its order, with its definition
    assert hq.status_code == a.status_code == 200
    assert [{k: v for k, v in t.items() if k in definitions[0]} for t in hq.json()] == definitions
    # and: branch A's counts are its customers' alone, as the tag's own page gives them
    by_name = {t["name"]: t for t in a.json()}
    rows = _branch_tags(world, "B01", "txn_count_30d", "days_since_last_txn", "preferred_institution")
    assert {t["rows"] for t in a.json()} == {len(rows)} == {len(world.customers["A"])}
    assert {t["rows"] for t in hq.json()} == {len(_branch_tags(world, "", "customer_id"))}
    got = by_name["txn_count_30d"]
    assert {k: got[k] for k in ("rows", "coverage", "nonzero", "summary")} == {
        k: one_a[k] for k in ("rows", "coverage", "nonzero", "summary")
    }
    # and: a share is what the stored values say (a tag that is missing for some customers)
    for name in ("days_since_last_txn", "preferred_institution"):
        assert by_name[name]["coverage"] == sum(r[name] is not None for r in rows) / len(rows)
    assert by_name["txn_count_30d"]["nonzero"] == sum(bool(r["txn_count_30d"]) for r in rows) / len(rows)
    assert by_name["txn_count_30d"]["summary"]["max"] == max(r["txn_count_30d"] for r in rows)
    # and: a day with no version is refused, naming the day
    assert never.status_code == 404 and NEVER_RUN in never.json()["error"]["message"]["en"]
