"""A campaign's results against its randomized control group.

Outcomes come from the warehouse: for every assigned customer (treated or control alike), the
quick-pay transactions (withdrawals excluded; one institution when the goal names it) in the goal
window from launch, and the same in the window before launch (the pre-period CUPED adjusts on).
Per arm against control: conversion, transactions and amount with Welch / delta-method intervals;
the goal metric with CUPED; the sample-ratio check; incremental transactions and amount (the
absolute lift times the arm's size); the cost of the rights granted and redeemed (from the ledger);
ROI (incremental amount per yuan of cost); and the goal's lift by lifecycle stage and by preferred
institution at launch. This is intent-to-treat: a treated customer whose voucher ran out of budget
or whose message was suppressed stays in the arm, so the lift is what the campaign did as run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bankgrowth.campaigns import service as campaigns
from bankgrowth.campaigns import store
from bankgrowth.campaigns.assignment import CONTROL
from bankgrowth.campaigns.models import Campaign, Message
from bankgrowth.campaigns.schemas import Definition, Goal
from bankgrowth.errors import Conflict
from bankgrowth.measurement.lift import Lift, SampleRatio, cuped, sample_ratio, welch
from bankgrowth.platform.access import Principal
from bankgrowth.rights.models import LedgerEntry

if TYPE_CHECKING:
    import pyarrow as pa
    from ibis.backends import BaseBackend

METRICS = ("conversion", "transactions", "amount")
MIN_GROUP = 30  # breakdown cells with fewer customers on either side are listed without a lift


@dataclass(frozen=True)
class Cell:
    """The goal's lift within one stage or institution."""

    value: str
    n_treatment: int
    n_control: int
    lift: Lift | None


@dataclass(frozen=True)
class ArmResult:
    arm: str
    n: int
    lifts: dict[str, Lift]  # conversion, transactions, amount (fen)
    goal_cuped: Lift
    theta: float
    srm: SampleRatio
    incremental_conversions: float
    incremental_transactions: float
    incremental_amount_yuan: Decimal
    granted_cost_yuan: Decimal
    redeemed_cost_yuan: Decimal
    roi: float | None  # incremental amount per yuan of rights cost (granted); None without cost
    by_stage: list[Cell]
    by_institution: list[Cell]


@dataclass(frozen=True)
class Results:
    campaign: str
    goal: Goal
    window_start: datetime
    window_end: datetime
    data_until: datetime | None  # the last transaction in the warehouse
    complete: bool  # the data covers the whole goal window
    control: int
    arms: list[ArmResult]
    messages: dict[str, int] = field(default_factory=dict)  # the outbox by status, plus opened


def _yuan(fen: float) -> Decimal:
    return (Decimal(str(round(fen))) / 100).quantize(Decimal("0.01"))


def outcomes(con: BaseBackend, *, campaign_id: int, launched_at: datetime, goal: Goal) -> pa.Table:
    """One row per assigned customer: arm, stage, institution, and in the window / pre-period the
    number and amount of counted transactions."""
    a = store.assignments(con, campaign_id)
    txns = con.table("transactions")
    counted = txns.scene != "withdrawal"
    if goal.institution:
        counted = counted & (txns.institution == goal.institution)
    span = timedelta(days=goal.window_days)
    start, end, pre = launched_at, launched_at + span, launched_at - span
    t = txns.filter(counted, txns.txn_at >= pre, txns.txn_at < end, txns.customer_id.isin(a.customer_id))
    in_window = t.txn_at >= start
    per = t.group_by("customer_id").aggregate(
        n=t.count(where=in_window),
        amount=t.amount_fen.sum(where=in_window),
        pre_n=t.count(where=~in_window),
        pre_amount=t.amount_fen.sum(where=~in_window),
    )
    j = a.left_join(per, "customer_id")
    return (
        j.select(
            a.customer_id,
            a.arm,
            stage=a.stage.fill_null("unknown"),
            institution=a.institution.fill_null("none"),
            n=j.n.fill_null(0),
            amount=j.amount.fill_null(0),
            pre_n=j.pre_n.fill_null(0),
            pre_amount=j.pre_amount.fill_null(0),
        )
        .order_by("customer_id")
        .to_pyarrow()
    )


def _metric(columns: dict[str, np.ndarray], metric: str, goal: Goal, pre: bool = False) -> np.ndarray:
    n = columns["pre_n" if pre else "n"]
    if metric == "conversion":
        return (n >= goal.min_transactions).astype("float64")
    if metric == "transactions":
        return n.astype("float64")
    return columns["pre_amount" if pre else "amount"].astype("float64")


def _cells(keys: np.ndarray, y: np.ndarray, treated: np.ndarray, control: np.ndarray) -> list[Cell]:
    out = []
    for value in sorted(set(keys[treated | control].tolist())):
        mt, mc = treated & (keys == value), control & (keys == value)
        nt, nc = int(mt.sum()), int(mc.sum())
        lift = welch(y[mt], y[mc]) if nt >= MIN_GROUP and nc >= MIN_GROUP else None
        out.append(Cell(str(value), nt, nc, lift))
    return out


def analyse(
    table: pa.Table,
    definition: Definition,
    costs: dict[str, tuple[int, int]],
) -> tuple[int, list[ArmResult]]:
    """The per-arm results from the outcome table; ``costs`` is arm → (granted fen, redeemed fen)."""
    cols: dict[str, Any] = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    arm = cols["arm"].astype(str)
    control = arm == CONTROL
    n_control = int(control.sum())
    goal = definition.goal
    total_weight = sum(a.weight for a in definition.arms)
    results = []
    for spec in definition.arms:
        treated = arm == spec.name
        n = int(treated.sum())
        if n < 2 or n_control < 2:
            raise Conflict(
                f"arm {spec.name} has {n} customers and the control group {n_control}: too few to measure",
                f"组 {spec.name} 有 {n} 人、对照组 {n_control} 人，样本过少，无法评估",
                code="too_few",
            )
        lifts = {m: welch(_metric(cols, m, goal)[treated], _metric(cols, m, goal)[control]) for m in METRICS}
        y, x = _metric(cols, goal.metric, goal), _metric(cols, goal.metric, goal, pre=True)
        adjusted, theta = cuped(y[treated], y[control], x[treated], x[control])
        # the planned share of this arm among (this arm + control)
        arm_share = (1 - definition.control_share) * spec.weight / total_weight
        srm = sample_ratio(n, n_control, arm_share / (arm_share + definition.control_share))
        granted, redeemed = costs.get(spec.name, (0, 0))
        inc_amount = lifts["amount"].diff * n
        results.append(
            ArmResult(
                arm=spec.name,
                n=n,
                lifts=lifts,
                goal_cuped=adjusted,
                theta=theta,
                srm=srm,
                incremental_conversions=lifts["conversion"].diff * n,
                incremental_transactions=lifts["transactions"].diff * n,
                incremental_amount_yuan=_yuan(inc_amount),
                granted_cost_yuan=_yuan(granted),
                redeemed_cost_yuan=_yuan(redeemed),
                roi=(inc_amount / granted) if granted else None,
                by_stage=_cells(cols["stage"].astype(str), y, treated, control),
                by_institution=_cells(cols["institution"].astype(str), y, treated, control),
            )
        )
    return n_control, results


def _costs(session: Session, campaign: Campaign, arm_of: dict[str, str]) -> dict[str, tuple[int, int]]:
    rows = session.execute(
        select(LedgerEntry.customer_id, LedgerEntry.kind, func.sum(LedgerEntry.cost_fen))
        .where(
            LedgerEntry.source_type == "campaign",
            LedgerEntry.source_id == campaign.code,
            LedgerEntry.kind.in_(("grant", "redeem", "revoke")),
        )
        .group_by(LedgerEntry.customer_id, LedgerEntry.kind)
    )
    out: dict[str, list[int]] = {}
    for customer, kind, fen in rows:
        arm = arm_of.get(str(customer))
        if arm is None:
            continue
        slot = out.setdefault(arm, [0, 0])
        if kind == "redeem":
            slot[1] += int(fen or 0)
        else:  # a revoke's entry carries the cost given back, as a negative amount
            slot[0] += int(fen or 0)
    return {k: (v[0], v[1]) for k, v in out.items()}


def _message_funnel(session: Session, campaign_id: int) -> dict[str, int]:
    counts = {
        status: int(n)
        for status, n in session.execute(
            select(Message.status, func.count()).where(Message.campaign_id == campaign_id).group_by(Message.status)
        )
    }
    counts["opened"] = int(
        session.scalar(select(func.count()).where(Message.campaign_id == campaign_id, Message.opened_at.is_not(None)))
        or 0
    )
    return counts


def measure(session: Session, con: BaseBackend, *, principal: Principal, code: str) -> Results:
    campaign = campaigns.get_or_raise(session, principal=principal, code=code)
    if campaign.launched_at is None:
        raise Conflict(f"campaign {code} has not been launched", f"营销活动 {code} 尚未启动", code="not_launched")
    definition = campaigns.definition_of(session, campaign)
    table = outcomes(con, campaign_id=campaign.id, launched_at=campaign.launched_at, goal=definition.goal)
    arm_of = dict(zip(map(str, table.column("customer_id").to_pylist()), table.column("arm").to_pylist(), strict=True))
    n_control, arms = analyse(table, definition, _costs(session, campaign, arm_of))
    last = con.table("transactions").txn_at.max().to_pyarrow().as_py()
    end = campaign.launched_at + timedelta(days=definition.goal.window_days)
    return Results(
        campaign=code,
        goal=definition.goal,
        window_start=campaign.launched_at,
        window_end=end,
        data_until=last,
        complete=last is not None and last >= end - timedelta(days=1),
        control=n_control,
        arms=arms,
        messages=_message_funnel(session, campaign.id),
    )
