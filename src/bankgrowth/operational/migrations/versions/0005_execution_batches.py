"""campaigns: execution batches claimed by parallel executors; the cursor goes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 21:59:15.379945
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bankgrowth.operational.base

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_execution_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Integer(), nullable=False),
        sa.Column("batch_no", sa.Integer(), nullable=False),
        sa.Column("first_customer", sa.BigInteger(), nullable=False),
        sa.Column("last_customer", sa.BigInteger(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("done_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["campaign_executions.id"],
            name=op.f("fk_campaign_execution_batches_execution_id_campaign_executions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_execution_batches")),
        sa.UniqueConstraint("execution_id", "batch_no", name="uq_campaign_execution_batches_no"),
    )
    with op.batch_alter_table("campaign_executions", schema=None) as batch_op:
        batch_op.drop_column("cursor")


def downgrade() -> None:
    with op.batch_alter_table("campaign_executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cursor", sa.BigInteger(), nullable=True))

    op.drop_table("campaign_execution_batches")
