"""Indexes PostgreSQL needs beyond stock's: the gallery page order, byte-order name paging, model hash lookups, FIFO dequeue.

Revision ID: 0003_postgres_query_indexes
Revises: 0002_stock_seed_rows
Create Date: 2026-11-23 19:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_postgres_query_indexes"
down_revision: str | None = "0002_stock_seed_rows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_images_gallery",
        "images",
        [
            "user_id",
            "image_category",
            "is_intermediate",
            sa.text("starred DESC NULLS LAST"),
            sa.text("created_at DESC"),
            sa.text("image_name DESC"),
        ],
    )
    op.create_index(
        "ix_videos_gallery",
        "videos",
        [
            "user_id",
            "video_category",
            "is_intermediate",
            sa.text("starred DESC NULLS LAST"),
            sa.text("created_at DESC"),
            sa.text("video_name DESC"),
        ],
    )
    op.create_index("ix_images_image_name_c", "images", [sa.text('image_name COLLATE "C"')])
    op.create_index("ix_workflow_library_name_c", "workflow_library", [sa.text('name COLLATE "C"')])
    op.create_index("ix_models_hash", "models", ["hash"])
    op.create_index(
        "ix_session_queue_pending_fifo",
        "session_queue",
        [sa.text("priority DESC"), "item_id"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_session_queue_pending_fifo", table_name="session_queue")
    op.drop_index("ix_models_hash", table_name="models")
    op.drop_index("ix_workflow_library_name_c", table_name="workflow_library")
    op.drop_index("ix_images_image_name_c", table_name="images")
    op.drop_index("ix_videos_gallery", table_name="videos")
    op.drop_index("ix_images_gallery", table_name="images")
