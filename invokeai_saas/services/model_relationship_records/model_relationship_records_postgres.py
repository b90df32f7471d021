"""PostgreSQL implementation of ``ModelRelationshipRecordStorageBase`` (stock:
``SqliteModelRelationshipRecordStorage``).

A relationship is stored once, as the sorted pair ``(model_key_1 < model_key_2)``, and read in both directions.
Both columns reference ``models.id`` with ``ON DELETE CASCADE``: deleting a model drops its relationships, and
relating an unknown key is refused by the foreign key. Stock lets that ``IntegrityError`` through, and its route
answers 500; here it becomes the ``ValueError`` the route already maps to a 4xx (409, with the message).

Stock answers lookups with a ``UNION``, which SQLite computes through a temporary b-tree: the keys come back
distinct and in byte order. The queries here ask for that order explicitly (``COLLATE "C"``), so the answer does
not depend on the server's collation or on the plan PostgreSQL picks.
"""

from __future__ import annotations

from invokeai.app.services.model_relationship_records.model_relationship_records_base import (
    ModelRelationshipRecordStorageBase,
)
from sqlalchemy import ColumnElement, Engine, Text, any_, delete, literal, select, union
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import IntegrityError

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import model_relationships


def _pair(model_key_1: str, model_key_2: str) -> tuple[str, str]:
    """The stored orientation: Python's ``sorted`` (code point order), exactly as stock sorts the pair."""
    a, b = sorted([model_key_1, model_key_2])
    return a, b


class PostgresModelRelationshipRecordStorage(ModelRelationshipRecordStorageBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def add_model_relationship(self, model_key_1: str, model_key_2: str) -> None:
        """Relate two models; relating an already related pair is a no-op (stock: ``INSERT OR IGNORE``)."""
        if model_key_1 == model_key_2:
            raise ValueError("Cannot relate a model to itself.")
        a, b = _pair(model_key_1, model_key_2)
        statement = insert(model_relationships).values(model_key_1=a, model_key_2=b).on_conflict_do_nothing()
        try:
            with self._engine.begin() as conn:
                conn.execute(statement)
        except IntegrityError:
            raise ValueError("Both models must be installed (no installed model has one of these keys).") from None

    def remove_model_relationship(self, model_key_1: str, model_key_2: str) -> None:
        """Unrelate two models; removing a relationship that does not exist is a no-op, as in stock."""
        a, b = _pair(model_key_1, model_key_2)
        with self._engine.begin() as conn:
            conn.execute(
                delete(model_relationships).where(
                    model_relationships.c.model_key_1 == a, model_relationships.c.model_key_2 == b
                )
            )

    def get_related_model_keys(self, model_key: str) -> list[str]:
        return self._related(
            model_relationships.c.model_key_1 == model_key, model_relationships.c.model_key_2 == model_key
        )

    def get_related_model_keys_batch(self, model_keys: list[str]) -> list[str]:
        """Keys related to any of ``model_keys``, distinct, in one statement whatever the list's length.

        As in stock, a key of the input list is in the answer when another key of the list is related to it.
        """
        if not model_keys:
            return []
        # One array parameter rather than an IN list: the statement stays the same size whatever the batch's.
        keys = literal(list(model_keys), ARRAY(Text))
        return self._related(
            model_relationships.c.model_key_1 == any_(keys), model_relationships.c.model_key_2 == any_(keys)
        )

    def _related(self, first_matches: ColumnElement[bool], second_matches: ColumnElement[bool]) -> list[str]:
        related = union(
            select(model_relationships.c.model_key_2.label("key")).where(first_matches),
            select(model_relationships.c.model_key_1.label("key")).where(second_matches),
        ).subquery()
        with self._reads.connect() as conn:
            return list(conn.execute(select(related.c.key).order_by(related.c.key.collate("C"))).scalars())
