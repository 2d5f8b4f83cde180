"""Campaign data in the warehouse: each launched campaign's assignment (who is in which arm or in the
control group), with what the customer looked like at launch — lifecycle stage, preferred
institution, branch, consent and the best channel — so outcomes can be joined and broken down
where the transactions are.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import ibis
import pyarrow as pa

from bankgrowth.audiences import store as audience_store
from bankgrowth.campaigns.assignment import assign
from bankgrowth.insight import store as tag_store
from bankgrowth.warehouse.engine import append_arrow, create_if_missing

if TYPE_CHECKING:
    from collections.abc import Sequence

    import ibis.expr.types as ir
    from ibis.backends import BaseBackend

ASSIGNMENTS = "campaign_assignments"
ASSIGNMENTS_SCHEMA = ibis.schema(
    {
        "campaign_id": "int64",
        "customer_id": "int64",
        "arm": "string",  # 'control' or an arm's name
        "stage": "string",
        "institution": "string",  # preferred institution at launch
        "branch_id": "string",
        "consent": "boolean",  # marketing consent at launch (PIPL)
        "best_channel": "string",
        "surname": "string",
    }
)
APP_ACTIVE_DAYS = 30


def ensure(con: BaseBackend) -> None:
    create_if_missing(con, ASSIGNMENTS, ASSIGNMENTS_SCHEMA)


def best_channels(con: BaseBackend, members: ir.Table, at: datetime) -> ir.Table:
    """(customer_id, best_channel): app push for customers who used the app in the last 30 days,
    a WeChat template message for those whose preferred institution is WeChat Pay, SMS otherwise."""
    events = con.table("events")
    recent = events.filter(
        (events.channel == "app") & (events.event_at >= at - timedelta(days=APP_ACTIVE_DAYS)) & (events.event_at < at)
    )
    app_users = recent.select("customer_id").distinct().mutate(app=ibis.literal(True))
    joined = members.left_join(app_users, "customer_id").select(members, app_users.app)
    return joined.select(
        "customer_id",
        best_channel=ibis.cases(
            (joined.app.fill_null(False), "app_push"),
            (joined.institution == "wechat_pay", "wechat_template"),
            else_="sms",
        ),
    )


def plan(
    con: BaseBackend,
    *,
    campaign_id: int,
    salt: str,
    snapshot_id: int,
    as_of: object,
    control_share: float,
    arms: Sequence[tuple[str, int]],
    at: datetime,
) -> dict[str, int]:
    """Assign every member of the snapshot and write the assignment; returns the count per group."""
    ensure(con)
    if assignments(con, campaign_id).count().execute():  # a launch killed before its commit
        discard(con, campaign_id)
    members = audience_store.snapshot_members(con, snapshot_id)
    tags = tag_store.tags_table(con, as_of)  # type: ignore[arg-type]
    people = con.table("customers")
    tagged = tags.select("customer_id", "stage", institution="preferred_institution")
    t = members.left_join(tagged, "customer_id").select(members.customer_id, tagged.stage, tagged.institution)
    who = people.select("customer_id", "branch_id", consent="marketing_consent", surname=people.name.substr(0, 1))
    t = t.left_join(who, "customer_id").select(t, who.branch_id, who.consent, who.surname)
    best = best_channels(con, t.select("customer_id", "institution"), at)
    t = t.left_join(best, "customer_id").select(t, best.best_channel)
    data = t.order_by("customer_id").to_pyarrow()
    ids = data.column("customer_id").to_pylist()
    groups = [assign(salt, cid, control_share, arms) for cid in ids]
    n = len(ids)
    table = pa.table(
        {
            "campaign_id": pa.array([campaign_id] * n, pa.int64()),
            "customer_id": pa.array(ids, pa.int64()),
            "arm": pa.array(groups, pa.string()),
            "stage": data.column("stage").cast(pa.string()),
            "institution": data.column("institution").cast(pa.string()),
            "branch_id": data.column("branch_id").cast(pa.string()),
            "consent": data.column("consent").cast(pa.bool_()),
            "best_channel": data.column("best_channel").cast(pa.string()),
            "surname": data.column("surname").cast(pa.string()),
        }
    )
    append_arrow(con, ASSIGNMENTS, table)
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    return counts


def assignments(con: BaseBackend, campaign_id: int) -> ir.Table:
    ensure(con)
    t = con.table(ASSIGNMENTS)
    return t.filter(t.campaign_id == campaign_id)


def discard(con: BaseBackend, campaign_id: int) -> None:
    """Remove an assignment whose launch did not commit."""
    if ASSIGNMENTS in con.list_tables():
        con.raw_sql(f"DELETE FROM {ASSIGNMENTS} WHERE campaign_id = {int(campaign_id)}")  # type: ignore[attr-defined]
