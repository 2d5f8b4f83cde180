"""Campaign work that spans the two stores and owns its transactions: the launch (snapshot the
audience, assign every member, record the plan) and the execution (grant, then enqueue messages).

Execution cuts the treated customers, in ascending id order, into batches (one row each in
``campaign_execution_batches``). An executor claims a batch not done by locking its row with
``SKIP LOCKED``, treats it and marks it done in one transaction, so several executors (threads of
one run, or two runs) share the work without waiting for or repeating each other's batches. Within
a batch every grant carries the key ``cmp<id>:<customer>:<right>`` and every message the key
``cmp<id>:<customer>:msg``. So a batch is committed whole or not at all, a rerun after a crash
treats exactly the batches not marked done, and even a batch run twice could not grant or enqueue
twice: the ledger and the outbox refuse a key they hold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bankgrowth.audiences import service as audiences
from bankgrowth.campaigns import reach, service, store
from bankgrowth.campaigns.assignment import CONTROL, assign
from bankgrowth.campaigns.models import Campaign, DoNotContact, Execution, ExecutionBatch, Message
from bankgrowth.campaigns.schemas import BATCH, Arm, Definition, Status
from bankgrowth.errors import Conflict, NotFound
from bankgrowth.operational import bulk
from bankgrowth.operational.base import utcnow
from bankgrowth.platform import audit
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.platform.models import Org
from bankgrowth.platform.service import system_principal
from bankgrowth.rights import ledger
from bankgrowth.rights import service as rights_service
from bankgrowth.rights.counters import Cap
from bankgrowth.rights.flows import require_customer
from bankgrowth.rights.ledger import GrantRequest, Source
from bankgrowth.rights.models import Holding, Pool, Right
from bankgrowth.warehouse import ingest
from bankgrowth.warehouse.advance import EXPOSURE_SCHEMA, AdvanceResult, advance

if TYPE_CHECKING:
    from pathlib import Path

    from ibis.backends import BaseBackend
    from sqlalchemy.engine import Engine

ProgressFn = Callable[[int, int], None]
DEADLOCK_RETRIES = 5


def launch(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    code: str,
    at: datetime | None = None,
    timezone: str = "Asia/Shanghai",
) -> Campaign:
    """Snapshot the audience, assign its members to the control group and the arms, and mark the
    campaign running; commits ``session``. If the commit does not happen, what was written to the
    warehouse (the snapshot's members, the assignment) is deleted again."""
    at = at or utcnow()
    principal.require(Permission.WRITE)
    campaign = service.get_or_raise(session, principal=principal, code=code)
    if campaign.status != Status.APPROVED:
        raise Conflict(
            f"campaign {code} is {campaign.status}: only an approved campaign can be launched",
            f"营销活动 {code} 当前状态为 {campaign.status}，只有已审批的活动可以启动",
            code="bad_status",
        )
    definition = service.definition_of(session, campaign)
    trigger = definition.trigger
    if trigger.type in ("event", "transition"):
        raise Conflict(
            f"campaign {code} is triggered by {trigger.type}s, which the event runtime starts, not a launch",
            f"营销活动 {code} 由{'事件' if trigger.type == 'event' else '生命周期迁移'}触发，不能手动启动",
            code="not_launchable",
        )
    if trigger.type == "scheduled" and trigger.at is not None and at < trigger.at:
        raise Conflict(
            f"campaign {code} is scheduled for {trigger.at.isoformat()}",
            f"营销活动 {code} 计划于 {trigger.at.isoformat()} 启动",
            code="not_due",
        )
    owner = service.owner_principal(session, principal, campaign)
    made_snapshot: list[int] = []
    planned = False
    try:
        snap = audiences.snapshot(session, con, principal=owner, code=definition.audience, timezone=timezone)
        made_snapshot.append(snap.id)
        planned = True
        counts = store.plan(
            con,
            campaign_id=campaign.id,
            salt=campaign.salt,
            snapshot_id=snap.id,
            as_of=snap.as_of,
            control_share=definition.control_share,
            arms=[(a.name, a.weight) for a in definition.arms],
            at=at,
        )
        campaign.snapshot_id = snap.id
        campaign.status = Status.RUNNING
        campaign.launched_at = at
        campaign.updated_at = utcnow()
        session.add(
            Execution(
                campaign_id=campaign.id,
                planned=sum(counts.values()),
                control=counts.get(CONTROL, 0),
                started_at=utcnow(),
            )
        )
        audit.record(
            session,
            principal=principal,
            action="campaigns.launch",
            object_type="campaign",
            object_id=code,
            org_id=campaign.org_id,
            after={"snapshot": snap.id, "as_of": snap.as_of, "groups": counts, "launched_at": at},
        )
        session.commit()
    except BaseException:
        session.rollback()
        if planned:
            store.discard(con, campaign.id)
        for snapshot_id in made_snapshot:
            audiences.discard(con, snapshot_id)
        raise
    return campaign


@dataclass(frozen=True)
class ExecutionReport:
    campaign: str
    planned: int
    control: int
    treated: int
    granted: int
    refused: int
    messages: int
    suppressed: int
    done: bool
    seconds: float
    resumed_after: int | None  # batches finished before this run; None: this run began the execution


@dataclass(frozen=True)
class _ArmPlan:
    arm: Arm
    rights: list[tuple[int, int]]  # (right id, quantity)
    variables: dict[str, Any]


def _arm_plans(
    session: Session, principal: Principal, campaign: Campaign, definition: Definition
) -> dict[str, _ArmPlan]:
    plans = {}
    for arm in definition.arms:
        rights = [rights_service.get_right_or_raise(session, principal=principal, code=r.right) for r in arm.rights]
        first = rights[0] if rights else None
        variables: dict[str, Any] = {"campaign": campaign.name_zh}
        if first is not None:
            variables["right"] = first.name_zh
            if first.face_value_fen is not None:
                variables["face_value"] = str(Decimal(first.face_value_fen) / 100)
            if first.valid_days is not None:
                variables["valid_days"] = first.valid_days
        plans[arm.name] = _ArmPlan(
            arm, [(r.id, ar.quantity) for r, ar in zip(rights, arm.rights, strict=True)], variables
        )
    return plans


def execute(
    engine: Engine,
    con: BaseBackend,
    *,
    principal: Principal,
    code: str,
    at: datetime | None = None,
    batch: int = BATCH,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    stop_after: int | None = None,
) -> ExecutionReport:
    """Treat the campaign's assigned customers: grant each arm's rights, enqueue its message.

    The treated customers are cut into batches of ``batch`` on the first run; ``workers`` threads
    (default: 2 on PostgreSQL, 1 on SQLite, whose writers queue anyway) each claim a batch not done,
    treat it and mark it done in one transaction, until none is left. Resumable: a rerun treats the
    batches not marked done. ``stop_after`` (batches, for this run) lets a caller run a slice — the
    crash test uses it."""
    started = time.perf_counter()
    at = at or utcnow()
    with Session(engine, expire_on_commit=False) as session:
        principal.require(Permission.WRITE)
        campaign = service.get_or_raise(session, principal=principal, code=code)
        service.require_executable(campaign)
        execution = session.scalar(select(Execution).where(Execution.campaign_id == campaign.id))
        assert execution is not None  # written by the launch in the same transaction
        definition = service.definition_of(session, campaign)
        owner = service.owner_principal(session, principal, campaign)
        plans = _arm_plans(session, owner, campaign, definition)
        pool_id = (
            rights_service.get_pool_or_raise(session, principal=owner, code=definition.pool).id
            if definition.pool
            else None
        )
        branches = {org_id: name for org_id, name in session.execute(select(Org.id, Org.name_zh))}
        campaign_at = campaign.launched_at or at
    a = store.assignments(con, campaign.id)
    needed = ("customer_id", "arm", "branch_id", "consent", "best_channel", "surname")
    rows = a.filter(a.arm != CONTROL).select(*needed).order_by("customer_id").to_pyarrow()
    ids = rows.column("customer_id").to_numpy()  # ascending: a batch is a slice, turned into dicts when treated
    resumed_after = _cut_batches(engine, execution.id, ids.tolist(), batch)
    total = execution.planned - execution.control
    caps = [Cap(scope=c.scope, limit=c.limit, period=c.period) for c in definition.caps]
    if workers is None:
        workers = 2 if engine.dialect.name == "postgresql" else 1
    lock = threading.Lock()
    state = {"claimed": 0, "done": 0}
    with Session(engine) as s:
        state["done"] = int(s.scalar(select(Execution.treated).where(Execution.id == execution.id)) or 0)
    if progress:
        progress(state["done"], total)

    def claim() -> bool:
        with lock:
            if stop_after is not None and state["claimed"] >= stop_after:
                return False
            state["claimed"] += 1
            return True

    def work() -> None:
        while claim():
            treated = 0
            for attempt in range(DEADLOCK_RETRIES):
                try:
                    with Session(engine, expire_on_commit=False) as s, s.begin():
                        found = s.scalar(
                            select(ExecutionBatch)
                            .where(ExecutionBatch.execution_id == execution.id, ExecutionBatch.done_at.is_(None))
                            .order_by(ExecutionBatch.batch_no)
                            .limit(1)
                            .with_for_update(skip_locked=True)
                        )
                        if found is None:
                            return
                        lo = int(np.searchsorted(ids, found.first_customer, side="left"))
                        hi = int(np.searchsorted(ids, found.last_customer, side="right"))
                        chunk = rows.slice(lo, hi - lo).to_pylist()
                        _treat(s, campaign, execution.id, plans, pool_id, caps, chunk, branches, campaign_at)
                        found.done_at = utcnow()
                        treated = len(chunk)
                    break
                except OperationalError as exc:  # a deadlock with another batch's grants: rolled back
                    if "deadlock" not in str(exc).lower() or attempt == DEADLOCK_RETRIES - 1:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            with lock:
                state["done"] += treated
                if progress:
                    progress(state["done"], total)

    if workers == 1:
        work()
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for f in [pool.submit(work) for _ in range(workers)]:
                f.result()
    with Session(engine, expire_on_commit=False) as s, s.begin():
        final = s.get(Execution, execution.id)
        assert final is not None
        left = s.scalar(
            select(func.count())
            .select_from(ExecutionBatch)
            .where(ExecutionBatch.execution_id == execution.id, ExecutionBatch.done_at.is_(None))
        )
        if not left and final.status != "done":
            final.status = "done"
            final.finished_at = utcnow()
    return ExecutionReport(
        campaign=code,
        planned=final.planned,
        control=final.control,
        treated=final.treated,
        granted=final.granted,
        refused=final.refused,
        messages=final.messages,
        suppressed=final.suppressed,
        done=final.status == "done",
        seconds=time.perf_counter() - started,
        resumed_after=resumed_after,
    )


def _cut_batches(engine: Engine, execution_id: int, ids: list[int], size: int) -> int | None:
    """Cut the treated customers (``ids``, ascending) into batches, once per execution; returns
    None when this call cut them, else how many batches earlier runs finished."""
    with Session(engine) as s, s.begin():
        s.execute(select(Execution.id).where(Execution.id == execution_id).with_for_update())  # one cutter
        existing = s.scalar(
            select(func.count()).select_from(ExecutionBatch).where(ExecutionBatch.execution_id == execution_id)
        )
        if existing:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(ExecutionBatch)
                    .where(ExecutionBatch.execution_id == execution_id, ExecutionBatch.done_at.is_not(None))
                )
                or 0
            )
        batches = [
            {
                "execution_id": execution_id,
                "batch_no": n,
                "first_customer": ids[start],
                "last_customer": ids[min(start + size, len(ids)) - 1],
                "customers": min(size, len(ids) - start),
            }
            for n, start in enumerate(range(0, len(ids), size))
        ]
        bulk.insert_rows(s, ExecutionBatch, batches)
    return None


def _treat(
    session: Session,
    campaign: Campaign,
    execution_id: int,
    plans: dict[str, _ArmPlan],
    pool_id: int | None,
    caps: Sequence[Cap],
    chunk: list[dict[str, Any]],
    branches: dict[str, str],
    at: datetime,
) -> None:
    """One batch, in the caller's transaction: grants, messages, and the execution's counters."""
    if not chunk:
        return
    now = utcnow()
    granted = refused = 0
    fields = ("key", "customer_id", "arm", "channel", "variables", "status", "reason")
    messages: dict[str, list[Any]] = {name: [] for name in fields}
    source = Source("campaign", campaign.code)
    pool = session.get(Pool, pool_id) if pool_id is not None else None
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for row in chunk:
        by_arm.setdefault(row["arm"], []).append(row)
    for arm_name, members in by_arm.items():
        plan = plans[arm_name]
        reached = {r["customer_id"] for r in members}
        for right_id, quantity in plan.rights:
            right = session.get(Right, right_id)
            assert right is not None and pool is not None
            requests = [
                GrantRequest(f"cmp{campaign.id}:{r['customer_id']}:{right.code}", str(r["customer_id"]), quantity)
                for r in members
            ]
            results = ledger.grant_many(
                session,
                right=right,
                pool=pool,
                requests=requests,
                source=source,
                actor=f"campaign:{campaign.code}",
                reason=f"campaign {campaign.code} arm {arm_name}",
                caps=caps,
                at=at,
            )
            ok = {int(r.customer_id) for r in results if r.status in ("granted", "duplicate")}
            granted += sum(1 for r in results if r.status == "granted")
            refused += sum(1 for r in results if r.status not in ("granted", "duplicate"))
            reached &= ok  # a customer is told of a right only if it reached them
        if plan.arm.message is None:
            continue
        told = [r for r in members if r["customer_id"] in reached]
        best = plan.arm.channel == "best"
        consented = [bool(r["consent"]) for r in told]
        messages["key"] += [f"cmp{campaign.id}:{r['customer_id']}:msg" for r in told]
        messages["customer_id"] += [str(r["customer_id"]) for r in told]
        messages["arm"] += [arm_name] * len(told)
        messages["channel"] += [(r["best_channel"] if best else str(plan.arm.channel)) or "sms" for r in told]
        messages["variables"] += [
            {**plan.variables, "surname": r["surname"] or "", "branch": branches.get(r["branch_id"] or "", "")}
            for r in told
        ]
        messages["status"] += ["queued" if c else "suppressed" for c in consented]
        messages["reason"] += ["" if c else "no_consent" for c in consented]
    columns: dict[str, list[Any] | bulk.Same] = {
        **messages,
        "campaign_id": bulk.Same(campaign.id),
        "lang": bulk.Same("zh"),
        "not_before": bulk.Same(at),
        "attempts": bulk.Same(0),
        "created_at": bulk.Same(now),
    }
    returned = bulk.insert_columns(session, Message, columns, conflict=["key"], returning=["status"])
    statuses = [s for (s,) in returned]
    inserted = len(statuses)
    suppressed = sum(1 for s in statuses if s == "suppressed")
    session.execute(
        update(Execution)
        .where(Execution.id == execution_id)
        .values(
            treated=Execution.treated + len(chunk),
            granted=Execution.granted + granted,
            refused=Execution.refused + refused,
            messages=Execution.messages + inserted,
            suppressed=Execution.suppressed + suppressed,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


# --- what the customers received, for the simulator's advance ------------------------------------

RIGHT_TREATMENT = {
    "voucher": "voucher",
    "coupon_code": "voucher",
    "points": "points",
    "coins": "points",
    "gift": "points",
}
STAGE_TREATMENT = {"referral": "referral_reward", "acquisition": "binding_reward"}


def treatment_of(definition: Definition, arm: Arm, right_kinds: dict[str, str]) -> str:
    """What kind of treatment an arm is, in the simulator's terms."""
    if arm.offer is not None:
        return "savings_card"
    if definition.stage in STAGE_TREATMENT:
        return STAGE_TREATMENT[definition.stage]
    if arm.rights:
        return RIGHT_TREATMENT.get(right_kinds.get(arm.rights[0].right, ""), "voucher")
    return "message"


def exposures(session: Session, *, principal: Principal, codes: Sequence[str]) -> pa.Table:
    """One row per (campaign, treated customer) who was granted a right or sent a delivered message:
    when it first reached them, whether a right did, and the delivered message's channel."""
    rows: list[dict[str, Any]] = []
    kinds = {code: kind for code, kind in session.execute(select(Right.code, Right.kind))}
    for code in codes:
        campaign = service.get_or_raise(session, principal=principal, code=code)
        definition = service.definition_of(session, campaign)
        arm_treatment = {a.name: treatment_of(definition, a, kinds) for a in definition.arms}
        first: dict[str, dict[str, Any]] = {}
        for customer, granted_at in session.execute(
            select(Holding.customer_id, Holding.granted_at).where(
                Holding.source_type == "campaign", Holding.source_id == code
            )
        ):
            r = first.setdefault(customer, {"at": granted_at, "right": True, "channel": None, "arm": None})
            r["at"], r["right"] = min(r["at"], granted_at), True
        for customer, arm, channel, delivered_at in session.execute(
            select(Message.customer_id, Message.arm, Message.channel, Message.delivered_at).where(
                Message.campaign_id == campaign.id, Message.delivered_at.is_not(None)
            )
        ):
            r = first.setdefault(customer, {"at": delivered_at, "right": False, "channel": None, "arm": None})
            r["at"], r["channel"], r["arm"] = min(r["at"], delivered_at), channel, arm
        weights = [(a.name, a.weight) for a in definition.arms]
        for customer, r in first.items():
            arm = r["arm"] or assign(campaign.salt, int(customer), definition.control_share, weights)
            rows.append(
                {
                    "source": code,
                    "customer_id": int(customer),
                    "treatment": arm_treatment.get(arm, "message"),
                    "at": r["at"],
                    "right_granted": r["right"],
                    "message_channel": r["channel"],
                }
            )
    return pa.Table.from_pylist(rows, schema=EXPOSURE_SCHEMA)


@dataclass(frozen=True)
class Advanced:
    advance: AdvanceResult
    load: ingest.LoadReport
    campaigns: list[str]  # whose exposures were applied
    redeemed: int  # campaign vouchers the new transactions used


def advance_simulation(
    engine: Engine,
    con: BaseBackend,
    *,
    principal: Principal,
    simulation_dir: Path,
    days: int,
    codes: Sequence[str] | None = None,
    timezone: str = "Asia/Shanghai",
    progress: ProgressFn | None = None,
) -> Advanced:
    """Let a simulated bank live ``days`` more days, its customers responding to what the campaigns
    (``codes``; default: every running or finished one) gave them; load the new transactions and
    redeem the vouchers they used."""
    with Session(engine) as session:
        if codes is None:
            codes = [
                c.code
                for c in service.list_campaigns(session, principal=principal)
                if c.status in (Status.RUNNING, Status.FINISHED)
            ]
        exposed = exposures(session, principal=principal, codes=codes)
    result = advance(simulation_dir, days, exposed, timezone=timezone)
    report = ingest.load_file(con, result.files[0], timezone=timezone, progress=progress)
    redeemed = redeem_simulated(engine, con, codes=codes, start=result.start, timezone=timezone)
    return Advanced(result, report, list(codes), redeemed)


VOUCHERS = ("voucher", "coupon_code")


def redeem_simulated(
    engine: Engine, con: BaseBackend, *, codes: Sequence[str], start: date, timezone: str = "Asia/Shanghai"
) -> int:
    """The simulated payment network's side of an advance: a campaign voucher still active is
    redeemed by its customer's first transaction from ``start`` on that it applies to (not a
    withdrawal; the right's institution, if it names one; at least its minimum spend; before it
    expires), at that transaction's time — as a real payment channel reports it through
    ``/channel/v1/redemptions``. Returns how many were redeemed; a rerun redeems nothing twice."""
    with Session(engine) as s:
        held = list(
            s.execute(
                select(
                    Holding.id,
                    Holding.customer_id,
                    Holding.granted_at,
                    Holding.expires_at,
                    Right.institution,
                    Right.min_spend_fen,
                )
                .join(Right, Right.id == Holding.right_id)
                .where(
                    Holding.source_type == "campaign",
                    Holding.source_id.in_(list(codes)),
                    Holding.status == "active",
                    Right.kind.in_(VOUCHERS),
                )
            )
        )
    if not held:
        return 0
    ids = sorted({int(h.customer_id) for h in held})
    begin = datetime.combine(start, datetime.min.time(), ZoneInfo(timezone))
    t = con.table("transactions")
    found = (
        t.filter(t.customer_id.isin(ids), t.txn_at >= begin, t.scene != "withdrawal")
        .select("customer_id", "txn_at", "institution", "amount_fen")
        .order_by("customer_id", "txn_at")
        .to_pyarrow()
        .to_pylist()
    )
    by_customer: dict[int, list[dict[str, Any]]] = {}
    for r in found:
        by_customer.setdefault(r["customer_id"], []).append(r)
    redeemed = 0
    with Session(engine) as s, s.begin():
        for h in held:
            for txn in by_customer.get(int(h.customer_id), ()):
                at = txn["txn_at"]
                if at < h.granted_at or (h.expires_at is not None and at >= h.expires_at):
                    continue
                if (h.institution and txn["institution"] != h.institution) or txn["amount_fen"] < (
                    h.min_spend_fen or 0
                ):
                    continue
                holding = s.get_one(Holding, h.id)
                ledger.redeem(s, holding=holding, key=f"sim-redeem:{h.id}", actor="simulator:payments", at=at)
                redeemed += 1
                break
    return redeemed


# --- do-not-contact, for a customer in the caller's scope ----------------------------------------


def do_not_contact(session: Session, con: BaseBackend, *, principal: Principal, customer_id: str) -> list[DoNotContact]:
    """A customer's do-not-contact entries; the customer must be in the caller's scope."""
    principal.require(Permission.READ)
    require_customer(con, customer_id, principal.scope)
    return list(
        session.scalars(
            select(DoNotContact).where(DoNotContact.customer_id == customer_id).order_by(DoNotContact.channel)
        )
    )


def add_do_not_contact(
    session: Session, con: BaseBackend, *, principal: Principal, customer_id: str, channel: str, reason: str
) -> DoNotContact:
    principal.require(Permission.WRITE)
    require_customer(con, customer_id, principal.scope)
    return reach.add_do_not_contact(
        session, principal=principal, customer_id=customer_id, channel=channel, reason=reason
    )


def remove_do_not_contact(
    session: Session, con: BaseBackend, *, principal: Principal, customer_id: str, channel: str
) -> None:
    principal.require(Permission.WRITE)
    require_customer(con, customer_id, principal.scope)
    if not reach.remove_do_not_contact(session, principal=principal, customer_id=customer_id, channel=channel):
        raise NotFound(
            f"customer {customer_id} has no do-not-contact entry for channel {channel}",
            f"客户 {customer_id} 在渠道 {channel} 上没有免打扰登记",
            code="no_do_not_contact",
        )


# --- receipts pushed by channel providers --------------------------------------------------------


def receipts_callback(
    session: Session, *, body: bytes, signature: str, secret: bytes, source: str, request_id: str | None
) -> reach.ReceiptsOutcome:
    """A provider's signed batch of receipts; public, so the signature is its only credential. One
    audit entry per batch, under the name ``connector``, says how many receipts it carried."""
    outcome = reach.receive_receipts(session, body=body, signature=signature, secret=secret)
    caller = replace(system_principal(session, source=source), name="connector", request_id=request_id)
    audit.record(
        session,
        principal=caller,
        action="reach.receipts",
        object_type="receipts",
        object_id=str(outcome.received),
        org_id=caller.scope.org_id,
        after={"received": outcome.received, "matched": outcome.matched, "invalid": len(outcome.invalid)},
    )
    return outcome
