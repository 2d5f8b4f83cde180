"""Rich rendering of service results for the terminal. No business logic lives here."""

from __future__ import annotations

from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from bankgrowth.demo import DemoResult
from bankgrowth.measurement.kpi import BankSummary
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
    console.print(table)
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
        for p in report.problems[:show]:
            table.add_row(str(p.line), p.field, p.expected, p.found)
        console.print(table)
        more = report.problem_count - min(show, len(report.problems))
        if more > 0:
            console.print(f"  … and {_n(more)} more problem(s); see `bankgrowth status` and the _quarantine table")


def status(console: Console, status: WarehouseStatus, url: str, tz: tzinfo) -> None:
    table = Table(title=f"Warehouse {url}", title_justify="left")
    for col, just in (("table", "left"), ("rows", "right"), ("from", "left"), ("to", "left"), ("quarantined", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for t in status.tables:
        table.add_row(t.table, _n(t.rows), _fmt(t.first, tz), _fmt(t.last, tz), _n(t.quarantined))
    console.print(table)
    if status.problems_by_field:
        problems = Table(title="Quarantine by reason", title_justify="left")
        for col in ("table", "field", "expected", "rows"):
            problems.add_column(col, overflow="fold")
        for p in status.problems_by_field:
            problems.add_row(p["table_name"], p["field"], p["expected"], _n(int(p["rows"])))
        console.print(problems)
    if status.recent_loads:
        loads = Table(title="Recent loads", title_justify="left")
        for col in ("load", "table", "file", "read", "loaded", "quarantined", "duplicates"):
            loads.add_column(col, overflow="fold")
        for r in status.recent_loads:
            loads.add_row(
                r["load_id"],
                r["table_name"],
                r["file"],
                _n(r["rows_read"]),
                _n(r["rows_loaded"]),
                _n(r["rows_quarantined"]),
                _n(r["duplicates_skipped"]),
            )
        console.print(loads)


def _fmt(value: Any, tz: tzinfo) -> str:
    """Dates as they are; instants in the business timezone."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat(sep=" ", timespec="minutes")
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
    head.add_row("transactions 交易笔数", _n(s.transactions), "")
    head.add_row("amount 交易金额", _yuan(s.amount_yuan), "")
    head.add_row("withdrawn back to cards 提现回流", _yuan(s.withdrawal_yuan), "")
    console.print(head)
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
    console.print(inst)


def demo(console: Console, result: DemoResult) -> None:
    console.print(
        f"simulation: {result.simulation_dir} ({'generated' if result.simulated else 'reused, same configuration'})"
    )
    for report in result.loads:
        load_report(console, report, show=5)
    if result.summary is not None:
        bank_summary(console, result.summary)
