"""Fresh databases for behaviour suites: a migrated PostgreSQL database per test (cloned from a template in
~100 ms), and stock InvokeAI's own SQLite database, built by its real migrator, for the side to compare with."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from invokeai_saas.db import migrate
from invokeai_saas.devstack import PostgresServer

TEMPLATE_DB = "saas_test_template"


def _admin(pg: PostgresServer) -> psycopg.Connection:
    return psycopg.connect(**pg.conninfo(admin=True), autocommit=True, connect_timeout=5)


def database_url(pg: PostgresServer, database: str) -> str:
    return make_url(pg.url).set(database=database).render_as_string(hide_password=False)


def create_database(pg: PostgresServer, name: str, template: str | None = None) -> str:
    with _admin(pg) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(pg.user), sql.Identifier(template or "template0")
            )
        )
    return database_url(pg, name)


def drop_database(pg: PostgresServer, name: str) -> None:
    with _admin(pg) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def build_template(pg: PostgresServer) -> str:
    """Create and migrate the template database once per test session."""
    drop_database(pg, TEMPLATE_DB)
    migrate.upgrade_url(create_database(pg, TEMPLATE_DB))
    return TEMPLATE_DB


@contextmanager
def fresh_database(pg: PostgresServer, template: str | None = TEMPLATE_DB) -> Iterator[Engine]:
    """A new database cloned from ``template`` (migrated), or empty with ``template=None``; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(pg, name, template)
    engine = create_engine(url, pool_size=5, max_overflow=10)
    try:
        yield engine
    finally:
        engine.dispose()
        drop_database(pg, name)


def stock_sqlite_database(root: Path):  # type: ignore[no-untyped-def]
    """InvokeAI's own SQLite database in memory, migrated by its real migrator (the executable specification)."""
    from invokeai.app.services.config.config_default import InvokeAIAppConfig
    from invokeai.app.services.image_files.image_files_disk import DiskImageFileStorage
    from invokeai.app.services.shared.sqlite.sqlite_util import init_db

    config = InvokeAIAppConfig(use_memory_db=True)
    config._root = root
    logger = logging.getLogger("stock-sqlite")
    return init_db(config=config, logger=logger, image_files=DiskImageFileStorage(root / "outputs" / "images"))
