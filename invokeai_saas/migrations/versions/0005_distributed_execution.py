"""Distributed execution: scheduling columns on the queue, claim leases, the worker registry, the fleet's pause
state, per-user scheduling and parked dispatch messages.

Revision ID: 0005_distributed_execution
Revises: 0004_object_storage
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_distributed_execution"
down_revision: str | None = "0004_object_storage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("clock_timestamp()")


def upgrade() -> None:
    op.add_column(
        "session_queue", sa.Column("dispatch_tier", sa.SmallInteger(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column("session_queue", sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column("session_queue", sa.Column("pinned_worker_id", sa.Text(), nullable=True))
    op.create_table(
        "session_queue_leases",
        sa.Column(
            "item_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "session_queue.item_id", ondelete="CASCADE", name="fk_session_queue_leases_item_id_session_queue"
            ),
            primary_key=True,
        ),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("claim_token", sa.Text(), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_session_queue_leases_worker_id", "session_queue_leases", ["worker_id"])
    op.create_index("ix_session_queue_leases_lease_expires_at", "session_queue_leases", ["lease_expires_at"])
    op.create_table(
        "saas_workers",
        sa.Column("worker_id", sa.Text(), primary_key=True),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.Text(), nullable=False),
        sa.Column("gpu_name", sa.Text(), nullable=True),
        sa.Column("gpu_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("tiers", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("current_item_id", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_beat_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_saas_workers_last_beat_at", "saas_workers", ["last_beat_at"])
    op.create_table(
        "saas_fleet_state",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("id = 1", name="ck_saas_fleet_state_single_row"),
    )
    op.execute("INSERT INTO saas_fleet_state (id, paused) VALUES (1, false)")
    op.execute(
        "CREATE TRIGGER saas_fleet_state_updated_at BEFORE UPDATE ON saas_fleet_state "
        "FOR EACH ROW EXECUTE FUNCTION invokeai_saas_set_updated_at()"
    )
    op.create_table(
        "user_scheduling",
        sa.Column(
            "user_id",
            sa.Text(),
            sa.ForeignKey("users.user_id", ondelete="CASCADE", name="fk_user_scheduling_user_id_users"),
            primary_key=True,
        ),
        sa.Column("tier", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.CheckConstraint("max_running IS NULL OR max_running >= 1", name="ck_user_scheduling_max_running_positive"),
    )
    op.create_table(
        "dispatch_parked",
        sa.Column("tier", sa.SmallInteger(), primary_key=True),
        sa.Column("tokens", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.CheckConstraint("tokens >= 0", name="ck_dispatch_parked_tokens_not_negative"),
    )


def downgrade() -> None:
    op.drop_table("dispatch_parked")
    op.drop_table("user_scheduling")
    op.drop_table("saas_fleet_state")
    op.drop_table("saas_workers")
    op.drop_table("session_queue_leases")
    op.drop_column("session_queue", "pinned_worker_id")
    op.drop_column("session_queue", "attempts")
    op.drop_column("session_queue", "dispatch_tier")
