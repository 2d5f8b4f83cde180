"""Catching up days without a run: each is run from the day before, stored, counted and compared."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from rich.console import Console

from bankgrowth.cli import render
from bankgrowth.config import Settings
from bankgrowth.insight import service, store
from bankgrowth.insight.compute import build_tags
from bankgrowth.warehouse.engine import append_arrow
from tests.conftest import warehouse_copy

FIRST = date(2026, 10, 26)  # the day run before the nights missed
LAST = date(2026, 10, 31)  # the small bank's last day with transactions


@pytest.fixture
def behind(loaded_bank: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The small bank, run on 2026-10-26 and not since."""
    with warehouse_copy(loaded_bank, tmp_path) as (con, settings):
        service.run(con, settings, as_of=FIRST)
        yield con, settings


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=k) for k in range((end - start).days + 1)]


def test_each_missed_day_is_run_from_the_one_before_and_the_last_equals_a_full_run(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    # when
    plan = service.backlog(con, settings)
    reports = service.catch_up(con, settings, plan)
    # then: every day after the last run, oldest first, each incremental from the day before
    assert plan.days == _days(FIRST + timedelta(days=1), LAST)
    assert (plan.skipped, plan.quiet) == ([], [])
    assert [(r.as_of, r.mode, r.since) for r in reports] == [
        (d, "incremental", d - timedelta(days=1)) for d in plan.days
    ]
    assert store.versions(con) == _days(FIRST, LAST)
    expected = build_tags(con, LAST).order_by("customer_id").to_pyarrow()
    assert store.tags_table(con, LAST).order_by("customer_id").to_pyarrow().equals(expected)
    # every day is counted and compared with the day before: no gap in the trend
    trend = service.lifecycle_trend(con, end=LAST, days=6)
    assert (trend.days, trend.gaps) == (_days(FIRST, LAST), [])
    logged = service.run_history(con)
    assert [(h.as_of, h.transitions) for h in logged[:5]] == [(r.as_of, r.transitions) for r in reversed(reports)]


def test_nothing_to_catch_up_runs_the_day_alone(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    # the night after the last run, the same day again, an earlier day
    for day in (FIRST + timedelta(days=1), FIRST, FIRST - timedelta(days=3)):
        assert service.backlog(con, settings, as_of=day) == service.Backlog([day], [], [])
    # asked not to catch up: the days between are left out and said so
    only = service.backlog(con, settings).last_only()
    assert (only.days, only.skipped) == ([LAST], _days(FIRST + timedelta(days=1), LAST - timedelta(days=1)))
    assert only.why_skipped == "not caught up, as asked"


def test_a_day_already_run_and_current_is_not_run_again_by_the_nightly_job(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    assert (
        service.insight_status(con, settings).outdated == f"the data reaches {LAST}, the latest version is of {FIRST}"
    )
    service.catch_up(con, settings, service.backlog(con, settings))  # the nightly job, to the last day
    runs = len(service.run_history(con, limit=1000))
    # when: the job is started again with nothing new
    again = service.backlog(con, settings, skip_current=True)
    # then: nothing to run, and nothing ran
    assert (again.days, again.up_to_date) == ([], LAST)
    assert service.catch_up(con, settings, again) == []
    assert len(service.run_history(con, limit=1000)) == runs
    # but: a day asked for by name is run again, as before
    assert service.backlog(con, settings, as_of=LAST, skip_current=False).days == [LAST]
    # when: a threshold changes, the day is run again with it
    stricter = settings.model_copy(update={"churn_days": 80})
    assert service.backlog(con, stricter, skip_current=True).days == [LAST]
    assert service.outdated(con, stricter, LAST) == "tag definitions, thresholds or timezone changed since it was run"
    # when: a transaction of that day arrives late, the day is run again to include it
    _late_transaction(con, LAST, ZoneInfo(settings.timezone), 10**12 + 7)
    assert service.outdated(con, settings, LAST) == "data of its day or before arrived since it was run (transactions)"
    assert service.insight_status(con, settings).outdated == service.outdated(con, settings, LAST)
    plan = service.backlog(con, settings, skip_current=True)
    assert (plan.days, plan.up_to_date) == ([LAST], None)
    # and: once run, it is current again
    service.catch_up(con, settings, plan)
    assert service.current(con, settings, LAST)
    # and: a version that is not the latest is never current (a run of it replaces the later ones)
    assert service.outdated(con, settings, LAST - timedelta(days=1)) == f"the latest version is {LAST}"
    status = service.insight_status(con, settings)
    assert (status.kept[-1], status.last_data_day, status.outdated, status.stale) == (LAST, LAST, "", [])
    assert status.last_run is not None and status.last_run.as_of == LAST


def test_days_further_back_than_versions_are_kept_are_left_out(behind, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    con, _ = behind
    settings = Settings(data_dir=tmp_path, tag_retention_days=3)
    # when
    plan = service.backlog(con, settings)
    reports = service.catch_up(con, settings, plan)
    # then: the last three days run; the first has no day before it and compares with 10-26
    assert plan.days == _days(LAST - timedelta(days=2), LAST)
    assert plan.skipped == [date(2026, 10, 27), date(2026, 10, 28)]
    assert plan.why_skipped == "further back than the 3 days versions are kept"
    assert [r.mode for r in reports] == ["full", "incremental", "incremental"]
    assert reports[0].reason == "no stored version of 2026-10-28" and reports[0].since == FIRST
    assert service.lifecycle_trend(con, end=LAST, days=6).gaps == plan.skipped


def test_a_day_without_any_transaction_is_reported(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    # given: 2026-10-28's transactions are missing, as when its file was not loaded
    tz = ZoneInfo(settings.timezone)
    start = datetime.combine(date(2026, 10, 28), time(), tz)
    t = con.table("transactions")
    on_day = t.filter(t.txn_at >= start, t.txn_at < start + timedelta(days=1)).count().to_pyarrow().as_py()
    assert on_day > 0
    con.raw_sql(
        f"DELETE FROM transactions WHERE txn_at >= TIMESTAMPTZ '{start.isoformat()}' "
        f"AND txn_at < TIMESTAMPTZ '{(start + timedelta(days=1)).isoformat()}'"
    )
    # when
    plan = service.backlog(con, settings)
    # then: the day is still run (a day may be quiet), and named
    assert plan.quiet == [date(2026, 10, 28)]
    assert date(2026, 10, 28) in plan.days


def _late_transaction(con, day: date, tz: ZoneInfo, txn_id: int) -> None:  # type: ignore[no-untyped-def]
    """A copy of one transaction, at noon of ``day``, loaded now."""
    row = con.table("transactions").order_by("txn_id").limit(1).to_pyarrow()
    row = row.set_column(0, "txn_id", pa.array([txn_id], pa.int64()))
    at = row.column_names.index("txn_at")
    row = row.set_column(at, "txn_at", pa.array([datetime.combine(day, time(12), tz)], row.schema.field(at).type))
    append_arrow(con, "transactions", row)


def test_data_that_arrives_late_names_the_versions_it_makes_stale(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    tz = ZoneInfo(settings.timezone)
    service.catch_up(con, settings, service.backlog(con, settings, as_of=date(2026, 10, 29)))
    # given: a transaction of 10-27 arrives after 10-27, 10-28 and 10-29 were run
    _late_transaction(con, date(2026, 10, 27), tz, 10**12)
    # when
    late = service.run(con, settings, as_of=date(2026, 10, 30))
    # then: the run is full, and the versions from 10-27 on were computed without it
    assert late.mode == "full" and "arrived after the last run (transactions)" in late.reason
    assert late.stale_from == date(2026, 10, 27)
    # the run log marks those versions stale, until they are restated
    versions = {h.as_of: h.version for h in service.run_history(con)}
    assert versions == {
        date(2026, 10, 26): "kept",
        date(2026, 10, 27): "stale",
        date(2026, 10, 28): "stale",
        date(2026, 10, 29): "stale",
        date(2026, 10, 30): "kept",
    }
    # restating them as the report says: the day, then the days after, each equal to a full run
    service.run(con, settings, as_of=date(2026, 10, 27))
    restated = service.catch_up(con, settings, service.backlog(con, settings, as_of=date(2026, 10, 30)))
    assert [(r.as_of, r.mode, r.stale_from) for r in restated] == [
        (date(2026, 10, 28), "incremental", None),
        (date(2026, 10, 29), "incremental", None),
        (date(2026, 10, 30), "incremental", None),
    ]
    expected = build_tags(con, date(2026, 10, 30)).order_by("customer_id").to_pyarrow()
    assert store.tags_table(con, date(2026, 10, 30)).order_by("customer_id").to_pyarrow().equals(expected)
    assert {h.version for h in service.run_history(con)[:4]} == {"kept"}  # 10-27 and the three caught up
    # only the day before: the one version
    _late_transaction(con, date(2026, 10, 30), tz, 10**12 + 1)
    assert service.run(con, settings, as_of=date(2026, 10, 31)).stale_from == date(2026, 10, 30)


def test_a_full_run_names_the_versions_late_data_made_stale_too(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    tz = ZoneInfo(settings.timezone)
    service.catch_up(con, settings, service.backlog(con, settings, as_of=date(2026, 10, 30)))
    # given: a transaction of 10-28 arrives after the days to 10-30 were run
    _late_transaction(con, date(2026, 10, 28), tz, 10**12)
    # when: the latest day is run again (in full: the window-count state is of that day)
    again = service.run(con, settings, as_of=date(2026, 10, 30))
    # then: the run says why it is full, and the versions before it that miss the row are named
    # and marked in the log
    assert (again.mode, again.reason) == (
        "full",
        "2026-10-30 is run again, and the window-count state has moved on to 2026-10-30",
    )
    assert (again.stale_from, again.stale) == (date(2026, 10, 28), [date(2026, 10, 28), date(2026, 10, 29)])
    assert service.stale_versions(con, settings) == [date(2026, 10, 28), date(2026, 10, 29)]
    # and so when a full run is asked for the next day
    _late_transaction(con, date(2026, 10, 26), tz, 10**12 + 1)
    asked = service.run(con, settings, as_of=LAST, full=True)
    assert (asked.mode, asked.reason, asked.stale_from) == ("full", "asked for (--full)", FIRST)
    assert service.stale_versions(con, settings) == _days(FIRST, date(2026, 10, 30))


def test_late_data_names_only_the_versions_stored_when_days_were_not_run(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    tz = ZoneInfo(settings.timezone)
    service.run(con, settings, as_of=date(2026, 10, 28))  # 10-27 never run
    _late_transaction(con, date(2026, 10, 26), tz, 10**12)
    # when
    report = service.run(con, settings, as_of=date(2026, 10, 30))
    # then: the two stored versions are named, not the days between them
    assert (report.stale_from, report.stale) == (FIRST, [FIRST, date(2026, 10, 28)])
    console = Console(record=True, width=400)
    render.insight_run(console, report)
    assert "the stored versions of 2026-10-26 to 2026-10-28 (2 versions) were computed" in console.export_text()


def test_restating_runs_the_stale_versions_again_from_the_first_and_the_last_equals_a_full_run(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    tz = ZoneInfo(settings.timezone)
    service.catch_up(con, settings, service.backlog(con, settings, as_of=date(2026, 10, 29)))
    # given: a transaction of 10-27 arrives after 10-27, 10-28 and 10-29 were run
    _late_transaction(con, date(2026, 10, 27), tz, 10**12)
    # not asked to restate: only the night after the last run, which names the stale versions
    assert service.backlog(con, settings, as_of=date(2026, 10, 30)).days == [date(2026, 10, 30)]
    assert service.stale_versions(con, settings) == _days(date(2026, 10, 27), date(2026, 10, 29))
    # when: asked to restate
    plan = service.backlog(con, settings, as_of=date(2026, 10, 30), restate=True)
    reports = service.catch_up(con, settings, plan)
    # then: from the first stale version on, the first recomputed, the rest from the day before
    assert plan.days == _days(date(2026, 10, 27), date(2026, 10, 30))
    assert plan.restated == _days(date(2026, 10, 27), date(2026, 10, 29))
    assert [(r.as_of, r.mode, r.stale_from) for r in reports] == [
        (date(2026, 10, 27), "full", None),
        (date(2026, 10, 28), "incremental", None),
        (date(2026, 10, 29), "incremental", None),
        (date(2026, 10, 30), "incremental", None),
    ]
    assert "restating: data of 2026-10-27 or later arrived" in reports[0].reason
    for day in (date(2026, 10, 27), date(2026, 10, 30)):
        expected = build_tags(con, day).order_by("customer_id").to_pyarrow()
        assert store.tags_table(con, day).order_by("customer_id").to_pyarrow().equals(expected)
    assert service.stale_versions(con, settings) == []
    assert {h.as_of: h.version for h in service.run_history(con)[:4]} == {
        d: "kept" for d in _days(date(2026, 10, 27), date(2026, 10, 30))
    }


def test_restating_picks_up_versions_an_earlier_run_marked_stale(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    tz = ZoneInfo(settings.timezone)
    service.catch_up(con, settings, service.backlog(con, settings, as_of=date(2026, 10, 29)))
    _late_transaction(con, date(2026, 10, 28), tz, 10**12)
    # given: the night after, run without restating, found them and went on (10-30 has the row)
    assert service.run(con, settings, as_of=date(2026, 10, 30)).stale_from == date(2026, 10, 28)
    assert service.stale_versions(con, settings) == [date(2026, 10, 28), date(2026, 10, 29)]
    # when: the next night restates
    plan = service.backlog(con, settings, restate=True)
    reports = service.catch_up(con, settings, plan)
    # then: from 10-28 to the last day with data, every version after the first stale one run again
    assert plan.days == _days(date(2026, 10, 28), LAST)
    assert plan.restated == _days(date(2026, 10, 28), date(2026, 10, 30))
    assert [r.mode for r in reports] == ["full"] + ["incremental"] * 3
    expected = build_tags(con, LAST).order_by("customer_id").to_pyarrow()
    assert store.tags_table(con, LAST).order_by("customer_id").to_pyarrow().equals(expected)
    assert service.stale_versions(con, settings) == []


def test_a_run_log_from_before_stale_versions_were_traced_is_read_and_extended(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    con.raw_sql(f"ALTER TABLE {store.RUNS} DROP COLUMN stale_from")
    # when
    before = service.run_history(con)
    service.run(con, settings, as_of=FIRST + timedelta(days=1))
    # then
    assert [(h.as_of, h.version) for h in before] == [(FIRST, "kept")]
    assert "stale_from" in con.table(store.RUNS).columns
    assert [(h.as_of, h.version) for h in service.run_history(con)] == [
        (FIRST + timedelta(days=1), "kept"),
        (FIRST, "kept"),
    ]


def test_a_day_that_fails_stops_the_catch_up_and_the_command_says_what_was_stored(
    loaded_bank: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from bankgrowth.cli.main import app

    # given: the bank run on 10-26, and a run of 10-29 that fails (as a full disk would)
    with warehouse_copy(loaded_bank, tmp_path) as (con, settings):
        service.run(con, settings, as_of=FIRST)
    (tmp_path / "w.duckdb").rename(tmp_path / "warehouse.duckdb")
    monkeypatch.setenv("BANKGROWTH_DATA_DIR", str(tmp_path))
    real_run = service.run

    def failing(con, settings, *, as_of, **kwargs):  # type: ignore[no-untyped-def]
        if as_of == date(2026, 10, 29):
            raise OSError("No space left on device")
        return real_run(con, settings, as_of=as_of, **kwargs)

    monkeypatch.setattr(service, "run", failing)
    # when
    result = CliRunner().invoke(app, ["insight", "run"])
    # then: the error, which days were stored before it, and where the next run starts
    assert isinstance(result.exception, OSError)
    assert "stored before the failure: 2026-10-27 to 2026-10-28" in result.stderr
    assert "`bankgrowth insight run` continues from 2026-10-29" in result.stderr
    monkeypatch.setattr(service, "run", real_run)
    (tmp_path / "after").mkdir()
    with warehouse_copy(tmp_path / "warehouse.duckdb", tmp_path / "after") as (con, _):
        assert store.versions(con) == _days(FIRST, date(2026, 10, 28))


def test_the_runs_log_keeps_what_a_replaced_run_wrote_and_reads_an_older_log(behind) -> None:  # type: ignore[no-untyped-def]
    con, settings = behind
    # given: a log written before it held the rows each run wrote
    con.raw_sql(f"ALTER TABLE {store.RUNS} DROP COLUMN written")
    [old] = service.run_history(con)
    assert old.changed is not None  # read from the stored version while it is kept
    # when: the next day runs incrementally, then is run again in full (replacing it)
    night = service.run(con, settings, as_of=FIRST + timedelta(days=1))
    again = service.run(con, settings, as_of=FIRST + timedelta(days=1), full=True)
    # then: the log gained the column, and each run shows the rows it wrote, the replaced one too
    assert "written" in con.table(store.RUNS).columns
    runs = service.run_history(con)
    assert [(r.mode, r.version, r.changed) for r in runs[:2]] == [
        ("full", "kept", again.changed),
        ("incremental", "replaced", night.changed),
    ]
    assert 0 < night.changed < again.changed
    assert (runs[2].as_of, runs[2].changed) == (FIRST, old.changed)
