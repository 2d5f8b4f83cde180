"""audiences: definitions, versions, snapshots

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bankgrowth.operational.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audiences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=400), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_audiences_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audiences")),
        sa.UniqueConstraint("code", name=op.f("uq_audiences_code")),
    )
    with op.batch_alter_table("audiences", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audiences_org_id"), ["org_id"], unique=False)

    op.create_table(
        "audience_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audience_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["audience_id"], ["audiences.id"], name=op.f("fk_audience_snapshots_audience_id_audiences")
        ),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_audience_snapshots_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audience_snapshots")),
    )
    with op.batch_alter_table("audience_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audience_snapshots_audience_id"), ["audience_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audience_snapshots_org_id"), ["org_id"], unique=False)

    op.create_table(
        "audience_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audience_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("list_size", sa.Integer(), nullable=True),
        sa.Column("unknown_ids", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["audience_id"], ["audiences.id"], name=op.f("fk_audience_versions_audience_id_audiences")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audience_versions")),
        sa.UniqueConstraint("audience_id", "version", name="uq_audience_versions_audience_version"),
    )


def downgrade() -> None:
    op.drop_table("audience_versions")
    with op.batch_alter_table("audience_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audience_snapshots_org_id"))
        batch_op.drop_index(batch_op.f("ix_audience_snapshots_audience_id"))

    op.drop_table("audience_snapshots")
    with op.batch_alter_table("audiences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audiences_org_id"))

    op.drop_table("audiences")
