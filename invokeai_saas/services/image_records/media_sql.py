"""SQL building blocks shared by the image and video record services: the parts of stock's SQLite gallery
queries whose exact semantics are SQLite's own (``LIKE``, text timestamps, ``LIMIT``/``OFFSET`` edge cases),
reproduced in PostgreSQL so both backends filter and page the same rows."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Text, func, literal
from sqlalchemy.dialects.postgresql import ARRAY

from invokeai_saas.db.convert import stock_ms

_ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
_STOCK_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def stock_ms_text(column: ColumnElement[Any]) -> ColumnElement[str]:
    """The text SQLite holds for a ``STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')`` column (UTC, milliseconds truncated,
    as ``to_char``'s ``MS`` does), for the predicates stock applies to that text."""
    return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24:MI:SS.MS")


def sqlite_like(value: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    """``value LIKE pattern`` with SQLite's rules.

    SQLite's ``LIKE`` folds case for ASCII letters only (``'É'`` does not match ``'é'``) and has no escape
    character (a backslash is literal), while PostgreSQL's ``ILIKE`` folds every letter and ``LIKE``'s
    default escape is a backslash. Folding ASCII on the value side and disabling the escape reproduces
    SQLite exactly; stock lowercases the pattern itself before binding it. ``%`` and ``_`` stay wildcards,
    as in stock, which does not escape the caller's search term.
    """
    folded = func.translate(value, _ASCII_UPPER, _ASCII_LOWER)
    return folded.like(pattern.translate(str.maketrans(_ASCII_UPPER, _ASCII_LOWER)), escape="")


def search_pattern(search_term: str) -> str:
    """The pattern stock binds for a gallery search: the lowercased term, unescaped, anywhere in the text."""
    return f"%{search_term.lower()}%"


def text_array(values: Iterable[str]) -> ColumnElement[list[str]]:
    """One ``text[]`` bind parameter (for ``= ANY(...)``): a single parameter whatever the number of names,
    where an expanded ``IN`` would hit the protocol's 65,535-parameter limit on large deletes."""
    return literal(list(values), type_=ARRAY(Text))


def sqlite_limit(limit: int) -> int | None:
    """SQLite treats a negative ``LIMIT`` as no limit; PostgreSQL rejects it."""
    return None if limit < 0 else limit


def sqlite_offset(offset: int) -> int:
    """SQLite treats a negative ``OFFSET`` as zero; PostgreSQL rejects it."""
    return max(offset, 0)


def created_at_result(created_at: datetime) -> datetime:
    """What stock's ``save`` returns: ``datetime.fromisoformat`` of the stored millisecond text (naive UTC)."""
    text_value = stock_ms(created_at)
    assert text_value is not None
    return datetime.fromisoformat(text_value)


def stock_date_range(value: str) -> tuple[datetime, datetime | None] | None:
    """The UTC half-open range of ``created_at`` for which SQLite's ``DATE(created_at) = value`` holds.

    ``DATE()`` always yields a canonical ``YYYY-MM-DD``, so any other spelling (``2026-3-18``, a basic-format
    ``20260318``, an impossible ``2026-02-30``) matches no row: ``None``. A range keeps the predicate on the
    bare column, so the ``created_at`` indexes serve it; the upper bound is ``None`` past year 9999.
    """
    if not _STOCK_DATE.fullmatch(value):
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    try:
        end: datetime | None = start + timedelta(days=1)
    except OverflowError:
        end = None
    return start, end
