"""The analytical store: canonical tables, engine connection, ingest and the simulator."""
