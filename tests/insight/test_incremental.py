"""The incremental nightly run gives exactly the full recompute, over random data and random days.

Transactions, bindings and events are drawn near every window edge (7, 30, 60, 90, 365 days) and on
exact midnights, so that the entering and leaving days of every tag are exercised; each example
chains two incremental days after a full one (customers' records edited in between) and compares
each stored version, read back, with a full recompute, including the per-value counts state.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bankgrowth.insight import store
from bankgrowth.insight.compute import build_base, build_tags, registered, source_tables, window_counts
from bankgrowth.insight.incremental import build_incremental, scratch_tables
from bankgrowth.insight.lifecycle import Thresholds
from bankgrowth.insight.tags import BUILTIN_TAGS, context
from bankgrowth.warehouse import engine, schema
from bankgrowth.warehouse.engine import append_arrow
from tests.conftest import warehouse_copy

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
START = date(2026, 3, 1)  # first day computed in full; the two after it incrementally
EDGES = [0, 1, 2, 6, 7, 8, 29, 30, 31, 32, 59, 60, 61, 62, 89, 90, 91, 92, 364, 365, 366, 367]


def _instant(days_before_end: int, fraction: float) -> datetime:
    end = datetime.combine(START + timedelta(days=1), datetime.min.time(), TZ)
    return end - timedelta(days=days_before_end) + timedelta(days=fraction)


instants = st.builds(
    _instant,
    st.one_of(st.sampled_from(EDGES), st.integers(-3, 420)),
    st.sampled_from([0.0, 1e-6, 0.25, 0.5, 0.999999]),
)
txn = st.fixed_dictionaries(
    {
        "at": instants,
        "institution": st.sampled_from(schema.INSTITUTIONS[:3]),
        "amount_fen": st.integers(1, 50_000),
        "merchant_category": st.sampled_from(schema.MERCHANT_CATEGORIES[:4]),
        "scene": st.sampled_from(schema.SCENES),
    }
)
customer = st.fixed_dictionaries(
    {
        "registered_days_ago": st.one_of(st.just(-1), st.just(0), st.integers(1, 500)),
        "referrer": st.booleans(),
        "bindings": st.lists(st.tuples(instants, st.one_of(st.none(), instants)), max_size=3),
        "txns": st.lists(txn, max_size=25),
        "events": st.lists(st.tuples(instants, st.sampled_from(["login", "share", "coupon_view"])), max_size=6),
    }
)


def _load(con: object, bank: list[dict]) -> None:  # type: ignore[type-arg]
    n = len(bank)
    ids = list(range(1, n + 1))
    append_arrow(
        con,  # type: ignore[arg-type]
        "branches",
        pa.Table.from_pylist(
            [
                {
                    "branch_id": "HQ",
                    "parent_id": None,
                    "level": "hq",
                    "name_zh": "总行",
                    "name_en": "HQ",
                    "city": "Beijing",
                    "city_tier": 1,
                }
            ],
            schema=schema.BRANCHES.arrow_schema,
        ),
    )
    customers = [
        {
            "customer_id": cid,
            "branch_id": "HQ",
            "name": "x",
            "phone": "13800000000",
            "birth_year": 1960 + cid,
            "gender": "F",
            "city_tier": 1 + cid % 5,
            "registered_on": START + timedelta(days=1) - timedelta(days=c["registered_days_ago"] + 1),
            "auth_level": "account_i",
            "marketing_consent": True,
            "referrer_id": 1 if c["referrer"] and cid > 1 else None,
        }
        for cid, c in zip(ids, bank, strict=True)
    ]
    append_arrow(con, "customers", pa.Table.from_pylist(customers, schema=schema.CUSTOMERS.arrow_schema))  # type: ignore[arg-type]
    cards = [
        {
            "card_id": cid,
            "customer_id": cid,
            "card_type": "debit",
            "account_class": "I",
            "opened_on": date(2024, 1, 1),
            "closed_on": None,
        }
        for cid in ids
    ]
    append_arrow(con, "cards", pa.Table.from_pylist(cards, schema=schema.CARDS.arrow_schema))  # type: ignore[arg-type]
    bindings, txns, events = [], [], []
    for cid, c in zip(ids, bank, strict=True):
        for bound, unbound in c["bindings"]:
            bindings.append(
                {
                    "binding_id": len(bindings) + 1,
                    "customer_id": cid,
                    "card_id": cid,
                    "institution": schema.INSTITUTIONS[len(bindings) % 3],
                    "bound_at": bound,
                    "unbound_at": unbound if unbound is None or unbound > bound else None,
                    "bind_channel": "wallet_app",
                    "one_click": len(bindings) % 2 == 0,
                }
            )
        for t in c["txns"]:
            txns.append(
                {
                    "txn_id": len(txns) + 1,
                    "customer_id": cid,
                    "card_id": cid,
                    "institution": t["institution"],
                    "amount_fen": t["amount_fen"],
                    "txn_at": t["at"],
                    "merchant_category": t["merchant_category"],
                    "scene": t["scene"],
                }
            )
        for at, kind in c["events"]:
            events.append(
                {
                    "event_id": len(events) + 1,
                    "customer_id": cid,
                    "event_type": kind,
                    "channel": "app",
                    "page": None,
                    "event_at": at,
                }
            )
    for name, rows in (("quickpay_bindings", bindings), ("transactions", txns), ("events", events)):
        append_arrow(con, name, pa.Table.from_pylist(rows, schema=schema.TABLES[name].arrow_schema))  # type: ignore[arg-type]


def _sorted(t: pa.Table) -> pa.Table:
    return t.sort_by([(c, "ascending") for c in t.column_names if c in ("tag", "customer_id", "key")])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    bank=st.lists(customer, min_size=1, max_size=8),
    small_thresholds=st.booleans(),
    edits=st.lists(st.tuples(st.integers(1, 8), st.sampled_from(["phone", "real_name", "account_i"])), max_size=3),
)
def test_incremental_equals_full(bank: list[dict], small_thresholds: bool, edits: list[tuple[int, str]]) -> None:  # type: ignore[type-arg]
    th = (
        Thresholds(at_risk_days=7, churn_days=20, super_user_txns=3, winback_days=5)
        if small_thresholds
        else Thresholds()
    )
    folder = Path(tempfile.mkdtemp())
    con = engine.connect(f"duckdb:///{folder / 'w.duckdb'}")
    try:
        _load(con, bank)
        first, _ = build_base(con, START, thresholds=th, state="_state")
        store.stage_rows(con, first, "_w", complete=True)
        store.write_version(con, START, "_w", complete=True, timezone=TZ_NAME, thresholds=th)
        as_computed = {START: build_tags(con, START, thresholds=th).order_by("customer_id").to_pyarrow()}
        for step in (1, 2):
            day = START + timedelta(days=step)
            if step == 2:  # customers' records change between runs (a profile tag must follow)
                for cid, level in edits:
                    con.raw_sql(
                        f"UPDATE customers SET auth_level = '{level}', city_tier = {cid % 5 + 1} WHERE customer_id = {cid}"
                    )
            expected = build_tags(con, day, thresholds=th).order_by("customer_id").to_pyarrow()
            as_computed[day] = expected
            previous = store.stored_rows(con, day - timedelta(days=1))
            changed = build_incremental(con, day, previous, state="_state", thresholds=th, scratch="_inc")
            store.stage_rows(con, changed, "_inc", complete=False)
            store.write_version(con, day, "_inc", complete=False, timezone=TZ_NAME, thresholds=th)
            for name in scratch_tables(con, "_inc"):
                con.drop_table(name, force=True)
            got = store.tags_table(con, day).order_by("customer_id").to_pyarrow()
            assert got.column_names == expected.column_names
            for column in expected.column_names:
                assert got.column(column).equals(expected.column(column)), f"{column} differs on {day}"
            customers = registered(con, day)
            ctx = context(customers, day, TZ_NAME, th, con.name)
            full_counts = window_counts(source_tables(con, customers, ctx.end), BUILTIN_TAGS, ctx, customers)
            assert full_counts is not None
            assert _sorted(con.table("_state").to_pyarrow()).equals(_sorted(full_counts.to_pyarrow()))
        # every version still reads as it was computed on its day (records edited since included)
        for day, expected in as_computed.items():
            assert store.tags_table(con, day).order_by("customer_id").to_pyarrow().equals(expected), day
    finally:
        con.disconnect()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_service_picks_incremental_and_falls_back_when_it_must(loaded_bank, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bankgrowth.config import Settings
    from bankgrowth.insight import service

    with warehouse_copy(loaded_bank, tmp_path) as (con, settings):
        first = service.run(con, settings, as_of=date(2026, 10, 28))
        assert first.mode == "full" and "no stored version" in first.reason
        second = service.run(con, settings, as_of=date(2026, 10, 29))
        assert (second.mode, second.reason) == ("incremental", "")
        expected = build_tags(con, date(2026, 10, 29)).order_by("customer_id").to_pyarrow()
        stored = store.tags_table(con, date(2026, 10, 29)).order_by("customer_id").to_pyarrow()
        assert stored.equals(expected)

        # a transaction of two days ago arrives late: yesterday's state no longer holds
        late = con.table("transactions").order_by("txn_id").limit(1).to_pyarrow()
        late = late.set_column(0, "txn_id", pa.array([10**12], pa.int64()))
        late = late.set_column(
            late.column_names.index("txn_at"),
            "txn_at",
            pa.array([_at(date(2026, 10, 27))], late.schema.field("txn_at").type),
        )
        append_arrow(con, "transactions", late)
        third = service.run(con, settings, as_of=date(2026, 10, 30))
        assert third.mode == "full" and "arrived after the last run" in third.reason
        fourth = service.run(con, settings, as_of=date(2026, 10, 31), full=True)
        assert fourth.mode == "full" and "--full" in fourth.reason

        # a run that dies after moving the state leaves it marked unusable: the next run is full
        store.mark_state(con, None)
        fifth = service.run(con, settings, as_of=date(2026, 11, 1), beyond_data=True)
        assert fifth.mode == "full" and "window-count state" in fifth.reason
        runs = con.table(store.RUNS).order_by("ran_at").to_pyarrow().to_pylist()
        assert [r["mode"] for r in runs] == ["full", "incremental", "full", "full", "full"]

        # other thresholds: the stored values were computed under the old ones
        sixth = service.run(con, Settings(data_dir=tmp_path, churn_days=60), as_of=date(2026, 11, 2), beyond_data=True)
        assert sixth.mode == "full" and "thresholds" in sixth.reason
        # a day whose run left no log entry (a warehouse from before runs were logged)
        con.raw_sql(f"DELETE FROM {store.RUNS} WHERE as_of = DATE '2026-11-02'")
        seventh = service.run(
            con, Settings(data_dir=tmp_path, churn_days=60), as_of=date(2026, 11, 3), beyond_data=True
        )
        assert seventh.mode == "full" and "the run of 2026-11-02 left no log entry" in seventh.reason

        # the run log, newest first, says what each run reported
        reports = [seventh, fifth, fourth, third, second, first]  # the sixth's entry was deleted above
        history = service.run_history(con)
        assert [(h.as_of, h.mode, h.reason) for h in history] == [(r.as_of, r.mode, r.reason) for r in reports]
        assert [(h.customers, h.changed, h.transitions) for h in history] == [
            (r.customers, r.changed, r.transitions) for r in reports
        ]
        assert history[-1].transitions is None  # the first run had no version to compare with
        # the versions of 10-28 and 10-29 were computed before the late transaction arrived
        assert [h.version for h in history] == ["kept"] * 4 + ["stale"] * 2
        assert third.stale_from == date(2026, 10, 28)
        assert [h.as_of for h in service.run_history(con, limit=2)] == [date(2026, 11, 3), date(2026, 11, 1)]

        # running 2026-10-31 again replaces the versions from that day on; keeping two days drops
        # the older ones, whose stage changes stay in the log
        eighth = service.run(con, Settings(data_dir=tmp_path, tag_retention_days=2), as_of=date(2026, 10, 31))
        history = service.run_history(con)
        assert [(h.as_of, h.version) for h in history] == [
            (date(2026, 10, 31), "kept"),
            (date(2026, 11, 3), "replaced"),
            (date(2026, 11, 1), "replaced"),
            (date(2026, 10, 31), "replaced"),
            (date(2026, 10, 30), "kept"),
            (date(2026, 10, 29), "dropped"),
            (date(2026, 10, 28), "dropped"),
        ]
        assert (history[0].changed, history[0].transitions) == (eighth.changed, eighth.transitions)
        # a replaced or dropped run still shows the rows it wrote; the stage changes of a replaced one
        # went with its version
        assert [(h.changed, h.transitions) for h in history[1:4]] == [(r.changed, None) for r in reports[:3]]
        assert (history[5].changed, history[5].transitions) == (second.changed, second.transitions)


def _at(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), TZ) + timedelta(hours=12)


def test_the_state_fingerprint_is_the_same_in_every_process_and_follows_the_settings() -> None:
    import subprocess
    import sys

    code = (
        "from bankgrowth.config import Settings; from bankgrowth.insight.service import _fingerprint; "
        "from bankgrowth.insight.tags import BUILTIN_TAGS; print(_fingerprint(Settings(), BUILTIN_TAGS))"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in "ab"
    }
    assert len(runs) == 1

    from bankgrowth.config import Settings
    from bankgrowth.insight.service import _fingerprint

    assert _fingerprint(Settings(), BUILTIN_TAGS) == runs.pop().strip()
    assert _fingerprint(Settings(churn_days=60), BUILTIN_TAGS) != _fingerprint(Settings(), BUILTIN_TAGS)
    assert _fingerprint(Settings(), BUILTIN_TAGS[:-1]) != _fingerprint(Settings(), BUILTIN_TAGS)


def test_the_default_day_is_the_business_day_of_the_last_transaction(loaded_bank, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bankgrowth.warehouse.timeutil import last_data_day

    # given: the bank's data ends on 2026-10-31; one more transaction at 00:30 on 2026-11-01 in
    # Shanghai, which is still 2026-10-31 in UTC
    with warehouse_copy(loaded_bank, tmp_path) as (con, _):
        before = last_data_day(con, "Asia/Shanghai")
        late = con.table("transactions").order_by("txn_id").limit(1).to_pyarrow()
        late = late.set_column(0, "txn_id", pa.array([10**12], pa.int64()))
        at = datetime(2026, 11, 1, 0, 30, tzinfo=TZ)
        late = late.set_column(
            late.column_names.index("txn_at"), "txn_at", pa.array([at], late.schema.field("txn_at").type)
        )
        append_arrow(con, "transactions", late)
        # when
        after = last_data_day(con, "Asia/Shanghai")
    # then: the business day, not the UTC one
    assert (before, after) == (date(2026, 10, 31), date(2026, 11, 1))


def test_a_day_after_the_data_is_refused_unless_asked_for(insight_bank, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from bankgrowth.insight import service

    # given: a warehouse whose transactions end on 2026-10-31, with that day's version stored
    with warehouse_copy(insight_bank, tmp_path) as (con, settings):
        # when: a run for a mistyped year, 2027 for 2026
        with pytest.raises(ValueError) as refused:
            service.run(con, settings, as_of=date(2027, 11, 1))
        # then: refused, saying what it would have done, and the stored version is untouched
        assert str(refused.value).startswith("the last transactions are of 2026-10-31: a run for 2027-11-01")
        assert "drop 1 kept version(s), 2026-10-31 to 2026-10-31" in str(refused.value)
        assert store.versions(con) == [date(2026, 10, 31)]
        # and: a day after the data runs when asked for, incrementally from the day before
        report = service.run(con, settings, as_of=date(2026, 11, 1), beyond_data=True)
        assert report.mode == "incremental" and store.versions(con) == [date(2026, 10, 31), date(2026, 11, 1)]
