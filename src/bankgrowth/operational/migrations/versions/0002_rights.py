"""rights: catalog, pools, ledger, savings card

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bankgrowth.operational.base
from bankgrowth.operational import append_only

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cap_counters",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.CheckConstraint("n >= 0", name=op.f("ck_cap_counters_n")),
        sa.PrimaryKeyConstraint("scope", "period_start", "customer_id", name=op.f("pk_cap_counters")),
    )
    op.create_table(
        "payment_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("order_no", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_payment_events_event_id")),
    )
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_events_order_no"), ["order_no"], unique=False)

    op.create_table(
        "card_products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("list_price_fen", sa.Integer(), nullable=False),
        sa.Column("price_table", sa.JSON(), nullable=False),
        sa.Column("bundle", sa.JSON(), nullable=False),
        sa.Column("purchase_limit", sa.Integer(), nullable=False),
        sa.Column("limit_period", sa.String(length=8), nullable=False),
        sa.Column("payment_minutes", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_card_products_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_products")),
        sa.UniqueConstraint("code", name=op.f("uq_card_products_code")),
    )
    with op.batch_alter_table("card_products", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_card_products_org_id"), ["org_id"], unique=False)

    op.create_table(
        "pools",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("limit_units", sa.BigInteger(), nullable=True),
        sa.Column("limit_fen", sa.BigInteger(), nullable=True),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("stripes", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("limit_fen IS NULL OR limit_fen >= 0", name=op.f("ck_pools_limit_fen")),
        sa.CheckConstraint("limit_units IS NULL OR limit_units >= 0", name=op.f("ck_pools_limit_units")),
        sa.CheckConstraint("stripes BETWEEN 1 AND 256", name=op.f("ck_pools_stripes")),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_pools_org_id_orgs")),
        sa.ForeignKeyConstraint(["parent_id"], ["pools.id"], name=op.f("fk_pools_parent_id_pools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pools")),
        sa.UniqueConstraint("code", name=op.f("uq_pools_code")),
    )
    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pools_org_id"), ["org_id"], unique=False)

    op.create_table(
        "rights",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=400), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("face_value_fen", sa.Integer(), nullable=True),
        sa.Column("min_spend_fen", sa.Integer(), nullable=True),
        sa.Column("institution", sa.String(length=32), nullable=True),
        sa.Column("merchant", sa.String(length=64), nullable=True),
        sa.Column("unit_cost_fen", sa.Integer(), nullable=False),
        sa.Column("valid_from", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("valid_until", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("valid_days", sa.Integer(), nullable=True),
        sa.Column("exclusivity_group", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_rights_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rights")),
        sa.UniqueConstraint("code", name=op.f("uq_rights_code")),
    )
    with op.batch_alter_table("rights", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rights_org_id"), ["org_id"], unique=False)

    op.create_table(
        "card_orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_no", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("draw", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("payment_method", sa.String(length=8), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=True),
        sa.Column("created_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("paid_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"], ["card_products.id"], name=op.f("fk_card_orders_product_id_card_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_orders")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_card_orders_idempotency_key")),
        sa.UniqueConstraint("order_no", name=op.f("uq_card_orders_order_no")),
    )
    with op.batch_alter_table("card_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_card_orders_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "coupon_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("right_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("holding_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["right_id"], ["rights.id"], name=op.f("fk_coupon_codes_right_id_rights")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_codes")),
        sa.UniqueConstraint("holding_id", name=op.f("uq_coupon_codes_holding_id")),
        sa.UniqueConstraint("right_id", "code", name="uq_coupon_codes_right_code"),
    )
    with op.batch_alter_table("coupon_codes", schema=None) as batch_op:
        batch_op.create_index("ix_coupon_codes_free", ["right_id", "holding_id"], unique=False)

    op.create_table(
        "holdings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("right_id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("source_type", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("grant_key", sa.String(length=128), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("granted_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("remaining >= 0 AND remaining <= units", name=op.f("ck_holdings_remaining")),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_holdings_pool_id_pools")),
        sa.ForeignKeyConstraint(["right_id"], ["rights.id"], name=op.f("fk_holdings_right_id_rights")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holdings")),
        sa.UniqueConstraint("grant_key", name=op.f("uq_holdings_grant_key")),
    )
    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.create_index("ix_holdings_customer", ["customer_id", "right_id", "status"], unique=False)
        batch_op.create_index("ix_holdings_expiry", ["status", "expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_holdings_org_id"), ["org_id"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=True),
        sa.Column("right_id", sa.Integer(), nullable=True),
        sa.Column("holding_id", sa.BigInteger(), nullable=True),
        sa.Column("reservation_id", sa.BigInteger(), nullable=True),
        sa.Column("pool_id", sa.Integer(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("pool_units", sa.BigInteger(), nullable=False),
        sa.Column("pool_fen", sa.BigInteger(), nullable=False),
        sa.Column("cost_fen", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=True),
        sa.Column("source_type", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_ledger_entries_pool_id_pools")),
        sa.ForeignKeyConstraint(["right_id"], ["rights.id"], name=op.f("fk_ledger_entries_right_id_rights")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_entries_idempotency_key")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_at", ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_entries_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index("ix_ledger_holding", ["holding_id"], unique=False)
        batch_op.create_index("ix_ledger_pool", ["pool_id", "period_start"], unique=False)

    op.create_table(
        "pool_stripes",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("stripe", sa.Integer(), nullable=False),
        sa.Column("limit_units", sa.BigInteger(), nullable=True),
        sa.Column("used_units", sa.BigInteger(), nullable=False),
        sa.Column("limit_fen", sa.BigInteger(), nullable=True),
        sa.Column("used_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "used_fen >= 0 AND (limit_fen IS NULL OR used_fen <= limit_fen)", name=op.f("ck_pool_stripes_fen")
        ),
        sa.CheckConstraint(
            "used_units >= 0 AND (limit_units IS NULL OR used_units <= limit_units)", name=op.f("ck_pool_stripes_units")
        ),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_pool_stripes_pool_id_pools")),
        sa.PrimaryKeyConstraint("pool_id", "period_start", "stripe", name=op.f("pk_pool_stripes")),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("right_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("source_type", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", bankgrowth.operational.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_reservations_pool_id_pools")),
        sa.ForeignKeyConstraint(["right_id"], ["rights.id"], name=op.f("fk_reservations_right_id_rights")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
        sa.UniqueConstraint("key", name=op.f("uq_reservations_key")),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reservations_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index("ix_reservations_expiry", ["status", "expires_at"], unique=False)

    append_only.install("ledger_entries")
    append_only.install("payment_events")


def downgrade() -> None:
    append_only.remove("payment_events")
    append_only.remove("ledger_entries")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_expiry")
        batch_op.drop_index(batch_op.f("ix_reservations_customer_id"))

    op.drop_table("reservations")
    op.drop_table("pool_stripes")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_pool")
        batch_op.drop_index("ix_ledger_holding")
        batch_op.drop_index(batch_op.f("ix_ledger_entries_customer_id"))
        batch_op.drop_index("ix_ledger_at")

    op.drop_table("ledger_entries")
    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_holdings_org_id"))
        batch_op.drop_index("ix_holdings_expiry")
        batch_op.drop_index("ix_holdings_customer")

    op.drop_table("holdings")
    with op.batch_alter_table("coupon_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_coupon_codes_free")

    op.drop_table("coupon_codes")
    with op.batch_alter_table("card_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_card_orders_customer_id"))

    op.drop_table("card_orders")
    with op.batch_alter_table("rights", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rights_org_id"))

    op.drop_table("rights")
    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pools_org_id"))

    op.drop_table("pools")
    with op.batch_alter_table("card_products", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_card_products_org_id"))

    op.drop_table("card_products")
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_events_order_no"))

    op.drop_table("payment_events")
    op.drop_table("cap_counters")
