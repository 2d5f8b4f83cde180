"""The main job on the embedded defaults: simulate a bank, load it, summarise it, and run the
nightly insight (tags, lifecycle stages, value scores).

Later capabilities (insight, audiences, campaigns, measurement) extend this flow; the CLI's
``demo`` command only renders what it returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from bankgrowth.evaluation.lifecycle import Agreement, lifecycle_agreement
from bankgrowth.insight import service as insight_service
from bankgrowth.insight.lifecycle import Thresholds
from bankgrowth.measurement.kpi import BankSummary, bank_summary
from bankgrowth.operational import db
from bankgrowth.platform import flows as platform_flows
from bankgrowth.platform import service as platform_service
from bankgrowth.warehouse import ingest
from bankgrowth.warehouse.simulator import SimulationConfig, simulate

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

    from bankgrowth.config import Settings


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


class DemoHooks:
    """Progress callbacks a front end may supply; each defaults to doing nothing."""

    def simulate_progress(self, done: int, total: int) -> None:
        return None

    def load_progress(self, path: Path) -> Callable[[int, int], None] | None:
        return None


def run_demo(
    con: BaseBackend, settings: Settings, *, config: SimulationConfig | None = None, hooks: DemoHooks | None = None
) -> DemoResult:
    config = config or SimulationConfig()
    hooks = hooks or DemoHooks()
    out = settings.data_dir / "simulation"
    manifest = out / "simulation.json"
    same = manifest.exists() and json.loads(manifest.read_text()).get("config") == config.as_dict()
    if not same:
        simulate(config, out, progress=hooks.simulate_progress)
    result = DemoResult(simulation_dir=out, simulated=not same)
    for path in ingest.expand_paths([out / "bank"]):
        result.loads.append(ingest.load_file(con, path, timezone=settings.timezone, progress=hooks.load_progress(path)))
    result.summary = bank_summary(con, timezone=settings.timezone)
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
    return result
