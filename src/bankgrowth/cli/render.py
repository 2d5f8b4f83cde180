"""Rich rendering of service results for the terminal. No business logic lives here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from functools import partial
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bankgrowth.cli import tables

if TYPE_CHECKING:
    from bankgrowth.campaigns.reach import DispatchReport
    from bankgrowth.demo import DemoResult
    from bankgrowth.evaluation.campaigns import TrueEffect
    from bankgrowth.evaluation.lifecycle import Agreement
    from bankgrowth.insight.imported import ImportedTag
    from bankgrowth.insight.service import (
        Backlog,
        CustomerView,
        InsightStatus,
        LoggedRun,
        Matrix,
        RunReport,
        StageCount,
        TagStats,
        Trend,
    )
    from bankgrowth.measurement.campaign import Cell, Results
    from bankgrowth.measurement.kpi import BankSummary
    from bankgrowth.measurement.lift import Lift
    from bankgrowth.warehouse.ingest import LoadReport
    from bankgrowth.warehouse.simulator import SimulationResult
    from bankgrowth.warehouse.status import WarehouseStatus


def _n(value: int) -> str:
    return f"{value:,}"


def _yuan(value: Decimal) -> str:
    return f"¥{value:,.2f}"


def simulation(console: Console, result: SimulationResult) -> None:
    table = Table(title="Simulated bank", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in result.rows.items():
        table.add_row(name, _n(rows))
    tables.show(console, table)
    console.print(f"bank data: {result.bank_dir}\nground truth (never load it as bank data): {result.truth_dir}")


def load_report(console: Console, report: LoadReport, *, show: int = 10) -> None:
    if report.already_loaded:
        console.print(f"[yellow]{report.file}[/]: {report.warnings[0]}")
        return
    ok = "[green]✓[/]" if report.reconciles else "[red]✗[/]"
    console.print(
        f"{ok} {report.file} → {report.table}: read {_n(report.read)} = loaded {_n(report.loaded)} "
        f"+ quarantined {_n(report.quarantined)} + duplicates skipped {_n(report.duplicates)}  "
        f"(load {report.load_id})",
        highlight=False,
    )
    for warning in report.warnings:
        console.print(f"  [yellow]warning:[/] {warning}", highlight=False)
    if report.problems and show:
        table = Table(show_edge=False, pad_edge=False)
        for col in ("line", "field", "expected", "found"):
            table.add_column(col, overflow="fold")
        for p in sorted(report.problems, key=lambda p: p.line)[:show]:  # in file order
            table.add_row(str(p.line), p.field, p.expected, p.found)
        tables.show(console, table)
        more = report.problem_count - min(show, len(report.problems))
        if more > 0:
            console.print(f"  … and {_n(more)} more problem(s); see `bankgrowth status` and the _quarantine table")


def status(console: Console, status: WarehouseStatus, url: str, tz: tzinfo) -> None:
    table = Table(title=f"Warehouse {url}", title_justify="left")
    for col, just in (("table", "left"), ("rows", "right"), ("from", "left"), ("to", "left"), ("quarantined", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for t in status.tables:
        table.add_row(t.table, _n(t.rows), _fmt(t.first, tz), _fmt(t.last, tz), _n(t.quarantined))
    tables.show(console, table)
    if status.problems_by_field:
        problems = Table(title="Quarantine by reason", title_justify="left")
        for col in ("table", "field", "expected", "rows"):
            problems.add_column(col, overflow="fold", justify="right" if col == "rows" else "left")
        for p in status.problems_by_field:
            problems.add_row(p["table_name"], p["field"], p["expected"], _n(int(p["rows"])))
        tables.show(console, problems)
    if status.recent_loads:
        # the load id is left to the `_loads` table (SQL): the time and the file say which load it was
        loads = Table(title=f"Recent loads (times in {tz})", title_justify="left")
        for col in ("loaded at", "table", "file", "read", "loaded", "quarantined", "duplicates"):
            counted = col in ("read", "loaded", "quarantined", "duplicates")
            loads.add_column(col, overflow="fold", justify="right" if counted else "left", no_wrap=col == "loaded at")
        for r in status.recent_loads:
            loads.add_row(
                r["loaded_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                r["table_name"],
                _file_cell(r["file"]),
                _n(r["rows_read"]),
                _n(r["rows_loaded"]),
                _n(r["rows_quarantined"]),
                _n(r["duplicates_skipped"]),
            )
        tables.show(console, loads)


def _file_cell(file: str) -> Text:
    """A loaded file as a cell: its name, and its folder dimmed on the line below, so that a narrow
    column breaks a path between the two rather than inside a word."""
    path = PurePath(file)
    if str(path.parent) in (".", ""):
        return Text(path.name)
    return Text.assemble(path.name, "\n", (f"{path.parent}/", "dim"))


def insight_status(console: Console, s: InsightStatus, tz: tzinfo) -> None:
    """One line on the stored versions and the last run, and what to do when they lag the data."""
    if not s.kept:
        todo = "; `bankgrowth insight run` stores the first" if s.last_data_day else ""
        console.print(f"Insight: no tag version stored yet{todo}", highlight=False)
        return
    latest = s.kept[-1]
    span = f"{len(s.kept)} kept, {s.kept[0]} to {latest}" if len(s.kept) > 1 else "1 kept"
    run = s.last_run
    last = f"; last run {instant(run.ran_at, tz)}, {run.mode}, {run.seconds:.1f} s" if run else ""
    fix = "`bankgrowth insight run` brings it up to date"
    state = "current" if s.current else f"[yellow]not current: {s.outdated}[/]; {fix}"
    console.print(f"Insight: latest version {latest} ({span}), {state}{last}", highlight=False)
    _stale_days(console, s.stale)


def instant(value: datetime, tz: tzinfo) -> str:
    """An instant as operators read it: in the business timezone, to the minute, with its offset."""
    return value.astimezone(tz).isoformat(sep=" ", timespec="minutes")


def _fmt(value: Any, tz: tzinfo) -> str:
    """Dates as they are; instants in the business timezone."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return instant(value, tz)
    return str(value)


def bank_summary(console: Console, s: BankSummary) -> None:
    pct = lambda a, b: f"{a / b:.1%}" if b else "—"  # noqa: E731
    head = Table(title=f"Bank summary 银行概览 (as of {s.as_of})", title_justify="left")
    head.add_column("measure 指标")
    head.add_column("value", justify="right")
    head.add_column("share of customers", justify="right")
    head.add_row("customers 客户", _n(s.customers), "")
    head.add_row("bound 绑卡", _n(s.bound), pct(s.bound, s.customers))
    head.add_row("transacting, 30 days 月活跃", _n(s.transacting_30d), pct(s.transacting_30d, s.customers))
    head.add_row("transacting, 365 days 年活跃", _n(s.transacting_365d), pct(s.transacting_365d, s.customers))
    head.add_row("super users 超级用户", _n(s.super_users), pct(s.super_users, s.customers))
    head.add_row("transactions 交易笔数", _n(s.transactions), "")
    head.add_row("amount 交易金额", _yuan(s.amount_yuan), "")
    head.add_row("withdrawn back to cards 提现回流", _yuan(s.withdrawal_yuan), "")
    tables.show(console, head)
    console.print(
        f"  super users: more than {s.super_user_txns} transactions in 365 days, in any lifecycle stage "
        "(the 超级用户 stage also needs a live binding and a recent transaction)",
        highlight=False,
    )
    inst = Table(title="By institution 按支付机构", title_justify="left")
    for col in ("institution", "transactions", "share", "", "amount", "customers"):
        inst.add_column(col, justify="left" if col in ("institution", "") else "right", no_wrap=True)
    for r in s.by_institution:
        inst.add_row(
            r.institution,
            _n(r.transactions),
            f"{r.share_of_transactions:.1%}",
            "█" * max(1, round(r.share_of_transactions * 25)),
            _yuan(r.amount_yuan),
            _n(r.customers),
        )
    tables.show(console, inst)
    if s.by_day:
        by_day(console, s)


SPARKS = "▁▂▃▄▅▆▇█"


def _spark(values: list[int], *, from_min: bool = False) -> str:
    """A sparkline from zero to the largest value, or ``from_min`` from the smallest (a stage's
    count moves by a little of its size, which a line from zero would flatten; a flat series is
    then drawn at mid height)."""
    low = min(values) if from_min else 0
    span = max(values) - low
    if span == 0:
        return SPARKS[3 if from_min else 0] * len(values)
    return "".join(SPARKS[round((v - low) / span * (len(SPARKS) - 1))] for v in values)


def by_day(console: Console, s: BankSummary) -> None:
    """Transactions per business day, one sparkline per institution and one for all."""
    first, last = s.by_day[0].day, s.by_day[-1].day
    table = Table(title=f"Transactions by day 每日交易 ({first:%m-%d} – {last:%m-%d})", title_justify="left")
    for col, just in (("institution", "left"), ("per day", "left"), ("min", "right"), ("max", "right")):
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    rows = [(r.institution, [d.by_institution.get(r.institution, 0) for d in s.by_day]) for r in s.by_institution]
    rows.append(("all 合计", [d.transactions for d in s.by_day]))
    for name, values in rows:
        table.add_row(name, _spark(values), _n(min(values)), _n(max(values)))
    tables.show(console, table)


def demo(console: Console, result: DemoResult) -> None:
    console.print(
        f"simulation: {result.simulation_dir} ({'generated' if result.simulated else 'reused, same configuration'})"
    )
    for report in result.loads:
        load_report(console, report, show=5)
    if result.summary is not None:
        bank_summary(console, result.summary)
    if result.orgs is not None:
        o = result.orgs
        console.print(
            f"operational store at schema {result.store_revision}; org tree: {len(o.created)} created, "
            f"{len(o.updated)} updated, {o.unchanged} unchanged. Next: `bankgrowth admin create --username admin`, "
            "then `bankgrowth serve` (API docs at /docs)."
        )
    if result.insight is not None:
        insight_run(console, result.insight)
    if result.grid is not None:
        matrix(console, result.grid, grid_title(result.insight.as_of if result.insight else None))
    if result.agreement is not None:
        agreement(console, result.agreement)
    if result.campaigns:
        demo_campaigns(console, result)


def demo_campaigns(console: Console, result: DemoResult) -> None:
    if result.launched_at is not None:
        console.print(
            f"\n[bold]Campaigns 营销活动[/] launched {result.launched_at:%Y-%m-%d %H:%M %Z}; "
            f"{len(result.segments)} core audiences installed",
            highlight=False,
        )
    for run in result.campaigns:
        e = run.execution
        console.print(
            f"[bold]{run.code}[/] {run.name_zh} / {run.name_en}: {_n(e.planned)} in the audience, "
            f"{_n(e.control)} held out as control; {_n(e.treated)} treated in {e.seconds:.1f} s — "
            f"{_n(e.granted)} rights granted, {_n(e.refused)} refused (caps, budget), {_n(e.messages)} messages "
            f"({_n(e.suppressed)} suppressed: no marketing consent)",
            highlight=False,
        )
    if result.reach is not None:
        reach(console, result.reach)
    if result.advance is not None:
        a = result.advance
        console.print(
            f"the bank lived {a.start} – {a.end}: {_n(a.transactions)} new transactions; {_n(a.exposed)} customers "
            f"had received a treatment, {_n(a.activated)} of the inactive among them were activated; "
            f"{_n(result.redeemed)} vouchers redeemed",
            highlight=False,
        )
    if result.summary_after is not None:
        bank_summary(console, result.summary_after)
    if result.trend is not None:
        lifecycle_trend(console, result.trend)
    for run in result.campaigns:
        if run.results is not None:
            campaign_results(console, run.results, {t.arm: t for t in run.truth})


def reach(console: Console, r: DispatchReport) -> None:
    channels = ", ".join(f"{c} {_n(n)}" for c, n in sorted(r.by_channel.items()))
    reasons = ", ".join(f"{k} {_n(v)}" for k, v in sorted(r.reasons.items()))
    console.print(
        f"reach 触达: {_n(r.sent)} sent" + (f" ({channels})" if channels else "") + "; "
        f"{_n(r.deferred)} deferrals" + (f" ({reasons})" if reasons else "") + ", "
        f"{_n(r.suppressed)} suppressed at dispatch, {_n(r.failed)} failed, {_n(r.receipts)} receipts",
        highlight=False,
    )


def _interval(low: float, high: float, point: float, truth: float | None, lo: float, hi: float, width: int = 25) -> str:
    """A one-line forest plot: the interval ─, the estimate ●, the truth ▲, zero │."""
    if hi <= lo:
        return ""
    cells = [" "] * width

    def at(x: float) -> int:
        return max(0, min(width - 1, round((x - lo) / (hi - lo) * (width - 1))))

    for i in range(at(low), at(high) + 1):
        cells[i] = "─"
    if lo <= 0 <= hi:
        cells[at(0)] = "│" if cells[at(0)] == " " else "┼"
    cells[at(point)] = "●"
    if truth is not None:
        cells[at(truth)] = "▲" if at(truth) != at(point) else "◆"
    return "".join(cells)


METRIC_LABELS = {
    "conversion": ("conversion", "转化率"),
    "transactions": ("transactions", "交易笔数"),
    "amount": ("amount ¥", "交易金额"),
}


def interval_change(plain: Lift, cuped: Lift) -> str:
    """How CUPED changed the interval's width, in words: "interval 14% narrower", "… 3% wider", or
    "interval as wide" when the change rounds to nothing (never "-0% narrower")."""
    plain_width = plain.ci_high - plain.ci_low
    if plain_width <= 0:
        return "interval as wide"
    change = round(100 * (1 - (cuped.ci_high - cuped.ci_low) / plain_width))
    if change > 0:
        return f"interval {change}% narrower"
    if change < 0:
        return f"interval {-change}% wider"
    return "interval as wide"


def _goal_value(metric: str, diff: float) -> str:
    if metric == "conversion":
        return f"{diff * 100:+.2f} pp"
    if metric == "amount":
        return _fen(diff, signed=True)
    return f"{diff:+.3f}"


# How a breakdown names a group that measurement keys by a placeholder: a customer who has never
# paid has no preferred institution, which the outcomes table holds as "none".
_NO_VALUE: dict[str, dict[str, str]] = {"by stage": {}, "by institution": {"none": "no preferred institution"}}


def _cell(metric: str, c: Cell, name: str | None = None) -> str:
    """One group's goal lift with its interval and (treated/control) sizes, in the goal's unit."""
    assert c.lift is not None
    low, high = _goal_value(metric, c.lift.ci_low), _goal_value(metric, c.lift.ci_high)
    diff = _goal_value(metric, c.lift.diff)
    return f"{name or c.value} {diff} [{low}, {high}] (n={_n(c.n_treatment)}/{_n(c.n_control)})"


def campaign_results(console: Console, res: Results, truth: dict[str, TrueEffect], tz: tzinfo = UTC) -> None:
    goal = res.goal
    if res.data_until is None or res.data_until < res.window_start:
        ends = "holds no transactions" if res.data_until is None else f"ends {instant(res.data_until, tz)}"
        console.print(
            f"{res.campaign}: no outcome to measure yet — the warehouse's transactions {ends}, before the launch"
            f" at {instant(res.window_start, tz)}. Load the days after it (a simulated bank: `bankgrowth simulate"
            " advance`) and ask again.",
            highlight=False,
        )
        _messages(console, res)
        return
    title = (
        f"{res.campaign}: lift vs control 提升 (goal {goal.metric}, {goal.window_days} days from "
        f"{res.window_start:%Y-%m-%d}{'' if res.complete else ', window not complete yet'})"
    )
    table = Table(title=title, title_justify="left")
    arms = len(res.arms) > 1  # one arm is named in the lines below the table
    if arms:
        table.add_column("arm")
    table.add_column("metric")
    for col in ("control", "treated", "lift [95% CI]", "true"):
        table.add_column(col, justify="right")
    table.add_column("●est ▲true │0", no_wrap=True)
    for arm in res.arms:
        t = truth.get(arm.arm)
        true_values = {
            "conversion": t.conversion if t else None,
            "transactions": t.transactions if t else None,
            "amount": float(t.amount_yuan) * 100 if t else None,
        }
        for metric, lift in arm.lifts.items():
            scale, fmt = (100.0, "{:+.2f} pp") if metric == "conversion" else (1.0, "{:+.3f}")
            if metric == "amount":
                scale, fmt = 0.01, "{:+,.2f}"
            base_fmt = "{:.2%}" if metric == "conversion" else ("{:,.2f}" if metric == "amount" else "{:.3f}")
            unit = 0.01 if metric == "amount" else 1.0
            tv = true_values[metric]
            span = [lift.ci_low, lift.ci_high, 0.0] + ([tv] if tv is not None else [])
            pad = (max(span) - min(span)) * 0.1 or 1.0
            table.add_row(
                *([arm.arm] if arms else []),
                METRIC_LABELS[metric][1] + " " + METRIC_LABELS[metric][0] + (" ★" if metric == goal.metric else ""),
                base_fmt.format(lift.control_mean * unit),
                base_fmt.format(lift.treatment_mean * unit),
                f"{fmt.format(lift.diff * scale)} [{fmt.format(lift.ci_low * scale)}, "
                f"{fmt.format(lift.ci_high * scale)}]",
                "" if tv is None else fmt.format(tv * scale),
                _interval(lift.ci_low, lift.ci_high, lift.diff, tv, min(span) - pad, max(span) + pad, width=15),
            )
    tables.show(console, table, keys=2 if arms else 1)
    for arm in res.arms:
        c = arm.goal_cuped
        plain = arm.lifts[goal.metric]
        srm = (
            f"[red]sample-ratio mismatch (p = {arm.srm.p_value:.2g}): do not trust this lift[/]"
            if arm.srm.mismatch
            else f"split as planned (SRM p = {arm.srm.p_value:.2f})"
        )
        roi = "n/a (no rights cost)" if arm.roi is None else f"¥{arm.roi:,.2f} of incremental amount per ¥1 granted"
        console.print(
            f"  {arm.arm}: CUPED {_goal_value(goal.metric, c.diff)} [{_goal_value(goal.metric, c.ci_low)}, "
            f"{_goal_value(goal.metric, c.ci_high)}], {interval_change(plain, c)} (θ = {arm.theta:.3g}); "
            f"{srm}; incremental "
            f"{arm.incremental_conversions:+,.0f} converters, {arm.incremental_transactions:+,.0f} transactions, "
            f"¥{arm.incremental_amount_yuan:+,} amount; rights cost ¥{arm.granted_cost_yuan:,} granted, "
            f"¥{arm.redeemed_cost_yuan:,} redeemed; ROI {roi}",
            highlight=False,
        )
        for label, breakdown in (("by stage", arm.by_stage), ("by institution", arm.by_institution)):
            names = _NO_VALUE[label]
            parts = [_cell(goal.metric, c, names.get(c.value)) for c in breakdown if c.lift is not None]
            if parts:
                console.print(f"  {label}: " + "; ".join(parts), highlight=False)
    _messages(console, res)


def _messages(console: Console, res: Results) -> None:
    """The campaign's messages by outcome: delivered, opened, deferred, suppressed, …"""
    if res.messages:
        console.print(
            "  messages: " + ", ".join(f"{k} {_n(v)}" for k, v in sorted(res.messages.items())), highlight=False
        )


def _bar(share: float, width: int = 24) -> str:
    return "█" * round(share * width) if share > 0 else ""


def _stage_change(h: dict[str, Any]) -> str:
    """``at_risk (2026-11-14)``; after days without a run, when it happened is only known to a
    span: ``at_risk (2026-11-01 – 2026-11-14)``."""
    since, seen = h.get("since"), h["as_of"]
    if since is None or seen - since == timedelta(days=1):
        return f"{h['to_stage']} ({seen})"
    return f"{h['to_stage']} ({since + timedelta(days=1)} – {seen})"


def insight_run(console: Console, report: RunReport) -> None:
    console.print(
        f"insight run for {report.as_of} ({report.mode}"
        + (f": {report.reason}" if report.reason else "")
        + f"): {_n(report.customers)} customers in {report.seconds:.1f} s, "
        f"{_n(report.changed)} rows written; "
        + (
            "no earlier version to compare stages with"
            if report.transitions is None or report.since is None
            else f"{_n(report.transitions)} stage changes since "
            + ("the day before" if report.as_of - report.since == timedelta(days=1) else f"{report.since}")
        )
        + (f"; replaced versions {', '.join(map(str, report.replaced))}" if report.replaced else "")
        + (
            "; `bankgrowth insight run` runs the later days again"
            if any(d > report.as_of for d in report.replaced)
            else ""
        )
        + (f"; dropped versions {', '.join(map(str, report.pruned))}" if report.pruned else ""),
        highlight=False,
    )
    _stale(console, report)
    lifecycle(console, report.distribution, report.as_of)


def up_to_date(console: Console, day: date, stale: list[date]) -> None:
    """``insight run`` found the day's stored version current: nothing was run."""
    console.print(
        f"{day} is stored and current (no data of it or before arrived since its run, and the tag definitions "
        "and thresholds are unchanged): nothing to run. `bankgrowth insight run --full` runs it again.",
        highlight=False,
    )
    _stale_days(console, stale)


def _stale(console: Console, report: RunReport) -> None:
    """Which stored versions data that arrived late makes stale, and how to restate them."""
    _stale_days(console, report.stale)


def _stale_days(console: Console, stale: list[date]) -> None:
    if not stale:
        return
    first, last = stale[0], stale[-1]
    span = str(first) if first == last else f"{first} to {last}"
    if len(stale) != (last - first).days + 1:  # days in between were not run
        span += f" ({len(stale)} versions)"
    console.print(
        f"[yellow]the stored versions of {span} were computed before some of their data arrived[/]: " + _restate(first),
        highlight=False,
    )


def _restate(day: date) -> str:
    """How to run the versions from ``day`` on again."""
    return f"`bankgrowth insight run --restate` runs them again from {day} on"


def _stage_changes(as_of: date, transitions: int | None, since: date | None) -> str:
    """A run's stage changes, and the version they are from when it was not the day before."""
    if transitions is None:
        return "—"
    gap = transitions and since is not None and as_of - since != timedelta(days=1)
    return _n(transitions) + (f" since {since}" if gap else "")


def insight_runs_done(console: Console, plan: Backlog, reports: list[RunReport]) -> None:
    """What ``insight run`` did: one day as :func:`insight_run`; days caught up as a table of the
    days, then the last day's distribution."""
    if plan.restated:
        span = str(plan.restated[0]) if len(plan.restated) == 1 else f"{plan.restated[0]} to {plan.restated[-1]}"
        console.print(
            f"restated {len(plan.restated)} stored version(s), {span}: data of their days arrived after they were run",
            highlight=False,
        )
    if len(reports) > 1:
        table = Table(title=f"Caught up {len(reports)} days 补跑", title_justify="left")
        for col in ("as of", "run", "seconds", "written", "stage changes"):
            numeric = col in ("seconds", "written", "stage changes")
            table.add_column(col, justify="right" if numeric else "left", no_wrap=col != "run")
        for r in reports:
            table.add_row(
                str(r.as_of),
                r.mode + (f": {r.reason}" if r.reason else ""),
                f"{r.seconds:.1f}",
                _n(r.changed),
                _stage_changes(r.as_of, r.transitions, r.since),
            )
        tables.show(console, table)
        for r in reports[:-1]:
            _stale(console, r)
    insight_run(console, reports[-1])
    if plan.skipped:
        console.print(
            f"not run: {len(plan.skipped)} day(s), {plan.skipped[0]} to {plan.skipped[-1]} ({plan.why_skipped}); "
            "the trend shows them as gaps",
            highlight=False,
        )
    if plan.quiet:
        shown = ", ".join(str(d) for d in plan.quiet[:5]) + (", …" if len(plan.quiet) > 5 else "")
        console.print(
            f"[yellow]no transaction at all on {shown}[/]: if the data was not loaded, load it; "
            + _restate(plan.quiet[0]),
            highlight=False,
        )


def run_history(console: Console, runs: list[LoggedRun], tz: tzinfo) -> None:
    if not runs:
        console.print("no insight run logged yet; run `bankgrowth insight run`")
        return
    table = Table(title=f"Nightly insight runs 跑批记录, newest first (times in {tz})", title_justify="left")
    for col in ("as of", "run", "seconds", "customers", "written", "stage changes", "version", "ran at"):
        numeric = col in ("seconds", "customers", "written", "stage changes")
        table.add_column(col, justify="right" if numeric else "left", no_wrap=col not in ("run", "stage changes"))
    for r in runs:
        table.add_row(
            str(r.as_of),
            r.mode + (f": {r.reason}" if r.reason else ""),
            f"{r.seconds:.1f}",
            "—" if r.customers is None else _n(r.customers),
            "—" if r.changed is None else _n(r.changed),
            _stage_changes(r.as_of, r.transitions, r.since),
            "[yellow]stale[/]" if r.version == "stale" else r.version,
            r.ran_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        )
    tables.show(console, table)
    stale = sorted(r.as_of for r in runs if r.version == "stale")
    if stale:
        console.print(
            "stale: data of their days arrived after they were run; " + _restate(stale[0]),
            highlight=False,
        )


def lifecycle(console: Console, dist: list[StageCount], day: date | None = None) -> None:
    table = Table(title="Lifecycle 生命周期" + (f", {day}" if day else ""), title_justify="left")
    for col, just in (("stage", "left"), ("阶段", "left"), ("customers", "right"), ("share", "right"), ("", "left")):
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for s in dist:
        table.add_row(s.en, s.zh, _n(s.customers), f"{s.share:.1%}", _bar(s.share))
    tables.show(console, table)


def _signed(value: int) -> str:
    return f"{value:+,}" if value else "0"


def lifecycle_trend(console: Console, trend: Trend) -> None:
    from bankgrowth.insight.lifecycle import STAGES

    if not trend.days:
        console.print("no stage counts in that span; `bankgrowth insight runs` lists the days run")
        return
    first, last = trend.days[0], trend.days[-1]
    table = Table(
        title=f"Lifecycle trend 生命周期趋势, {first} – {last} ({len(trend.days)} days run)", title_justify="left"
    )
    columns = [("stage", "left"), ("阶段", "left"), (f"{first:%m-%d}", "right"), (f"{last:%m-%d}", "right")]
    columns += [("change", "right"), ("day by day", "left"), ("min", "right"), ("max", "right")]
    for col, just in columns:
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for s in STAGES:
        v = trend.counts[s.code]
        table.add_row(
            s.en, s.zh, _n(v[0]), _n(v[-1]), _signed(v[-1] - v[0]), _spark(v, from_min=True), _n(min(v)), _n(max(v))
        )
    tables.show(console, table)
    if trend.gaps:
        shown = ", ".join(str(d) for d in trend.gaps[:5]) + (", …" if len(trend.gaps) > 5 else "")
        console.print(f"not run: {len(trend.gaps)} day(s) ({shown}); each line skips them", highlight=False)


def computed_days(console: Console, days: list[date]) -> None:
    """Which days a view computed from the data instead of reading their stored versions."""
    for d in days:
        console.print(f"{d}: no stored version; its stages are computed from the data as of that day (not stored)")


def grid_title(day: date | None) -> str:
    return "Customer grid 客户宫格" + (f", {day}" if day else "") + " (stage × value tier)"


def matrix(console: Console, m: Matrix, title: str) -> None:
    table = Table(title=title, title_justify="left", min_width=cell_len(title))  # the title on one line
    table.add_column("")
    for col in m.columns:
        table.add_column(col, justify="right")
    table.add_column("total", justify="right")
    for row in m.rows:
        values = [m.counts.get((row, col), 0) for col in m.columns]
        table.add_row(row, *[_n(v) if v else "·" for v in values], _n(sum(values)))
    totals = [sum(m.counts.get((r, c), 0) for r in m.rows) for c in m.columns]
    table.add_row("total", *[_n(v) for v in totals], _n(m.total()), style="bold")
    tables.show(console, table)


def tag_catalog(console: Console, stats: list[TagStats]) -> None:
    table = Table(title=f"Tag catalog 标签目录 ({len(stats)} tags)", title_justify="left")
    for col in ("tag", "标签", "category", "coverage", "non-zero", "kind", "type"):
        table.add_column(col, justify="right" if col in ("coverage", "non-zero") else "left", no_wrap=col == "tag")
    for s in stats:
        nonzero = "" if s.nonzero is None else _share(s.nonzero)
        table.add_row(s.tag.name, s.tag.zh, s.tag.category, _share(s.coverage), nonzero, s.tag.kind, s.tag.dtype)
    tables.show(console, table)


def tag_detail(console: Console, s: TagStats, source: ImportedTag | None = None, tz: tzinfo = UTC) -> None:
    """A tag's definition and distribution; for an imported tag, the import its values are from."""
    t = s.tag
    console.print(f"[bold]{t.name}[/]  {t.zh} / {t.en}", highlight=False)
    console.print(
        f"{t.description}\ncategory {t.category} · kind {t.kind} · type {t.dtype}"
        + (f" · unit {t.unit}" if t.unit else "")
        + f" · refresh {t.refresh} · source {t.source}",
        highlight=False,
    )
    if source is not None:
        left_out = f", {_n(source.rejected)} {'line' if source.rejected == 1 else 'lines'} left out"
        console.print(
            f"imported {instant(source.imported_at, tz)} from {source.file}: {_n(source.rows)} "
            f"{'customer' if source.rows == 1 else 'customers'}" + (left_out if source.rejected else ""),
            highlight=False,
        )
    console.print(
        f"coverage {_share(s.coverage)} of {_n(s.rows)} customers"
        + ("" if s.nonzero is None else f"; non-zero {_share(s.nonzero)}")
    )
    if s.summary:
        console.print("  ".join(f"{k} {_num(v, t.unit)}" for k, v in s.summary.items()), highlight=False)
    if s.histogram:
        table = Table(show_edge=False)
        table.add_column("range" if t.dtype == "int" else "range (from, below; the last up to)")
        table.add_column("customers", justify="right")
        table.add_column("share", justify="right")
        table.add_column("")
        for b in s.histogram:
            share = b.customers / s.rows if s.rows else 0
            table.add_row(_range(b.low, b.high, t.dtype == "int", t.unit), _n(b.customers), _share(share), _bar(share))
        tables.show(console, table)
    if s.top:
        table = Table(show_edge=False)
        table.add_column("value")
        table.add_column("customers", justify="right")
        table.add_column("share", justify="right")
        table.add_column("")
        for value, count in s.top:
            share = count / s.rows if s.rows else 0
            table.add_row(_num(value, t.unit), _n(count), _share(share), _bar(share))
        tables.show(console, table)


def _share(x: float) -> str:
    """A share to one decimal place; a few customers out of many read "<0.1%", not "0.0%", and all
    but a few ">99.9%", not "100.0%"."""
    if 0 < x < 0.0005:
        return "<0.1%"
    return ">99.9%" if 0.9995 <= x < 1 else f"{x:.1%}"


def _num(v: Any, unit: str = "") -> str:
    if v is None:
        return "— (none 无)"
    if isinstance(v, bool):
        return "yes 是" if v else "no 否"
    if unit == "fen" and isinstance(v, int | float):
        return _fen(v)
    if unit == "share" and isinstance(v, int | float):
        return f"{v:.1%}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _fen(amount: float, *, signed: bool = False) -> str:
    """An amount in fen as yuan: ``¥1,234.50`` (``¥+1,234.50`` when ``signed``)."""
    return f"¥{amount / 100:+,.2f}" if signed else f"¥{amount / 100:,.2f}"


def _range(low: float, high: float, integer: bool, unit: str) -> str:
    """A bin's label: whole numbers inclusive (``2–4``, or ``3`` for a bin of one value), other
    values as ``low–high`` with the high edge excluded; amounts in fen as yuan."""
    if integer:
        first, last = int(low), int(high) - 1
        if unit == "fen":
            return _fen(first) if first == last else f"{_fen(first)}–{_fen(last)[1:]}"
        return f"{first:,}" if first == last else f"{first:,}–{last:,}"
    if unit == "share":
        return f"{low:.1%}–{high:.1%}"
    return f"{low:,.6g}–{high:,.6g}"


def customer(console: Console, view: CustomerView) -> None:
    p = view.profile
    console.print(
        f"[bold]customer {view.customer_id}[/]  {p['name']}  {p['phone']}  born {p['birth_year']}  {p['gender']}  "
        f"branch {p['branch_id']}  registered {p['registered_on']}  auth level {p['auth_level']}",
        highlight=False,
    )
    if view.tags:
        stage = view.tags.get("stage")
        console.print(
            f"as of {view.tags_as_of}: stage [bold]{stage}[/] · segment {view.tags.get('rfm_segment')} · "
            f"tier {view.tags.get('value_tier')} · 365-day transactions {view.tags.get('txn_count_365d')}",
            highlight=False,
        )
    if view.stage_history:  # from the stage before the first change logged
        steps = [view.stage_history[0]["from_stage"], *(_stage_change(h) for h in view.stage_history)]
        console.print("stage history: " + " → ".join(steps), highlight=False)
    elif view.tags:  # said, so that no history is not read as a history not shown
        since = f" since {view.history_since} (the first day run)" if view.history_since else ""
        console.print(f"stage history: {view.tags.get('stage')}, no change{since}", highlight=False)
    if view.bindings:
        table = Table(title="Bindings 绑卡", title_justify="left")
        for col in ("institution", "bound", "unbound", "channel", "one-click"):
            table.add_column(col)
        for b in view.bindings:
            table.add_row(
                b["institution"],
                _fmt(b["bound_at"], view.timezone),
                _fmt(b["unbound_at"], view.timezone),
                b["bind_channel"],
                _num(bool(b["one_click"])),
            )
        tables.show(console, table)
    if view.recent_transactions:
        table = Table(title="Recent transactions 最近交易", title_justify="left")
        for col in ("time", "institution", "amount", "category", "scene"):
            table.add_column(col, justify="right" if col == "amount" else "left")
        for t in view.recent_transactions:
            table.add_row(
                _fmt(t["txn_at"], view.timezone),
                t["institution"],
                _yuan(t["amount_yuan"]),
                t["merchant_category"],
                t["scene"],
            )
        tables.show(console, table)
    if view.tags:
        table = Table(title="Tags 标签", title_justify="left", show_edge=False)
        table.add_column("tag")
        table.add_column("标签")
        table.add_column("value", overflow="fold")
        for name, value in view.tags.items():
            declared = view.declarations.get(name)
            unit = declared.unit if declared else ""
            table.add_row(name, declared.zh if declared else "", _tag_value(value, unit, view.timezone))
        tables.show(console, table)


def _tag_value(value: Any, unit: str, tz: tzinfo) -> str:
    """One customer's tag value as an operator reads it: times in the business timezone, amounts
    in yuan, yes/no, shares as percentages."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return _fmt(value, tz)
    return _num(value, unit)


def agreement(console: Console, a: Agreement) -> None:
    table = Table(title=f"Stages vs the simulator's truth, {a.as_of}: {a.overall:.1%} agree", title_justify="left")
    for col, just in (("truth state", "left"), ("customers", "right"), ("agree", "right"), ("computed stages", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in a.rows:
        table.add_row(
            r.truth_state, _n(r.customers), f"{r.rate:.1%}", ", ".join(f"{s} {_n(n)}" for s, n in r.top_stages)
        )
    tables.show(console, table)


def records(
    console: Console, title: str, rows: list[dict[str, Any]], tz: tzinfo, units: Mapping[str, str] | None = None
) -> None:
    """A plain table of records (orgs, keys, pools, settlement, audit entries, audience members):
    datetimes in the business timezone and on one line, money kept in fen (a `…_fen` field, or a
    column whose unit in ``units`` is ``fen``, as a tag's) shown in yuan, shares as percentages,
    counts with thousands separators and right-aligned; identifiers as they are."""
    if not rows:
        console.print(f"{title}: none")
        return
    units = units or {}
    table = Table(title=title, title_justify="left")
    formats: dict[str, Callable[[Any], str]] = {}
    for column in rows[0]:
        values = [row[column] for row in rows if row[column] is not None]
        if column.endswith("_fen"):
            table.add_column(column.removesuffix("_fen") + " ¥", justify="right")
            formats[column] = lambda v: _yuan(Decimal(v) / 100)
        elif units.get(column) in ("fen", "share"):
            table.add_column(column, justify="right")
            formats[column] = partial(_num, unit=units[column])
        elif values and all(type(v) is int for v in values) and not _identifier(column):
            table.add_column(column, justify="right")
            formats[column] = _n
        else:  # an instant stays on one line
            table.add_column(column, no_wrap=bool(values) and all(isinstance(v, datetime) for v in values))
            formats[column] = lambda v: _fmt(v, tz)
    for row in rows:
        table.add_row(*("" if v is None else formats[k](v) for k, v in row.items()))
    tables.show(console, table)


def _identifier(column: str) -> bool:
    return column in ("id", "customer", "customer_id", "version") or column.endswith("_id")
