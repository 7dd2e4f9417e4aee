"""The catalog's schema, kept by Alembic migrations (`indexer/migrations/`) on SQLite and PostgreSQL alike.

A new catalog gets every migration; an existing one is brought to the newest on its next writable open.
Catalogs made before the schema was managed by Alembic (they have the first revision's tables but no
`alembic_version`) are stamped with that revision first.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect

from latentdex.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_REVISION = "0001"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this build knows."""
    head = ScriptDirectory.from_config(_config(None)).get_current_head()  # type: ignore[arg-type]
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the catalog is at (None: not managed by Alembic yet)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_known(engine: Engine) -> None:
    """StoreError if the catalog is at a revision this build's migrations do not know (a newer build's)."""
    revision = current_revision(engine)
    if revision is None:
        return  # made before Alembic, or being created: `upgrade` handles both
    try:
        known = ScriptDirectory.from_config(_config(None)).get_revision(revision)  # type: ignore[arg-type]
    except CommandError:
        known = None
    if known is None:
        raise StoreError(
            f"the catalog's schema is at revision {revision!r}, which this build does not know "
            f"(its newest is {head_revision()!r}): it was made by a newer latentdex"
        )


def upgrade(engine: Engine) -> None:
    """Bring the catalog to the newest revision (creating every table in an empty database)."""
    with engine.connect() as connection:
        tables = inspect(connection).get_table_names()
        if "images" in tables and "alembic_version" not in tables:
            command.stamp(_config(connection), FIRST_REVISION)
            connection.commit()
    with engine.connect() as connection:
        command.upgrade(_config(connection), "head")
        connection.commit()
