"""Account sessions: one account per email address whatever its case, and signed-out tokens refused.

Revision ID: 0009_account_sessions
Revises: 0008_spending_caps
Create Date: 2026-12-07 23:50:00

Existing addresses that differ only in case are two accounts, each with its own images, credits and keys, and
nothing here can tell which one the person uses: merging or renaming either would hand one account's data or
sign-in to the other. So the upgrade refuses, naming the addresses, and the operator decides (delete the unwanted
one with ``invokeai-saas user delete --email <exact address>``, or rename it in SQL), then upgrades again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "0009_account_sessions"
down_revision: str | None = "0008_spending_caps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("clock_timestamp()")


def _refuse_case_duplicates() -> None:
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT string_agg(email, ', ' ORDER BY email) FROM users GROUP BY lower(email) "
                "HAVING count(*) > 1 ORDER BY min(email)"
            )
        )
        .scalars()
        .all()
    )
    if rows:
        raise CommandError(
            "cannot make email addresses unique without regard to case: these accounts differ only in case: "
            + "; ".join(rows)
            + ". Delete or rename all but one of each (invokeai-saas user delete --email <exact address>), "
            "then upgrade again."
        )


def upgrade() -> None:
    _refuse_case_duplicates()
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "revoked_tokens",
        sa.Column("token_sha256", sa.Text(), primary_key=True),
        sa.Column(
            "user_id",
            sa.Text(),
            sa.ForeignKey("users.user_id", ondelete="CASCADE", name="fk_revoked_tokens_user_id_users"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_revoked_tokens_user_id", "revoked_tokens", ["user_id"])
    op.create_index("ix_revoked_tokens_expires_at", "revoked_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_revoked_tokens_expires_at", table_name="revoked_tokens")
    op.drop_index("ix_revoked_tokens_user_id", table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
    op.drop_index("uq_users_email_lower", table_name="users")
