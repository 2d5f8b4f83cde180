"""Campaign routes: definitions and versions, the 3A3R templates, the approval workflow, launch,
execution (in the background; its progress is read back), results against the control group, and
do-not-contact for the console; the channel providers' signed receipts. Each route calls one
service or flow."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Path, Query, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from bankgrowth.api.deps import SessionDep, SettingsDep, WarehouseDep, allow, source_of
from bankgrowth.campaigns import flows, reach, templates
from bankgrowth.campaigns import service as campaigns
from bankgrowth.campaigns.models import Campaign
from bankgrowth.campaigns.schemas import (
    ALL,
    CODE,
    CampaignCreate,
    CampaignDetail,
    CampaignRead,
    Channel,
    Decision,
    Definition,
    DoNotContactCreate,
    DoNotContactRead,
    ExecutionRead,
    FromTemplate,
    ReceiptsRead,
    ResultsRead,
    Status,
    TemplateRead,
)
from bankgrowth.config import Settings
from bankgrowth.measurement import campaign as measurement
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.warehouse.engine import open_warehouse

router = APIRouter(prefix="/api/v1", tags=["campaigns"])
connectors_router = APIRouter(prefix="/connectors/v1", tags=["connectors"])

Reader = Annotated[Principal, allow("console", Permission.READ, scope="subtree")]
Writer = Annotated[Principal, allow("console", Permission.WRITE, scope="subtree")]
Approver = Annotated[Principal, allow("console", Permission.APPROVE, scope="subtree")]
Definer = Annotated[Principal, allow("console", Permission.READ, scope="global")]
Code = Annotated[str, Path(pattern=CODE, description="Campaign code, e.g. act-2026-11.")]
CustomerId = Annotated[int, Path(ge=1, le=2**62, description="The bank's customer number.")]

RECEIPTS_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["receipts"],
                "properties": {
                    "receipts": {
                        "type": "array",
                        "maxItems": reach.MAX_RECEIPTS,
                        "items": {
                            "type": "object",
                            "required": ["ref", "status", "at"],
                            "properties": {
                                "ref": {"type": "string", "description": "The reference the provider answered."},
                                "status": {"type": "string", "enum": ["delivered", "failed", "opened"]},
                                "at": {"type": "string", "format": "date-time"},
                            },
                        },
                    }
                },
            }
        }
    },
}


def _detail(session: Session, campaign: Campaign, version: int | None = None) -> CampaignDetail:
    v = campaigns.version_of(session, campaign, version)
    return CampaignDetail(**CampaignRead.model_validate(campaign).model_dump(), definition=v.definition)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: an undefined number (no variance, an empty group) becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@router.get("/campaigns", response_model=list[CampaignRead], summary="Campaigns I can see (营销活动)")
def list_campaigns(
    principal: Reader, session: SessionDep, status: Annotated[Status | None, Query()] = None
) -> list[CampaignRead]:
    found = campaigns.list_campaigns(session, principal=principal, status=status)
    return [CampaignRead.model_validate(c) for c in found]


@router.post("/campaigns", response_model=CampaignDetail, status_code=201, summary="Define a campaign (新建活动)")
def create_campaign(principal: Writer, body: CampaignCreate, session: SessionDep) -> CampaignDetail:
    with session.begin():
        return _detail(session, campaigns.create(session, principal=principal, data=body))


@router.get("/campaign-templates", response_model=list[TemplateRead], summary="The 3A3R templates (活动模板)")
def list_templates(_: Definer) -> list[TemplateRead]:
    return [
        TemplateRead(
            name=name,
            stage=t.stage,
            name_zh=t.zh,
            name_en=t.en,
            audience=t.audience,
            needs=t.needs,
            channel=str(t.channel),
            goal=t.goal,
            message=t.message,
        )
        for name, t in templates.TEMPLATES.items()
    ]


@router.post(
    "/campaign-templates/campaigns",
    response_model=CampaignDetail,
    status_code=201,
    summary="A campaign from a 3A3R template (按模板新建); edit it like any other before submitting",
)
def create_from_template(principal: Writer, body: FromTemplate, session: SessionDep) -> CampaignDetail:
    spec = templates.build(body.template, **body.model_dump(exclude={"template"}))
    with session.begin():
        return _detail(session, campaigns.create(session, principal=principal, data=spec))


@router.get("/campaigns/{campaign_code}", response_model=CampaignDetail, summary="One campaign and its definition")
def get_campaign(
    principal: Reader,
    campaign_code: Code,
    session: SessionDep,
    version: Annotated[int | None, Query(ge=1, le=2**31)] = None,
) -> CampaignDetail:
    return _detail(session, campaigns.get_or_raise(session, principal=principal, code=campaign_code), version)


@router.post(
    "/campaigns/{campaign_code}/versions",
    response_model=CampaignDetail,
    summary="A new version of the definition (draft or rejected only; earlier versions kept)",
)
def update_campaign(principal: Writer, campaign_code: Code, body: Definition, session: SessionDep) -> CampaignDetail:
    with session.begin():
        return _detail(session, campaigns.update(session, principal=principal, code=campaign_code, definition=body))


@router.post(
    "/campaigns/{campaign_code}/submit", response_model=CampaignDetail, summary="Submit for approval (提交审批)"
)
def submit(principal: Writer, campaign_code: Code, session: SessionDep) -> CampaignDetail:
    with session.begin():
        return _detail(session, campaigns.submit(session, principal=principal, code=campaign_code))


@router.post(
    "/campaigns/{campaign_code}/decision",
    response_model=CampaignDetail,
    summary="Approve or reject (审批); the checker must differ from the maker",
    description="Needs the approve permission. Refused (maker_checker) when the caller created the campaign, "
    "wrote the version under review, or submitted it.",
)
def decide(principal: Approver, campaign_code: Code, body: Decision, session: SessionDep) -> CampaignDetail:
    with session.begin():
        return _detail(session, campaigns.decide(session, principal=principal, code=campaign_code, decision=body))


@router.post(
    "/campaigns/{campaign_code}/launch",
    response_model=CampaignDetail,
    summary="Launch (启动): snapshot the audience and assign every member to control or an arm",
)
def launch(
    principal: Writer, campaign_code: Code, session: SessionDep, con: WarehouseDep, settings: SettingsDep
) -> CampaignDetail:
    campaign = flows.launch(session, con, principal=principal, code=campaign_code, timezone=settings.timezone)
    return _detail(session, campaign)


COUNTERS = ("planned", "control", "treated", "granted", "refused", "messages", "suppressed")


def _execution(p: campaigns.Progress) -> ExecutionRead:
    e = p.execution
    if e is None:  # not launched: nothing assigned or treated yet
        return ExecutionRead(
            campaign=p.campaign.code,
            status="not_launched",
            **dict.fromkeys(COUNTERS, 0),
            started_at=p.campaign.created_at,
            updated_at=p.campaign.updated_at,
            finished_at=None,
            messages_by_status=p.messages,
        )
    return ExecutionRead(
        campaign=p.campaign.code,
        status=e.status,
        **{c: getattr(e, c) for c in COUNTERS},
        started_at=e.started_at,
        updated_at=e.updated_at,
        finished_at=e.finished_at,
        messages_by_status=p.messages,
    )


def _execute_in_background(engine: Engine, settings: Settings, principal: Principal, code: str) -> None:
    with open_warehouse(settings) as con:
        flows.execute(engine, con, principal=principal, code=code)


@router.post(
    "/campaigns/{campaign_code}/execute",
    response_model=ExecutionRead,
    status_code=202,
    summary="Execute (执行): grant the rights and queue the messages, in the background",
    description="Answers at once; read the progress from GET .../execution. Safe to repeat: execution resumes "
    "after the last committed batch, and every grant and message has a key that cannot be used twice.",
)
def execute(
    principal: Writer, campaign_code: Code, request: Request, background: BackgroundTasks, session: SessionDep
) -> ExecutionRead:
    with session.begin():
        p = campaigns.request_execution(session, principal=principal, code=campaign_code)
        answer = _execution(p)
    if answer.status != "done":
        background.add_task(
            _execute_in_background, request.app.state.engine, request.app.state.settings, principal, campaign_code
        )
    return answer


@router.get(
    "/campaigns/{campaign_code}/execution", response_model=ExecutionRead, summary="Execution progress and the outbox"
)
def execution(principal: Reader, campaign_code: Code, session: SessionDep) -> ExecutionRead:
    return _execution(campaigns.progress(session, principal=principal, code=campaign_code))


@router.get(
    "/campaigns/{campaign_code}/results",
    response_model=ResultsRead,
    summary="Lift against the control group (效果评估), with 95% intervals",
    description="Per arm: conversion, transactions and amount (fen) with Welch intervals, the goal with CUPED, the "
    "sample-ratio check, incremental outcomes, rights cost and ROI, and the goal by stage and institution. "
    "`complete` is false while the warehouse does not yet cover the goal window.",
)
def results(principal: Reader, campaign_code: Code, session: SessionDep, con: WarehouseDep) -> ResultsRead:
    found = measurement.measure(session, con, principal=principal, code=campaign_code)
    return ResultsRead.model_validate(_finite(asdict(found)))


@router.post("/campaigns/{campaign_code}/finish", response_model=CampaignDetail, summary="Finish (结束活动)")
def finish(principal: Writer, campaign_code: Code, session: SessionDep) -> CampaignDetail:
    with session.begin():
        return _detail(session, campaigns.finish(session, principal=principal, code=campaign_code))


# --- do-not-contact -----------------------------------------------------------------------------


@router.get(
    "/customers/{customer_id}/do-not-contact",
    response_model=list[DoNotContactRead],
    summary="A customer's do-not-contact entries (免打扰)",
)
def list_do_not_contact(
    principal: Reader, customer_id: CustomerId, session: SessionDep, con: WarehouseDep
) -> list[DoNotContactRead]:
    found = flows.do_not_contact(session, con, principal=principal, customer_id=str(customer_id))
    return [DoNotContactRead.model_validate(d) for d in found]


@router.post(
    "/customers/{customer_id}/do-not-contact",
    response_model=DoNotContactRead,
    status_code=201,
    summary="Register do-not-contact (登记免打扰): queued messages are suppressed with the reason",
)
def add_do_not_contact(
    principal: Writer, customer_id: CustomerId, body: DoNotContactCreate, session: SessionDep, con: WarehouseDep
) -> DoNotContactRead:
    with session.begin():
        entry = flows.add_do_not_contact(
            session, con, principal=principal, customer_id=str(customer_id), channel=body.channel, reason=body.reason
        )
        return DoNotContactRead.model_validate(entry)


@router.delete(
    "/customers/{customer_id}/do-not-contact",
    summary="Allow contact again on a channel (* for the entry covering every channel); 404 without an entry",
)
def remove_do_not_contact(
    principal: Writer,
    customer_id: CustomerId,
    session: SessionDep,
    con: WarehouseDep,
    channel: Annotated[Channel | None, Query(description="Default: the entry for every channel (*).")] = None,
) -> dict[str, Any]:
    which = str(channel) if channel is not None else ALL
    with session.begin():
        flows.remove_do_not_contact(session, con, principal=principal, customer_id=str(customer_id), channel=which)
    return {"customer_id": str(customer_id), "channel": which, "removed": True}


# --- the channel providers' receipts ------------------------------------------------------------


@connectors_router.post(
    "/receipts",
    response_model=ReceiptsRead,
    summary="Delivery and open receipts from a channel provider (回执), signed",
    description="X-Signature is hex(HMAC-SHA256(connector secret, raw body)); a body whose signature does not "
    "verify is refused before it is read. Valid receipts are applied even when others in the batch are invalid; "
    "those are listed with the field, what was expected and what was found. A repeated receipt changes nothing.",
    openapi_extra={"requestBody": RECEIPTS_BODY},
)
async def receipts(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    x_signature: Annotated[str, Header(max_length=128)] = "",
    _: None = allow("public", scope="global"),
) -> ReceiptsRead:
    body = await request.body()
    source, request_id = source_of(request), getattr(request.state, "request_id", None)

    def apply() -> ReceiptsRead:
        with session.begin():
            outcome = flows.receipts_callback(
                session,
                body=body,
                signature=x_signature,
                secret=settings.resolved_connector_secret,
                source=source,
                request_id=request_id,
            )
        return ReceiptsRead(**vars(outcome))

    return await run_in_threadpool(apply)
