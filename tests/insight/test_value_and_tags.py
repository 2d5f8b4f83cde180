"""Value scores, the segment map and the tag catalog."""

from __future__ import annotations

import itertools
from datetime import date

import ibis
import pytest

from bankgrowth.insight import service, store
from bankgrowth.insight.service import CATALOG
from bankgrowth.insight.tags import BUILTIN_TAGS
from bankgrowth.insight.value import SEGMENTS, segment_expr, segment_of
from bankgrowth.warehouse import engine


def test_segment_expression_matches_the_documented_map_on_every_cell() -> None:
    # given: all 25 (R, F) pairs
    pairs = list(itertools.product(range(1, 6), range(1, 6)))
    t = ibis.memtable({"r": [r for r, _ in pairs], "f": [f for _, f in pairs]})
    # when
    got = t.mutate(s=segment_expr(t.r, t.f)).to_pyarrow().to_pylist()
    # then
    assert [g["s"] for g in got] == [segment_of(r, f) for r, f in pairs]
    assert {segment_of(r, f) for r, f in pairs} == {name for name, _ in SEGMENTS}


def test_catalog_has_at_least_40_labelled_builtins() -> None:
    assert len(BUILTIN_TAGS) >= 40
    names = [t.name for t in CATALOG]
    assert len(names) == len(set(names))
    for tag in CATALOG:
        assert tag.zh and tag.en and tag.description, tag.name
    assert {t.category for t in BUILTIN_TAGS} >= {
        "clothing",
        "food",
        "housing",
        "travel",
        "leisure",
        "health",
        "finance",
    }


@pytest.fixture(scope="module")
def insight_run(loaded_bank, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The small bank with tag versions for two consecutive days."""
    import shutil

    path = tmp_path_factory.mktemp("insight") / "w.duckdb"
    shutil.copy(loaded_bank, path)
    con = engine.connect(f"duckdb:///{path}")
    from bankgrowth.config import Settings

    settings = Settings(data_dir=path.parent)
    first = service.run(con, settings, as_of=date(2026, 10, 30))
    second = service.run(con, settings, as_of=date(2026, 10, 31))
    yield con, settings, first, second
    con.disconnect()


def test_scores_are_quintiles_and_recency_is_reversed(insight_run) -> None:
    con, *_ = insight_run
    t = store.tags_table(con)
    rows = (
        t.filter(t.txn_count_365d > 0)
        .select("rfm_r", "rfm_f", "last_txn_at", "txn_count_365d")
        .to_pyarrow()
        .to_pylist()
    )
    sizes = [sum(1 for r in rows if r["rfm_r"] == k) for k in range(1, 6)]
    assert max(sizes) - min(sizes) <= 1  # ntile: equal groups
    newest = max(rows, key=lambda r: r["last_txn_at"])
    oldest = min(rows, key=lambda r: r["last_txn_at"])
    assert (newest["rfm_r"], oldest["rfm_r"]) == (5, 1)
    assert max(rows, key=lambda r: r["txn_count_365d"])["rfm_f"] == 5
    none = t.filter(t.txn_count_365d == 0).select("rfm_segment", "value_tier").distinct().to_pyarrow().to_pylist()
    assert none == [{"rfm_segment": "none", "value_tier": "none"}]


def test_versions_transitions_and_flows(insight_run) -> None:
    con, _, first, second = insight_run
    # then: two versions, stage changes of the second day logged once
    assert store.versions(con) == [date(2026, 10, 30), date(2026, 10, 31)]
    assert first.transitions == 0  # nothing to compare the first version with
    log = con.table(store.TRANSITIONS).to_pyarrow().to_pylist()
    assert len(log) == second.transitions > 0
    assert all(r["from_stage"] != r["to_stage"] and r["as_of"] == date(2026, 10, 31) for r in log)
    # the flow matrix accounts for every customer, and its off-diagonal equals the log
    m = service.transition_matrix(con, date(2026, 10, 30), date(2026, 10, 31))
    assert m.total() == second.customers
    moved = sum(n for (a, b), n in m.counts.items() if a != b)
    assert moved == second.transitions


def test_rerunning_a_day_replaces_its_transitions(insight_run) -> None:
    con, settings, _, second = insight_run
    again = service.run(con, settings, as_of=date(2026, 10, 31))
    assert again.transitions == second.transitions
    assert con.table(store.TRANSITIONS).count().to_pyarrow().as_py() == second.transitions


def test_catalog_coverage_and_grid(insight_run) -> None:
    con, *_ = insight_run
    stats = {s.tag.name: s for s in service.catalog(con)}
    assert stats["txn_count_365d"].coverage == 1.0
    assert 0 < stats["preferred_institution"].coverage < 1  # only customers who transacted have one
    grid = service.grid(con)
    assert grid.total() == stats["stage"].rows
    assert grid.counts.get(("unbound", "high"), 0) == 0  # no transactions, no value


def test_customer_view_masks_personal_data(insight_run) -> None:
    con, *_ = insight_run
    t = store.tags_table(con)
    cid = t.filter(t.txn_count_365d > 3).customer_id.min().to_pyarrow().as_py()
    view = service.customer_view(con, cid)
    raw = con.table("customers").filter(ibis._.customer_id == cid).to_pyarrow().to_pylist()[0]
    assert "*" in view.profile["phone"] and view.profile["phone"] != raw["phone"]
    assert view.profile["phone"][:3] == raw["phone"][:3] and view.profile["phone"][-4:] == raw["phone"][-4:]
    assert view.tags["stage"] in {"transacting", "super", "at_risk", "won_back", "churned"}
    assert view.recent_transactions and view.bindings
    assert service.customer_view(con, cid, reveal=True).profile["phone"] == raw["phone"]


def test_prune_keeps_the_retention_window(insight_run) -> None:
    con, *_ = insight_run
    dropped = store.prune(con, keep_days=1)
    assert dropped == [date(2026, 10, 30)] and store.versions(con) == [date(2026, 10, 31)]


def test_a_tag_added_later_becomes_a_column_and_older_versions_still_read(loaded_bank, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from bankgrowth.config import Settings

    path = tmp_path / "w.duckdb"
    shutil.copy(loaded_bank, path)
    con = engine.connect(f"duckdb:///{path}")
    settings = Settings(data_dir=tmp_path)
    try:
        # given: a history written before ``referrals_made`` existed
        fewer = tuple(t for t in BUILTIN_TAGS if t.name != "referrals_made")
        first = service.run(con, settings, as_of=date(2026, 10, 30), tags=fewer)
        # when: the next night runs with it
        report = service.run(con, settings, as_of=date(2026, 10, 31))
        # then: definitions changed, so a full run; the new version has the tag, the old one reads
        assert report.mode == "full" and "definitions" in report.reason
        assert store.tags_table(con).referrals_made.max().to_pyarrow().as_py() > 0
        old = store.tags_table(con, date(2026, 10, 30), tags=fewer).to_pyarrow()
        assert old.num_rows == first.customers > 0 and "referrals_made" not in old.column_names
    finally:
        con.disconnect()
