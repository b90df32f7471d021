"""Hot-path reads: a SQLAlchemy statement compiled once, run on the pool's psycopg connection directly.

Why: every authenticated request looks its user up, and every image or board route reads a record or two
by primary key. Through SQLAlchemy Core each such read costs about 600 µs of CPU in the API process
(building the statement, its cache key, the execution context and the ``CursorResult``); the same query
sent by psycopg on a pooled connection costs about 130 µs (measured side by side on the dev machine).
For a handful of fixed-shape, primary-key reads that difference is most of the per-request database
overhead, so they are declared once as ``PreparedRead`` and executed here; everything else keeps
SQLAlchemy Core.

What is kept: the statement is still written with SQLAlchemy (tables, columns, typing), the pool is
the engine's own (the same connection bound), reads run in autocommit (one round trip, like
``autocommit_reads``), psycopg still prepares the statement server-side after a few executions, and
the engine's ``before_cursor_execute`` listeners are called with the SQL, so statement counters and
tracing see these reads like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

_DIALECT = PGDialect_psycopg()


class PreparedRead:
    """One read statement with named ``bindparam()`` placeholders, compiled for psycopg at import time.

    Only statements whose SQL does not depend on their parameters qualify: no expanding ``IN`` lists
    (bind an array and use ``= ANY(...)`` instead). Rows come back as named tuples (``row.column``).
    """

    def __init__(self, statement: Executable) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        expanding = [name for name, param in compiled.binds.items() if param.expanding]
        if expanding:
            raise ValueError(f"PreparedRead cannot hold expanding parameters: {', '.join(sorted(expanding))}")
        self.sql = str(compiled)
        required = {param.key for param in compiled.binds.values() if param.required}
        # Values SQLAlchemy bound itself (literals written in the statement); callers give the required ones.
        self._defaults: dict[str, Any] = {k: v for k, v in compiled.params.items() if k not in required}
        self._required = frozenset(required)

    def _params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if set(params) != self._required:
            raise TypeError(f"expected parameters {sorted(self._required)}, got {sorted(params)}")
        return {**self._defaults, **params}

    def all(self, engine: Engine, **params: Any) -> list[Any]:
        return self._run(engine, self._params(params), one=False)

    def first(self, engine: Engine, **params: Any) -> Any | None:
        return self._run(engine, self._params(params), one=True)

    def scalar(self, engine: Engine, **params: Any) -> Any | None:
        row = self.first(engine, **params)
        return row[0] if row is not None else None

    def _run(self, engine: Engine, params: dict[str, Any], one: bool) -> Any:
        fairy = engine.raw_connection()
        try:
            conn = fairy.driver_connection
            assert conn is not None
            # A pooled connection is handed out idle (the pool rolls back on return); autocommit for this
            # read only, put back before the connection returns to the pool.
            conn.autocommit = True
            try:
                with conn.cursor(row_factory=namedtuple_row) as cursor:
                    listeners = engine.dispatch.before_cursor_execute
                    if listeners:
                        for listener in listeners:
                            listener(None, cursor, self.sql, params, None, False)
                    try:
                        cursor.execute(self.sql, params)
                        return cursor.fetchone() if one else cursor.fetchall()
                    except psycopg.Error as error:
                        # As SQLAlchemy would: a dead connection leaves the pool, and callers see the same
                        # ``sqlalchemy.exc`` classes as from any other statement.
                        disconnected = engine.dialect.is_disconnect(error, conn, cursor)
                        if disconnected:
                            fairy.invalidate(error)
                        raise DBAPIError.instance(
                            self.sql,
                            params,
                            error,
                            psycopg.Error,
                            connection_invalidated=disconnected,
                            dialect=engine.dialect,
                        ) from error
            finally:
                if not conn.closed:
                    conn.autocommit = False
        finally:
            fairy.close()
