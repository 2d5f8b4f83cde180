"""Commands of rights (权益): the catalog, pools, the nightly jobs (expiry, reservation and order
release), reconciliation and settlement. Each parses, calls one service, and renders."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from bankgrowth.cli import render
from bankgrowth.cli.common import console, fail, from_json_file, principal, settings, transaction
from bankgrowth.rights.schemas import Catalog, PoolRead, RightRead

rights_app = typer.Typer(help="Rights (权益): catalog, pools, jobs, reconciliation, settlement.", no_args_is_help=True)
Org = Annotated[str | None, typer.Option("--org", help="Act within this org's subtree (default: HQ).")]


@rights_app.command("list")
def rights_list_cmd(org: Org = None) -> None:
    """The rights catalog."""
    from bankgrowth.rights import service as rights_service

    s = settings()
    with transaction(s) as session:
        rows = [
            RightRead.model_validate(r).model_dump(
                include={
                    "code",
                    "kind",
                    "name_zh",
                    "name_en",
                    "face_value_fen",
                    "unit_cost_fen",
                    "valid_days",
                    "org_id",
                }
            )
            for r in rights_service.list_rights(session, principal=principal(session, org))
        ]
    render.records(console, "rights 权益", rows, s.tz)


@rights_app.command("install")
def install_cmd(
    path: Annotated[
        Path,
        typer.Argument(
            help="JSON: {rights: [...], pools: [...], savings_cards: [...]}, each as the API creates it; "
            "src/bankgrowth/rights/demo_catalog.json is an example."
        ),
    ],
    org: Org = None,
) -> None:
    """Create a catalog's rights, budget pools and savings cards; those present are left as they are.

    Installing the same file again changes nothing. An entry present with other values is named
    with what differs and not changed. One transaction: if an entry cannot be created, none is."""
    from bankgrowth.rights import catalog as rights_catalog

    wanted = from_json_file(path, Catalog)
    s = settings()
    with transaction(s) as session:
        done = rights_catalog.install(session, principal=principal(session, org), catalog=wanted)
    console.print(
        f"{path}: {len(done.created)} created, {len(done.kept)} already present, {len(done.differing)} different",
        highlight=False,
    )
    for name in done.created:
        console.print(f"  [green]+[/] {name}", highlight=False)
    for line in done.differing:
        console.print(f"  [yellow]≠[/] {line} (left as it is)", highlight=False)


@rights_app.command("pools")
def pools_cmd(org: Org = None) -> None:
    """Budget pools with what they have spent and have left in the current period."""
    from bankgrowth.rights import service as rights_service

    s = settings()
    with transaction(s) as session:
        rows = []
        for pool in rights_service.list_pools(session, principal=principal(session, org)):
            usage = rights_service.usage(session, pool=pool, timezone=s.timezone)
            row = PoolRead.model_validate(pool).model_dump(
                include={"code", "org_id", "period", "limit_units", "limit_fen"}
            )
            row |= {
                "period_start": usage.period_start,
                "used_units": usage.used_units,
                "left_units": usage.left_units,
                "left_fen": usage.left_fen,
            }
            rows.append(row)
    render.records(console, "pools 预算池", rows, s.tz)


@rights_app.command("jobs")
def jobs_cmd() -> None:
    """The periodic jobs: expire holdings, release stale reservations, close unpaid orders.

    Expires holdings past their validity, releases reservations past their TTL and closes unpaid
    savings-card orders past their payment window."""
    from bankgrowth.operational.base import utcnow
    from bankgrowth.rights import ledger, savings_card

    s = settings()
    with transaction(s) as session:
        actor = principal(session, None).actor
        now = utcnow()
        orders = savings_card.expire_orders(session, actor=actor, now=now, timezone=s.timezone)
        released = ledger.release_expired(session, actor=actor, now=now)
        expired = ledger.expire_due(session, actor=actor, now=now)
    console.print(f"expired holdings: {expired}; released reservations: {released}; closed unpaid orders: {orders}")


@rights_app.command("reconcile")
def reconcile_cmd() -> None:
    """Prove every balance equals its ledger sum and no pool is below zero or over its limit."""
    from bankgrowth.rights import ledger

    s = settings()
    with transaction(s) as session:
        report = ledger.reconcile(session)
    console.print(
        f"checked {report.entries} ledger entries, {report.holdings} holdings, {report.pools} pools "
        f"({report.periods} pool periods), {report.reservations} reservations"
    )
    if not report.clean:
        for problem in report.problems[:50]:
            console.print(f"[red]{problem}[/red]", highlight=False)
        raise fail(f"reconciliation found {len(report.problems)} difference(s)")
    console.print("[green]clean: every balance and every pool equals its ledger[/green]")


@rights_app.command("settlement")
def settlement_cmd(
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (default: 7 days ago).")] = None,
    end: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (default: today).")] = None,
    org: Org = None,
) -> None:
    """Cost of rights by day, org, source and right."""
    from bankgrowth.operational.base import utcnow
    from bankgrowth.rights import settlement

    s = settings()
    try:
        last = date.fromisoformat(end) if end else utcnow().astimezone(s.tz).date()
        first = date.fromisoformat(start) if start else last - timedelta(days=6)
    except ValueError as exc:
        raise fail(f"--start/--end: expected YYYY-MM-DD ({exc})") from None
    with transaction(s) as session:
        rows = settlement.report(session, principal=principal(session, org), start=first, end=last, timezone=s.timezone)
    render.records(console, f"settlement 结算 {first} – {last}", [asdict(r) for r in rows], s.tz)
