"""The pooled, synchronous PostgreSQL engine (psycopg 3) that InvokeAI's sync service interfaces use.

One engine per process and URL: each engine owns a pool, and the pool size is what bounds the
connections a process opens (``database_pool_size`` + ``database_max_overflow``).
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from invokeai_saas.config import SaasSettings

_engines: dict[tuple[str, int, int], Engine] = {}
_lock = threading.Lock()


def sync_url(url: str) -> str:
    """Force the psycopg 3 driver whatever scheme the operator wrote (postgres://, postgresql://)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def get_engine(settings: SaasSettings) -> Engine:
    if settings.database_url is None:
        raise ValueError("database_url is not configured")
    key = (settings.database_url, settings.database_pool_size, settings.database_max_overflow)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_engine(
                sync_url(settings.database_url),
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_max_overflow,
                pool_recycle=1800,  # no pre-ping: it costs a round trip per checkout on the hottest paths
                connect_args={"connect_timeout": 5, "application_name": "invokeai-saas"},
            )
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def autocommit_reads(engine: Engine) -> Engine:
    """The same pool, handing out connections in autocommit mode: for reads only.

    A read through a plain ``connect()`` costs three round trips (psycopg's implicit ``BEGIN``, the query,
    and the pool's ``ROLLBACK`` on return); in autocommit it costs one, and the pool's reset finds no open
    transaction to roll back. Nothing is lost: at PostgreSQL's default READ COMMITTED every statement takes
    its own snapshot inside a transaction too, so a read-only block sees exactly what it saw before. Blocks
    that need one snapshot for several statements (REPEATABLE READ) or a lock (``FOR UPDATE``, advisory
    locks) keep using the engine's transactional connections.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")
