"""What the command line prints for a campaign's results (the goal's lift by stage and by
institution in the goal's own unit, with its interval), a customer's stage history and tags."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
from rich.console import Console

from bankgrowth.campaigns.schemas import Goal
from bankgrowth.cli import render
from bankgrowth.insight.service import CATALOG, CustomerView
from bankgrowth.measurement.campaign import ArmResult, Cell, Results
from bankgrowth.measurement.lift import Lift, sample_ratio, welch


def _results(metric: str, treated: np.ndarray, control: np.ndarray) -> Results:
    lift = welch(treated, control)
    arm = ArmResult(
        arm="offer",
        n=len(treated),
        lifts={m: lift for m in ("conversion", "transactions", "amount")},
        goal_cuped=lift,
        theta=0.0,
        srm=sample_ratio(len(treated), len(control), 0.5),
        incremental_conversions=0.0,
        incremental_transactions=0.0,
        incremental_amount_yuan=Decimal("0.00"),
        granted_cost_yuan=Decimal("0.00"),
        redeemed_cost_yuan=Decimal("0.00"),
        roi=None,
        by_stage=[Cell("super", len(treated), len(control), lift), Cell("churned", 3, 2, None)],
        by_institution=[
            Cell("alipay", len(treated), len(control), lift),
            Cell("none", len(treated), len(control), lift),
        ],
    )
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return Results("c", Goal(metric=metric), start, start, start, True, len(control), [arm])  # type: ignore[arg-type]


def _printed(results: Results) -> str:
    console = Console(record=True, width=400)
    render.campaign_results(console, results, {})
    return console.export_text()


def test_the_breakdowns_show_the_goal_in_its_unit() -> None:
    # given: an amount goal in fen, treated customers spending ¥50.00 more on average
    amount = _printed(_results("amount", np.array([6000.0, 7000.0, 8000.0]), np.array([1000.0, 2000.0, 3000.0])))
    # and: a conversion goal, 2 of 4 treated against 1 of 4 in control
    conversion = _printed(_results("conversion", np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0, 0.0])))
    # then: yuan and percentage points, each with its interval and the group sizes
    by_stage = next(line for line in amount.splitlines() if "by stage:" in line)
    assert "super ¥+50.00 [¥" in by_stage and "(n=3/3)" in by_stage
    assert "churned" not in by_stage  # too small for a lift
    by_institution = next(line for line in amount.splitlines() if "by institution:" in line)
    assert by_institution.strip().startswith("by institution: alipay ¥+50.00 [")
    # and: customers who never paid are named as having no preferred institution, not as one called "none"
    assert "; no preferred institution ¥+50.00 [" in by_institution
    assert "by stage: super +25.00 pp [" in conversion


def test_a_stage_change_after_days_without_a_run_shows_the_span_it_happened_in() -> None:
    history = [
        {"from_stage": "bound", "to_stage": "transacting", "as_of": date(2026, 10, 31), "since": date(2026, 10, 30)},
        {"from_stage": "transacting", "to_stage": "at_risk", "as_of": date(2026, 11, 14), "since": date(2026, 10, 31)},
    ]
    profile = dict.fromkeys(("name", "phone", "birth_year", "gender", "branch_id", "registered_on", "auth_level"), "x")
    view = CustomerView(7, profile, {}, None, history, [], [], ZoneInfo("Asia/Shanghai"))
    console = Console(record=True, width=400)
    render.customer(console, view)
    # then: it starts from the stage before the first change
    assert (
        "stage history: bound → transacting (2026-10-31) → at_risk (2026-11-01 – 2026-11-14)" in console.export_text()
    )


def test_a_customer_whose_stage_never_changed_is_said_to_have_no_change() -> None:
    profile = dict.fromkeys(("name", "phone", "birth_year", "gender", "branch_id", "registered_on", "auth_level"), "x")
    tz = ZoneInfo("Asia/Shanghai")
    view = CustomerView(7, profile, {"stage": "super"}, date(2026, 10, 31), [], [], [], tz, {}, date(2026, 10, 1))
    console = Console(record=True, width=400)
    render.customer(console, view)
    assert "stage history: super, no change since 2026-10-01 (the first day run)" in console.export_text()


def test_a_customers_tags_read_as_an_operator_reads_them() -> None:
    # given: a customer's stored values as the warehouse returns them (times in UTC, amounts in fen)
    tags = {
        "txn_amount_30d": 886_840,
        "marketing_consent": True,
        "referred": False,
        "night_share_90d": 0.096,
        "last_txn_at": datetime(2026, 11, 13, 11, 32, tzinfo=UTC),
        "preferred_institution": None,
    }
    binding = {
        "institution": "alipay",
        "bound_at": datetime(2021, 5, 21, 0, 53, tzinfo=UTC),
        "unbound_at": None,
        "bind_channel": "bank_app",
        "one_click": True,
    }
    txn = {
        "txn_at": datetime(2026, 11, 13, 16, 5, tzinfo=UTC),
        "institution": "alipay",
        "amount_yuan": Decimal("55.04"),
        "merchant_category": "dining",
        "scene": "online",
    }
    declared = {tag.name: tag for tag in CATALOG if tag.name in tags}
    profile = dict.fromkeys(("name", "phone", "birth_year", "gender", "branch_id", "registered_on", "auth_level"), "x")
    view = CustomerView(7, profile, tags, date(2026, 11, 14), [], [binding], [txn], ZoneInfo("Asia/Shanghai"), declared)
    # when
    console = Console(record=True, width=400)
    render.customer(console, view)
    lines = console.export_text().splitlines()

    def row(name: str) -> list[str]:
        found = next(line for line in lines if line.split("│")[0].strip() == name)
        return [cell.strip() for cell in found.split("│")]

    # then: labels in Chinese, amounts in yuan, yes/no, shares in percent, times in the business timezone
    assert row("txn_amount_30d") == ["txn_amount_30d", "近30天交易金额", "¥8,868.40"]
    assert row("marketing_consent")[2] == "yes 是" and row("referred")[2] == "no 否"
    assert row("night_share_90d")[2] == "9.6%"
    assert row("last_txn_at")[2] == "2026-11-13 19:32+08:00"
    assert row("preferred_institution")[2] == "—"
    binding_row = next(line for line in lines if "2021-05-21 08:53+08:00" in line)  # the binding
    assert "alipay" in binding_row and "yes 是" in binding_row
    assert any("2026-11-14 00:05+08:00" in line and "¥55.04" in line for line in lines)  # the transaction


def test_records_show_money_in_yuan_and_counts_with_separators_but_identifiers_as_they_are() -> None:
    # given: a settlement-like record as a service returns it (money in fen, an instant in UTC)
    rows = [
        {
            "id": 1234567,
            "org_id": "B01",
            "granted": 26117,
            "granted_cost_fen": 13058500,
            "left_fen": None,
            "at": datetime(2026, 11, 1, 2, 0, tzinfo=UTC),
        }
    ]
    # when
    console = Console(record=True, width=400)
    render.records(console, "settlement", rows, ZoneInfo("Asia/Shanghai"))
    lines = console.export_text().splitlines()
    # then
    header = [cell.strip() for cell in lines[2].split("┃")[1:-1]]
    values = [cell.strip() for cell in lines[4].split("│")[1:-1]]
    assert header == ["id", "org_id", "granted", "granted_cost ¥", "left ¥", "at"]
    assert values == ["1234567", "B01", "26,117", "¥130,585.00", "", "2026-11-01 10:00+08:00"]


def test_audience_members_show_tag_amounts_in_yuan_and_shares_as_percentages() -> None:
    # given: preview rows as the audience service returns them (tag values in their stored units)
    rows = [
        {"customer_id": 26, "name": "唐*", "txn_amount_30d": 213859, "weekend_share_90d": 0.25, "age": 38},
        {"customer_id": 29, "name": "杜*", "txn_amount_30d": None, "weekend_share_90d": None, "age": 41},
    ]
    units = {"txn_amount_30d": "fen", "weekend_share_90d": "share"}
    # when
    console = Console(record=True, width=400)
    render.records(console, "preview", rows, ZoneInfo("Asia/Shanghai"), units)
    lines = console.export_text().splitlines()
    # then
    header = [cell.strip() for cell in lines[2].split("┃")[1:-1]]
    first = [cell.strip() for cell in lines[4].split("│")[1:-1]]
    second = [cell.strip() for cell in lines[5].split("│")[1:-1]]
    assert header == ["customer_id", "name", "txn_amount_30d", "weekend_share_90d", "age"]
    assert first == ["26", "唐*", "¥2,138.59", "25.0%", "38"]
    assert second == ["29", "杜*", "", "", "41"]


def test_a_tags_missing_value_is_named_not_printed_as_none_and_a_rare_value_not_as_zero() -> None:
    # given: a string tag whose most common value is missing, held by 2 of 20,000 customers
    from bankgrowth.insight.service import TagStats

    tag = next(t for t in CATALOG if t.name == "preferred_institution")
    stats = TagStats(tag=tag, rows=20_000, coverage=0.0001, nonzero=None, top=[(None, 19_998), ("alipay", 2)])
    # when
    console = Console(record=True, width=200)
    render.tag_detail(console, stats)
    text = console.export_text()
    # then
    assert "None" not in text
    assert "— (none 无)" in text and "alipay" in text
    assert "coverage <0.1% of 20,000 customers" in text
    rows = {line.split("│")[0].strip(): line.split("│")[2].strip() for line in text.splitlines() if "│" in line}
    assert rows == {"— (none 无)": ">99.9%", "alipay": "<0.1%"}


def test_the_cuped_interval_is_said_narrower_wider_or_as_wide_never_minus_zero() -> None:
    # given: a plain interval 1.00 wide and CUPED intervals around it
    def lift(low: float, high: float) -> Lift:
        return Lift(0.1, 0.0, (low + high) / 2, low, high, 0.01, None, None, None, 1000, 100)

    plain = lift(0.0, 1.0)
    # when / then: a change that rounds to nothing (here 0.2% wider) is "as wide", not "-0% narrower"
    assert render.interval_change(plain, lift(0.0, 1.002)) == "interval as wide"
    assert render.interval_change(plain, lift(0.0, 0.86)) == "interval 14% narrower"
    assert render.interval_change(plain, lift(0.0, 1.03)) == "interval 3% wider"
    assert render.interval_change(lift(0.5, 0.5), lift(0.5, 0.5)) == "interval as wide"


def test_a_loads_problems_are_listed_in_file_order() -> None:
    # given: problems found by different checks (a row's fields first, the foreign keys after)
    from bankgrowth.warehouse.ingest import LoadReport, Problem

    report = LoadReport("kyc.csv", "imported_tag_kyc_grade", "abc", read=5, loaded=2, quarantined=3, problem_count=3)
    report.problems = [
        Problem(6, "customer_id", "an integer >= 1", "xyz"),
        Problem(4, "value", "a value (text)", "(empty)"),
        Problem(5, "customer_id", "a customer_id that exists in customers", "999999"),
    ]
    # when
    console = Console(record=True, width=200)
    render.load_report(console, report)
    lines = [line.split("│")[0].strip() for line in console.export_text().splitlines() if "│" in line]
    # then
    assert lines == ["4", "5", "6"]


def test_results_before_any_outcome_data_say_so_instead_of_a_zero_lift() -> None:
    # given: a campaign launched after the warehouse's last transaction
    from dataclasses import replace

    res = _results("conversion", np.zeros(50), np.zeros(50))
    launched = datetime(2026, 12, 3, 14, 17, tzinfo=UTC)
    res = replace(res, window_start=launched, data_until=datetime(2026, 10, 31, 15, 59, tzinfo=UTC), complete=False)
    # when
    console = Console(record=True, width=400)
    render.campaign_results(console, res, {}, ZoneInfo("Asia/Shanghai"))
    text = console.export_text()
    # then
    assert "no outcome to measure yet" in text
    assert "ends 2026-10-31 23:59+08:00, before the launch at 2026-12-03 22:17+08:00" in text
    assert "pp [" not in text and "CUPED" not in text
