"""Upstream: ``invokeai.app.api.routers.model_manager`` (``get_orphaned_models`` / ``delete_orphaned_models``)
build ``OrphanedModelsService(db=model_manager.store._db)`` and run ``SELECT config FROM models`` through
``db.transaction()``. Checked on 6.14.2.

The PostgreSQL model record store has no SQLite handle, so the routes would fail. Instead of replacing
the routes, the store gets a ``_db`` that answers exactly that one read-only query from PostgreSQL, in
the shape sqlite3 gives (rows of JSON text); anything else is refused loudly, so an upstream change
cannot silently run a different statement against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, select

from invokeai_saas.db.tables import models

SUPPORTED_QUERY = "SELECT CONFIG FROM MODELS"


class UnsupportedUpstreamQuery(RuntimeError):
    pass


class ModelConfigCursor:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._rows: list[tuple[str]] = []

    def execute(self, statement: str, parameters: Any = ()) -> ModelConfigCursor:
        if " ".join(statement.split()).rstrip(";").upper() != SUPPORTED_QUERY or parameters:
            raise UnsupportedUpstreamQuery(f"the PostgreSQL model store only answers {SUPPORTED_QUERY!r}")
        with self._engine.connect() as conn:
            self._rows = [(json.dumps(config),) for config in conn.execute(select(models.c.config)).scalars()]
        return self

    def fetchall(self) -> list[tuple[str]]:
        return self._rows


class ModelConfigDatabase:
    """Stands in for ``SqliteDatabase`` where upstream reads model configs through ``store._db``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def transaction(self) -> Iterator[ModelConfigCursor]:
        yield ModelConfigCursor(self._engine)


def apply(store: Any, engine: Engine) -> None:
    store._db = ModelConfigDatabase(engine)
