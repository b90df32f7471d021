"""Alembic, driven from Python: upgrade, downgrade, current revision, and the start-up check.

The script location is the ``invokeai_saas.migrations`` package, so migrations ship inside the wheel
and ``invokeai-saas db upgrade`` works from any directory.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseNotMigrated(RuntimeError):
    """The database is not at the schema this code needs; the message says which command to run."""


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def _run(engine: Engine, action: str, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision)


def upgrade_url(url: str) -> None:
    """Upgrade the database at ``url`` to head with a short-lived engine (dev command, tests, tools)."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, "downgrade", revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_migrated(engine: Engine) -> None:
    """Refuse to serve from a database that is not at head: tables missing or older would fail later, in
    the middle of a user's request, instead of now with a message that says what to do."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise DatabaseNotMigrated("the database has no invokeai-saas schema yet; run 'invokeai-saas db upgrade'")
    raise DatabaseNotMigrated(
        f"the database schema is at revision {current}, this version needs {head}; run 'invokeai-saas db upgrade'"
    )
