"""Spending caps: each plan's longest run per item, whether its accounts may go into debt, and the seconds a queue
item ran in segments that already ended (a workflow-call parent parks for its child: every stop charges those too).

Revision ID: 0008_spending_caps
Revises: 0007_api_keys
Create Date: 2026-12-07 23:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_spending_caps"
down_revision: str | None = "0007_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The longest one queue item may run on each plan, in seconds (hosted services cap run time per tier).
MAX_RUN_SECONDS = {
    "trial": 300,
    "starter": 600,
    "pro": 1200,
    "studio": 1800,
    "enterprise": 3600,
    "tester": 1200,
}


def upgrade() -> None:
    op.add_column("plans", sa.Column("max_run_seconds", sa.Integer(), nullable=False, server_default=sa.text("600")))
    op.add_column("plans", sa.Column("allow_debt", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    op.create_check_constraint("ck_plans_max_run_seconds_positive", "plans", "max_run_seconds > 0")
    plans = sa.table("plans", sa.column("plan_id"), sa.column("max_run_seconds"), sa.column("allow_debt"))
    for plan_id, seconds in MAX_RUN_SECONDS.items():
        op.execute(plans.update().where(plans.c.plan_id == plan_id).values(max_run_seconds=seconds))
    op.execute(plans.update().where(plans.c.plan_id == "enterprise").values(allow_debt=True))
    op.add_column(
        "session_queue",
        sa.Column("earlier_run_seconds", sa.Float(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("session_queue", "earlier_run_seconds")
    op.drop_constraint("ck_plans_max_run_seconds_positive", "plans", type_="check")
    op.drop_column("plans", "allow_debt")
    op.drop_column("plans", "max_run_seconds")
