"""Commands of campaigns (营销活动) and reach (触达): define (from JSON or a 3A3R template), submit,
approve or reject, launch, execute, dispatch the outbox, read the results, finish; do-not-contact.
Each parses, calls one service or flow, and renders.

The CLI acts as ``system:<login>``: maker-checker holds between logins, so the approval of a
campaign created from one login needs another (or the console)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from bankgrowth.campaigns.schemas import ALL, BATCH, CampaignCreate, Decision, Status
from bankgrowth.cli import render
from bankgrowth.cli.common import (
    console,
    fail,
    from_json_file,
    principal,
    progress_bar,
    read_json,
    settings,
    store,
    transaction,
    warehouse,
)

campaigns_app = typer.Typer(
    help="Campaigns (营销活动): define, approve, launch, execute, reach, measure.", no_args_is_help=True
)
dnc_app = typer.Typer(help="Do-not-contact (免打扰) entries of customers.", no_args_is_help=True)
campaigns_app.add_typer(dnc_app, name="dnc")
Org = Annotated[str | None, typer.Option("--org", help="Act within this org's subtree (default: HQ).")]
CodeArg = Annotated[str, typer.Argument(help="The campaign's code.")]


def _at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--at: expected a date and time such as 2026-11-23T10:00+08:00, found {value!r}") from None
    if found.tzinfo is None:
        found = found.replace(tzinfo=settings().tz)
    return found


def _show(code: str, version: int | None, org: str | None) -> None:
    from bankgrowth.campaigns import service as campaigns

    s = settings()
    with transaction(s) as session:
        who = principal(session, org)
        c = campaigns.get_or_raise(session, principal=who, code=code)
        v = campaigns.version_of(session, c, version)
        p = campaigns.progress(session, principal=who, code=code)
    console.print(f"[bold]{c.code}[/] {c.name_zh} · {c.name_en}  ({c.status}, version {v.version} of {c.version})")
    console.print(
        f"owner {c.org_id}; created by {c.created_by}; submitted by {c.submitted_by or '—'}; "
        f"approved by {c.approved_by or '—'}",
        highlight=False,
    )
    console.print_json(json.dumps(v.definition, ensure_ascii=False))
    e = p.execution
    if e is not None:
        console.print(
            f"execution {e.status}: {e.planned:,} assigned, {e.control:,} control, {e.treated:,} treated; "
            f"{e.granted:,} granted, {e.refused:,} refused; {e.messages:,} messages ({e.suppressed:,} suppressed)",
            highlight=False,
        )
    if p.messages:
        console.print("outbox: " + ", ".join(f"{k} {n:,}" for k, n in sorted(p.messages.items())), highlight=False)


@campaigns_app.command("list")
def list_cmd(
    status: Annotated[Status | None, typer.Option(help="Only campaigns in this status.")] = None, org: Org = None
) -> None:
    """Campaigns of my subtree."""
    from bankgrowth.campaigns import service as campaigns

    s = settings()
    with transaction(s) as session:
        rows = [
            {
                "code": c.code,
                "name": c.name_zh,
                "status": c.status,
                "version": c.version,
                "org_id": c.org_id,
                "created_by": c.created_by,
                "launched_at": c.launched_at,
            }
            for c in campaigns.list_campaigns(session, principal=principal(session, org), status=status)
        ]
    render.records(console, "campaigns 营销活动", rows, s.tz)


@campaigns_app.command("templates")
def templates_cmd() -> None:
    """The 3A3R templates, for `campaigns new`."""
    from bankgrowth.campaigns import templates

    rows = [
        {
            "template": name,
            "stage": t.stage,
            "name": f"{t.zh} · {t.en}",
            "audience": t.audience,
            "needs": t.needs,
            "channel": str(t.channel),
            "goal": f"{t.goal.metric}, {t.goal.window_days} days",
        }
        for name, t in templates.TEMPLATES.items()
    ]
    render.records(console, "templates 活动模板", rows, settings().tz)


@campaigns_app.command("create")
def create_cmd(
    path: Annotated[Path, typer.Argument(help="JSON: code, name_zh, name_en, definition (see the API docs).")],
    org: Org = None,
) -> None:
    """Define a campaign from a JSON file; it starts as a draft."""
    from bankgrowth.campaigns import service as campaigns

    data = from_json_file(path, CampaignCreate)
    s = settings()
    with transaction(s) as session:
        campaigns.create(session, principal=principal(session, org), data=data)
    _show(data.code, None, org)


@campaigns_app.command("new")
def new_cmd(
    template: Annotated[str, typer.Argument(help="acquisition, activation, retention, revenue or referral.")],
    code: Annotated[str, typer.Option(help="The new campaign's code.")],
    right: Annotated[str | None, typer.Option(help="The right to grant.")] = None,
    offer: Annotated[str | None, typer.Option(help="The savings-card product (revenue).")] = None,
    pool: Annotated[str | None, typer.Option(help="The budget pool.")] = None,
    audience: Annotated[str | None, typer.Option(help="Default: the template's core segment.")] = None,
    control_share: Annotated[float, typer.Option(help="Held out as control.")] = 0.1,
    org: Org = None,
) -> None:
    """Define a campaign from a 3A3R template; it starts as a draft."""
    from bankgrowth.campaigns import service as campaigns
    from bankgrowth.campaigns import templates

    spec = templates.build(
        template,
        code=code,
        right=right,
        offer=offer,
        pool=pool,
        audience=audience,
        control_share=control_share,
        org_id=org,
    )
    s = settings()
    with transaction(s) as session:
        campaigns.create(session, principal=principal(session, org), data=spec)
    _show(code, None, org)


@campaigns_app.command("edit")
def edit_cmd(
    code: CodeArg,
    path: Annotated[Path, typer.Argument(help="JSON: the whole new definition.")],
    org: Org = None,
) -> None:
    """Write a new version of a draft or rejected campaign's definition."""
    from bankgrowth.campaigns import service as campaigns

    definition = campaigns.parse_definition(read_json(path))
    s = settings()
    with transaction(s) as session:
        campaigns.update(session, principal=principal(session, org), code=code, definition=definition)
    _show(code, None, org)


@campaigns_app.command("show")
def show_cmd(
    code: CodeArg,
    version: Annotated[int | None, typer.Option(help="Version (default: current).")] = None,
    org: Org = None,
) -> None:
    """One campaign: status, definition, execution and outbox."""
    _show(code, version, org)


@campaigns_app.command("submit")
def submit_cmd(code: CodeArg, org: Org = None) -> None:
    """Submit a draft for approval."""
    from bankgrowth.campaigns import service as campaigns

    s = settings()
    with transaction(s) as session:
        c = campaigns.submit(session, principal=principal(session, org), code=code)
        console.print(f"{c.code}: {c.status}")


def _decide(code: str, approve: bool, comment: str, org: str | None) -> None:
    from bankgrowth.campaigns import service as campaigns

    s = settings()
    with transaction(s) as session:
        c = campaigns.decide(
            session, principal=principal(session, org), code=code, decision=Decision(approve=approve, comment=comment)
        )
        console.print(f"{c.code}: {c.status}")


@campaigns_app.command("approve")
def approve_cmd(code: CodeArg, comment: Annotated[str, typer.Option(help="Why.")] = "", org: Org = None) -> None:
    """Approve a pending campaign (not from the login that made or submitted it)."""
    _decide(code, True, comment, org)


@campaigns_app.command("reject")
def reject_cmd(code: CodeArg, comment: Annotated[str, typer.Option(help="Why.")], org: Org = None) -> None:
    """Send a pending campaign back to editing."""
    _decide(code, False, comment, org)


@campaigns_app.command("launch")
def launch_cmd(
    code: CodeArg,
    at: Annotated[str | None, typer.Option(help="Launch time (default: now); a scheduled one not before.")] = None,
    org: Org = None,
) -> None:
    """Snapshot the audience and assign each member to control or an arm."""
    from sqlalchemy.orm import Session

    from bankgrowth.campaigns import flows
    from bankgrowth.campaigns import service as campaigns

    s = settings()
    when = _at(at)
    with store(s) as engine, warehouse(s) as con, Session(engine, expire_on_commit=False) as session:
        c = flows.launch(session, con, principal=principal(session, org), code=code, at=when, timezone=s.timezone)
        p = campaigns.progress(session, principal=principal(session, org), code=code)
    assert p.execution is not None and c.launched_at is not None
    console.print(
        f"{c.code} launched at {render.instant(c.launched_at, s.tz)}: {p.execution.planned:,} in the audience, "
        f"{p.execution.control:,} held out as control",
        highlight=False,
    )


@campaigns_app.command("execute")
def execute_cmd(
    code: CodeArg,
    batch: Annotated[int, typer.Option(min=1, max=50_000, help="Customers per transaction.")] = BATCH,
    workers: Annotated[
        int | None, typer.Option(min=1, max=16, help="Parallel executors (default: 2 on PostgreSQL, 1 on SQLite).")
    ] = None,
    org: Org = None,
) -> None:
    """Grant the rights and queue the messages; resumes after an interruption."""
    from sqlalchemy.orm import Session

    from bankgrowth.campaigns import flows

    s = settings()
    with store(s) as engine, warehouse(s) as con:
        with Session(engine) as session:
            who = principal(session, org)
        with progress_bar() as bar:
            task = bar.add_task(f"executing {code}", total=None)
            report = flows.execute(
                engine,
                con,
                principal=who,
                code=code,
                batch=batch,
                workers=workers,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    resumed = f" (resumed: {report.resumed_after} batches were done)" if report.resumed_after is not None else ""
    console.print(
        f"{code}: {report.treated:,} of {report.planned - report.control:,} treated{resumed} "
        f"in {report.seconds:.1f} s; "
        f"{report.granted:,} rights granted, {report.refused:,} refused (caps, budget); {report.messages:,} messages "
        f"queued, {report.suppressed:,} suppressed (no consent){'' if report.done else '; not finished'}",
        highlight=False,
    )


@campaigns_app.command("dispatch")
def dispatch_cmd(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's messages.")] = None,
    at: Annotated[str | None, typer.Option(help="Dispatch as of this time (default: now).")] = None,
    every: Annotated[
        int | None, typer.Option(min=10, help="Keep dispatching every N seconds until interrupted (a scheduler).")
    ] = None,
) -> None:
    """Send the due messages through the channel connectors under the contact rules.

    The rules are the frequency caps, quiet hours and do-not-contact; deferred messages go out on a
    later run."""
    from sqlalchemy.orm import Session

    from bankgrowth.campaigns import reach
    from bankgrowth.campaigns import service as campaigns
    from bankgrowth.campaigns.connectors import configured
    from bankgrowth.operational.base import utcnow

    s = settings()
    connectors = configured(
        s.channels, secret=s.resolved_connector_secret, data_dir=s.data_dir, allow_simulated=s.mode == "development"
    )
    policy = reach.ContactPolicy.from_settings(s)
    fixed = _at(at)
    with store(s) as engine:
        campaign_id = None
        if campaign is not None:
            with Session(engine) as session:
                campaign_id = campaigns.get_or_raise(session, principal=principal(session, None), code=campaign).id
        while True:
            report = reach.dispatch(engine, connectors, policy, now=fixed or utcnow(), campaign_id=campaign_id)
            render.reach(console, report)
            if every is None:
                break
            time.sleep(every)


@campaigns_app.command("results")
def results_cmd(
    code: CodeArg,
    truth: Annotated[
        bool, typer.Option(help="Beside the simulator's true effect, when DATA_DIR/simulation/truth has it.")
    ] = True,
    org: Org = None,
) -> None:
    """Lift of each arm against the control group, with 95% intervals."""
    from sqlalchemy.orm import Session

    from bankgrowth.campaigns import service as campaigns
    from bankgrowth.evaluation.campaigns import true_effects
    from bankgrowth.measurement.campaign import measure

    s = settings()
    with store(s) as engine, warehouse(s) as con, Session(engine) as session:
        who = principal(session, org)
        found = measure(session, con, principal=who, code=code)
        true: dict[str, Any] = {}
        truth_dir = s.data_dir / "simulation" / "truth"
        if truth and truth_dir.is_dir():
            c = campaigns.get_or_raise(session, principal=who, code=code)
            true = {t.arm: t for t in true_effects(con, truth_dir, campaign_id=c.id, code=code)}
    render.campaign_results(console, found, true, s.tz)


@campaigns_app.command("finish")
def finish_cmd(code: CodeArg, org: Org = None) -> None:
    """Mark a running campaign finished (its results stay readable)."""
    from bankgrowth.campaigns import service as campaigns

    s = settings()
    with transaction(s) as session:
        c = campaigns.finish(session, principal=principal(session, org), code=code)
        console.print(f"{c.code}: {c.status}")


Customer = Annotated[str, typer.Argument(help="The customer's id.")]
ChannelOpt = Annotated[str, typer.Option(help="A channel, or * for every channel.")]


@dnc_app.command("list")
def dnc_list_cmd(customer: Customer, org: Org = None) -> None:
    """A customer's do-not-contact entries."""
    from sqlalchemy.orm import Session

    from bankgrowth.campaigns import flows

    s = settings()
    with store(s) as engine, warehouse(s) as con, Session(engine) as session:
        rows = [
            {"channel": d.channel, "reason": d.reason, "created_by": d.created_by, "created_at": d.created_at}
            for d in flows.do_not_contact(session, con, principal=principal(session, org), customer_id=customer)
        ]
    render.records(console, f"do-not-contact 免打扰 · {customer}", rows, s.tz)


@dnc_app.command("add")
def dnc_add_cmd(
    customer: Customer,
    reason: Annotated[str, typer.Option(help="Why (a complaint, the customer's request, …).")],
    channel: ChannelOpt = ALL,
    org: Org = None,
) -> None:
    """Never contact the customer on a channel (or any); queued messages are suppressed with the reason."""
    from sqlalchemy.orm import Session

    from bankgrowth.campaigns import flows

    s = settings()
    with store(s) as engine, warehouse(s) as con, Session(engine) as session, session.begin():
        flows.add_do_not_contact(
            session, con, principal=principal(session, org), customer_id=customer, channel=channel, reason=reason
        )
    console.print(f"{customer}: do not contact on {channel}")


@dnc_app.command("remove")
def dnc_remove_cmd(customer: Customer, channel: ChannelOpt = ALL, org: Org = None) -> None:
    """Allow contact again on a channel."""
    from sqlalchemy.orm import Session

    from bankgrowth.campaigns import flows

    s = settings()
    with store(s) as engine, warehouse(s) as con, Session(engine) as session, session.begin():
        who = principal(session, org)
        flows.remove_do_not_contact(session, con, principal=who, customer_id=customer, channel=channel)
    console.print(f"{customer}: contact allowed again on {channel}")
