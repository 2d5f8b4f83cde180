"""The operational store: SQLAlchemy 2 models and Alembic migrations (SQLite by default,
PostgreSQL in production). Users, audit, and later campaigns, rights and the ledger live here."""
