"""The lifecycle trend: each run's stage counts by branch, kept after the versions."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from bankgrowth.config import Settings
from bankgrowth.insight import service, store
from bankgrowth.insight.lifecycle import STAGE_CODES
from bankgrowth.platform.access import Scope
from bankgrowth.warehouse import engine
from tests.conftest import warehouse_copy

DAYS = [date(2026, 10, 25), date(2026, 10, 26), date(2026, 10, 27), date(2026, 10, 29), date(2026, 10, 30)]


def _counted(con, day: date, branches: set[str] | None = None) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Customers by stage on ``day``, counted from that day's stored version."""
    rows = store.stages(con, day, "branch_id").to_pyarrow().to_pylist()
    found = Counter(r["stage"] for r in rows if branches is None or r["branch_id"] in branches)
    return {s: found.get(s, 0) for s in STAGE_CODES}


@pytest.fixture(scope="module")
def history(loaded_bank: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small bank run on five days, 2026-10-28 skipped."""
    path = tmp_path_factory.mktemp("trend") / "w.duckdb"
    shutil.copy(loaded_bank, path)
    con = engine.connect(f"duckdb:///{path}")
    for day in DAYS:
        service.run(con, Settings(data_dir=path.parent), as_of=day)
    con.disconnect()
    return path


@pytest.fixture
def runs(history: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A copy of ``history`` of the test's own."""
    with warehouse_copy(history, tmp_path) as opened:
        yield opened


def test_each_day_run_is_counted_as_its_version_says_and_a_day_not_run_is_a_gap(runs) -> None:  # type: ignore[no-untyped-def]
    con, _ = runs
    # when
    trend = service.lifecycle_trend(con, end=date(2026, 10, 30), days=7)
    # then: the five days run, each equal to the stages of its stored version; 10-24 is before
    # the first day run, so only 10-28 is missing
    assert trend.days == DAYS
    for i, day in enumerate(DAYS):
        assert {s: v[i] for s, v in trend.counts.items()} == _counted(con, day)
    assert trend.gaps == [date(2026, 10, 28)]
    assert sum(v[-1] for v in trend.counts.values()) == store.stages(con, DAYS[-1]).count().to_pyarrow().as_py()


def test_a_branch_sees_its_own_customers_and_the_branches_add_up(runs) -> None:  # type: ignore[no-untyped-def]
    con, _ = runs
    c = con.table("customers")
    branches = sorted(c.select("branch_id").distinct().branch_id.to_pyarrow().to_pylist())
    assert len(branches) >= 2
    # when
    per_branch = {
        b: service.lifecycle_trend(con, end=DAYS[-1], days=7, scope=Scope(b, f"/HQ/{b}/", frozenset({b})))
        for b in branches
    }
    whole = service.lifecycle_trend(con, end=DAYS[-1], days=7)
    # then
    first = branches[0]
    assert {s: v[-1] for s, v in per_branch[first].counts.items()} == _counted(con, DAYS[-1], {first})
    for s in STAGE_CODES:
        assert [sum(t.counts[s][i] for t in per_branch.values()) for i in range(len(DAYS))] == whole.counts[s]
    dist = service.lifecycle_distribution(con, DAYS[-1], scope=Scope(first, f"/HQ/{first}/", frozenset({first})))
    assert {d.stage: d.customers for d in dist} == _counted(con, DAYS[-1], {first})


def test_counts_outlive_their_versions_and_a_rerun_replaces_the_later_days(runs) -> None:  # type: ignore[no-untyped-def]
    con, settings = runs
    before = {d.stage: d.customers for d in service.lifecycle_distribution(con, DAYS[0])}
    # when: the oldest versions pass retention
    store.prune(con, keep_days=2)
    # then: their version is gone, their counts and the trend are not
    assert store.versions(con) == DAYS[-2:]
    with pytest.raises(LookupError, match="no tag version"):
        store.stages(con, DAYS[0])
    assert {d.stage: d.customers for d in service.lifecycle_distribution(con, DAYS[0])} == before
    assert service.lifecycle_trend(con, end=DAYS[-1], days=7).days == DAYS
    # when: 10-29 is run again, which replaces it and every day after it
    service.run(con, settings, as_of=DAYS[-2])
    # then: 10-30 is no longer counted until it is run again
    trend = service.lifecycle_trend(con, days=7)
    assert trend.days == DAYS[:-1] and trend.days[-1] == DAYS[-2]


def test_versions_stored_before_counts_were_kept_are_counted_by_the_next_run(runs) -> None:  # type: ignore[no-untyped-def]
    con, settings = runs
    # given: the counts table missing, as in a warehouse from before it existed
    before = _counted(con, DAYS[0])
    con.drop_table(store.DAILY)
    with pytest.raises(LookupError, match="no lifecycle counts yet"):
        service.lifecycle_trend(con)
    # when: the next run, which also drops all but two versions
    report = service.run(con, settings.model_copy(update={"tag_retention_days": 2}), as_of=DAYS[-1] + timedelta(days=1))
    # then: every version is counted, those it dropped too, the new day with them
    assert report.pruned == DAYS[:-1]
    trend = service.lifecycle_trend(con, days=7)
    assert trend.days == [*DAYS, DAYS[-1] + timedelta(days=1)]
    assert {s: v[0] for s, v in trend.counts.items()} == before


def test_a_day_never_run_is_computed_from_the_data_as_a_run_would_store_it_and_nothing_is_stored(runs) -> None:  # type: ignore[no-untyped-def]
    con, settings = runs
    skipped = date(2026, 10, 28)
    kept = store.versions(con)
    # when: the stages of 10-28, never run, are asked for
    computed = service.computed_stages(con, settings, skipped, "branch_id", "value_tier").to_pyarrow().to_pylist()
    dist = {d.stage: d.customers for d in service.lifecycle_distribution(con, skipped, settings=settings)}
    flows = service.transition_matrix(con, skipped, DAYS[-1], settings=settings)
    grid = service.grid(con, skipped, settings=settings)
    # then: nothing is stored, and without the settings (as the API reads) the day is still missing
    assert store.versions(con) == kept and skipped not in store.daily_days(con)
    with pytest.raises(LookupError, match="no tag version for 2026-10-28"):
        service.lifecycle_distribution(con, skipped)
    # and: the distribution counts the computed stages, and the flows start from them
    found = Counter(r["stage"] for r in computed)
    assert dist == {s: found.get(s, 0) for s in STAGE_CODES}
    assert {r: sum(flows.counts.get((r, c), 0) for c in flows.columns) for r in found} == dict(found)
    assert flows.total() == store.stages(con, DAYS[-1]).count().to_pyarrow().as_py()
    # and: the grid counts them by value tier
    assert grid.counts == Counter((r["stage"], r["value_tier"]) for r in computed)
    assert service.computed_days(con, skipped, counts=False) == [skipped]
    # when: the day is run after all (which replaces the versions after it)
    service.run(con, settings, as_of=skipped)
    # then: its stored stages are the ones computed before
    stored = store.tags_table(con, skipped).select("customer_id", "branch_id", "value_tier", "stage")
    stored = stored.to_pyarrow().to_pylist()
    assert sorted(stored, key=lambda r: r["customer_id"]) == sorted(computed, key=lambda r: r["customer_id"])
    assert service.grid(con, skipped).counts == grid.counts and service.computed_days(con, skipped) == []


def test_a_day_after_the_data_is_not_computed(runs) -> None:  # type: ignore[no-untyped-def]
    con, settings = runs
    with pytest.raises(ValueError, match="the last transactions are of 2026-10-31"):
        service.computed_stages(con, settings, date(2026, 11, 30))
