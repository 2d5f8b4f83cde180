"""Reach (触达): the dispatcher that sends the outbox through the channel connectors under the
contact rules, and the receipts that come back.

The rules, checked for each due message while the customer's contact guard row is locked:

1. **Do-not-contact** (and, at enqueue time, missing marketing consent — PIPL): the message is
   ``suppressed`` with its reason, never sent.
2. **Quiet hours** (default 21:00–08:00 in the bank's timezone): ``deferred`` to the end of the
   quiet period.
3. **Frequency caps**: rolling windows (day = 24 h, week = 7 days, month = 30 days) per channel and
   across all channels (``*``). A message over a cap is ``deferred`` to the moment the oldest
   counted message leaves the window — delivered later, never dropped.

Messages that pass are marked ``sending`` and committed (so they count against the caps at once,
for every other dispatcher), then handed to the connector. A crash after that commit leaves
``sending`` rows, which the next dispatch re-queues after ``STALE``: delivery is at least once, and
providers dedupe on the message key. Transient failures are retried with backoff up to
``max_attempts``; then the message is ``failed`` with the provider's error.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bankgrowth.campaigns.connectors import Connector, Outgoing, Receipt, verify
from bankgrowth.campaigns.models import Campaign, CampaignVersion, ContactGuard, DoNotContact, Message
from bankgrowth.campaigns.schemas import ALL, Channel
from bankgrowth.errors import Forbidden, Invalid
from bankgrowth.platform import audit
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.rights import counters

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from bankgrowth.config import Settings

WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}
DUE = ("queued", "deferred")
STALE = timedelta(minutes=10)
CHANNELS = frozenset(str(c) for c in Channel)


@dataclass(frozen=True)
class ContactPolicy:
    caps: Mapping[str, Mapping[Any, int]]  # channel or '*' → window (day, week, month) → limit
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    timezone: str = "Asia/Shanghai"
    max_attempts: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> ContactPolicy:
        start, end = parse_quiet_hours(settings.quiet_hours)
        return cls(settings.contact_caps, start, end, settings.timezone)

    def quiet_until(self, at: datetime) -> datetime | None:
        """The end of the quiet period ``at`` falls in, or None when it is not quiet."""
        if self.quiet_start == self.quiet_end:
            return None
        tz = ZoneInfo(self.timezone)
        local = at.astimezone(tz)
        t = local.time()
        if self.quiet_start < self.quiet_end:  # e.g. 12:00-14:00
            quiet = self.quiet_start <= t < self.quiet_end
            end_day = local.date()
        else:  # across midnight, e.g. 21:00-08:00
            quiet = t >= self.quiet_start or t < self.quiet_end
            end_day = local.date() + timedelta(days=1) if t >= self.quiet_start else local.date()
        if not quiet:
            return None
        return datetime.combine(end_day, self.quiet_end, tz)

    def room_at(self, channel: str, sent: Sequence[tuple[str, datetime]], at: datetime) -> datetime | None:
        """None when one more message on ``channel`` at ``at`` stays within every cap; otherwise
        the earliest moment it would. ``sent`` is the customer's (channel, sent_at) in the last month."""
        latest: datetime | None = None
        for scope in (channel, ALL):
            for window, limit in self.caps.get(scope, {}).items():
                span = WINDOWS[window]
                times = sorted(t for c, t in sent if (scope == ALL or c == channel) and t > at - span)
                if len(times) >= limit:
                    free = times[len(times) - limit] + span
                    latest = free if latest is None or free > latest else latest
        return latest


def parse_quiet_hours(text: str) -> tuple[time, time]:
    try:
        start, end = (time.fromisoformat(p.strip()) for p in text.split("-"))
    except ValueError:
        raise ValueError(f"quiet hours must look like 21:00-08:00; found {text!r}") from None
    return start, end


@dataclass
class DispatchReport:
    sent: int = 0
    deferred: int = 0
    suppressed: int = 0
    retried: int = 0
    failed: int = 0
    receipts: int = 0
    requeued: int = 0  # stale 'sending' rows from an interrupted dispatch
    by_channel: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    def because(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def add(self, other: DispatchReport) -> None:
        for name in ("sent", "deferred", "suppressed", "retried", "failed", "receipts", "requeued"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.by_channel, other.by_channel), (self.reasons, other.reasons)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v


def _templates(session: Session) -> dict[tuple[int, str], dict[str, str]]:
    """(campaign id, arm) → {lang: text} of each campaign's current version."""
    out: dict[tuple[int, str], dict[str, str]] = {}
    rows = session.execute(
        select(CampaignVersion.campaign_id, CampaignVersion.definition)
        .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
        .where(CampaignVersion.version == Campaign.version)
    )
    for campaign_id, definition in rows:
        for arm in definition.get("arms", []):
            if arm.get("message"):
                out[(campaign_id, arm["name"])] = arm["message"]
    return out


class _Defaults(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, variables: Mapping[str, Any]) -> str:
    return template.format_map(_Defaults(variables))


def _requeue_stale(session: Session, now: datetime) -> int:
    result = session.execute(
        update(Message)
        .where(Message.status == "sending", Message.sent_at < now - STALE)
        .values(status="queued", sent_at=None, reason="requeued_after_interruption")
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def dispatch(
    engine: Engine,
    connectors: Mapping[str, Connector],
    policy: ContactPolicy,
    *,
    now: datetime,
    batch: int = 500,
    campaign_id: int | None = None,
) -> DispatchReport:
    """Send every message due at ``now``; returns what happened. Safe to run in several processes
    at once: the contact guard serializes the decisions for one customer."""
    report = DispatchReport()
    with Session(engine) as s, s.begin():
        report.requeued = _requeue_stale(s, now)
        templates = _templates(s)
    while True:  # every decided message leaves the due set (sent, deferred past now, suppressed, failed)
        part = _dispatch_batch(engine, connectors, policy, now, batch, campaign_id, templates)
        if part is None:
            break
        report.add(part)
    report.receipts += collect_receipts(engine, connectors)
    return report


def _dispatch_batch(
    engine: Engine,
    connectors: Mapping[str, Connector],
    policy: ContactPolicy,
    now: datetime,
    batch: int,
    campaign_id: int | None,
    templates: dict[tuple[int, str], dict[str, str]],
) -> DispatchReport | None:
    report = DispatchReport()
    outgoing: dict[str, list[tuple[int, Outgoing]]] = defaultdict(list)
    with Session(engine) as s, s.begin():
        stmt = select(Message.id, Message.customer_id).where(Message.status.in_(DUE), Message.not_before <= now)
        if campaign_id is not None:
            stmt = stmt.where(Message.campaign_id == campaign_id)
        due = list(s.execute(stmt.order_by(Message.id).limit(batch)))
        if not due:
            return None
        customers = sorted({c for _, c in due})
        ins = counters.dialect_insert(s)(ContactGuard).on_conflict_do_nothing(index_elements=["customer_id"])
        s.execute(ins, [{"customer_id": c} for c in customers])
        list(
            s.scalars(
                select(ContactGuard.customer_id)
                .where(ContactGuard.customer_id.in_(customers))
                .order_by(ContactGuard.customer_id)
                .with_for_update()
            )
        )
        messages = list(
            s.scalars(
                select(Message)
                .where(Message.id.in_([i for i, _ in due]), Message.status.in_(DUE))
                .order_by(Message.customer_id, Message.id)
                .with_for_update()
            )
        )
        blocked: dict[str, dict[str, str]] = defaultdict(dict)
        for d in s.scalars(select(DoNotContact).where(DoNotContact.customer_id.in_(customers))):
            blocked[d.customer_id][d.channel] = d.reason
        history: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
        for customer, channel, sent_at in s.execute(
            select(Message.customer_id, Message.channel, Message.sent_at).where(
                Message.customer_id.in_(customers),
                Message.sent_at.is_not(None),
                Message.sent_at > now - WINDOWS["month"],
            )
        ):
            if sent_at is not None:
                history[customer].append((channel, sent_at))
        quiet_end = policy.quiet_until(now)
        for m in messages:
            dnc = blocked[m.customer_id].get(m.channel) or blocked[m.customer_id].get(ALL)
            if dnc is not None:
                m.status, m.reason = "suppressed", f"do_not_contact: {dnc}"[:64]
                report.suppressed += 1
                report.because("do_not_contact")
                continue
            if quiet_end is not None:
                m.status, m.reason, m.not_before = "deferred", "quiet_hours", quiet_end
                report.deferred += 1
                report.because("quiet_hours")
                continue
            later = policy.room_at(m.channel, history[m.customer_id], now)
            if later is not None:
                m.status, m.reason, m.not_before = "deferred", "frequency_cap", later
                report.deferred += 1
                report.because("frequency_cap")
                continue
            connector = connectors.get(m.channel)
            if connector is None:
                m.status, m.reason = "failed", "no_connector"
                m.error = f"no connector is configured for channel {m.channel}"
                report.failed += 1
                continue
            text = m.variables.get("text") or render(
                templates.get((m.campaign_id or 0, m.arm), {}).get(m.lang, ""), m.variables
            )
            m.status, m.sent_at, m.reason = "sending", now, ""
            m.attempts += 1
            history[m.customer_id].append((m.channel, now))
            outgoing[m.channel].append((m.id, Outgoing(m.key, m.customer_id, m.channel, m.lang, text)))
        attempts = {m.id: m.attempts for m in messages}
    for channel, items in outgoing.items():
        results = connectors[channel].send([o for _, o in items], now=now)
        by_key = {r.key: r for r in results}
        with Session(engine) as s, s.begin():
            for message_id, o in items:
                r = by_key.get(o.key)
                values: dict[str, Any]
                if r is not None and r.ok:
                    values = {"status": "sent", "provider_ref": r.provider_ref, "error": None}
                    report.sent += 1
                    report.by_channel[channel] = report.by_channel.get(channel, 0) + 1
                elif (r is None or r.retry) and attempts[message_id] < policy.max_attempts:
                    backoff = timedelta(minutes=2 ** attempts[message_id])
                    values = {
                        "status": "queued",
                        "sent_at": None,
                        "not_before": now + backoff,
                        "reason": "retry",
                        "error": r.error if r else "no result",
                    }
                    report.retried += 1
                else:
                    values = {
                        "status": "failed",
                        "sent_at": None,
                        "reason": "provider_error",
                        "error": r.error if r else "no result",
                    }
                    report.failed += 1
                s.execute(
                    update(Message)
                    .where(Message.id == message_id)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
    return report


def collect_receipts(engine: Engine, connectors: Mapping[str, Connector]) -> int:
    found: list[Receipt] = []
    for c in connectors.values():
        found.extend(c.receipts())
    if not found:
        return 0
    with Session(engine) as s, s.begin():
        return record_receipts(s, found)


def record_receipts(session: Session, receipts: Sequence[Receipt]) -> int:
    """Apply delivery receipts by provider reference; a repeated or late receipt changes nothing it
    should not (an 'opened' never goes back to 'delivered'). Returns how many matched a message."""
    matched = 0
    for r in receipts:
        m = session.scalar(select(Message).where(Message.provider_ref == r.provider_ref))
        if m is None:
            continue
        matched += 1
        if r.status == "delivered" and m.delivered_at is None:
            m.delivered_at = r.at
            if m.status == "sent":
                m.status = "delivered"
        elif r.status == "opened" and m.opened_at is None:
            m.opened_at = r.at
            m.delivered_at = m.delivered_at or r.at
            m.status = "delivered"
        elif r.status == "failed" and m.delivered_at is None:
            m.status = "undelivered"
    session.flush()
    return matched


MAX_RECEIPTS = 10_000


class _ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ref: str = Field(min_length=1, max_length=128)
    status: Literal["delivered", "failed", "opened"]
    at: AwareDatetime


@dataclass(frozen=True)
class ReceiptsOutcome:
    received: int
    matched: int  # receipts that named a message we sent
    unknown: list[str]  # provider references of no message of ours
    invalid: list[dict[str, Any]]  # the receipts refused: index, field, expected, found


def receive_receipts(session: Session, *, body: bytes, signature: str, secret: bytes) -> ReceiptsOutcome:
    """A channel provider's signed batch of receipts, ``{"receipts": [{"ref", "status", "at"}]}``.
    The signature is checked before the body is read; each valid receipt is applied, each invalid
    one is reported with what was wrong, and the valid ones still go through."""
    if not verify(secret, body, signature):
        raise Forbidden(
            "the X-Signature header does not verify against the body",
            "X-Signature 签名校验失败",
            code="bad_signature",
        )
    try:
        payload = json.loads(body)
        items = payload["receipts"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise Invalid(
            'expected a JSON object {"receipts": [{"ref", "status", "at"}, ...]}',
            '回执格式应为 {"receipts": [...]} 的 JSON 对象',
            code="bad_receipts",
        ) from None
    if len(items) > MAX_RECEIPTS:
        raise Invalid(
            f"at most {MAX_RECEIPTS} receipts per call; found {len(items)}",
            f"每次最多 {MAX_RECEIPTS} 条回执，实际 {len(items)} 条",
            code="too_many_receipts",
        )
    good: list[Receipt] = []
    invalid: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            r = _ReceiptIn.model_validate(item)
        except ValidationError as exc:
            e = exc.errors()[0]
            invalid.append(
                {
                    "index": i,
                    "field": ".".join(str(x) for x in e["loc"]) or "(receipt)",
                    "expected": e["msg"],
                    "found": repr(e.get("input"))[:80],
                }
            )
            continue
        good.append(Receipt(r.ref, r.status, r.at))
    refs = {r.provider_ref for r in good}
    known = set(session.scalars(select(Message.provider_ref).where(Message.provider_ref.in_(refs)))) if refs else set()
    matched = record_receipts(session, [r for r in good if r.provider_ref in known])
    return ReceiptsOutcome(len(items), matched, sorted(refs - known)[:1000], invalid[:1000])


# --- do-not-contact -----------------------------------------------------------------------------


def add_do_not_contact(
    session: Session, *, principal: Principal, customer_id: str, channel: str = ALL, reason: str
) -> DoNotContact:
    principal.require(Permission.WRITE)
    if channel != ALL and channel not in CHANNELS:
        raise Invalid(
            f"channel: expected * or one of {sorted(CHANNELS)}; found {channel!r}",
            f"渠道应为 * 或 {sorted(CHANNELS)} 之一，实际为 {channel!r}",
            code="unknown_channel",
        )
    if not reason.strip():
        raise Invalid("a do-not-contact entry needs a reason", "免打扰登记需要填写原因", code="reason_required")
    found = session.scalar(
        select(DoNotContact).where(DoNotContact.customer_id == customer_id, DoNotContact.channel == channel)
    )
    if found is None:
        found = DoNotContact(customer_id=customer_id, channel=channel, reason=reason, created_by=principal.actor)
        session.add(found)
        session.flush()
        audit.record(
            session,
            principal=principal,
            action="reach.do_not_contact",
            object_type="customer",
            object_id=customer_id,
            org_id=principal.scope.org_id,
            after={"channel": channel, "reason": reason},
        )
    return found


def remove_do_not_contact(session: Session, *, principal: Principal, customer_id: str, channel: str = ALL) -> bool:
    principal.require(Permission.WRITE)
    result = session.execute(
        delete(DoNotContact).where(DoNotContact.customer_id == customer_id, DoNotContact.channel == channel)
    )
    removed = bool(result.rowcount)  # type: ignore[attr-defined]
    if removed:
        audit.record(
            session,
            principal=principal,
            action="reach.contact_allowed",
            object_type="customer",
            object_id=customer_id,
            org_id=principal.scope.org_id,
            after={"channel": channel},
        )
    return removed
