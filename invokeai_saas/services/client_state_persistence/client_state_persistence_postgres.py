"""PostgreSQL implementation of ``ClientStatePersistenceABC`` (stock: ``ClientStatePersistenceSqlite``).

Per-user key/value state the studio keeps between sessions; every statement is scoped by ``user_id`` so
one user's state never reaches another.
"""

from __future__ import annotations

from invokeai.app.services.client_state_persistence.client_state_persistence_base import ClientStatePersistenceABC
from invokeai.app.services.invoker import Invoker
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert

from invokeai_saas.db.convert import escape_like
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import client_state


class ClientStatePersistencePostgres(ClientStatePersistenceABC):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def set_by_key(self, user_id: str, key: str, value: str) -> str:
        statement = insert(client_state).values(user_id=user_id, key=key, value=value)
        statement = statement.on_conflict_do_update(
            index_elements=[client_state.c.user_id, client_state.c.key], set_={"value": statement.excluded.value}
        )
        with self._engine.begin() as conn:
            conn.execute(statement)
        return value

    def get_by_key(self, user_id: str, key: str) -> str | None:
        with self._reads.connect() as conn:
            return conn.execute(
                select(client_state.c.value).where(client_state.c.user_id == user_id, client_state.c.key == key)
            ).scalar_one_or_none()

    def get_keys_by_prefix(self, user_id: str, prefix: str) -> list[str]:
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(client_state.c.key)
                .where(
                    client_state.c.user_id == user_id,
                    client_state.c.key.like(f"{escape_like(prefix)}%", escape="\\"),
                )
                .order_by(client_state.c.updated_at.desc())
            )
            return list(rows.scalars())

    def delete_by_key(self, user_id: str, key: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(client_state).where(client_state.c.user_id == user_id, client_state.c.key == key))

    def delete(self, user_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(client_state).where(client_state.c.user_id == user_id))
