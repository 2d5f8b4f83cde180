"""Value scores, the segment map and the tag catalog."""

from __future__ import annotations

import itertools
from datetime import date

import ibis
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bankgrowth.insight import service, store
from bankgrowth.insight.service import CATALOG, histogram_edges
from bankgrowth.insight.tags import BUILTIN_TAGS
from bankgrowth.insight.value import SEGMENTS, segment_expr, segment_of
from bankgrowth.warehouse import engine
from tests.conftest import warehouse_copy


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
    steps: list[tuple[date, int, int, str]] = []  # what each run told its progress display

    def told(day: date) -> service.StepFn:
        return lambda step, total, what: steps.append((day, step, total, what))

    first = service.run(con, settings, as_of=date(2026, 10, 30), progress=told(date(2026, 10, 30)))
    second = service.run(con, settings, as_of=date(2026, 10, 31), progress=told(date(2026, 10, 31)))
    yield con, settings, first, second, steps
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
    con, _, first, second, _ = insight_run
    # then: two versions, stage changes of the second day logged once
    assert store.versions(con) == [date(2026, 10, 30), date(2026, 10, 31)]
    assert first.transitions is None  # nothing to compare the first version with
    log = con.table(store.TRANSITIONS).to_pyarrow().to_pylist()
    assert len(log) == second.transitions > 0
    assert all(r["from_stage"] != r["to_stage"] and r["as_of"] == date(2026, 10, 31) for r in log)
    # the flow matrix accounts for every customer, and its off-diagonal equals the log
    m = service.transition_matrix(con, date(2026, 10, 30), date(2026, 10, 31))
    assert m.total() == second.customers
    moved = sum(n for (a, b), n in m.counts.items() if a != b)
    assert moved == second.transitions


def test_a_run_tells_its_progress_display_each_step_in_order(insight_run) -> None:
    _, _, first, second, steps = insight_run
    # then: the first day was a full run, the second incremental; each told every step of its
    # plan once, numbered in order, before the work of that step
    assert (first.mode, second.mode) == ("full", "incremental")
    for day, plan in ((date(2026, 10, 30), service.FULL_STEPS), (date(2026, 10, 31), service.INCREMENTAL_STEPS)):
        told = [(step, total, what) for d, step, total, what in steps if d == day]
        assert told == [(i, len(plan), what) for i, what in enumerate(plan, start=1)]


def _version(con, day: date):  # type: ignore[no-untyped-def]
    return store.tags_table(con, day).order_by("customer_id").to_pyarrow()


def test_rerunning_a_day_replaces_its_transitions(insight_run) -> None:
    con, settings, _, second, _ = insight_run
    before = {d: _version(con, d) for d in store.versions(con)}
    again = service.run(con, settings, as_of=date(2026, 10, 31))
    assert again.transitions == second.transitions
    assert con.table(store.TRANSITIONS).count().to_pyarrow().as_py() == second.transitions
    # the rerun rewound the day (its rows replaced, the day before's current again) and rewrote
    # it: both versions read as they did
    assert {d: _version(con, d) for d in store.versions(con)} == before


def test_catalog_coverage_and_grid(insight_run) -> None:
    con, *_ = insight_run
    stats = {s.tag.name: s for s in service.catalog(con)}
    assert stats["txn_count_365d"].coverage == 1.0
    assert 0 < stats["preferred_institution"].coverage < 1  # only customers who transacted have one
    grid = service.grid(con)
    assert grid.total() == stats["stage"].rows
    assert grid.counts.get(("unbound", "high"), 0) == 0  # no transactions, no value


def test_a_numeric_tag_shows_its_histogram(insight_run) -> None:
    # given: a count with a long tail, an amount in fen, an age and a share
    con, *_ = insight_run
    names = ["txn_count_365d", "txn_amount_365d", "age", "weekend_share_90d"]
    values = store.tags_table(con).select(*names).to_pandas()
    for name in names:
        # when
        [stats] = service.catalog(con, names=[name])
        bins = stats.histogram
        # then: the bins follow each other, and each holds exactly the customers in its range
        column = values[name].dropna()
        assert bins and all(a.high == b.low for a, b in itertools.pairwise(bins)), name
        assert sum(b.customers for b in bins) == len(column) == round(stats.coverage * stats.rows)
        for i, b in enumerate(bins):
            inside = (column >= b.low) & ((column < b.high) | ((i == len(bins) - 1) & (column <= b.high)))
            assert b.customers == int(inside.sum()), (name, b)
        assert len(bins) <= 12
    # and: a long tail starts with a bin of zero alone; amounts step from ¥1 (100 fen)
    [count] = service.catalog(con, names=["txn_count_365d"])
    [amount] = service.catalog(con, names=["txn_amount_365d"])
    assert (count.histogram[0].low, count.histogram[0].high) == (0, 1)
    assert [b.low for b in amount.histogram[:3]] == [0, 1, 100]
    # and: the whole catalog leaves histograms out (one pass over the version)
    assert not any(s.histogram for s in service.catalog(con))


@given(
    st.floats(-1e6, 1e9, allow_nan=False),
    st.floats(0, 1e9, allow_nan=False),
    st.floats(0, 1),
    st.booleans(),
    st.sampled_from([1.0, 100.0]),
)
@example(0.0, 5e-324, 0.5, False, 1.0)  # a span whose tenth underflows to zero
def test_histogram_edges_cover_the_range_in_a_few_bins(lo, span, where, integer, first) -> None:  # type: ignore[no-untyped-def]
    # given: any range of values and a median inside it
    if integer:
        lo, span = float(round(lo)), float(round(span))
    hi = lo + span
    median = lo + where * span
    # when
    edges = histogram_edges(lo, hi, median, integer=integer, first=first)
    # then: ascending, from at or below the smallest value to above the largest (or at it, for the
    # last bin of non-whole values, which holds it), in 1 to 12 bins
    assert all(a < b for a, b in itertools.pairwise(edges)), edges
    assert edges[0] <= lo and (edges[-1] > hi or (not integer and edges[-1] >= hi)), edges
    assert 1 <= len(edges) - 1 <= 12, edges


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
    with warehouse_copy(loaded_bank, tmp_path) as (con, settings):
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


def test_a_history_from_before_the_current_table_reads_the_same_and_is_split_by_the_next_run(
    loaded_bank, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    with warehouse_copy(loaded_bank, tmp_path) as (con, settings):
        days = [date(2026, 10, 30), date(2026, 10, 31)]
        for day in days:
            service.run(con, settings, as_of=day)
        before = {d: _version(con, d) for d in days}
        # given: the layout warehouses had before tag_current, every current row in tag_history
        # with no valid_to
        names = ", ".join(f'"{c}"' for c in con.table(store.CURRENT).columns if c not in ("customer_id", "valid_from"))
        con.raw_sql(
            f"INSERT INTO {store.HISTORY} (customer_id, valid_from, valid_to, {names}) "
            f"SELECT customer_id, valid_from, NULL, {names} FROM {store.CURRENT}; DROP TABLE {store.CURRENT}"
        )
        # then: its versions read as they did
        assert {d: _version(con, d) for d in days} == before
        # when: the next night runs
        report = service.run(con, settings, as_of=date(2026, 11, 1), beyond_data=True)
        # then: incremental as before; the current rows are split out, and every version reads
        assert report.mode == "incremental"
        assert store.CURRENT in con.list_tables()
        h = con.table(store.HISTORY)
        assert h.filter(h.valid_to.isnull()).count().to_pyarrow().as_py() == 0
        assert {d: _version(con, d) for d in days} == before
        assert _version(con, report.as_of).num_rows == report.customers
