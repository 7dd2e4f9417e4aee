"""Alembic's environment: migrations always run on a connection that `indexer.schema` hands over."""

from __future__ import annotations

from alembic import context

from latentdex.indexer.catalog import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
