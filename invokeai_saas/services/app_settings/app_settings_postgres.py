"""PostgreSQL implementation of stock's ``AppSettingsService`` (a concrete class, not an ABC: this subclasses it
so ``isinstance`` checks and type hints written against stock keep holding).

Application-level key/value settings. The one stock reads is ``jwt_secret``: our migration ``0002`` seeds it once
per database, so every API process signs and verifies tokens with the same secret — a token minted by one
process is accepted by all of them, which per-process secrets would break behind a load balancer.
"""

from __future__ import annotations

from invokeai.app.services.app_settings.app_settings_service import AppSettingsService
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import app_settings

JWT_SECRET_KEY = "jwt_secret"


class AppSettingsServicePostgres(AppSettingsService):
    def __init__(self, engine: Engine) -> None:
        # Stock's __init__ only keeps its SqliteDatabase; nothing of it is used here.
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or ``None``.

        Like stock, a failing read answers ``None`` rather than raising (stock swallows every exception here;
        this swallows database errors, the only ones the read can raise).
        """
        try:
            with self._reads.connect() as conn:
                return conn.execute(select(app_settings.c.value).where(app_settings.c.key == key)).scalar_one_or_none()
        except SQLAlchemyError:
            return None

    def set(self, key: str, value: str) -> None:
        """Insert or overwrite ``key`` in one statement; the ``updated_at`` trigger stamps an overwrite."""
        statement = insert(app_settings).values(key=key, value=value)
        statement = statement.on_conflict_do_update(
            index_elements=[app_settings.c.key], set_={"value": statement.excluded.value}
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def get_jwt_secret(self) -> str:
        """The database's JWT signing secret (seeded by migration 0002); ``RuntimeError`` if it is missing."""
        secret = self.get(JWT_SECRET_KEY)
        if secret is None:
            raise RuntimeError(
                "JWT secret not found in database. This should have been created during database migration. "
                "Please ensure database migrations have been run successfully."
            )
        return secret
