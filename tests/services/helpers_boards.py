"""Seeding helpers for the board suites (board records, board images, board videos): rows other services
own (images, videos, shares), written straight into either backend's tables the same way."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import sqlalchemy.exc
from sqlalchemy import text

from tests.services.conftest import Backend

# Both backends accept named ``:param`` placeholders, so one SQL text serves both.
FK_ERRORS = (sqlite3.IntegrityError, sqlalchemy.exc.IntegrityError)

MS_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")
SECONDS_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def shape(value: Any) -> str:
    """Replace a timestamp text by its shape: ``"ms"`` (stock's ``STRFTIME('%f')`` defaults) or ``"seconds"``
    (``current_timestamp``). Anything else (a ``datetime``, another format) is returned as ``repr`` so the
    comparison fails loudly."""
    if isinstance(value, str) and MS_TEXT.match(value):
        return "ms"
    if isinstance(value, str) and SECONDS_TEXT.match(value):
        return "seconds"
    return repr(value)


def execute(backend: Backend, sql: str, params: dict[str, Any] | None = None) -> int:
    """Run one write statement on either backend; returns the row count."""
    if backend.is_postgres:
        with backend.engine.begin() as conn:
            return conn.execute(text(sql), params or {}).rowcount
    with backend.db.transaction() as cursor:
        cursor.execute(sql, params or {})
        return cursor.rowcount


def scalar(backend: Backend, sql: str, params: dict[str, Any] | None = None) -> Any:
    """Run one read statement on either backend; returns the first column of the first row."""
    if backend.is_postgres:
        with backend.engine.connect() as conn:
            return conn.execute(text(sql), params or {}).scalar()
    with backend.db.transaction() as cursor:
        cursor.execute(sql, params or {})
        row = cursor.fetchone()
        return None if row is None else row[0]


def add_board(backend: Backend, board_id: str, user_id: str = "system", board_visibility: str = "private") -> str:
    """A board row written directly (for the image/video suites, which do not exercise the board service)."""
    execute(
        backend,
        "INSERT INTO boards (board_id, board_name, user_id, board_visibility) VALUES (:id, :id, :user, :visibility)",
        {"id": board_id, "user": user_id, "visibility": board_visibility},
    )
    return board_id


def add_image(
    backend: Backend,
    image_name: str,
    *,
    category: str = "general",
    is_intermediate: bool = False,
    user_id: str = "system",
    origin: str = "internal",
    width: int = 64,
    height: int = 48,
    session_id: str | None = None,
    node_id: str | None = None,
    starred: bool = False,
) -> str:
    execute(
        backend,
        "INSERT INTO images (image_name, image_origin, image_category, width, height, session_id, node_id, "
        "is_intermediate, starred, user_id) "
        "VALUES (:name, :origin, :category, :width, :height, :session_id, :node_id, :is_intermediate, :starred, :user)",
        {
            "name": image_name,
            "origin": origin,
            "category": category,
            "width": width,
            "height": height,
            "session_id": session_id,
            "node_id": node_id,
            "is_intermediate": is_intermediate,
            "starred": starred,
            "user": user_id,
        },
    )
    return image_name


def add_video(
    backend: Backend,
    video_name: str,
    *,
    category: str = "general",
    is_intermediate: bool = False,
    user_id: str = "system",
) -> str:
    execute(
        backend,
        "INSERT INTO videos (video_name, video_origin, video_category, width, height, duration, is_intermediate, "
        "user_id) VALUES (:name, 'internal', :category, 640, 480, 2.5, :is_intermediate, :user)",
        {"name": video_name, "category": category, "is_intermediate": is_intermediate, "user": user_id},
    )
    return video_name


def share_board(backend: Backend, board_id: str, user_id: str, can_edit: bool = False) -> None:
    """``shared_boards`` has no service of its own in InvokeAI 6.14.2: rows are written directly."""
    execute(
        backend,
        "INSERT INTO shared_boards (board_id, user_id, can_edit) VALUES (:board_id, :user_id, :can_edit)",
        {"board_id": board_id, "user_id": user_id, "can_edit": can_edit},
    )
