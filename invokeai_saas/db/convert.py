"""Conversions between PostgreSQL values and what InvokeAI's SQLite services hand out.

Stock stores times as UTC text and its DTOs pass those strings through (several DTO fields are
``datetime | str``), so API clients see ``2026-11-23 18:06:15.297`` (millisecond defaults,
``STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')``) or ``2026-11-23 18:06:15`` (``CURRENT_TIMESTAMP`` defaults).
The PostgreSQL services return the same text, so routers and clients cannot tell the backends apart.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def stock_ms(value: datetime | None) -> str | None:
    """``YYYY-MM-DD HH:MM:SS.fff`` in UTC, like SQLite's ``STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')``."""
    if value is None:
        return None
    return utc_naive(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def stock_seconds(value: datetime | None) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, like SQLite's ``CURRENT_TIMESTAMP``."""
    if value is None:
        return None
    return utc_naive(value).strftime("%Y-%m-%d %H:%M:%S")


def escape_like(prefix: str) -> str:
    r"""Escape LIKE wildcards so a caller's string is matched literally (used with ``ESCAPE '\'``)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
