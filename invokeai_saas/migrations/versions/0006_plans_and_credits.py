"""Plans, subscriptions and the credit ledger with its projections; every user (existing and new) starts on Trial.

Revision ID: 0006_plans_and_credits
Revises: 0005_distributed_execution
Create Date: 2026-12-03 12:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006_plans_and_credits"
down_revision: str | None = "0005_distributed_execution"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("clock_timestamp()")
EMPTY_JSON = sa.text("'{}'::jsonb")

# (plan_id, name, price_cents, billing_period, monthly_credits, trial_days, gpu_tier, priority, concurrent_jobs,
#  queue_size, storage_gb, max_resolution, max_batch_size, model_access, node_editor, api_access, public, sort)
PLANS = (
    ("trial", "Trial", 0, None, 500, 7, "standard", 0, 1, 10, 2, 1024, 4, "sd_only", False, False, True, 0),
    (
        "starter",
        "Starter",
        2500,
        "month",
        5000,
        None,
        "standard",
        0,
        1,
        50,
        25,
        1536,
        8,
        "flux_included",
        True,
        False,
        True,
        1,
    ),
    ("pro", "Pro", 7500, "month", 15000, None, "high", 1, 2, 100, 100, 2048, 16, "full", True, True, True, 2),
    ("studio", "Studio", 15000, "month", 30000, None, "high", 2, 4, 250, 500, 2048, 32, "full", True, True, True, 3),
    (
        "enterprise",
        "Enterprise",
        None,
        "month",
        None,
        None,
        "dedicated",
        2,
        8,
        1000,
        2000,
        4096,
        64,
        "full",
        True,
        True,
        True,
        4,
    ),
    ("tester", "Tester", 0, "month", 50000, None, "high", 1, 2, 100, 100, 2048, 16, "full", True, True, False, 5),
)
PLAN_COLUMNS = (
    "plan_id", "name", "price_cents", "billing_period", "monthly_credits", "trial_days", "gpu_tier", "priority",
    "concurrent_jobs", "queue_size", "storage_gb", "max_resolution", "max_batch_size", "model_access", "node_editor",
    "api_access", "public", "sort_order",
)  # fmt: skip

# Every user has exactly one subscription from the moment the row exists, whichever path created it (the API,
# the CLI, an import): new users start on Trial with its credits, as one statement with the user's INSERT.
_START_TRIAL = """
CREATE FUNCTION invokeai_saas_start_trial() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    trial plans%ROWTYPE;
    started timestamptz := clock_timestamp();
    grant_id bigint;
BEGIN
    SELECT * INTO trial FROM plans WHERE plan_id = 'trial';
    INSERT INTO credit_accounts (user_id) VALUES (NEW.user_id) ON CONFLICT DO NOTHING;
    INSERT INTO subscriptions (user_id, plan_id, status, period_start, period_end)
    VALUES (NEW.user_id, 'trial', 'trialing', started, started + make_interval(days => trial.trial_days))
    ON CONFLICT DO NOTHING;
    INSERT INTO credit_ledger (user_id, kind, source, credits, valid_from, valid_until, natural_key)
    VALUES (NEW.user_id, 'grant', 'trial', trial.monthly_credits, started,
            started + make_interval(days => trial.trial_days), 'grant:trial:' || NEW.user_id)
    ON CONFLICT (natural_key) DO NOTHING
    RETURNING entry_id INTO grant_id;
    IF grant_id IS NOT NULL THEN
        INSERT INTO credit_grant_balances (grant_entry_id, user_id, remaining, valid_from, valid_until)
        VALUES (grant_id, NEW.user_id, trial.monthly_credits, started,
                started + make_interval(days => trial.trial_days));
    END IF;
    RETURN NULL;
END $$
"""


# The same steps for the users that exist when the migration runs (they start their trial now).
_BACKFILL = """
WITH trial AS (SELECT monthly_credits, trial_days FROM plans WHERE plan_id = 'trial'),
accounts AS (INSERT INTO credit_accounts (user_id) SELECT user_id FROM users ON CONFLICT DO NOTHING),
subs AS (
    INSERT INTO subscriptions (user_id, plan_id, status, period_start, period_end)
    SELECT u.user_id, 'trial', 'trialing', clock_timestamp(), clock_timestamp() + make_interval(days => t.trial_days)
    FROM users u CROSS JOIN trial t ON CONFLICT DO NOTHING
),
grants AS (
    INSERT INTO credit_ledger (user_id, kind, source, credits, valid_from, valid_until, natural_key)
    SELECT u.user_id, 'grant', 'trial', t.monthly_credits, clock_timestamp(),
           clock_timestamp() + make_interval(days => t.trial_days), 'grant:trial:' || u.user_id
    FROM users u CROSS JOIN trial t
    ON CONFLICT (natural_key) DO NOTHING
    RETURNING entry_id, user_id, credits, valid_from, valid_until
)
INSERT INTO credit_grant_balances (grant_entry_id, user_id, remaining, valid_from, valid_until)
SELECT entry_id, user_id, credits, valid_from, valid_until FROM grants
"""


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("plan_id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=True),
        sa.Column("billing_period", sa.Text(), nullable=True),
        sa.Column("monthly_credits", sa.BigInteger(), nullable=True),
        sa.Column("trial_days", sa.Integer(), nullable=True),
        sa.Column("gpu_tier", sa.Text(), nullable=False),
        sa.Column("credit_multiplier", sa.Float(), nullable=False, server_default=sa.text("1")),
        sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("concurrent_jobs", sa.Integer(), nullable=False),
        sa.Column("queue_size", sa.Integer(), nullable=False),
        sa.Column("storage_gb", sa.Integer(), nullable=False),
        sa.Column("max_resolution", sa.Integer(), nullable=False),
        sa.Column("max_batch_size", sa.Integer(), nullable=False),
        sa.Column("model_access", sa.Text(), nullable=False),
        sa.Column("node_editor", sa.Boolean(), nullable=False),
        sa.Column("api_access", sa.Boolean(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("sort_order", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.CheckConstraint("model_access IN ('sd_only', 'flux_included', 'full')", name="ck_plans_model_access"),
        sa.CheckConstraint("credit_multiplier > 0", name="ck_plans_credit_multiplier_positive"),
    )
    plans = sa.table("plans", *(sa.column(name) for name in PLAN_COLUMNS))
    op.bulk_insert(plans, [dict(zip(PLAN_COLUMNS, row, strict=True)) for row in PLANS])
    op.create_table(
        "subscriptions",
        sa.Column(
            "user_id",
            sa.Text(),
            sa.ForeignKey("users.user_id", ondelete="CASCADE", name="fk_subscriptions_user_id_users"),
            primary_key=True,
        ),
        sa.Column(
            "plan_id",
            sa.Text(),
            sa.ForeignKey("plans.plan_id", name="fk_subscriptions_plan_id_plans"),
            nullable=False,
        ),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overrides", JSONB(), nullable=False, server_default=EMPTY_JSON),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'canceled', 'expired')", name="ck_subscriptions_status"
        ),
    )
    op.create_index("ix_subscriptions_plan_id", "subscriptions", ["plan_id"])
    op.create_index("ix_subscriptions_period_end", "subscriptions", ["period_end"])
    op.execute(
        "CREATE TRIGGER subscriptions_updated_at BEFORE UPDATE ON subscriptions "
        "FOR EACH ROW EXECUTE FUNCTION invokeai_saas_set_updated_at()"
    )
    op.create_table(
        "credit_ledger",
        sa.Column("entry_id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column(
            "grant_entry_id",
            sa.BigInteger(),
            sa.ForeignKey("credit_ledger.entry_id", name="fk_credit_ledger_grant_entry_id_credit_ledger"),
            nullable=True,
        ),
        sa.Column("item_id", sa.BigInteger(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("natural_key", sa.Text(), nullable=False),
        sa.Column("details", JSONB(), nullable=False, server_default=EMPTY_JSON),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("kind IN ('grant', 'hold', 'settle', 'release', 'expire')", name="ck_credit_ledger_kind"),
        sa.CheckConstraint("credits >= 0", name="ck_credit_ledger_credits_not_negative"),
        sa.CheckConstraint(
            "kind <> 'grant' OR source IN ('subscription', 'purchase', 'trial', 'test', 'admin')",
            name="ck_credit_ledger_grant_source",
        ),
        sa.UniqueConstraint("natural_key", name="uq_credit_ledger_natural_key"),
    )
    op.create_index("ix_credit_ledger_user_id_created_at", "credit_ledger", ["user_id", "created_at"])
    op.create_index("ix_credit_ledger_item_id", "credit_ledger", ["item_id"])
    op.create_table(
        "credit_accounts",
        sa.Column(
            "user_id",
            sa.Text(),
            sa.ForeignKey("users.user_id", ondelete="CASCADE", name="fk_credit_accounts_user_id_users"),
            primary_key=True,
        ),
        sa.Column("debt", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "credit_grant_balances",
        sa.Column(
            "grant_entry_id",
            sa.BigInteger(),
            sa.ForeignKey("credit_ledger.entry_id", name="fk_credit_grant_balances_grant_entry_id_credit_ledger"),
            primary_key=True,
        ),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("remaining >= 0", name="ck_credit_grant_balances_remaining_not_negative"),
    )
    op.create_index("ix_credit_grant_balances_user_id_valid_until", "credit_grant_balances", ["user_id", "valid_until"])
    op.create_table(
        "credit_holds",
        sa.Column("item_id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("held >= 0", name="ck_credit_holds_held_not_negative"),
    )
    op.create_index("ix_credit_holds_user_id", "credit_holds", ["user_id"])
    op.create_table(
        "credit_usage",
        sa.Column("item_id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("gpu_tier", sa.Text(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_credit_usage_user_id_created_at", "credit_usage", ["user_id", "created_at"])
    op.execute(_START_TRIAL)
    op.execute(
        "CREATE TRIGGER users_start_trial AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION invokeai_saas_start_trial()"
    )
    # Users that exist already start their trial now, as new ones will.
    op.execute(_BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS users_start_trial ON users")
    op.execute("DROP FUNCTION IF EXISTS invokeai_saas_start_trial()")
    op.drop_table("credit_usage")
    op.drop_table("credit_holds")
    op.drop_table("credit_grant_balances")
    op.drop_table("credit_accounts")
    op.drop_table("credit_ledger")
    op.drop_table("subscriptions")
    op.drop_table("plans")
