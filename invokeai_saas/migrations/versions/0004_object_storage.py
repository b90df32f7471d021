"""Object storage bookkeeping: the object index, per-user usage kept by trigger, the pending-delete journal.

Revision ID: 0004_object_storage
Revises: 0003_postgres_query_indexes
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_object_storage"
down_revision: str | None = "0003_postgres_query_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("clock_timestamp()")

# Usage follows the index row by row: the usage row's lock serialises concurrent writers of one user, so the
# totals are exact whatever the interleaving (no read-modify-write in Python). Bulk-download archives are
# temporary copies of media already counted, so they do not count against the user.
_USAGE_TRIGGER = """
CREATE FUNCTION invokeai_saas_storage_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.kind <> 'bulk_download' THEN
        UPDATE user_storage_usage SET bytes = bytes - OLD.bytes, objects = objects - 1 WHERE user_id = OLD.user_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.kind <> 'bulk_download' THEN
        INSERT INTO user_storage_usage (user_id, bytes, objects) VALUES (NEW.user_id, NEW.bytes, 1)
        ON CONFLICT (user_id) DO UPDATE
            SET bytes = user_storage_usage.bytes + EXCLUDED.bytes, objects = user_storage_usage.objects + 1;
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "storage_objects",
        sa.Column("object_key", sa.Text(), primary_key=True),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("bytes >= 0", name="ck_storage_objects_bytes"),
    )
    op.create_index("ix_storage_objects_user_id", "storage_objects", ["user_id"])
    op.create_index("ux_storage_objects_kind_name", "storage_objects", ["kind", "name"], unique=True)
    op.create_table(
        "user_storage_usage",
        sa.Column("user_id", sa.Text(), primary_key=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("objects", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "storage_pending_deletes",
        sa.Column("object_key", sa.Text(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.execute(_USAGE_TRIGGER)
    op.execute(
        "CREATE TRIGGER storage_objects_usage AFTER INSERT OR UPDATE OF bytes, user_id OR DELETE ON storage_objects "
        "FOR EACH ROW EXECUTE FUNCTION invokeai_saas_storage_usage()"
    )
    op.execute(
        "CREATE TRIGGER storage_objects_updated_at BEFORE UPDATE ON storage_objects "
        "FOR EACH ROW EXECUTE FUNCTION invokeai_saas_set_updated_at()"
    )


def downgrade() -> None:
    op.drop_table("storage_pending_deletes")
    op.drop_table("user_storage_usage")
    op.drop_table("storage_objects")
    op.execute("DROP FUNCTION IF EXISTS invokeai_saas_storage_usage()")
