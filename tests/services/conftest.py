"""Behaviour suites run every test twice: against stock InvokeAI's SQLite implementation (the executable
specification) and against ours on PostgreSQL. ``backend`` is the parameter; each suite builds its
service from ``db`` (a stock ``SqliteDatabase`` or a SQLAlchemy ``Engine``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.support.databases import stock_sqlite_database


@dataclass
class Backend:
    name: str  # "sqlite" or "postgres"
    db: Any  # SqliteDatabase or Engine

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgres"

    @property
    def engine(self) -> Engine:
        assert isinstance(self.db, Engine)
        return self.db


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", stock_sqlite_database(tmp_path))
    return Backend("postgres", request.getfixturevalue("pg_engine"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres_only`` (statement counts, several processes on one database) have nothing to
    say about stock's single-process SQLite service: their SQLite variant is deselected, not skipped."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        params = getattr(item, "callspec", None)
        backend = params.params.get("backend") if params is not None else None
        if item.get_closest_marker("postgres_only") and backend == "sqlite":
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
