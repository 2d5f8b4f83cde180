"""Alembic environment: the engine comes from ``bankgrowth.operational.db.alembic_config``."""

from __future__ import annotations

from alembic import context

from bankgrowth.operational.registry import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata(),
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
