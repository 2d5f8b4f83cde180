"""Campaigns (营销活动): versioned definitions, the approval workflow with maker-checker, and the
reads the console and the CLI need. Launching and executing span the warehouse and own their
transactions: see :mod:`bankgrowth.campaigns.flows`.

A campaign is owned by an org and seen by that org's subtree. Its definition refers to an audience,
rights, a budget pool and a savings-card product by code; every reference is checked when the
definition is saved, with the owner's scope, so a branch cannot build a campaign on another
branch's pool. The approver must hold the approve permission and must not be the campaign's
creator, the author of the version being approved, or the one who submitted it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bankgrowth.audiences import service as audiences
from bankgrowth.campaigns.models import Campaign, CampaignVersion, Execution, Message
from bankgrowth.campaigns.schemas import CampaignCreate, Decision, Definition, Status
from bankgrowth.errors import Conflict, Forbidden, Invalid, NotFound
from bankgrowth.operational.base import utcnow
from bankgrowth.platform import audit
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.platform.service import in_scope_org, owned_by_scope, scope_of
from bankgrowth.rights import savings_card
from bankgrowth.rights import service as rights

EDITABLE = (Status.DRAFT, Status.REJECTED)


def _not_found(code: str) -> NotFound:
    return NotFound(f"no campaign {code}", f"没有营销活动 {code}", code="campaign_not_found")


def get_or_raise(session: Session, *, principal: Principal, code: str) -> Campaign:
    principal.require(Permission.READ)
    campaign = session.scalar(select(Campaign).where(Campaign.code == code))
    if campaign is None or not principal.scope.allows(campaign.org_id):
        raise _not_found(code)
    return campaign


def list_campaigns(session: Session, *, principal: Principal, status: str | None = None) -> list[Campaign]:
    principal.require(Permission.READ)
    stmt = owned_by_scope(select(Campaign).order_by(Campaign.id), Campaign.org_id, principal)
    if status is not None:
        stmt = stmt.where(Campaign.status == status)
    return list(session.scalars(stmt))


def version_of(session: Session, campaign: Campaign, version: int | None = None) -> CampaignVersion:
    wanted = campaign.version if version is None else version
    found = session.scalar(
        select(CampaignVersion).where(CampaignVersion.campaign_id == campaign.id, CampaignVersion.version == wanted)
    )
    if found is None:
        raise NotFound(
            f"campaign {campaign.code} has no version {wanted}",
            f"营销活动 {campaign.code} 没有版本 {wanted}",
            code="version_not_found",
        )
    return found


def definition_of(session: Session, campaign: Campaign, version: int | None = None) -> Definition:
    return Definition.model_validate(version_of(session, campaign, version).definition)


def owner_principal(session: Session, principal: Principal, campaign: Campaign | str) -> Principal:
    """``principal`` narrowed to the campaign's owning org (or an org id): what the campaign may see
    and spend is the owner's subtree, whoever runs it (HQ launching a branch's campaign reaches only
    that branch)."""
    org_id = campaign if isinstance(campaign, str) else campaign.org_id
    return replace(principal, scope=scope_of(session, org_id))


def check_references(session: Session, *, principal: Principal, definition: Definition) -> None:
    """Every code the definition names exists and is usable by ``principal`` (the owner's scope)."""
    problems: list[str] = []

    def check(what: str, lookup: Any) -> None:
        try:
            lookup()
        except NotFound as exc:
            problems.append(f"{what}: {exc.en}")

    check("audience", lambda: audiences.get_or_raise(session, principal=principal, code=definition.audience))
    if definition.pool is not None:
        check("pool", lambda: rights.get_pool_or_raise(session, principal=principal, code=definition.pool))
    for i, arm in enumerate(definition.arms):
        for j, r in enumerate(arm.rights):
            check(
                f"arms[{i}].rights[{j}]",
                lambda code=r.right: rights.get_right_or_raise(session, principal=principal, code=code),
            )
        if arm.offer is not None:
            check(
                f"arms[{i}].offer",
                lambda code=arm.offer: savings_card.get_product_or_raise(session, principal=principal, code=code),
            )
    if problems:
        raise Invalid(
            "the definition refers to what this org cannot use: " + "; ".join(problems),
            "活动定义引用了本机构不可用的对象：" + "；".join(problems),
            code="bad_reference",
            details={"problems": problems},
        )


def parse_definition(data: dict[str, Any]) -> Definition:
    """A definition from JSON, with every problem named by its path."""
    try:
        return Definition.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(definition)'}: {e['msg']}" for e in exc.errors()]
        raise Invalid(
            "invalid campaign definition: " + "; ".join(problems),
            "营销活动定义无效：" + "；".join(problems),
            code="invalid_definition",
            details={"problems": problems},
        ) from None


def _new_version(session: Session, campaign: Campaign, definition: Definition, actor: str) -> CampaignVersion:
    v = CampaignVersion(
        campaign_id=campaign.id,
        version=campaign.version,
        definition=definition.model_dump(mode="json"),
        created_by=actor,
    )
    session.add(v)
    session.flush()
    return v


def create(session: Session, *, principal: Principal, data: CampaignCreate) -> Campaign:
    principal.require(Permission.WRITE)
    org = in_scope_org(session, principal, data.org_id or principal.scope.org_id)
    if session.scalar(select(Campaign.id).where(Campaign.code == data.code)) is not None:
        raise Conflict(f"campaign {data.code} exists", f"营销活动 {data.code} 已存在", code="campaign_exists")
    check_references(session, principal=owner_principal(session, principal, org.id), definition=data.definition)
    campaign = Campaign(
        code=data.code,
        name_zh=data.name_zh,
        name_en=data.name_en,
        description=data.description,
        org_id=org.id,
        status=Status.DRAFT,
        version=1,
        salt=secrets.token_hex(16),
        created_by=principal.actor,
    )
    session.add(campaign)
    session.flush()
    _new_version(session, campaign, data.definition, principal.actor)
    audit.record(
        session,
        principal=principal,
        action="campaigns.create",
        object_type="campaign",
        object_id=campaign.code,
        org_id=org.id,
        after={"version": 1, "definition": data.definition.model_dump(mode="json")},
    )
    return campaign


def _require_status(campaign: Campaign, allowed: tuple[Status, ...], doing: str, doing_zh: str) -> None:
    if campaign.status not in allowed:
        raise Conflict(
            f"campaign {campaign.code} is {campaign.status}: cannot {doing} (needs {', '.join(allowed)})",
            f"营销活动 {campaign.code} 当前状态为 {campaign.status}，不能{doing_zh}",
            code="bad_status",
            details={"status": campaign.status, "allowed": list(allowed)},
        )


def update(session: Session, *, principal: Principal, code: str, definition: Definition) -> Campaign:
    """A new version of the definition; only a draft (or a rejected campaign, which returns to draft)."""
    principal.require(Permission.WRITE)
    campaign = get_or_raise(session, principal=principal, code=code)
    _require_status(campaign, EDITABLE, "be changed", "修改")
    check_references(session, principal=owner_principal(session, principal, campaign), definition=definition)
    before = campaign.version
    campaign.version += 1
    campaign.status = Status.DRAFT
    campaign.submitted_by = None
    campaign.approved_by = None
    campaign.updated_at = utcnow()
    _new_version(session, campaign, definition, principal.actor)
    audit.record(
        session,
        principal=principal,
        action="campaigns.update",
        object_type="campaign",
        object_id=code,
        org_id=campaign.org_id,
        before={"version": before},
        after={"version": campaign.version, "definition": definition.model_dump(mode="json")},
    )
    return campaign


def submit(session: Session, *, principal: Principal, code: str) -> Campaign:
    principal.require(Permission.WRITE)
    campaign = get_or_raise(session, principal=principal, code=code)
    _require_status(campaign, EDITABLE, "be submitted", "提交审批")
    campaign.status = Status.PENDING
    campaign.submitted_by = principal.actor
    campaign.updated_at = utcnow()
    audit.record(
        session,
        principal=principal,
        action="campaigns.submit",
        object_type="campaign",
        object_id=code,
        org_id=campaign.org_id,
        after={"version": campaign.version, "status": campaign.status},
    )
    return campaign


def decide(session: Session, *, principal: Principal, code: str, decision: Decision) -> Campaign:
    """The checker's approval or rejection of the pending version (maker-checker)."""
    principal.require(Permission.APPROVE)
    campaign = get_or_raise(session, principal=principal, code=code)
    _require_status(campaign, (Status.PENDING,), "be decided", "审批")
    makers = {campaign.created_by, campaign.submitted_by, version_of(session, campaign).created_by}
    if principal.actor in makers:
        raise Forbidden(
            f"{principal.actor} made or submitted campaign {code}: another user must approve it",
            f"{principal.actor} 创建或提交了营销活动 {code}，须由其他人审批",
            code="maker_checker",
        )
    before = campaign.status
    campaign.status = Status.APPROVED if decision.approve else Status.REJECTED
    campaign.approved_by = principal.actor if decision.approve else None
    campaign.decision_comment = decision.comment
    campaign.updated_at = utcnow()
    audit.record(
        session,
        principal=principal,
        action="campaigns.approve" if decision.approve else "campaigns.reject",
        object_type="campaign",
        object_id=code,
        org_id=campaign.org_id,
        before={"status": before},
        after={"status": campaign.status, "version": campaign.version, "comment": decision.comment},
    )
    return campaign


def finish(session: Session, *, principal: Principal, code: str) -> Campaign:
    principal.require(Permission.WRITE)
    campaign = get_or_raise(session, principal=principal, code=code)
    _require_status(campaign, (Status.RUNNING,), "be finished", "结束")
    campaign.status = Status.FINISHED
    campaign.finished_at = utcnow()
    campaign.updated_at = campaign.finished_at
    audit.record(
        session,
        principal=principal,
        action="campaigns.finish",
        object_type="campaign",
        object_id=code,
        org_id=campaign.org_id,
        after={"status": campaign.status},
    )
    return campaign


@dataclass(frozen=True)
class Progress:
    campaign: Campaign
    execution: Execution | None  # None until the campaign is launched
    messages: dict[str, int]  # the outbox by status


def progress(session: Session, *, principal: Principal, code: str) -> Progress:
    """How far a campaign's execution and its messages got."""
    campaign = get_or_raise(session, principal=principal, code=code)
    execution = session.scalar(select(Execution).where(Execution.campaign_id == campaign.id))
    counts = session.execute(
        select(Message.status, func.count()).where(Message.campaign_id == campaign.id).group_by(Message.status)
    )
    return Progress(campaign, execution, {status: int(n) for status, n in counts})


def require_executable(campaign: Campaign) -> None:
    """A campaign executes once launched (and may finish executing after it is finished)."""
    if campaign.status not in (Status.RUNNING, Status.FINISHED):
        raise Conflict(
            f"campaign {campaign.code} is {campaign.status}: launch it first",
            f"营销活动 {campaign.code} 当前状态为 {campaign.status}，请先启动",
            code="bad_status",
        )


def request_execution(session: Session, *, principal: Principal, code: str) -> Progress:
    """Record that ``principal`` asked for the campaign's execution (the API runs it in the
    background); refused unless the campaign is launched."""
    principal.require(Permission.WRITE)
    found = progress(session, principal=principal, code=code)
    require_executable(found.campaign)
    audit.record(
        session,
        principal=principal,
        action="campaigns.execute",
        object_type="campaign",
        object_id=code,
        org_id=found.campaign.org_id,
        after={"treated_before": found.execution.treated if found.execution else 0},
    )
    return found
