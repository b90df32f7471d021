"""The credit ledger: 1 credit = 1 GPU-second. Append-only entries, each idempotent by its natural key, plus
projections written in the same transactions.

Entries (``credit_ledger``), all with positive amounts:

- ``grant``: credits from a source (subscription allotment, purchase, trial, test grant, admin adjustment), valid
  from ``valid_from`` until ``valid_until`` (open-ended when null);
- ``hold``: credits set aside for one queue item at enqueue;
- ``settle``: credits an item consumed, one entry per grant it drew from (earliest expiry first), or with no grant
  when nothing was left (the shortfall is the user's debt). Running work is settled ``limit_to_balance`` (at most
  the item's hold plus the available balance, the charge it would have been in ``measured_credits``) unless the
  plan allows debt, so only postpaid plans and direct charges make debt;
- ``release``: the part of a hold the item did not use (all of it when it never ran);
- ``expire``: what was left of a grant when it expired.

Balance = what is left of the unexpired grants − the open holds − debt. The projections (``credit_grant_balances``,
``credit_holds``, ``credit_accounts.debt``) make that one cheap query and make "earliest expiry first" a sorted
scan; ``rebuild`` recomputes the same balance from the entries alone, which is how tests (and an operator in doubt)
check the projections.

Every operation on a user's credits first locks that user's ``credit_accounts`` row, so checks and writes for one
user are serialised across processes (100 concurrent enqueues against a balance for 10 accept exactly 10), while
different users never wait for each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Text, and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert

from invokeai_saas.db.tables import (
    credit_accounts,
    credit_grant_balances,
    credit_holds,
    credit_ledger,
    credit_usage,
)

GRANT_SOURCES = ("subscription", "purchase", "trial", "test", "admin")

ledger = credit_ledger
grants = credit_grant_balances
holds = credit_holds


class InsufficientCredits(Exception):
    """The balance cannot cover what was asked. Its text is the user-facing message (the enqueue route's 402
    detail, or the error of a workflow-call parent whose children it refused), so it says what to do."""

    def __init__(self, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(
            f"Not enough credits: this needs {needed} credits and {available} are available. Buy a credit pack or "
            "move to a larger plan (plans: GET /api/v1/saas/plans)."
        )


@dataclass(frozen=True)
class GrantBalance:
    entry_id: int
    source: str
    granted: int
    remaining: int
    valid_from: datetime
    valid_until: datetime | None


@dataclass(frozen=True)
class Balance:
    """A user's credits at one moment: ``available`` = sum of ``grants`` remaining − ``held`` − ``debt``."""

    available: int
    held: int
    debt: int
    grants: list[GrantBalance] = field(default_factory=list)


@dataclass(frozen=True)
class LedgerEntry:
    """One entry as a user's history shows it (everything but the natural key)."""

    entry_id: int
    kind: str
    source: str | None
    credits: int
    grant_entry_id: int | None
    item_id: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    details: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class DailyUsage:
    """The settled runs of one UTC day."""

    day: date
    items: int
    seconds: float
    credits: int


@dataclass(frozen=True)
class Usage:
    """What a settled run used, for the usage record."""

    seconds: float
    gpu_tier: str
    model: str | None = None
    steps: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Settlement:
    item_id: int
    charged: int
    released: int
    already_settled: bool


def credits_for(seconds: float, multiplier: float = 1.0) -> int:
    """Seconds the session held the device, rounded up, times the tier's multiplier (rounded up to whole credits)."""
    if seconds < 0 or multiplier <= 0:
        raise ValueError("seconds must be >= 0 and the multiplier > 0")
    return math.ceil(math.ceil(seconds) * multiplier - 1e-9)


def _now() -> datetime:
    return datetime.now(UTC)


def _valid_at(at: datetime) -> Any:
    return and_(grants.c.valid_from <= at, or_(grants.c.valid_until.is_(None), grants.c.valid_until > at))


class CreditLedger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # region locking

    @staticmethod
    def lock_account(conn: Connection, user_id: str) -> int:
        """Lock the user's account row for this transaction (creating it if needed); returns the user's debt."""
        conn.execute(pg_insert(credit_accounts).values(user_id=user_id).on_conflict_do_nothing())
        return int(
            conn.execute(
                select(credit_accounts.c.debt).where(credit_accounts.c.user_id == user_id).with_for_update()
            ).scalar_one()
        )

    # endregion

    # region grants

    def grant(
        self,
        user_id: str,
        credits: int,
        source: str,
        natural_key: str,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Add a grant; returns its entry id. The same ``natural_key`` again returns the first grant's id."""
        with self._engine.begin() as conn:
            return self.grant_in(conn, user_id, credits, source, natural_key, valid_from, valid_until, details)

    def grant_in(
        self,
        conn: Connection,
        user_id: str,
        credits: int,
        source: str,
        natural_key: str,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """``grant`` inside the caller's transaction (e.g. with the subscription change it pays for)."""
        if source not in GRANT_SOURCES:
            raise ValueError(f"unknown grant source {source!r}")
        if credits < 0:
            raise ValueError("a grant cannot be negative")
        start = valid_from or _now()
        if valid_until is not None and valid_until <= start:
            raise ValueError("a grant must end after it starts")
        self.lock_account(conn, user_id)
        entry_id = conn.execute(
            pg_insert(ledger)
            .values(
                user_id=user_id,
                kind="grant",
                source=source,
                credits=credits,
                valid_from=start,
                valid_until=valid_until,
                natural_key=natural_key,
                details=dict(details or {}),
            )
            .on_conflict_do_nothing(index_elements=[ledger.c.natural_key])
            .returning(ledger.c.entry_id)
        ).scalar()
        if entry_id is None:
            return int(conn.execute(select(ledger.c.entry_id).where(ledger.c.natural_key == natural_key)).scalar_one())
        conn.execute(
            insert(grants).values(
                grant_entry_id=entry_id, user_id=user_id, remaining=credits, valid_from=start, valid_until=valid_until
            )
        )
        return int(entry_id)

    def expire_due(self, at: datetime | None = None) -> int:
        """Write an ``expire`` entry for every grant that ended with credits left; returns how many. Idempotent and
        safe from several processes at once (each grant's row is locked, its natural key is unique)."""
        at = at or _now()
        expired = 0
        with self._engine.begin() as conn:
            rows = conn.execute(
                select(grants.c.grant_entry_id, grants.c.user_id, grants.c.remaining)
                .where(grants.c.valid_until <= at, grants.c.remaining > 0)
                .order_by(grants.c.grant_entry_id)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                conn.execute(
                    pg_insert(ledger)
                    .values(
                        user_id=row.user_id,
                        kind="expire",
                        credits=row.remaining,
                        grant_entry_id=row.grant_entry_id,
                        natural_key=f"expire:{row.grant_entry_id}",
                    )
                    .on_conflict_do_nothing(index_elements=[ledger.c.natural_key])
                )
                conn.execute(update(grants).where(grants.c.grant_entry_id == row.grant_entry_id).values(remaining=0))
                expired += 1
        return expired

    # endregion

    # region holds

    def available_in(self, conn: Connection, user_id: str, debt: int, at: datetime | None = None) -> int:
        at = at or _now()
        granted = conn.execute(
            select(func.coalesce(func.sum(grants.c.remaining), 0)).where(grants.c.user_id == user_id, _valid_at(at))
        ).scalar_one()
        held = conn.execute(
            select(func.coalesce(func.sum(holds.c.held), 0)).where(holds.c.user_id == user_id)
        ).scalar_one()
        return int(granted) - int(held) - debt

    @staticmethod
    def available_many(conn: Connection, user_ids: Sequence[str], at: datetime | None = None) -> dict[str, int]:
        """Each user's available balance (as ``Balance.available``) in one statement, without locking: for passes
        that look at many users at once (the spending cap); what they then charge goes through ``settle``."""
        if not user_ids:
            return {}
        at = at or _now()
        granted = (
            select(grants.c.user_id, func.sum(grants.c.remaining).label("credits"))
            .where(grants.c.user_id.in_(user_ids), _valid_at(at))
            .group_by(grants.c.user_id)
            .subquery()
        )
        held = (
            select(holds.c.user_id, func.sum(holds.c.held).label("credits"))
            .where(holds.c.user_id.in_(user_ids))
            .group_by(holds.c.user_id)
            .subquery()
        )
        wanted = select(func.unnest(literal(list(user_ids), ARRAY(Text))).label("user_id")).subquery()
        rows = conn.execute(
            select(
                wanted.c.user_id,
                func.coalesce(granted.c.credits, 0)
                - func.coalesce(held.c.credits, 0)
                - func.coalesce(credit_accounts.c.debt, 0),
            )
            .select_from(wanted)
            .outerjoin(granted, granted.c.user_id == wanted.c.user_id)
            .outerjoin(held, held.c.user_id == wanted.c.user_id)
            .outerjoin(credit_accounts, credit_accounts.c.user_id == wanted.c.user_id)
        ).all()
        return {str(user_id): int(available) for user_id, available in rows}

    def hold_in(self, conn: Connection, user_id: str, item_credits: Sequence[tuple[int, int]]) -> None:
        """Hold credits for queue items, inside the caller's transaction (the one that inserts the items): all or
        nothing. Raises ``InsufficientCredits`` when the balance cannot cover them all."""
        debt = self.lock_account(conn, user_id)
        needed = sum(credits for _, credits in item_credits)
        available = self.available_in(conn, user_id, debt)
        if needed > available:
            raise InsufficientCredits(needed, max(available, 0))
        if not item_credits:
            return
        conn.execute(
            insert(ledger),
            [
                {"user_id": user_id, "kind": "hold", "credits": c, "item_id": i, "natural_key": f"hold:{i}"}
                for i, c in item_credits
            ],
        )
        conn.execute(insert(holds), [{"item_id": i, "user_id": user_id, "held": c} for i, c in item_credits])

    def hold(self, user_id: str, item_credits: Sequence[tuple[int, int]]) -> None:
        with self._engine.begin() as conn:
            self.hold_in(conn, user_id, item_credits)

    def release(self, user_id: str, item_id: int, reason: str) -> int:
        """Release what is still held for an item that will not be charged (it failed by the system or was canceled
        before it started); returns the credits released (0 when nothing was held, or it was already settled or
        released)."""
        with self._engine.begin() as conn:
            self.lock_account(conn, user_id)
            return self._release_in(conn, user_id, item_id, reason)

    @staticmethod
    def _release_in(conn: Connection, user_id: str, item_id: int, reason: str) -> int:
        held = conn.execute(delete(holds).where(holds.c.item_id == item_id).returning(holds.c.held)).scalar()
        if held is None:
            return 0
        CreditLedger._record_release(conn, user_id, item_id, int(held), reason)
        return int(held)

    @staticmethod
    def _record_release(conn: Connection, user_id: str, item_id: int, credits: int, reason: str) -> None:
        """The item's one ``release`` entry (its natural key makes a second one a no-op)."""
        conn.execute(
            pg_insert(ledger)
            .values(
                user_id=user_id,
                kind="release",
                credits=credits,
                item_id=item_id,
                natural_key=f"release:{item_id}",
                details={"reason": reason},
            )
            .on_conflict_do_nothing(index_elements=[ledger.c.natural_key])
        )

    # endregion

    # region settlement

    def settle(
        self,
        user_id: str,
        item_id: int,
        credits: int,
        usage: Usage,
        *,
        limit_to_balance: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> Settlement:
        """Charge an item that ran: consume ``credits`` from the user's grants (earliest expiry first), release the
        rest of its hold, and write its usage record. Exactly once per item: a second call (a duplicate delivery,
        a retried worker, the worker settling an item a stop already charged) finds the usage record and charges
        nothing.

        With ``limit_to_balance`` the charge is at most what the user can pay: the item's hold plus the available
        balance (a hold is a spending cap; only plans that allow debt charge beyond it). ``details`` go on the
        settle entries (why the item was charged: a stop, a cap)."""
        with self._engine.begin() as conn:
            return self.settle_in(
                conn, user_id, item_id, credits, usage, limit_to_balance=limit_to_balance, details=details
            )

    def settle_in(
        self,
        conn: Connection,
        user_id: str,
        item_id: int,
        credits: int,
        usage: Usage,
        *,
        limit_to_balance: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> Settlement:
        """``settle`` inside the caller's transaction (a queue stop charges in the statement that stops the item)."""
        if credits < 0:
            raise ValueError("a charge cannot be negative")
        debt = self.lock_account(conn, user_id)
        if conn.execute(select(credit_usage.c.item_id).where(credit_usage.c.item_id == item_id)).first():
            return Settlement(item_id, 0, 0, already_settled=True)
        held = conn.execute(delete(holds).where(holds.c.item_id == item_id).returning(holds.c.held)).scalar()
        entry_details = dict(details or {})
        if limit_to_balance:
            # The hold is gone already, so what is available now is the hold plus the balance beside it.
            payable = max(self.available_in(conn, user_id, debt), 0)
            if credits > payable:
                entry_details["measured_credits"] = credits
                credits = payable
        left = credits
        at = _now()
        candidates = conn.execute(
            select(grants.c.grant_entry_id, grants.c.remaining)
            .where(grants.c.user_id == user_id, grants.c.remaining > 0, _valid_at(at))
            .order_by(grants.c.valid_until.asc().nulls_last(), grants.c.valid_from, grants.c.grant_entry_id)
            .with_for_update()
        ).all()
        entries: list[dict[str, Any]] = []
        for grant in candidates:
            if left == 0:
                break
            take = min(left, int(grant.remaining))
            conn.execute(
                update(grants)
                .where(grants.c.grant_entry_id == grant.grant_entry_id)
                .values(remaining=grants.c.remaining - take)
            )
            entries.append(
                {
                    "credits": take,
                    "grant_entry_id": grant.grant_entry_id,
                    "natural_key": f"settle:{item_id}:{grant.grant_entry_id}",
                }
            )
            left -= take
        if left > 0 or not entries:
            # Nothing (or not enough) left to draw from: the rest is the user's debt. Also written for a zero
            # charge, so every settled item has a settle entry.
            entries.append({"credits": left, "grant_entry_id": None, "natural_key": f"settle:{item_id}:uncovered"})
            conn.execute(update(credit_accounts).where(credit_accounts.c.user_id == user_id).values(debt=debt + left))
        conn.execute(
            insert(ledger),
            [
                {"user_id": user_id, "kind": "settle", "item_id": item_id, "details": entry_details, **entry}
                for entry in entries
            ],
        )
        released = max(int(held) - credits, 0) if held is not None else 0
        if held is not None:
            self._record_release(conn, user_id, item_id, released, "settled")
        conn.execute(
            insert(credit_usage).values(
                item_id=item_id,
                user_id=user_id,
                model=usage.model,
                gpu_tier=usage.gpu_tier,
                steps=usage.steps,
                width=usage.width,
                height=usage.height,
                seconds=usage.seconds,
                credits=credits,
            )
        )
        return Settlement(item_id, credits, released, already_settled=False)

    # endregion

    # region reading

    def balance(self, user_id: str, at: datetime | None = None) -> Balance:
        """The balance from the projections (what every check uses)."""
        at = at or _now()
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    grants.c.grant_entry_id,
                    ledger.c.source,
                    ledger.c.credits,
                    grants.c.remaining,
                    grants.c.valid_from,
                    grants.c.valid_until,
                )
                .join(ledger, ledger.c.entry_id == grants.c.grant_entry_id)
                .where(grants.c.user_id == user_id, _valid_at(at), grants.c.remaining > 0)
                .order_by(grants.c.valid_until.asc().nulls_last(), grants.c.valid_from, grants.c.grant_entry_id)
            ).all()
            held = conn.execute(
                select(func.coalesce(func.sum(holds.c.held), 0)).where(holds.c.user_id == user_id)
            ).scalar_one()
            debt = conn.execute(
                select(func.coalesce(func.max(credit_accounts.c.debt), 0)).where(credit_accounts.c.user_id == user_id)
            ).scalar_one()
        breakdown = [GrantBalance(r[0], r[1], int(r[2]), int(r[3]), r[4], r[5]) for r in rows]
        remaining = sum(g.remaining for g in breakdown)
        return Balance(remaining - int(held) - int(debt), int(held), int(debt), breakdown)

    def history(self, user_id: str, offset: int = 0, limit: int = 50) -> tuple[list[LedgerEntry], int]:
        """One page of the user's entries, newest first, and how many entries the user has in all. Ordered by
        ``(created_at, entry_id)`` descending, a total order, so pages neither repeat nor skip an entry."""
        if offset < 0 or limit < 1:
            raise ValueError("offset must be >= 0 and limit >= 1")
        with self._engine.connect() as conn:
            total = conn.execute(
                select(func.count()).select_from(ledger).where(ledger.c.user_id == user_id)
            ).scalar_one()
            rows = conn.execute(
                select(
                    ledger.c.entry_id,
                    ledger.c.kind,
                    ledger.c.source,
                    ledger.c.credits,
                    ledger.c.grant_entry_id,
                    ledger.c.item_id,
                    ledger.c.valid_from,
                    ledger.c.valid_until,
                    ledger.c.details,
                    ledger.c.created_at,
                )
                .where(ledger.c.user_id == user_id)
                .order_by(ledger.c.created_at.desc(), ledger.c.entry_id.desc())
                .offset(offset)
                .limit(limit)
            ).all()
        entries = [
            LedgerEntry(
                entry_id=int(r.entry_id),
                kind=r.kind,
                source=r.source,
                credits=int(r.credits),
                grant_entry_id=r.grant_entry_id,
                item_id=r.item_id,
                valid_from=r.valid_from,
                valid_until=r.valid_until,
                details=dict(r.details or {}),
                created_at=r.created_at,
            )
            for r in rows
        ]
        return entries, int(total)

    def usage_by_day(self, user_id: str, since: datetime) -> list[DailyUsage]:
        """The user's settled runs from ``since`` on, summed per UTC day, oldest first; days without a run are
        absent (callers that chart them fill the gaps)."""
        day = func.date(func.timezone("UTC", credit_usage.c.created_at))
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    day.label("day"),
                    func.count().label("items"),
                    func.coalesce(func.sum(credit_usage.c.seconds), 0.0).label("seconds"),
                    func.coalesce(func.sum(credit_usage.c.credits), 0).label("credits"),
                )
                .where(credit_usage.c.user_id == user_id, credit_usage.c.created_at >= since)
                .group_by(day)
                .order_by(day)
            ).all()
        return [DailyUsage(r.day, int(r.items), float(r.seconds), int(r.credits)) for r in rows]

    def rebuild(self, user_id: str, at: datetime | None = None) -> Balance:
        """The balance computed from the ledger entries alone, ignoring the projections."""
        at = at or _now()
        with self._engine.connect() as conn:
            entries = conn.execute(select(ledger).where(ledger.c.user_id == user_id).order_by(ledger.c.entry_id)).all()
        granted: dict[int, Any] = {}
        drawn: dict[int, int] = {}
        per_item: dict[int, int] = {}
        debt = 0
        for e in entries:
            if e.kind == "grant":
                granted[e.entry_id] = e
            elif e.kind in ("settle", "expire") and e.grant_entry_id is not None:
                drawn[e.grant_entry_id] = drawn.get(e.grant_entry_id, 0) + e.credits
            if e.kind == "settle" and e.grant_entry_id is None:
                debt += e.credits
            if e.kind == "hold":
                per_item[e.item_id] = per_item.get(e.item_id, 0) + e.credits
            elif e.kind in ("settle", "release") and e.item_id is not None:
                per_item[e.item_id] = per_item.get(e.item_id, 0) - e.credits
        breakdown = []
        for entry_id, g in sorted(granted.items()):
            remaining = g.credits - drawn.get(entry_id, 0)
            live = g.valid_from <= at and (g.valid_until is None or g.valid_until > at)
            if live and remaining > 0:
                breakdown.append(GrantBalance(entry_id, g.source, g.credits, remaining, g.valid_from, g.valid_until))
        breakdown.sort(key=lambda g: (g.valid_until is None, g.valid_until or at, g.valid_from, g.entry_id))
        held = sum(max(open_, 0) for open_ in per_item.values())
        return Balance(sum(g.remaining for g in breakdown) - held - debt, held, debt, breakdown)

    # endregion


__all__ = [
    "Balance",
    "CreditLedger",
    "DailyUsage",
    "GrantBalance",
    "InsufficientCredits",
    "LedgerEntry",
    "Settlement",
    "Usage",
    "credits_for",
]
