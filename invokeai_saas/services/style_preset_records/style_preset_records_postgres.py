"""PostgreSQL implementation of ``StylePresetRecordsStorageBase`` (stock: ``SqliteStylePresetRecordsStorage``).

``preset_data`` stays the JSON text stock writes (``PresetData.model_dump_json()``) and is parsed back by stock's
own ``StylePresetRecordDTO.from_dict``. Listings sort by ``LOWER(name)`` as SQLite computes it: ASCII letters
folded only, then byte order (``lower(name COLLATE "C")``); ties, which stock leaves undefined, fall back to
creation order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import invokeai.app.services.style_preset_records as stock_style_preset_records
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.style_preset_records.style_preset_records_base import StylePresetRecordsStorageBase
from invokeai.app.services.style_preset_records.style_preset_records_common import (
    PresetType,
    StylePresetChanges,
    StylePresetNotFoundError,
    StylePresetRecordDTO,
    StylePresetWithoutId,
)
from invokeai.app.util.misc import uuid_string
from sqlalchemy import ColumnElement, Engine, Insert, Row, delete, func, insert, or_, select, update

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import style_presets

DEFAULT_STYLE_PRESETS_FILE = Path(stock_style_preset_records.__file__).parent / "default_style_presets.json"
"""The default presets shipped with InvokeAI, synced into the table at start as stock does."""

SYSTEM_USER_ID = "system"
"""Owner of the default presets (stock's ``SYSTEM_USER_ID``)."""

# Serialises the default-preset sync of processes starting at the same time (transaction-scoped advisory lock).
_SYNC_LOCK_NAME = "invokeai_saas:style_presets:sync_default_style_presets"

_sp = style_presets

_DTO_COLUMNS = (_sp.c.id, _sp.c.name, _sp.c.preset_data, _sp.c.type, _sp.c.user_id, _sp.c.is_public)


def _dto(row: Row[Any]) -> StylePresetRecordDTO:
    return StylePresetRecordDTO.from_dict(dict(row._mapping))


def _insert() -> Insert:
    """INSERT for new presets; both times come from one clock reading, as SQLite's 'NOW' within a statement."""
    now = func.statement_timestamp()
    return insert(_sp).values(created_at=now, updated_at=now)


def _row_values(style_preset: StylePresetWithoutId, user_id: str) -> dict[str, Any]:
    """The columns stock writes for a new preset, under a fresh id."""
    return {
        "id": uuid_string(),
        "name": style_preset.name,
        "preset_data": style_preset.preset_data.model_dump_json(),
        "type": style_preset.type.value,
        "user_id": user_id,
        "is_public": style_preset.is_public,
    }


class PostgresStylePresetRecordsStorage(StylePresetRecordsStorageBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker
        self._sync_default_style_presets()

    def get(self, style_preset_id: str) -> StylePresetRecordDTO:
        with self._reads.connect() as conn:
            row = conn.execute(select(*_DTO_COLUMNS).where(_sp.c.id == style_preset_id)).one_or_none()
        if row is None:
            raise StylePresetNotFoundError(f"Style preset with id {style_preset_id} not found")
        return _dto(row)

    def create(self, style_preset: StylePresetWithoutId, user_id: str) -> StylePresetRecordDTO:
        with self._engine.begin() as conn:
            row = conn.execute(_insert().returning(*_DTO_COLUMNS), _row_values(style_preset, user_id)).one()
        return _dto(row)

    def create_many(self, style_presets: list[StylePresetWithoutId], user_id: str) -> None:
        """All or nothing, as stock; the rows go in multi-row INSERTs (SQLAlchemy batches an executemany),
        not one statement per preset."""
        if not style_presets:
            return None
        with self._engine.begin() as conn:
            conn.execute(_insert(), [_row_values(preset, user_id) for preset in style_presets])
        return None

    def update(self, style_preset_id: str, changes: StylePresetChanges) -> StylePresetRecordDTO:
        """Changes name, data and visibility; like stock, ``changes.type`` is ignored (a preset keeps its type).
        A missing id raises ``StylePresetNotFoundError``."""
        values: dict[str, Any] = {}
        if changes.name is not None:
            values["name"] = changes.name
        if changes.preset_data is not None:
            values["preset_data"] = changes.preset_data.model_dump_json()
        if changes.is_public is not None:
            values["is_public"] = changes.is_public
        if not values:
            return self.get(style_preset_id)
        with self._engine.begin() as conn:
            row = conn.execute(
                update(_sp).where(_sp.c.id == style_preset_id).values(**values).returning(*_DTO_COLUMNS)
            ).one_or_none()
        if row is None:
            raise StylePresetNotFoundError(f"Style preset with id {style_preset_id} not found")
        return _dto(row)

    def delete(self, style_preset_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(_sp).where(_sp.c.id == style_preset_id))
        return None

    def get_many(
        self,
        type: PresetType | None = None,
        user_id: str | None = None,
        is_admin: bool = False,
    ) -> list[StylePresetRecordDTO]:
        conditions: list[ColumnElement[bool]] = []
        if not is_admin:
            # Visible to non-admin: own + default + public.
            visible = [_sp.c.type == PresetType.Default.value, _sp.c.is_public.is_(True)]
            if user_id is not None:
                visible.append(_sp.c.user_id == user_id)
            conditions.append(or_(*visible))
        if type is not None:
            conditions.append(_sp.c.type == PresetType(type).value)
        statement = (
            select(*_DTO_COLUMNS)
            .where(*conditions)
            .order_by(func.lower(_sp.c.name.collate("C")), _sp.c.created_at, _sp.c.id)
        )
        with self._reads.connect() as conn:
            return [_dto(row) for row in conn.execute(statement)]

    def _sync_default_style_presets(self) -> None:
        """Make the ``default`` presets exactly the ones in ``default_style_presets.json``.

        Stock deletes every default preset and inserts the file's again, under new ids, at each start. Here the
        outcome is the same set of presets, but a stored default identical to one in the file (same name, data,
        owner and visibility) is kept with its id rather than replaced: with several API processes sharing one
        database, a process starting (or restarting) must not invalidate the preset ids that clients of the others
        are using. Only differing rows are deleted and only missing presets inserted. The sync runs in one
        transaction under an advisory lock, so processes starting together take turns and the later ones find
        nothing to do.
        """
        with open(DEFAULT_STYLE_PRESETS_FILE) as file:
            wanted = [StylePresetWithoutId.model_validate(preset) for preset in json.load(file)]

        with self._engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(_SYNC_LOCK_NAME))))
            stored = conn.execute(
                select(_sp.c.id, _sp.c.name, _sp.c.preset_data, _sp.c.user_id, _sp.c.is_public)
                .where(_sp.c.type == PresetType.Default.value)
                .order_by(_sp.c.created_at, _sp.c.id)
            ).all()
            reusable: dict[tuple[Any, ...], list[str]] = defaultdict(list)
            for preset_id, name, preset_data, user_id, is_public in stored:
                reusable[(name, preset_data, user_id, is_public)].append(preset_id)

            missing: list[StylePresetWithoutId] = []
            for preset in wanted:
                key = (preset.name, preset.preset_data.model_dump_json(), SYSTEM_USER_ID, preset.is_public)
                if preset.type is PresetType.Default and reusable[key]:
                    reusable[key].pop(0)
                else:
                    missing.append(preset)

            obsolete = [preset_id for ids in reusable.values() for preset_id in ids]
            if obsolete:
                conn.execute(delete(_sp).where(_sp.c.id.in_(obsolete)))
            if missing:
                conn.execute(_insert(), [_row_values(preset, SYSTEM_USER_ID) for preset in missing])
