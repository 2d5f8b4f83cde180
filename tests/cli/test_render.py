"""What the command line prints for a campaign's results (the goal's lift by stage and by
institution in the goal's own unit, with its interval) and for a customer's stage history."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
from rich.console import Console

from bankgrowth.campaigns.schemas import Goal
from bankgrowth.cli import render
from bankgrowth.insight.service import CustomerView
from bankgrowth.measurement.campaign import ArmResult, Cell, Results
from bankgrowth.measurement.lift import sample_ratio, welch


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
        by_institution=[Cell("alipay", len(treated), len(control), lift)],
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
    assert any(line.strip().startswith("by institution: alipay ¥+50.00 [") for line in amount.splitlines())
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
    assert "stage history: transacting (2026-10-31) → at_risk (2026-11-01 – 2026-11-14)" in console.export_text()
