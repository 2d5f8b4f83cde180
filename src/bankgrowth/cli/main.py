"""``bankgrowth`` — every command parses arguments, calls one service or flow, and renders."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TimeRemainingColumn,
)

from bankgrowth import __version__
from bankgrowth.cli import audiences as audiences_cli
from bankgrowth.cli import campaigns as campaigns_cli
from bankgrowth.cli import common, ops, render
from bankgrowth.cli import rights as rights_cli

# Each command imports the services it calls (see cli/common.py).

app = typer.Typer(
    name="bankgrowth",
    help="Customer growth operations for banks' card and quick-payment business.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
schema_app = typer.Typer(help="The canonical data model.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")
insight_app = typer.Typer(help="Lifecycle stages, value scores and the nightly tag run.", no_args_is_help=True)
app.add_typer(insight_app, name="insight")
tags_app = typer.Typer(help="The tag catalog.", no_args_is_help=True)
app.add_typer(tags_app, name="tags")
app.add_typer(ops.db_app, name="db")
app.add_typer(ops.admin_app, name="admin")
app.add_typer(ops.orgs_app, name="orgs")
app.add_typer(ops.keys_app, name="keys")
app.add_typer(rights_cli.rights_app, name="rights")
app.add_typer(audiences_cli.audiences_app, name="audiences")
app.add_typer(campaigns_cli.campaigns_app, name="campaigns")
app.command("audit")(ops.audit_cmd)
app.command("serve")(ops.serve_cmd)
console = common.console
err_console = common.err_console
_fail = common.fail
_settings = common.settings
_warehouse = common.warehouse


_progress = common.progress_bar


def _bytes_progress() -> Progress:
    return common.bar(BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True)


def _advance(progress: Progress, task: TaskID) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"bankgrowth {__version__}")
        raise typer.Exit()


simulate_app = typer.Typer(help="Simulate a bank; `simulate advance` lets it live on after campaigns.")
app.add_typer(simulate_app, name="simulate")


@simulate_app.callback(invoke_without_command=True)
def simulate_cmd(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: DATA_DIR/simulation).")
    ] = None,
    customers: Annotated[int, typer.Option(help="Number of customers.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bank.")] = 42,
    end_date: Annotated[str, typer.Option(help="Last day of history, YYYY-MM-DD.")] = "2026-10-31",
    history_days: Annotated[int, typer.Option(help="Days of transaction history.")] = 365,
    branches: Annotated[int, typer.Option(help="Number of branches under HQ (1-12).")] = 8,
    activity: Annotated[float, typer.Option(help="Scale of transaction rates (1.0 ≈ 25 per customer a year).")] = 1.0,
) -> None:
    """Generate a synthetic bank (Parquet) with its hidden ground truth kept apart."""
    if ctx.invoked_subcommand is not None:
        return
    from bankgrowth.warehouse.simulator import SimulationConfig, simulate

    settings = _settings()
    try:
        config = SimulationConfig(
            customers=customers,
            seed=seed,
            end_date=date.fromisoformat(end_date),
            history_days=history_days,
            branches=branches,
            activity=activity,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    target = out or settings.data_dir / "simulation"
    with _progress() as progress:
        task = progress.add_task("simulating customers", total=customers)
        result = simulate(config, target, progress=lambda done, total: progress.update(task, completed=done))
    render.simulation(console, result)


@simulate_app.command("advance")
def simulate_advance_cmd(
    days: Annotated[int, typer.Option(help="Days to simulate after the last simulated one.")] = 14,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="The simulation folder (default: DATA_DIR/simulation).")
    ] = None,
) -> None:
    """Let the simulated bank live DAYS more days, responding to the running campaigns.

    Customers respond to what running campaigns gave them, from their hidden true response; the new
    transactions are loaded and the truth of each treatment's effect is written beside the
    simulator's other truth."""
    from sqlalchemy.orm import Session

    from bankgrowth.campaigns import flows as campaign_flows
    from bankgrowth.platform import service as platform_service

    settings = _settings()
    target = out or settings.data_dir / "simulation"
    with common.store(settings) as engine, _warehouse(settings) as con:
        with Session(engine) as session:
            principal = platform_service.system_principal(session, source="cli:simulate")
        try:
            advanced = campaign_flows.advance_simulation(
                engine, con, principal=principal, simulation_dir=target, days=days, timezone=settings.timezone
            )
        except (FileNotFoundError, ValueError) as exc:
            raise _fail(str(exc)) from None
    render.load_report(console, advanced.load, show=5)
    result = advanced.advance
    console.print(
        f"simulated {result.start} – {result.end}: {result.transactions:,} transactions; {result.exposed:,} "
        f"customers treated by {len(advanced.campaigns)} campaign(s), {result.activated:,} inactive ones "
        f"activated, {advanced.redeemed:,} vouchers redeemed; truth in {result.files[1]}",
        highlight=False,
    )


@app.command("load")
def load_cmd(
    paths: Annotated[list[Path], typer.Argument(help="CSV or Parquet files, or folders of them.")],
    table: Annotated[str | None, typer.Option(help="Target table when file names do not say it.")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of CSV files (utf-8, gb18030, …).")] = "utf-8",
    show: Annotated[int, typer.Option(help="How many problem rows to list per file.")] = 10,
) -> None:
    """Validate and load files into the warehouse; bad rows go to the quarantine with reasons."""
    from bankgrowth.warehouse import ingest
    from bankgrowth.warehouse.ingest import IngestFileError

    settings = _settings()
    files = ingest.expand_paths(paths)
    if not files:
        raise _fail("no CSV or Parquet files found in " + ", ".join(map(str, paths)))
    failed = 0
    with _warehouse(settings) as con:
        for path in files:
            try:
                with _bytes_progress() if path.suffix.lower() == ".csv" else _progress() as progress:
                    task = progress.add_task(f"loading {path.name}", total=None)
                    report = ingest.load_file(
                        con,
                        path,
                        table=table,
                        encoding=encoding,
                        timezone=settings.timezone,
                        progress=_advance(progress, task),
                    )
            except IngestFileError as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                failed += 1
                continue
            render.load_report(console, report, show=show)
    if failed:
        raise typer.Exit(code=1)


@app.command("status")
def status_cmd() -> None:
    """Row counts, date ranges, quarantine counts, recent loads, and where the nightly run stands."""
    from bankgrowth.insight import service as insight_service
    from bankgrowth.warehouse.status import warehouse_status

    settings = _settings()
    with _warehouse(settings) as con:
        status = warehouse_status(con)
        insight = insight_service.insight_status(con, settings)
    render.status(console, status, settings.resolved_warehouse_url, settings.tz)
    render.insight_status(console, insight, settings.tz)


@app.command("demo")
def demo_cmd(
    customers: Annotated[int, typer.Option(help="Size of the simulated bank.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """The main job: a simulated bank end to end, with two measured campaigns.

    Simulates a bank, loads it, runs insight, runs two campaigns with control groups and measures
    them against the simulator's truth. Starts from fresh default stores each time."""
    from bankgrowth.demo import DemoHooks, run_demo
    from bankgrowth.warehouse.simulator import SimulationConfig

    settings = _settings()
    if settings.warehouse_url is None and settings.operational_url is None:
        # the embedded defaults: the demo owns these files and starts from a clean bank
        for name in ("warehouse.duckdb", "warehouse.duckdb.wal", "operational.sqlite"):
            (settings.data_dir / name).unlink(missing_ok=True)

    class Hooks(DemoHooks):
        def __init__(self, progress: Progress) -> None:
            self.progress = progress
            self.sim_task = progress.add_task("simulating customers", total=customers)

        def simulate_progress(self, done: int, total: int) -> None:
            self.progress.update(self.sim_task, completed=done, total=total)

        def load_progress(self, path: Path) -> Callable[[int, int], None]:
            return _advance(self.progress, self.progress.add_task(f"loading {path.name}", total=None))

        def execute_progress(self, code: str) -> Callable[[int, int], None]:
            return _advance(self.progress, self.progress.add_task(f"executing {code}", total=None))

        def insight_progress(self) -> Callable[[int, int], None]:
            return _advance(self.progress, self.progress.add_task("nightly insight runs", total=None))

        def step(self, text: str) -> None:
            self.progress.console.print(f"· {text}", highlight=False)

    with _warehouse(settings) as con, _progress() as progress:
        config = SimulationConfig(customers=customers, seed=seed)
        result = run_demo(con, settings, config=config, hooks=Hooks(progress))
    render.demo(console, result)


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail(f"expected a date YYYY-MM-DD, found {value!r}") from None


@insight_app.command("run")
def insight_run_cmd(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Business day (default: last day with data).")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Recompute from all history instead of moving the day before's state.")
    ] = False,
    beyond_data: Annotated[
        bool,
        typer.Option(
            "--beyond-data",
            help="Run a day after the last day with transactions (refused otherwise: its data is most likely "
            "not loaded yet).",
        ),
    ] = False,
    catch_up: Annotated[
        bool,
        typer.Option(
            "--catch-up/--no-catch-up",
            help="Also run each day without a run since the latest stored version, oldest first "
            "(as far back as versions are kept).",
        ),
    ] = True,
    restate: Annotated[
        bool | None,
        typer.Option(
            "--restate/--no-restate",
            help="First run again the stored versions computed before some of their data arrived, from the "
            "first of them on (default: BANKGROWTH_RESTATE_LATE_DATA, off). Needs the catch-up.",
        ),
    ] = None,
    replace_later: Annotated[
        bool,
        typer.Option(
            "--replace-later",
            help="Run an --as-of day before the latest stored version, replacing the versions after it "
            "(refused otherwise).",
        ),
    ] = False,
) -> None:
    """Compute tags, lifecycle stages and value scores for a day and store them as a version.

    Days missed since the last run are run first, each from the day before, so that every day is
    stored, counted in the trend and compared with the day before. Without --as-of or --full, a
    day already stored is not run again while no data of it arrived since and the definitions
    are unchanged."""
    from bankgrowth.insight import service as insight_service
    from bankgrowth.warehouse.engine import statement_progress

    settings = _settings()
    with _warehouse(settings) as con, common.step_bar() as bar:
        day = _day(as_of)
        # without the catch-up only the day asked for runs: nothing is restated
        plan = insight_service.backlog(
            con,
            settings,
            as_of=day,
            beyond_data=beyond_data,
            restate=restate if catch_up else False,
            replace_later=replace_later,
            skip_current=day is None and not full,  # the nightly job: a day already run is not run again
        )
        if plan.up_to_date is not None:
            render.up_to_date(console, plan.up_to_date, insight_service.stale_versions(con, settings))
            return
        if not catch_up:
            plan = plan.last_only()
        task = bar.add_task("insight run", total=100)
        label = "insight run"
        done = 0  # days of the plan run and stored

        def on_day(i: int, n: int, d: date) -> None:
            nonlocal label, done
            label = f"insight run {d}" + (f" (day {i}/{n})" if n > 1 else "")
            done = i - 1

        def on_step(step: int, steps: int, what: str) -> None:
            bar.update(task, description=f"{label} {step}/{steps}: {what}", completed=0)

        watch = (
            statement_progress(con, lambda percent: bar.update(task, completed=percent))
            if not bar.disable
            else nullcontext()
        )
        try:
            with watch:
                reports = insight_service.catch_up(
                    con, settings, plan, full=full, beyond_data=beyond_data, progress=on_step, on_day=on_day
                )
        except Exception:
            if done:  # each day is stored as it ends: say which were before the failure
                stored = plan.days[0] if done == 1 else f"{plan.days[0]} to {plan.days[done - 1]}"
                err_console.print(
                    f"stored before the failure: {stored}; `bankgrowth insight run` continues from {plan.days[done]}",
                    highlight=False,
                    soft_wrap=True,
                )
            raise
    render.insight_runs_done(console, plan, reports)


@insight_app.command("runs")
def insight_runs_cmd(
    limit: Annotated[int, typer.Option(min=1, help="How many runs to show, newest first.")] = 30,
) -> None:
    """The nightly runs' log: full or incremental and why, time, rows written, stage changes.

    Each run is listed newest first, with whether its version is still kept, was replaced by a
    later run of its day or an earlier one, or was dropped past retention."""
    from bankgrowth.insight import service as insight_service

    settings = _settings()
    with _warehouse(settings) as con:
        runs = insight_service.run_history(con, limit=limit)
    render.run_history(console, runs, settings.tz)


@insight_app.command("lifecycle")
def insight_lifecycle_cmd(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Version to show (default: latest).")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Also show flows from this day's stages (computed from the data if it was never run)."),
    ] = None,
) -> None:
    """Lifecycle distribution, and the transition matrix between two days.

    A day never run is computed from the data as of that day, with the current thresholds, and
    nothing is stored."""
    from bankgrowth.insight import service as insight_service
    from bankgrowth.insight import store as insight_store

    settings = _settings()
    with _warehouse(settings) as con:
        dist = insight_service.lifecycle_distribution(con, _day(as_of), settings=settings)
        start, end = _day(since), _day(as_of) or insight_store.latest(con)
        matrix = insight_service.transition_matrix(con, start, end, settings=settings) if start and end else None
        computed = insight_service.computed_days(con, end, start)
    render.computed_days(console, computed)
    render.lifecycle(console, dist, end)
    if matrix is not None:
        render.matrix(console, matrix, f"Flows {since} → {end} (rows: from, columns: to)")


@insight_app.command("trend")
def insight_trend_cmd(
    days: Annotated[int, typer.Option(min=1, help="Length of the span in days.")] = 30,
    end: Annotated[str | None, typer.Option(help="Last day of the span (default: the latest day run).")] = None,
) -> None:
    """Customers by lifecycle stage, day by day: first and last day, change, and a sparkline.

    The counts are kept after their versions pass retention, so the trend reaches back to the
    first day run."""
    from bankgrowth.insight import service as insight_service

    settings = _settings()
    with _warehouse(settings) as con:
        trend = insight_service.lifecycle_trend(con, end=_day(end), days=days)
    render.lifecycle_trend(console, trend)


@insight_app.command("grid")
def insight_grid_cmd(
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Day to show (default: latest version; computed from the data if never run)."),
    ] = None,
) -> None:
    """The customer grid (宫格): lifecycle stage × value tier.

    A day never run is computed from the data as of that day, with the current thresholds, and
    nothing is stored."""
    from bankgrowth.insight import service as insight_service
    from bankgrowth.insight import store as insight_store

    settings = _settings()
    with _warehouse(settings) as con:
        day = _day(as_of)
        matrix = insight_service.grid(con, day, settings=settings)
        computed = insight_service.computed_days(con, day, counts=False)
        shown = day or insight_store.latest(con)
    render.computed_days(console, computed)
    render.matrix(console, matrix, render.grid_title(shown))


@insight_app.command("truth-check")
def insight_truth_check_cmd(
    truth: Annotated[Path | None, typer.Option(help="customer_truth.parquet of the simulation.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Version to check (default: latest).")] = None,
) -> None:
    """Agreement of computed stages with a simulated bank's hidden truth (simulated data only)."""
    from bankgrowth.evaluation.lifecycle import lifecycle_agreement
    from bankgrowth.insight.lifecycle import Thresholds

    settings = _settings()
    path = truth or settings.data_dir / "simulation" / "truth" / "customer_truth.parquet"
    if not path.exists():
        raise _fail(f"{path}: no such file; pass --truth with the simulation's truth/customer_truth.parquet")
    with _warehouse(settings) as con:
        agreement = lifecycle_agreement(
            con, path, as_of=_day(as_of), timezone=settings.timezone, thresholds=Thresholds.from_settings(settings)
        )
    render.agreement(console, agreement)


@tags_app.command("list")
def tags_list_cmd(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Version to describe (default: latest).")] = None,
) -> None:
    """Every tag with its category, kind, type and coverage."""
    from bankgrowth.insight import service as insight_service

    settings = _settings()
    with _warehouse(settings) as con:
        stats = insight_service.catalog(con, _day(as_of))
    render.tag_catalog(console, stats)


@tags_app.command("show")
def tags_show_cmd(
    name: Annotated[str, typer.Argument(help="Tag name, e.g. preferred_institution.")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Version to describe (default: latest).")] = None,
) -> None:
    """One tag: its definition, coverage and distribution."""
    from bankgrowth.insight import imported
    from bankgrowth.insight import service as insight_service

    settings = _settings()
    with _warehouse(settings) as con:
        [stats] = insight_service.catalog(con, _day(as_of), names=[name])
        source = next((i for i in imported.imported(con) if i.tag.name == name), None)
    render.tag_detail(console, stats, source, settings.tz)


@tags_app.command("import")
def tags_import_cmd(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet with the columns customer_id,value.")],
    name: Annotated[str, typer.Option(help="Tag name: a-z, 0-9 and _, e.g. wealth_grade.")],
    zh: Annotated[str, typer.Option(help="Chinese label.")],
    en: Annotated[str, typer.Option(help="English label.")],
    dtype: Annotated[str, typer.Option("--type", help="string, int, bool or date.")] = "string",
    category: Annotated[str, typer.Option(help="clothing, food, housing, travel, leisure, health, finance, …")] = (
        "finance"
    ),
    description: Annotated[str, typer.Option(help="What the tag means.")] = "",
    encoding: Annotated[str, typer.Option(help="Text encoding of a CSV file (utf-8, gb18030, …).")] = "utf-8",
    show: Annotated[int, typer.Option(help="How many problem rows to list.")] = 10,
) -> None:
    """Import a bank's own customer → value list as a tag; validated like every load (HQ only)."""
    from bankgrowth.insight import flows as insight_flows
    from bankgrowth.warehouse.ingest import IngestFileError

    settings = _settings()
    with _warehouse(settings) as con, common.transaction(settings) as session:
        try:
            with _bytes_progress() if path.suffix.lower() == ".csv" else _progress() as progress:
                task = progress.add_task(f"importing {path.name}", total=None)
                report = insight_flows.import_tag(
                    session,
                    con,
                    principal=common.principal(session, None),
                    path=path,
                    name=name,
                    zh=zh,
                    en=en,
                    dtype=dtype,
                    category=category,
                    description=description,
                    encoding=encoding,
                    timezone=settings.timezone,
                    progress=_advance(progress, task),
                )
        except IngestFileError as exc:
            raise _fail(str(exc)) from None
    render.load_report(console, report, show=show)
    if report.loaded == 0:
        raise typer.Exit(1)


@tags_app.command("remove")
def tags_remove_cmd(name: Annotated[str, typer.Argument(help="An imported tag's name.")]) -> None:
    """Forget an imported tag and its values."""
    from bankgrowth.insight import flows as insight_flows

    settings = _settings()
    with _warehouse(settings) as con, common.transaction(settings) as session:
        insight_flows.remove_imported_tag(session, con, principal=common.principal(session, None), name=name)
    console.print(f"imported tag {name} removed")


@tags_app.command("export")
def tags_export_cmd(
    out: Annotated[Path, typer.Argument(help="File to write: .parquet or .csv.")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Version (default: latest).")] = None,
    columns: Annotated[str | None, typer.Option(help="Comma-separated tags (default: all).")] = None,
    pseudonymize: Annotated[
        bool, typer.Option("--pseudonymize", help="Replace customer_id by a keyed pseudonym (customer_key).")
    ] = False,
    org: ops.Org = None,
) -> None:
    """Export a tag version for analysis; the export is audited."""
    from bankgrowth.insight import flows as insight_flows

    settings = _settings()
    with _warehouse(settings) as con, common.transaction(settings) as session:
        rows = insight_flows.export_tags(
            session,
            con,
            principal=common.principal(session, org),
            path=out,
            as_of=_day(as_of),
            columns=[c.strip() for c in columns.split(",")] if columns else None,
            pseudonymize_with=settings.secret_key.get_secret_value() if pseudonymize else None,
        )
    console.print(f"wrote {rows:,} rows to {out}" + (" (customer ids pseudonymized)" if pseudonymize else ""))


@app.command("customer")
def customer_cmd(
    customer_id: Annotated[int, typer.Argument(help="Customer id.")],
    reveal: Annotated[bool, typer.Option("--reveal", help="Show personal data in clear (audited).")] = False,
    org: ops.Org = None,
) -> None:
    """One customer's view: profile (masked), stage history, tags, bindings, recent transactions."""
    from bankgrowth.insight import flows as insight_flows

    settings = _settings()
    with _warehouse(settings) as con, common.transaction(settings) as session:
        view = insight_flows.customer_view(
            session,
            con,
            principal=common.principal(session, org),
            customer_id=customer_id,
            reveal=reveal,
            timezone=settings.timezone,
        )
    render.customer(console, view)


@schema_app.command("docs")
def schema_docs_cmd(
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of the terminal.")] = None,
) -> None:
    """Print the data-model reference (the source of docs/data-model.md)."""
    from bankgrowth.warehouse import schema
    from bankgrowth.warehouse.docs import data_model_markdown

    text = data_model_markdown(schema.TABLES.values())
    if out is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


def run() -> None:
    """Entry point that turns the errors a person can fix into one red line."""
    try:
        app()
    except Exception as exc:  # not SystemExit: a normal exit must not import the engines
        if not isinstance(exc, common.known_errors()):
            raise
        message = common.describe_invalid(exc, exc.title) if isinstance(exc, ValidationError) else str(exc)
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


common.reflow_help(app)  # after every command is registered
