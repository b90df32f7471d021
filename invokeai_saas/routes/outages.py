"""A database outage answers 503 with ``Retry-After``, and a value the database refuses answers 422, whichever route
met them.

Stock routes turn exceptions into ``HTTPException(500, ...)`` (the enqueue route: "Unexpected error"), let them
escape as a bare 500, or meet them in a dependency (the bearer-token check reads the user). Whichever it was, the
driver's exception is in the chain (``HTTPException.__context__`` → the service's exception → SQLAlchemy's, whose
``__cause__`` is the driver's), so these handlers look for it there, as the object-store handlers do
(``invokeai_saas.storage.http_errors``):

- a lost or refused connection, a pool that cannot hand one out, a server shutting down (SQLAlchemy's
  ``OperationalError``/``InterfaceError``, a connection invalidated mid-statement, the pool's ``TimeoutError``,
  psycopg's ``OperationalError`` where a connection is used without SQLAlchemy): 503
  with a fixed message and ``Retry-After``, as the object-store outage answers; the client retries, nothing was
  half-written (every write is one transaction);
- a value PostgreSQL refuses as data (``DataError``: SQLSTATE class 22, e.g. a negative ``OFFSET``, a
  number out of range): 422. The request checks (``invokeai_saas.routes.bad_input``) refuse the usual ones before
  any handler; this catches the rest, wherever a stock route passes input to a statement unchecked.

Nothing of the exception reaches the response; it is logged. Anything else goes to the previous handler unchanged.
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from invokeai_saas.exception_chain import find_in_chain
from invokeai_saas.exception_handlers import answer_http_exceptions, answer_unhandled_exceptions

logger = logging.getLogger(__name__)

UNAVAILABLE_DETAIL = "The database is temporarily unavailable; nothing was lost. Try again."
UNSTORABLE_DETAIL = "The request contains a value the database cannot store (out of range or not valid text)."
RETRY_AFTER_SECONDS = 5

# SQLAlchemy's (statements through an engine) and psycopg's own (code that runs prepared statements on a raw
# connection, e.g. the token check).
_OUTAGES: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    psycopg.OperationalError,
)
_REFUSED_VALUES: tuple[type[BaseException], ...] = (sa_exc.DataError, psycopg.DataError)


def find_database_outage(error: BaseException | None) -> BaseException | None:
    """The exception in ``error``'s chain that says the database could not be reached, if any."""
    for kind in _OUTAGES:
        found = find_in_chain(error, kind)
        if found is not None:
            return found
    dbapi = find_in_chain(error, sa_exc.DBAPIError)
    if dbapi is not None and dbapi.connection_invalidated:
        return dbapi
    return None


def database_unavailable_response() -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": UNAVAILABLE_DETAIL},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
    )


def _database_answer(request: Request, error: Exception) -> Response | None:
    outage = find_database_outage(error)
    if outage is not None:
        logger.warning("Database unavailable during %s %s: %s", request.method, request.url.path, type(outage).__name__)
        return database_unavailable_response()
    refused = next(filter(None, (find_in_chain(error, kind) for kind in _REFUSED_VALUES)), None)
    if refused is not None:
        logger.warning("Database refused a value during %s %s: %s", request.method, request.url.path, refused)
        return JSONResponse(status_code=422, content={"detail": UNSTORABLE_DETAIL})
    return None


def install_database_error_handlers(app: FastAPI) -> None:
    """Wrap the app's ``HTTPException`` and unhandled-exception handlers; call before the first request."""
    answer_http_exceptions(app, _database_answer)
    answer_unhandled_exceptions(app, _database_answer)
