"""The PostgreSQL index of stored objects (``storage_objects``) and the pending-delete journal.

Why an index and not S3 listings: InvokeAI's storage interfaces name media by name only, so the S3
storages need a name → key look-up; list pages ask "has this preset/workflow/model an image?" for every
row, which must not be an S3 HEAD per row; and storage quotas need exact bytes per user, which a trigger
keeps in ``user_storage_usage`` as rows come and go.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, Text, any_, bindparam, delete, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, insert

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.prepared import PreparedRead
from invokeai_saas.db.tables import storage_objects as so
from invokeai_saas.db.tables import storage_pending_deletes as spd
from invokeai_saas.db.tables import user_storage_usage as usu


@dataclass(frozen=True)
class IndexedObject:
    object_key: str
    user_id: str
    kind: str
    name: str
    bytes: int
    content_type: str


_COLUMNS = (so.c.object_key, so.c.user_id, so.c.kind, so.c.name, so.c.bytes, so.c.content_type)
_FIND = PreparedRead(select(*_COLUMNS).where(so.c.kind == bindparam("kind"), so.c.name == bindparam("name")))
_USAGE = PreparedRead(select(usu.c.bytes, usu.c.objects).where(usu.c.user_id == bindparam("user_id")))


def _object(row: object) -> IndexedObject:
    return IndexedObject(*row)  # type: ignore[misc]


def _text_array(values: Sequence[str]) -> object:
    return literal(list(values), ARRAY(Text))


class StorageObjectIndex:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = autocommit_reads(engine)

    # --- objects ---------------------------------------------------------------------------------------------

    def put(self, object_key: str, user_id: str, kind: str, name: str, size: int, content_type: str) -> None:
        """Record an object just written (or rewritten: the size and type follow the new bytes)."""
        statement = insert(so).values(
            object_key=object_key, user_id=user_id, kind=kind, name=name, bytes=size, content_type=content_type
        )
        statement = statement.on_conflict_do_update(
            index_elements=[so.c.object_key],
            set_={"bytes": statement.excluded.bytes, "content_type": statement.excluded.content_type},
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def find(self, kind: str, name: str) -> IndexedObject | None:
        row = _FIND.first(self._engine, kind=kind, name=name)
        return _object(row) if row is not None else None

    def find_many(self, kind: str, names: Sequence[str]) -> dict[str, IndexedObject]:
        if not names:
            return {}
        with self._reads.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).where(so.c.kind == kind, so.c.name == any_(_text_array(names))))
            return {row.name: _object(tuple(row)) for row in rows}

    def names_of_kind(self, kind: str) -> list[str]:
        """Every indexed name of one kind (an index-only scan of ``ux_storage_objects_kind_name``); for kinds that
        stay small, such as the shared model covers."""
        with self._reads.connect() as conn:
            return list(conn.execute(select(so.c.name).where(so.c.kind == kind)).scalars())

    def find_by_keys(self, object_keys: Sequence[str]) -> dict[str, IndexedObject]:
        if not object_keys:
            return {}
        with self._reads.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).where(so.c.object_key == any_(_text_array(object_keys))))
            return {row.object_key: _object(tuple(row)) for row in rows}

    def forget(self, object_keys: Iterable[str]) -> None:
        """The objects are gone from S3: drop their index rows (usage follows) and any journal entries."""
        keys = list(dict.fromkeys(object_keys))
        if not keys:
            return
        with self._engine.begin() as conn:
            conn.execute(delete(so).where(so.c.object_key == any_(_text_array(keys))))
            conn.execute(delete(spd).where(spd.c.object_key == any_(_text_array(keys))))

    # --- the pending-delete journal ----------------------------------------------------------------------------

    def journal(self, object_keys: Iterable[str]) -> None:
        """Promise to delete these objects; written before the record delete, so a crash or an S3 outage in
        between leaves a note for the cleanup pass instead of an orphan."""
        keys = list(dict.fromkeys(object_keys))
        if not keys:
            return
        with self._engine.begin() as conn:
            conn.execute(insert(spd).values([{"object_key": k} for k in keys]).on_conflict_do_nothing())

    def unjournal(self, object_keys: Iterable[str]) -> None:
        """The delete was abandoned or rolled back: the objects stay."""
        keys = list(dict.fromkeys(object_keys))
        if not keys:
            return
        with self._engine.begin() as conn:
            conn.execute(delete(spd).where(spd.c.object_key == any_(_text_array(keys))))

    def pending(self, limit: int = 1000) -> list[tuple[str, IndexedObject | None]]:
        """Journal entries, oldest first, with their index rows (``None`` when the row is already gone)."""
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(spd.c.object_key, *_COLUMNS[1:])
                .select_from(spd.outerjoin(so, so.c.object_key == spd.c.object_key))
                .order_by(spd.c.created_at, spd.c.object_key)
                .limit(limit)
            ).all()
        return [(row[0], _object(tuple(row)) if row.user_id is not None else None) for row in rows]

    # --- accounting --------------------------------------------------------------------------------------------

    def usage(self, user_id: str) -> tuple[int, int]:
        """(bytes, objects) stored for this user."""
        row = _USAGE.first(self._engine, user_id=user_id)
        return (int(row.bytes), int(row.objects)) if row is not None else (0, 0)

    def objects_of_user(self, user_id: str) -> list[IndexedObject]:
        with self._reads.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).where(so.c.user_id == user_id).order_by(so.c.object_key)).all()
        return [_object(tuple(row)) for row in rows]
