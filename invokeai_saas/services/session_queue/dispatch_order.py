"""The order in which pending items are served: one definition for the claim and for a user's place in the queue.

A claim (``PostgresSessionQueue._claim_candidate``) takes the first row of this order that it can lock; a user's
``items_ahead`` (the queue status in saas mode) counts the rows of the same order before that user's first pending
item. Defining both here keeps the number a user is shown the order workers really follow.

FIFO (single-user, or ``session_queue_mode=FIFO``): priority, then insertion order — stock's query.

Round robin: stock serves the user least recently served (latest ``started_at``, users never served first, ties by
their best item id), taking that user's best item (priority, then id). The order puts every pending item at (its
rank within its owner's items, the owner's turn), which is the sequence stock's one-at-a-time picks produce (each
claim sends its user to the back). With ``tier_first`` the highest scheduling tier comes first (workers; every
item is tier 0 where the API runs graphs itself), stock's order applying within a tier.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, FromClause, ScalarSelect, func, literal, select

from invokeai_saas.db.tables import session_queue as sq


def _ms(column: Any) -> ColumnElement[Any]:
    return func.date_trunc("milliseconds", column)


def dispatch_order(
    pending: Sequence[ColumnElement[bool]], round_robin: bool, tier_first: bool
) -> tuple[FromClause, list[ColumnElement[Any]]]:
    """The rows to select from (``session_queue`` joined with what the order needs) and the ORDER BY, for the
    pending rows ``pending`` selects."""
    tiers = [sq.c.dispatch_tier.desc()] if tier_first else []
    if not round_robin:
        return sq, [*tiers, sq.c.priority.desc(), sq.c.item_id]
    per_user_order = (sq.c.priority.desc(), sq.c.item_id)
    ranked = (
        select(
            sq.c.item_id,
            sq.c.user_id,
            func.row_number().over(partition_by=sq.c.user_id, order_by=per_user_order).label("user_rank"),
            func.first_value(sq.c.item_id)
            .over(partition_by=sq.c.user_id, order_by=per_user_order)
            .label("best_item_id"),
        )
        .where(*pending)
        .subquery("ranked")
    )
    # One MAX(started_at) seek per user with pending work (ix_session_queue_user_id_started_at), as stock.
    pending_users = select(sq.c.user_id).where(*pending).distinct().subquery("pending_users")
    served = sq.alias("served")
    turns = select(
        pending_users.c.user_id,
        func.coalesce(
            select(_ms(func.max(served.c.started_at)))
            .where(served.c.user_id == pending_users.c.user_id)
            .scalar_subquery(),
            literal(datetime(1970, 1, 1, tzinfo=UTC), DateTime(timezone=True)),
        ).label("last_served"),
    ).subquery("turns")
    source = sq.join(ranked, ranked.c.item_id == sq.c.item_id).join(
        turns, turns.c.user_id.is_not_distinct_from(ranked.c.user_id)
    )
    return source, [*tiers, ranked.c.user_rank, turns.c.last_served, ranked.c.best_item_id, sq.c.item_id]


def items_ahead(queue_id: str, user_id: str, round_robin: bool) -> ScalarSelect[Any]:
    """How many pending items (anyone's) are served before ``user_id``'s next pending item of ``queue_id``; NULL when
    the user has none pending. Claims ignore the queue id (every worker serves every queue), so all count."""
    pending = (sq.c.status == "pending",)
    source, order = dispatch_order(pending, round_robin, tier_first=True)
    positions = (
        select(sq.c.queue_id, sq.c.user_id, func.row_number().over(order_by=order).label("position"))
        .select_from(source)
        .where(*pending)
        .subquery("positions")
    )
    return (
        select(func.min(positions.c.position) - 1)
        .where(positions.c.queue_id == queue_id, positions.c.user_id == user_id)
        .scalar_subquery()
    )
