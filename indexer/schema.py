"""The catalog's schema, kept by Alembic migrations (`indexer/migrations/`) on SQLite and PostgreSQL alike.

A new catalog gets every migration; an existing one is brought to the newest on its next writable open.
Catalogs made before the schema was managed by Alembic (they have the first revision's tables but no
`alembic_version`) are stamped with that revision first.

A catalog already at `HEAD_REVISION` (every open but the first after an upgrade) is recognised with one
query, without importing Alembic: its import costs about a third of a second, which a one-image index run
or a server start would otherwise pay every time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from latentdex.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_REVISION = "0001"
HEAD_REVISION = "0006"  # the newest migration in migrations/versions (tests hold it to Alembic's head)
_VERSION_TABLE = "alembic_version"


def _config(connection: Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this build's migrations define, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config(None)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the catalog is at (None: not managed by Alembic yet)."""
    with engine.connect() as connection:
        return _revision(connection)


def _revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalar()


def check_known(engine: Engine) -> None:
    """StoreError if the catalog is at a revision this build's migrations do not know (a newer build's)."""
    revision = current_revision(engine)
    if revision is None or revision == HEAD_REVISION:
        return  # None: made before Alembic, or being created; `upgrade` handles both
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        known = ScriptDirectory.from_config(_config(None)).get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise StoreError(
            f"the catalog's schema is at revision {revision!r}, which this build does not know "
            f"(its newest is {HEAD_REVISION!r}): it was made by a newer latentdex"
        )


def upgrade(engine: Engine) -> None:
    """Bring the catalog to the newest revision (creating every table in an empty database)."""
    with engine.connect() as connection:
        if _revision(connection) == HEAD_REVISION:
            return
    from alembic import command

    with engine.connect() as connection:
        tables = inspect(connection).get_table_names()
        if "images" in tables and _VERSION_TABLE not in tables:
            command.stamp(_config(connection), FIRST_REVISION)
            connection.commit()
    with engine.connect() as connection:
        command.upgrade(_config(connection), "head")
        connection.commit()
