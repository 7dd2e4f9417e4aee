"""Alembic migrations of the catalog schema (SQLite and PostgreSQL alike); applied by `indexer.schema`."""
