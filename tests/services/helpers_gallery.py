"""Seeding helpers for the gallery and image-move suites: images, videos, boards and their links, written
straight into either backend's tables (the record services have suites of their own).

Timestamps are explicit so orderings are known: SQLite gets the millisecond text stock's defaults write,
PostgreSQL the full ``datetime`` (microseconds included, so ties within one millisecond are real ties only
in the text — exactly what a PostgreSQL service has to cope with).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from invokeai_saas.db.convert import stock_ms
from tests.services.conftest import Backend


def execute(backend: Backend, sql: str, params: dict[str, Any] | None = None) -> int:
    """One write statement on either backend (both accept ``:name`` placeholders); returns the row count."""
    if backend.is_postgres:
        with backend.engine.begin() as conn:
            return conn.execute(text(sql), params or {}).rowcount
    with backend.db.transaction() as cursor:
        cursor.execute(sql, params or {})
        return cursor.rowcount


def fetch_all(backend: Backend, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """One read statement on either backend, rows as plain tuples."""
    if backend.is_postgres:
        with backend.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params or {})]
    with backend.db.transaction() as cursor:
        cursor.execute(sql, params or {})
        return [tuple(row) for row in cursor.fetchall()]


def when(backend: Backend, moment: datetime) -> Any:
    """A ``created_at`` value as each backend stores it."""
    return moment if backend.is_postgres else stock_ms(moment)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@dataclass(frozen=True)
class Media:
    """One image or video row, as seeded; the gallery tests build their expected DTOs from it."""

    kind: str  # "image" or "video"
    name: str
    created_at: datetime
    category: str = "general"
    origin: str = "internal"
    user_id: str = "system"
    starred: bool = False
    is_intermediate: bool = False
    width: int = 64
    height: int = 48
    metadata: str | None = None
    duration: float = 1.5
    fps: float | None = 24.0
    subfolder: str = ""


def add_media(backend: Backend, media: Media) -> Media:
    params = {
        "name": media.name,
        "origin": media.origin,
        "category": media.category,
        "width": media.width,
        "height": media.height,
        "metadata": media.metadata,
        "is_intermediate": media.is_intermediate,
        "starred": media.starred,
        "user_id": media.user_id,
        "subfolder": media.subfolder,
        "created_at": when(backend, media.created_at),
        "duration": media.duration,
        "fps": media.fps,
    }
    if media.kind == "image":
        execute(
            backend,
            "INSERT INTO images (image_name, image_origin, image_category, width, height, metadata, is_intermediate,"
            " starred, user_id, image_subfolder, created_at) VALUES (:name, :origin, :category, :width, :height,"
            " :metadata, :is_intermediate, :starred, :user_id, :subfolder, :created_at)",
            params,
        )
    else:
        execute(
            backend,
            "INSERT INTO videos (video_name, video_origin, video_category, width, height, duration, fps, metadata,"
            " is_intermediate, starred, user_id, video_subfolder, created_at) VALUES (:name, :origin, :category,"
            " :width, :height, :duration, :fps, :metadata, :is_intermediate, :starred, :user_id, :subfolder,"
            " :created_at)",
            params,
        )
    return media


def add_board(backend: Backend, board_id: str, user_id: str = "system") -> str:
    execute(
        backend,
        "INSERT INTO boards (board_id, board_name, user_id) VALUES (:id, :id, :user)",
        {"id": board_id, "user": user_id},
    )
    return board_id


def add_to_board(backend: Backend, board_id: str, media: Media) -> None:
    if media.kind == "image":
        sql = "INSERT INTO board_images (board_id, image_name) VALUES (:board, :name)"
    else:
        sql = "INSERT INTO board_videos (board_id, video_name) VALUES (:board, :name)"
    execute(backend, sql, {"board": board_id, "name": media.name})
