"""The main job on the embedded defaults: simulate a bank, load it, summarise it, run the nightly
insight (tags, lifecycle stages, value scores), install the core audiences, run an Activation
campaign (bound but never transacted → a ¥5 voucher) and a Revenue campaign (the savings-card
offer) with randomized control groups through the simulated channels, let the bank live 14 more
days, and measure each campaign's lift beside the simulator's true effect.

The CLI's ``demo`` command only renders what this returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from bankgrowth.audiences import service as audiences_service
from bankgrowth.campaigns import flows as campaign_flows
from bankgrowth.campaigns import service as campaigns_service
from bankgrowth.campaigns import templates
from bankgrowth.campaigns.connectors import simulated_connectors
from bankgrowth.campaigns.flows import ExecutionReport
from bankgrowth.campaigns.models import Campaign
from bankgrowth.campaigns.reach import ContactPolicy, DispatchReport, dispatch
from bankgrowth.campaigns.schemas import Decision
from bankgrowth.evaluation.campaigns import TrueEffect, true_effects
from bankgrowth.evaluation.lifecycle import Agreement, lifecycle_agreement
from bankgrowth.insight import service as insight_service
from bankgrowth.insight.lifecycle import Thresholds
from bankgrowth.measurement.campaign import Results, measure
from bankgrowth.measurement.kpi import BankSummary, bank_summary
from bankgrowth.operational import db
from bankgrowth.platform import flows as platform_flows
from bankgrowth.platform import service as platform_service
from bankgrowth.platform.access import Principal
from bankgrowth.rights import catalog as rights_catalog
from bankgrowth.warehouse import ingest
from bankgrowth.warehouse.advance import AdvanceResult
from bankgrowth.warehouse.simulator import SimulationConfig, simulate

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

    from bankgrowth.config import Settings


@dataclass
class CampaignRun:
    code: str
    name_zh: str
    name_en: str
    execution: ExecutionReport
    results: Results | None = None
    truth: list[TrueEffect] = field(default_factory=list)


@dataclass
class DemoResult:
    simulation_dir: Path
    simulated: bool  # False when an identical simulation was already on disk
    loads: list[ingest.LoadReport] = field(default_factory=list)
    summary: BankSummary | None = None
    insight: insight_service.RunReport | None = None
    grid: insight_service.Matrix | None = None
    agreement: Agreement | None = None  # computed stages vs the simulator's truth
    store_revision: str | None = None  # operational store schema after `db upgrade`
    orgs: platform_service.OrgSync | None = None
    segments: list[str] = field(default_factory=list)
    launched_at: datetime | None = None
    campaigns: list[CampaignRun] = field(default_factory=list)
    reach: DispatchReport | None = None
    advance: AdvanceResult | None = None
    redeemed: int = 0  # campaign vouchers the advanced transactions used
    summary_after: BankSummary | None = None
    trend: insight_service.Trend | None = None  # the stages from the first day run to after the campaigns


ADVANCE_DAYS = 14


class DemoHooks:
    """Progress callbacks a front end may supply; each defaults to doing nothing."""

    def simulate_progress(self, done: int, total: int) -> None:
        return None

    def load_progress(self, path: Path) -> Callable[[int, int], None] | None:
        return None

    def execute_progress(self, code: str) -> Callable[[int, int], None] | None:
        return None

    def insight_progress(self) -> Callable[[int, int], None] | None:
        """Told (days run, days to run) as the nightly runs of the campaign days go."""
        return None

    def step(self, text: str) -> None:
        return None


def run_demo(
    con: BaseBackend, settings: Settings, *, config: SimulationConfig | None = None, hooks: DemoHooks | None = None
) -> DemoResult:
    config = config or SimulationConfig()
    hooks = hooks or DemoHooks()
    out = settings.data_dir / "simulation"
    manifest = out / "simulation.json"
    known = json.loads(manifest.read_text()) if manifest.exists() else {}
    # an earlier demo's advance changed the bank: start again from the simulated history
    same = known.get("config") == config.as_dict() and "advanced_to" not in known
    if not same:
        for old in [*out.glob("bank/transactions_advance_*"), *out.glob("truth/effects_*")]:
            old.unlink()
        simulate(config, out, progress=hooks.simulate_progress)
    result = DemoResult(simulation_dir=out, simulated=not same)
    for path in ingest.expand_paths([out / "bank"]):
        result.loads.append(ingest.load_file(con, path, timezone=settings.timezone, progress=hooks.load_progress(path)))
    result.summary = bank_summary(con, timezone=settings.timezone, super_user_txns=settings.super_user_txns)
    with db.open_store(settings.resolved_operational_url) as engine:  # users, audit, later campaigns
        result.store_revision = db.upgrade(engine)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            system = platform_service.system_principal(session, source="demo")
            result.orgs = platform_flows.sync_orgs_from_warehouse(session, con, principal=system)
    result.insight = insight_service.run(con, settings)
    result.grid = insight_service.grid(con, result.insight.as_of)
    result.agreement = lifecycle_agreement(
        con,
        out / "truth" / "customer_truth.parquet",
        as_of=result.insight.as_of,
        timezone=settings.timezone,
        thresholds=Thresholds.from_settings(settings),
    )
    _campaigns(con, settings, result, hooks)
    return result


def _catalog(session: Session, principal: Principal) -> None:
    """The demo's rights, budget pools and savings card (``rights/demo_catalog.json``), created once."""
    rights_catalog.install(session, principal=principal, catalog=rights_catalog.demo_catalog())


def _free_code(session: Session, base: str) -> str:
    """``base``, or ``base.2``, ``base.3``… when an earlier demo used it (a configured store)."""
    code, n = base, 1
    while session.scalar(select(Campaign.id).where(Campaign.code == code)) is not None:
        n += 1
        code = f"{base}.{n}"
    return code


def _campaigns(con: BaseBackend, settings: Settings, result: DemoResult, hooks: DemoHooks) -> None:
    """Activation and Revenue campaigns, 14 days of reach and behaviour, and their measurement."""
    assert result.insight is not None
    tz = settings.tz
    launch = datetime.combine(result.insight.as_of + timedelta(days=1), time(10, 0), tz)
    result.launched_at = launch
    codes: list[str] = []
    with db.open_store(settings.resolved_operational_url) as engine:
        hooks.step("core audiences, rights and campaigns")
        with Session(engine, expire_on_commit=False) as session:
            with session.begin():
                maker = platform_service.system_principal(session, source="demo")
                result.segments = audiences_service.install_core_segments(session, con, principal=maker)
                _catalog(session, maker)
                specs = [
                    templates.build(
                        "activation",
                        code=_free_code(session, "demo.activation"),
                        right="demo.voucher5",
                        pool="demo.activation",
                    ),
                    templates.build("revenue", code=_free_code(session, "demo.revenue"), offer="demo.card"),
                ]
                for spec in specs:
                    campaigns_service.create(session, principal=maker, data=spec)
                    campaigns_service.submit(session, principal=maker, code=spec.code)
                    codes.append(spec.code)
            # maker-checker: a different actor with the approve permission
            checker = replace(maker, name="demo-checker", source="demo-checker")
            with session.begin():
                for code in codes:
                    campaigns_service.decide(
                        session, principal=checker, code=code, decision=Decision(approve=True, comment="demo")
                    )
            for code in codes:
                campaign_flows.launch(session, con, principal=maker, code=code, at=launch, timezone=settings.timezone)
        for code in codes:
            report = campaign_flows.execute(
                engine, con, principal=maker, code=code, at=launch, progress=hooks.execute_progress(code)
            )
            with Session(engine) as session:
                c = campaigns_service.get_or_raise(session, principal=maker, code=code)
                result.campaigns.append(CampaignRun(code, c.name_zh, c.name_en, report))
        # reach: the simulated channels, at 10:00 on each of the 14 days (deferred messages go out
        # when their cap window frees)
        hooks.step("reaching customers for 14 days")
        connectors = simulated_connectors()
        policy = ContactPolicy.from_settings(settings)
        reach = DispatchReport()
        for day in range(ADVANCE_DAYS):
            reach.add(dispatch(engine, connectors, policy, now=launch + timedelta(days=day)))
        result.reach = reach
        hooks.step("the bank lives 14 more days")
        advanced = campaign_flows.advance_simulation(
            engine,
            con,
            principal=maker,
            simulation_dir=result.simulation_dir,
            days=ADVANCE_DAYS,
            codes=codes,
            timezone=settings.timezone,
            progress=hooks.load_progress(result.simulation_dir / "bank" / "transactions_advance"),
        )
        result.advance, result.redeemed = advanced.advance, advanced.redeemed
        result.loads.append(advanced.load)
        # the nightly insight run of each of the 14 days, each from the day before: the trend
        # then shows the campaigns' effect day by day
        hooks.step("the nightly insight runs of the 14 days")
        plan = insight_service.backlog(con, settings)
        days_done = hooks.insight_progress()

        def on_day(i: int, n: int, _: date) -> None:
            if days_done is not None:
                days_done(i - 1, n)

        after = insight_service.catch_up(con, settings, plan, on_day=on_day)[-1]
        if days_done is not None:
            days_done(len(plan.days), len(plan.days))
        hooks.step("measuring")
        result.summary_after = bank_summary(con, timezone=settings.timezone, super_user_txns=settings.super_user_txns)
        span = (after.as_of - result.insight.as_of).days + 1
        result.trend = insight_service.lifecycle_trend(con, end=after.as_of, days=span)
        with Session(engine) as session:
            for run in result.campaigns:
                run.results = measure(session, con, principal=maker, code=run.code)
                campaign = campaigns_service.get_or_raise(session, principal=maker, code=run.code)
                run.truth = true_effects(con, result.simulation_dir / "truth", campaign_id=campaign.id, code=run.code)
