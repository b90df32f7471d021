"""InvokeAI 6.14.2 schema

InvokeAI's final 6.14.2 SQLite schema in PostgreSQL idioms (see invokeai_saas/db/tables.py for the rules),
with PL/pgSQL triggers in place of SQLite's updated_at / started_at / completed_at triggers.

Revision ID: 0001_invokeai_6_14_2
Revises:
Create Date: 2026-11-23 18:19:07.852677
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_invokeai_6_14_2"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (not imported from tables.py) so this revision never changes after release.
UPDATED_AT_TABLES = (
    "app_settings",
    "board_images",
    "board_videos",
    "boards",
    "client_state",
    "image_subfolder_move_jobs",
    "images",
    "models",
    "session_queue",
    "style_presets",
    "system_prompts",
    "users",
    "videos",
    "workflow_library",
)


def _create_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION invokeai_saas_set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := clock_timestamp();
            RETURN NEW;
        END
        $$
        """
    )
    for table in UPDATED_AT_TABLES:
        op.execute(
            f"CREATE TRIGGER tg_{table}_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION invokeai_saas_set_updated_at()"
        )
    # Stock: AFTER UPDATE OF status, stamp started_at for 'in_progress' and completed_at for the end states.
    op.execute(
        """
        CREATE FUNCTION invokeai_saas_session_queue_status_times() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status = 'in_progress' THEN
                NEW.started_at := clock_timestamp();
            ELSIF NEW.status IN ('completed', 'failed', 'canceled') THEN
                NEW.completed_at := clock_timestamp();
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER tg_session_queue_status_times BEFORE UPDATE OF status ON session_queue "
        "FOR EACH ROW EXECUTE FUNCTION invokeai_saas_session_queue_status_times()"
    )


def _drop_triggers() -> None:
    op.execute("DROP TRIGGER IF EXISTS tg_session_queue_status_times ON session_queue")
    op.execute("DROP FUNCTION IF EXISTS invokeai_saas_session_queue_status_times()")
    for table in UPDATED_AT_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS tg_{table}_updated_at ON {table}")
    op.execute("DROP FUNCTION IF EXISTS invokeai_saas_set_updated_at()")


def upgrade() -> None:
    op.create_table(
        "app_settings",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_app_settings")),
    )
    op.create_table(
        "image_subfolder_move_jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('planned', 'moving', 'moved', 'committed', 'error')",
            name=op.f("ck_image_subfolder_move_jobs_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_subfolder_move_jobs")),
    )
    op.create_table(
        "images",
        sa.Column("image_name", sa.Text(), nullable=False),
        sa.Column("image_origin", sa.Text(), nullable=False),
        sa.Column("image_category", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=True),
        sa.Column("node_id", sa.Text(), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("is_intermediate", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("starred", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("has_workflow", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("user_id", sa.Text(), server_default=sa.text("'system'"), nullable=True),
        sa.Column("image_subfolder", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.PrimaryKeyConstraint("image_name", name=op.f("pk_images")),
    )
    op.create_index(op.f("ix_images_created_at"), "images", ["created_at"], unique=False)
    op.create_index(op.f("ix_images_image_category"), "images", ["image_category"], unique=False)
    op.create_index(op.f("ix_images_image_origin"), "images", ["image_origin"], unique=False)
    op.create_index(op.f("ix_images_starred"), "images", ["starred"], unique=False)
    op.create_index(
        "ix_images_user_category_created",
        "images",
        ["user_id", "image_category", "is_intermediate", "created_at"],
        unique=False,
    )
    op.create_index(op.f("ix_images_user_id"), "images", ["user_id"], unique=False)
    op.create_table(
        "models",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("config", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("hash", sa.Text(), sa.Computed("config->>'hash'", persisted=True), nullable=False),
        sa.Column("base", sa.Text(), sa.Computed("config->>'base'", persisted=True), nullable=False),
        sa.Column("type", sa.Text(), sa.Computed("config->>'type'", persisted=True), nullable=False),
        sa.Column("path", sa.Text(), sa.Computed("config->>'path'", persisted=True), nullable=False),
        sa.Column("format", sa.Text(), sa.Computed("config->>'format'", persisted=True), nullable=False),
        sa.Column("name", sa.Text(), sa.Computed("config->>'name'", persisted=True), nullable=False),
        sa.Column("description", sa.Text(), sa.Computed("config->>'description'", persisted=True), nullable=True),
        sa.Column("source", sa.Text(), sa.Computed("config->>'source'", persisted=True), nullable=False),
        sa.Column("source_type", sa.Text(), sa.Computed("config->>'source_type'", persisted=True), nullable=False),
        sa.Column(
            "source_api_response",
            sa.Text(),
            sa.Computed("config->>'source_api_response'", persisted=True),
            nullable=True,
        ),
        sa.Column(
            "trigger_phrases", sa.Text(), sa.Computed("config->>'trigger_phrases'", persisted=True), nullable=True
        ),
        sa.Column(
            "file_size", sa.BigInteger(), sa.Computed("(config->>'file_size')::bigint", persisted=True), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("path", name=op.f("uq_models_path")),
    )
    op.create_index(op.f("ix_models_base"), "models", ["base"], unique=False)
    op.create_index(op.f("ix_models_name"), "models", ["name"], unique=False)
    op.create_index(op.f("ix_models_type"), "models", ["type"], unique=False)
    op.create_table(
        "session_queue",
        sa.Column("item_id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("queue_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("field_values", sa.Text(), nullable=True),
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error_traceback", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("workflow", sa.Text(), nullable=True),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("origin", sa.Text(), nullable=True),
        sa.Column("destination", sa.Text(), nullable=True),
        sa.Column("retried_from_item_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.Text(), server_default=sa.text("'system'"), nullable=True),
        sa.Column("status_sequence", sa.Integer(), server_default=sa.text("0"), nullable=True),
        sa.Column("device", sa.Text(), nullable=True),
        sa.Column("workflow_call_id", sa.Text(), nullable=True),
        sa.Column("parent_item_id", sa.BigInteger(), nullable=True),
        sa.Column("parent_session_id", sa.Text(), nullable=True),
        sa.Column("root_item_id", sa.BigInteger(), nullable=True),
        sa.Column("workflow_call_depth", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_session_queue")),
        sa.UniqueConstraint("session_id", name=op.f("uq_session_queue_session_id")),
    )
    op.create_index(op.f("ix_session_queue_batch_id"), "session_queue", ["batch_id"], unique=False)
    op.create_index(op.f("ix_session_queue_parent_item_id"), "session_queue", ["parent_item_id"], unique=False)
    op.create_index(op.f("ix_session_queue_parent_session_id"), "session_queue", ["parent_session_id"], unique=False)
    op.create_index(
        "ix_session_queue_pending",
        "session_queue",
        ["queue_id", sa.literal_column("priority DESC"), "item_id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(op.f("ix_session_queue_priority"), "session_queue", ["priority"], unique=False)
    op.create_index(op.f("ix_session_queue_root_item_id"), "session_queue", ["root_item_id"], unique=False)
    op.create_index(
        "ix_session_queue_round_robin_pending",
        "session_queue",
        ["status", "user_id", sa.literal_column("priority DESC"), "item_id"],
        unique=False,
    )
    op.create_index(op.f("ix_session_queue_status"), "session_queue", ["status"], unique=False)
    op.create_index(op.f("ix_session_queue_user_id"), "session_queue", ["user_id"], unique=False)
    op.create_index(
        op.f("ix_session_queue_user_id_started_at"), "session_queue", ["user_id", "started_at"], unique=False
    )
    op.create_index(
        op.f("ix_session_queue_workflow_call_depth"), "session_queue", ["workflow_call_depth"], unique=False
    )
    op.create_index(op.f("ix_session_queue_workflow_call_id"), "session_queue", ["workflow_call_id"], unique=False)
    op.create_table(
        "style_presets",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("preset_data", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), server_default=sa.text("'user'"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("user_id", sa.Text(), server_default=sa.text("'system'"), nullable=True),
        sa.Column("is_public", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_style_presets")),
    )
    op.create_index(op.f("ix_style_presets_is_public"), "style_presets", ["is_public"], unique=False)
    op.create_index(op.f("ix_style_presets_name"), "style_presets", ["name"], unique=False)
    op.create_index(op.f("ix_style_presets_user_id"), "style_presets", ["user_id"], unique=False)
    op.create_table(
        "system_prompts",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), server_default=sa.text("'system'"), nullable=False),
        sa.Column("is_public", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_prompts")),
    )
    op.create_index(op.f("ix_system_prompts_name"), "system_prompts", ["name"], unique=False)
    op.create_index(op.f("ix_system_prompts_user_id"), "system_prompts", ["user_id"], unique=False)
    op.create_table(
        "users",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_index(op.f("ix_users_is_active"), "users", ["is_active"], unique=False)
    op.create_index(op.f("ix_users_is_admin"), "users", ["is_admin"], unique=False)
    op.create_table(
        "videos",
        sa.Column("video_name", sa.Text(), nullable=False),
        sa.Column("video_origin", sa.Text(), nullable=False),
        sa.Column("video_category", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("duration", sa.Float(), server_default=sa.text("0.0"), nullable=False),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("session_id", sa.Text(), nullable=True),
        sa.Column("node_id", sa.Text(), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("is_intermediate", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("starred", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("has_workflow", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("user_id", sa.Text(), server_default=sa.text("'system'"), nullable=False),
        sa.Column("video_subfolder", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("video_name", name=op.f("pk_videos")),
    )
    op.create_index(op.f("ix_videos_created_at"), "videos", ["created_at"], unique=False)
    op.create_index(op.f("ix_videos_starred"), "videos", ["starred"], unique=False)
    op.create_index(op.f("ix_videos_user_id"), "videos", ["user_id"], unique=False)
    op.create_index(op.f("ix_videos_video_category"), "videos", ["video_category"], unique=False)
    op.create_index(op.f("ix_videos_video_origin"), "videos", ["video_origin"], unique=False)
    op.create_table(
        "workflow_library",
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("workflow", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("category", sa.Text(), sa.Computed("workflow->'meta'->>'category'", persisted=True), nullable=False),
        sa.Column("name", sa.Text(), sa.Computed("workflow->>'name'", persisted=True), nullable=False),
        sa.Column("description", sa.Text(), sa.Computed("workflow->>'description'", persisted=True), nullable=False),
        sa.Column("tags", sa.Text(), sa.Computed("workflow->>'tags'", persisted=True), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_id", sa.Text(), server_default=sa.text("'system'"), nullable=True),
        sa.Column("is_public", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", name=op.f("pk_workflow_library")),
    )
    op.create_index(op.f("ix_workflow_library_category"), "workflow_library", ["category"], unique=False)
    op.create_index(op.f("ix_workflow_library_created_at"), "workflow_library", ["created_at"], unique=False)
    op.create_index(op.f("ix_workflow_library_description"), "workflow_library", ["description"], unique=False)
    op.create_index(op.f("ix_workflow_library_is_public"), "workflow_library", ["is_public"], unique=False)
    op.create_index(op.f("ix_workflow_library_name"), "workflow_library", ["name"], unique=False)
    op.create_index(op.f("ix_workflow_library_opened_at"), "workflow_library", ["opened_at"], unique=False)
    op.create_index(op.f("ix_workflow_library_updated_at"), "workflow_library", ["updated_at"], unique=False)
    op.create_index(op.f("ix_workflow_library_user_id"), "workflow_library", ["user_id"], unique=False)
    op.create_table(
        "boards",
        sa.Column("board_id", sa.Text(), nullable=False),
        sa.Column("board_name", sa.Text(), nullable=False),
        sa.Column("cover_image_name", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("user_id", sa.Text(), server_default=sa.text("'system'"), nullable=True),
        sa.Column("is_public", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("board_visibility", sa.Text(), server_default=sa.text("'private'"), nullable=False),
        sa.ForeignKeyConstraint(
            ["cover_image_name"],
            ["images.image_name"],
            name=op.f("fk_boards_cover_image_name_images"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("board_id", name=op.f("pk_boards")),
    )
    op.create_index(op.f("ix_boards_board_visibility"), "boards", ["board_visibility"], unique=False)
    op.create_index(op.f("ix_boards_created_at"), "boards", ["created_at"], unique=False)
    op.create_index(op.f("ix_boards_is_public"), "boards", ["is_public"], unique=False)
    op.create_index(op.f("ix_boards_user_id"), "boards", ["user_id"], unique=False)
    op.create_table(
        "client_state",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name=op.f("fk_client_state_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_client_state")),
    )
    op.create_index(op.f("ix_client_state_user_id"), "client_state", ["user_id"], unique=False)
    op.create_table(
        "image_subfolder_move_items",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("image_name", sa.Text(), nullable=False),
        sa.Column("old_subfolder", sa.Text(), nullable=False),
        sa.Column("new_subfolder", sa.Text(), nullable=False),
        sa.Column("is_intermediate", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("old_path", sa.Text(), nullable=True),
        sa.Column("new_path", sa.Text(), nullable=True),
        sa.Column("old_thumbnail_path", sa.Text(), nullable=True),
        sa.Column("new_thumbnail_path", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('planned', 'moved', 'committed', 'error')", name=op.f("ck_image_subfolder_move_items_state")
        ),
        sa.ForeignKeyConstraint(
            ["image_name"], ["images.image_name"], name=op.f("fk_image_subfolder_move_items_image_name_images")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["image_subfolder_move_jobs.id"],
            name=op.f("fk_image_subfolder_move_items_job_id_image_subfolder_move_jobs"),
        ),
        sa.PrimaryKeyConstraint("job_id", "image_name", name=op.f("pk_image_subfolder_move_items")),
    )
    op.create_index(
        op.f("ix_image_subfolder_move_items_image_name"), "image_subfolder_move_items", ["image_name"], unique=False
    )
    op.create_index(
        op.f("ix_image_subfolder_move_items_job_id_state"),
        "image_subfolder_move_items",
        ["job_id", "state"],
        unique=False,
    )
    op.create_table(
        "model_relationships",
        sa.Column("model_key_1", sa.Text(), nullable=False),
        sa.Column("model_key_2", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["model_key_1"], ["models.id"], name=op.f("fk_model_relationships_model_key_1_models"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_key_2"], ["models.id"], name=op.f("fk_model_relationships_model_key_2_models"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("model_key_1", "model_key_2", name=op.f("pk_model_relationships")),
    )
    op.create_index(op.f("ix_model_relationships_model_key_2"), "model_relationships", ["model_key_2"], unique=False)
    op.create_table(
        "user_invitations",
        sa.Column("invitation_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("invited_by", sa.Text(), nullable=False),
        sa.Column("invitation_code", sa.Text(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"], ["users.user_id"], name=op.f("fk_user_invitations_invited_by_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("invitation_id", name=op.f("pk_user_invitations")),
        sa.UniqueConstraint("invitation_code", name=op.f("uq_user_invitations_invitation_code")),
    )
    op.create_index(op.f("ix_user_invitations_email"), "user_invitations", ["email"], unique=False)
    op.create_index(op.f("ix_user_invitations_expires_at"), "user_invitations", ["expires_at"], unique=False)
    op.create_table(
        "user_sessions",
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "last_activity_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name=op.f("fk_user_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_user_sessions")),
    )
    op.create_index(op.f("ix_user_sessions_expires_at"), "user_sessions", ["expires_at"], unique=False)
    op.create_index(op.f("ix_user_sessions_token_hash"), "user_sessions", ["token_hash"], unique=False)
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"], unique=False)
    op.create_table(
        "board_images",
        sa.Column("board_id", sa.Text(), nullable=False),
        sa.Column("image_name", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["board_id"], ["boards.board_id"], name=op.f("fk_board_images_board_id_boards"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["image_name"], ["images.image_name"], name=op.f("fk_board_images_image_name_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("image_name", name=op.f("pk_board_images")),
    )
    op.create_index(op.f("ix_board_images_board_id"), "board_images", ["board_id"], unique=False)
    op.create_index(
        op.f("ix_board_images_board_id_created_at"), "board_images", ["board_id", "created_at"], unique=False
    )
    op.create_table(
        "board_videos",
        sa.Column("board_id", sa.Text(), nullable=False),
        sa.Column("video_name", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["board_id"], ["boards.board_id"], name=op.f("fk_board_videos_board_id_boards"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["video_name"], ["videos.video_name"], name=op.f("fk_board_videos_video_name_videos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("video_name", name=op.f("pk_board_videos")),
    )
    op.create_index(op.f("ix_board_videos_board_id"), "board_videos", ["board_id"], unique=False)
    op.create_index(
        op.f("ix_board_videos_board_id_created_at"), "board_videos", ["board_id", "created_at"], unique=False
    )
    op.create_table(
        "shared_boards",
        sa.Column("board_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("can_edit", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("shared_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["board_id"], ["boards.board_id"], name=op.f("fk_shared_boards_board_id_boards"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name=op.f("fk_shared_boards_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("board_id", "user_id", name=op.f("pk_shared_boards")),
    )
    op.create_index(op.f("ix_shared_boards_board_id"), "shared_boards", ["board_id"], unique=False)
    op.create_index(op.f("ix_shared_boards_user_id"), "shared_boards", ["user_id"], unique=False)
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index(op.f("ix_shared_boards_user_id"), table_name="shared_boards")
    op.drop_index(op.f("ix_shared_boards_board_id"), table_name="shared_boards")
    op.drop_table("shared_boards")
    op.drop_index(op.f("ix_board_videos_board_id_created_at"), table_name="board_videos")
    op.drop_index(op.f("ix_board_videos_board_id"), table_name="board_videos")
    op.drop_table("board_videos")
    op.drop_index(op.f("ix_board_images_board_id_created_at"), table_name="board_images")
    op.drop_index(op.f("ix_board_images_board_id"), table_name="board_images")
    op.drop_table("board_images")
    op.drop_index(op.f("ix_user_sessions_user_id"), table_name="user_sessions")
    op.drop_index(op.f("ix_user_sessions_token_hash"), table_name="user_sessions")
    op.drop_index(op.f("ix_user_sessions_expires_at"), table_name="user_sessions")
    op.drop_table("user_sessions")
    op.drop_index(op.f("ix_user_invitations_expires_at"), table_name="user_invitations")
    op.drop_index(op.f("ix_user_invitations_email"), table_name="user_invitations")
    op.drop_table("user_invitations")
    op.drop_index(op.f("ix_model_relationships_model_key_2"), table_name="model_relationships")
    op.drop_table("model_relationships")
    op.drop_index(op.f("ix_image_subfolder_move_items_job_id_state"), table_name="image_subfolder_move_items")
    op.drop_index(op.f("ix_image_subfolder_move_items_image_name"), table_name="image_subfolder_move_items")
    op.drop_table("image_subfolder_move_items")
    op.drop_index(op.f("ix_client_state_user_id"), table_name="client_state")
    op.drop_table("client_state")
    op.drop_index(op.f("ix_boards_user_id"), table_name="boards")
    op.drop_index(op.f("ix_boards_is_public"), table_name="boards")
    op.drop_index(op.f("ix_boards_created_at"), table_name="boards")
    op.drop_index(op.f("ix_boards_board_visibility"), table_name="boards")
    op.drop_table("boards")
    op.drop_index(op.f("ix_workflow_library_user_id"), table_name="workflow_library")
    op.drop_index(op.f("ix_workflow_library_updated_at"), table_name="workflow_library")
    op.drop_index(op.f("ix_workflow_library_opened_at"), table_name="workflow_library")
    op.drop_index(op.f("ix_workflow_library_name"), table_name="workflow_library")
    op.drop_index(op.f("ix_workflow_library_is_public"), table_name="workflow_library")
    op.drop_index(op.f("ix_workflow_library_description"), table_name="workflow_library")
    op.drop_index(op.f("ix_workflow_library_created_at"), table_name="workflow_library")
    op.drop_index(op.f("ix_workflow_library_category"), table_name="workflow_library")
    op.drop_table("workflow_library")
    op.drop_index(op.f("ix_videos_video_origin"), table_name="videos")
    op.drop_index(op.f("ix_videos_video_category"), table_name="videos")
    op.drop_index(op.f("ix_videos_user_id"), table_name="videos")
    op.drop_index(op.f("ix_videos_starred"), table_name="videos")
    op.drop_index(op.f("ix_videos_created_at"), table_name="videos")
    op.drop_table("videos")
    op.drop_index(op.f("ix_users_is_admin"), table_name="users")
    op.drop_index(op.f("ix_users_is_active"), table_name="users")
    op.drop_table("users")
    op.drop_index(op.f("ix_system_prompts_user_id"), table_name="system_prompts")
    op.drop_index(op.f("ix_system_prompts_name"), table_name="system_prompts")
    op.drop_table("system_prompts")
    op.drop_index(op.f("ix_style_presets_user_id"), table_name="style_presets")
    op.drop_index(op.f("ix_style_presets_name"), table_name="style_presets")
    op.drop_index(op.f("ix_style_presets_is_public"), table_name="style_presets")
    op.drop_table("style_presets")
    op.drop_index(op.f("ix_session_queue_workflow_call_id"), table_name="session_queue")
    op.drop_index(op.f("ix_session_queue_workflow_call_depth"), table_name="session_queue")
    op.drop_index(op.f("ix_session_queue_user_id_started_at"), table_name="session_queue")
    op.drop_index(op.f("ix_session_queue_user_id"), table_name="session_queue")
    op.drop_index(op.f("ix_session_queue_status"), table_name="session_queue")
    op.drop_index("ix_session_queue_round_robin_pending", table_name="session_queue")
    op.drop_index(op.f("ix_session_queue_root_item_id"), table_name="session_queue")
    op.drop_index(op.f("ix_session_queue_priority"), table_name="session_queue")
    op.drop_index(
        "ix_session_queue_pending", table_name="session_queue", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_index(op.f("ix_session_queue_parent_session_id"), table_name="session_queue")
    op.drop_index(op.f("ix_session_queue_parent_item_id"), table_name="session_queue")
    op.drop_index(op.f("ix_session_queue_batch_id"), table_name="session_queue")
    op.drop_table("session_queue")
    op.drop_index(op.f("ix_models_type"), table_name="models")
    op.drop_index(op.f("ix_models_name"), table_name="models")
    op.drop_index(op.f("ix_models_base"), table_name="models")
    op.drop_table("models")
    op.drop_index(op.f("ix_images_user_id"), table_name="images")
    op.drop_index("ix_images_user_category_created", table_name="images")
    op.drop_index(op.f("ix_images_starred"), table_name="images")
    op.drop_index(op.f("ix_images_image_origin"), table_name="images")
    op.drop_index(op.f("ix_images_image_category"), table_name="images")
    op.drop_index(op.f("ix_images_created_at"), table_name="images")
    op.drop_table("images")
    op.drop_table("image_subfolder_move_jobs")
    op.drop_table("app_settings")
