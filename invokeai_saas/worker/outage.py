"""Riding out a PostgreSQL outage in a worker: the writes that record how a run ended are retried, not lost.

A run's outcome exists only in the worker's memory until its completion write commits. Stock's processor treats a
failed write as the item's own failure and, when the write of that failure fails too, its thread dies with the
item still ``in_progress``. A database restart takes seconds, so the worker retries such writes with a bounded
backoff for about a lease period. Retrying is safe: every write is conditional on the claim's fencing token, so
after the reaper took the item over a late write changes nothing. Past the budget the caller gets
``DatabaseUnavailable`` (without the driver's text, which names SQL), and the item is handed back when the worker
lets go of it, to run again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

T = TypeVar("T")

logger = logging.getLogger("invokeai_saas.worker")

_FIRST_DELAY_SECONDS = 0.1
_MAX_DELAY_SECONDS = 1.0


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL did not answer within the retry budget of a write about a running item."""


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says the database is unreachable (refused, restarted, connection dropped), as opposed
    to a statement the database refused, which retrying would not change."""
    if isinstance(error, (OperationalError, InterfaceError)):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def retry_through_outage(call: Callable[[], T], budget_seconds: float, what: str) -> T:
    """Run ``call``; while it fails because the database is unreachable, try again (0.1 s doubling to 1 s) for
    ``budget_seconds``, then raise ``DatabaseUnavailable``. Any other error is raised at once."""
    deadline = time.monotonic() + budget_seconds
    delay = _FIRST_DELAY_SECONDS
    warned = False
    while True:
        try:
            return call()
        except Exception as e:
            if not is_outage(e):
                raise
            if time.monotonic() + delay > deadline:
                logger.error(f"PostgreSQL stayed unreachable for {budget_seconds:g}s while {what}; giving up")
                raise DatabaseUnavailable(f"The database was unreachable while {what}.") from None
            if not warned:
                logger.warning(f"PostgreSQL is unreachable while {what} ({type(e).__name__}); retrying")
                warned = True
        time.sleep(delay)
        delay = min(delay * 2, _MAX_DELAY_SECONDS)
