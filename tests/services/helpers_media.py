"""Seeding helpers for the image and video record suites: rows other services own (boards, board membership)
and raw reads/writes (a chosen ``created_at``, the stored metadata text), done the same way on both backends.

Both drivers accept named ``:param`` placeholders, so one SQL text serves both unless a value needs a
backend's own type (``created_at`` is text in SQLite, ``timestamptz`` in PostgreSQL).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event, text

from tests.services.conftest import Backend

MS_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")


def shape(value: Any) -> Any:
    """A stock millisecond timestamp text becomes ``"<ms text>"``; anything else (a ``datetime``, another
    format) is kept, so a comparison with an expected shape fails loudly."""
    if isinstance(value, str) and MS_TEXT.match(value):
        return "<ms text>"
    return value


def execute(backend: Backend, sql: str, params: dict[str, Any] | None = None) -> int:
    """One write statement on either backend; returns the row count."""
    if backend.is_postgres:
        with backend.engine.begin() as conn:
            return conn.execute(text(sql), params or {}).rowcount
    with backend.db.transaction() as cursor:
        cursor.execute(sql, params or {})
        return cursor.rowcount


def scalar(backend: Backend, sql: str, params: dict[str, Any] | None = None) -> Any:
    """One read statement on either backend; the first column of the first row (``None`` if no row)."""
    if backend.is_postgres:
        with backend.engine.connect() as conn:
            return conn.execute(text(sql), params or {}).scalar()
    with backend.db.transaction() as cursor:
        cursor.execute(sql, params or {})
        row = cursor.fetchone()
        return None if row is None else row[0]


def add_board(backend: Backend, board_id: str, user_id: str = "system") -> str:
    execute(
        backend,
        "INSERT INTO boards (board_id, board_name, user_id) VALUES (:id, :id, :user)",
        {"id": board_id, "user": user_id},
    )
    return board_id


def put_image_on_board(backend: Backend, board_id: str, image_name: str) -> None:
    execute(
        backend,
        "INSERT INTO board_images (board_id, image_name) VALUES (:board, :name)",
        {"board": board_id, "name": image_name},
    )


def put_video_on_board(backend: Backend, board_id: str, video_name: str) -> None:
    execute(
        backend,
        "INSERT INTO board_videos (board_id, video_name) VALUES (:board, :name)",
        {"board": board_id, "name": video_name},
    )


def set_created_at(backend: Backend, table: str, key_column: str, name: str, stamp: str) -> None:
    """Give a row a chosen creation time (``YYYY-MM-DD HH:MM:SS.fff`` UTC), as stock would have stored it."""
    if backend.is_postgres:
        sql = f"UPDATE {table} SET created_at = CAST(:stamp AS timestamp) AT TIME ZONE 'UTC' WHERE {key_column} = :name"
    else:
        sql = f"UPDATE {table} SET created_at = :stamp WHERE {key_column} = :name"
    assert execute(backend, sql, {"stamp": stamp, "name": name}) == 1


def raw_column(backend: Backend, table: str, key_column: str, name: str, column: str) -> Any:
    return scalar(backend, f"SELECT {column} FROM {table} WHERE {key_column} = :name", {"name": name})


def vacuum_until_all_visible(engine: Engine, *tables: str) -> None:
    """``VACUUM ANALYZE`` until every page of each table is marked all-visible, as a settled production table's
    are, so the planner costs index-only scans as it would there. A pass can leave freshly written pages
    unmarked while another transaction (autovacuum's, say) still holds an older snapshot, hence the retries."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            for _ in range(50):
                conn.execute(text(f"VACUUM ANALYZE {table}"))
                pages, visible = conn.execute(
                    text("SELECT relpages, relallvisible FROM pg_class WHERE relname = :table"), {"table": table}
                ).one()
                if visible >= pages:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"{table}: {visible} of {pages} pages all-visible after 50 vacuums")


@dataclass
class StatementLog:
    statements: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)


@contextmanager
def capture_statements(engine: Engine) -> Iterator[StatementLog]:
    """Like ``tests.support.sql_counter.count_statements``, keeping each statement's parameters too, so a test
    can ``EXPLAIN`` exactly what the service sent."""
    log = StatementLog()

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        log.statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", record)
