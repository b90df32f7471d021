"""Alembic environment for invokeai-saas: InvokeAI's tables and the saas tables, one version history.

Run through ``invokeai-saas db upgrade|current|downgrade`` (``invokeai_saas.db.migrate``), which passes
the engine in ``config.attributes["connection"]``; there is no alembic.ini to keep in sync.
"""

from __future__ import annotations

from alembic import context

from invokeai_saas.db.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'invokeai-saas db', which provides the database connection")

context.configure(connection=connection, target_metadata=metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
