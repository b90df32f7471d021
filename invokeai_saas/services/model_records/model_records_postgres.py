"""PostgreSQL implementation of ``ModelRecordServiceBase`` (stock: ``ModelRecordServiceSQL``).

The whole model config is one ``jsonb`` document (``models.config``); ``hash``, ``base``, ``type``, ``path``,
``format``, ``name``, … are stored generated columns over it, as the ``json_extract`` virtual columns are in
stock, so filters and orderings read plain indexed columns.

Ordering mirrors stock's SQL exactly, with two PostgreSQL translations:

- SQLite compares text byte-wise (``BINARY``); PostgreSQL compares by the database collation, which on most
  servers is a linguistic one (``en_US.UTF-8`` puts ``a`` before ``B``). Every text ordering therefore uses
  ``COLLATE "C"`` (byte order of UTF-8, the same as SQLite's).
- ``COLLATE NOCASE`` folds ASCII letters only; ``lower()`` under the ``C`` collation does the same (PostgreSQL
  case-maps ASCII only in the ``C`` locale), so ``É`` and ``é`` stay distinct and ordered as in stock.

Rows that tie on the requested ordering come back in insertion order (``created_at``, then ``id``): that is
the order stock's sorter keeps for ties, and a total order keeps ``list_models`` pages from overlapping.
"""

from __future__ import annotations

import json
import logging
from math import ceil
from pathlib import Path
from typing import Any
from typing import cast as cast_type

import pydantic
from invokeai.app.services.model_records.model_records_base import (
    DuplicateModelException,
    ModelRecordChanges,
    ModelRecordOrderBy,
    ModelRecordServiceBase,
    ModelSummary,
    UnknownModelException,
)
from invokeai.app.services.model_records.model_records_sql import _construct_config_for_type
from invokeai.app.services.shared.pagination import PaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.backend.model_manager.configs.factory import AnyModelConfig, ModelConfigFactory
from invokeai.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType
from pydantic import ValidationError
from sqlalchemy import ColumnElement, Engine, Text, cast, exists, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.exc import IntegrityError

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import models

# Constraints whose violation on INSERT means "this model is already installed".
_DUPLICATE_CONSTRAINTS = frozenset({"pk_models", "uq_models_path"})


def _binary(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """Byte-wise text comparison, like SQLite's default ``BINARY`` collation."""
    return column.collate("C")


def _nocase(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """SQLite's ``COLLATE NOCASE``: ASCII letters folded, everything else compared byte-wise."""
    return func.lower(column.collate("C")).collate("C")


def _ordering(order_by: ModelRecordOrderBy, direction: SQLiteDirection) -> list[ColumnElement[Any]]:
    """Stock's ``ORDER BY`` for ``order_by``/``direction``, then insertion order for ties."""
    assert isinstance(order_by, ModelRecordOrderBy)
    descending = direction == SQLiteDirection.Descending

    def directed(expression: ColumnElement[Any]) -> ColumnElement[Any]:
        return expression.desc() if descending else expression.asc()

    keys: dict[ModelRecordOrderBy, list[ColumnElement[Any]]] = {
        ModelRecordOrderBy.Default: [
            _binary(models.c.type),
            _nocase(models.c.base),
            _nocase(models.c.name),
            _binary(models.c.format),
        ],
        ModelRecordOrderBy.Type: [_binary(models.c.type)],
        ModelRecordOrderBy.Base: [_nocase(models.c.base)],
        ModelRecordOrderBy.Name: [_nocase(models.c.name)],
        ModelRecordOrderBy.Format: [_binary(models.c.format)],
        # Stock: IFNULL(json_extract(config, '$.file_size'), 0); the generated column is NOT NULL already.
        ModelRecordOrderBy.Size: [func.coalesce(models.c.file_size, 0)],
        ModelRecordOrderBy.DateAdded: [models.c.created_at],
        ModelRecordOrderBy.DateModified: [models.c.updated_at],
        ModelRecordOrderBy.Path: [_binary(models.c.path)],
    }
    return [directed(key) for key in keys[order_by]] + [models.c.created_at.asc(), _binary(models.c.id).asc()]


def _config_json(config: AnyModelConfig) -> ColumnElement[Any]:
    """The config as stock serialises it (``model_dump_json``), cast to jsonb by the server.

    Passing the pydantic JSON text (rather than a dict through the JSONB bind processor) keeps enum values and
    any custom serialisers exactly as stock writes them.
    """
    return cast(literal(config.model_dump_json(), Text), JSONB)


def _plain(value: Any) -> Any:
    """Enum members as their string value: the generated columns hold the values stock compares against."""
    return value.value if isinstance(value, ModelType | BaseModelType | ModelFormat) else value


class ModelRecordServicePostgres(ModelRecordServiceBase):
    """Model config records in PostgreSQL."""

    def __init__(self, engine: Engine, logger: logging.Logger | None = None) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)
        self._logger = logger or logging.getLogger(__name__)

    def add_model(self, config: AnyModelConfig) -> AnyModelConfig:
        statement = insert(models).values(id=config.key, config=_config_json(config)).returning(models.c.config)
        try:
            with self._engine.begin() as conn:
                stored = conn.execute(statement).scalar_one()
        except IntegrityError as e:
            if _violated_constraint(e) not in _DUPLICATE_CONSTRAINTS:
                raise
            # Stock's SQLite checks the path's unique index before the primary key, so a config clashing on both
            # reports the path. PostgreSQL reports whichever index it tried first; ask which one clashed.
            with self._reads.connect() as conn:
                path_taken = conn.execute(select(exists().where(models.c.path == config.path))).scalar_one()
            if path_taken:
                msg = f"A model with path '{config.path}' is already installed"
            else:
                msg = f"A model with key '{config.key}' is already installed"
            raise DuplicateModelException(msg) from e
        return ModelConfigFactory.from_dict(stored)

    def del_model(self, key: str) -> None:
        with self._engine.begin() as conn:
            deleted = conn.execute(models.delete().where(models.c.id == key)).rowcount
        if deleted == 0:
            raise UnknownModelException("model not found")

    def update_model(self, key: str, changes: ModelRecordChanges, allow_class_change: bool = False) -> AnyModelConfig:
        """Apply ``changes`` with stock's rules, reading and writing the row in one transaction.

        The row is read ``FOR UPDATE``: two processes editing one model serialise on the row, so neither
        change is lost to the other's read-modify-write (stock relies on its process-wide lock for that).

        A change that moves the model onto a path another model already has raises
        ``DuplicateModelException`` (the message ``add_model`` uses). Stock lets the raw
        ``sqlite3.IntegrityError`` escape; both are unhandled by the router (HTTP 500) and the record is left
        unchanged either way, and a backend-neutral error is the one a caller can actually catch.
        """
        with self._engine.begin() as conn:
            stored = conn.execute(
                select(models.c.config).where(models.c.id == key).with_for_update()
            ).scalar_one_or_none()
            if stored is None:
                raise UnknownModelException("model not found")
            record = _apply_changes(ModelConfigFactory.from_dict(stored), changes, allow_class_change)
            try:
                statement = update(models).where(models.c.id == key).values(config=_config_json(record))
                updated = conn.execute(statement.returning(models.c.config)).scalar_one()
            except IntegrityError as e:
                if _violated_constraint(e) != "uq_models_path":
                    raise
                raise DuplicateModelException(f"A model with path '{record.path}' is already installed") from e
        return ModelConfigFactory.from_dict(updated)

    def replace_model(self, key: str, new_config: AnyModelConfig) -> AnyModelConfig:
        if key != new_config.key:
            raise ValueError("key does not match new_config.key")
        with self._engine.begin() as conn:
            updated = conn.execute(
                update(models)
                .where(models.c.id == key)
                .values(config=_config_json(new_config))
                .returning(models.c.config)
            ).scalar_one_or_none()
        if updated is None:
            raise UnknownModelException("model not found")
        return ModelConfigFactory.from_dict(updated)

    def get_model(self, key: str) -> AnyModelConfig:
        with self._reads.connect() as conn:
            stored = conn.execute(select(models.c.config).where(models.c.id == key)).scalar_one_or_none()
        if stored is None:
            raise UnknownModelException("model not found")
        return ModelConfigFactory.from_dict(stored)

    def get_model_by_hash(self, hash: str) -> AnyModelConfig:
        """The first model installed with ``hash`` (stock returns the first row of a table scan: insertion
        order)."""
        with self._reads.connect() as conn:
            stored = conn.execute(
                select(models.c.config)
                .where(models.c.hash == hash)
                .order_by(models.c.created_at, _binary(models.c.id))
                .limit(1)
            ).scalar_one_or_none()
        if stored is None:
            raise UnknownModelException("model not found")
        return ModelConfigFactory.from_dict(stored)

    def exists(self, key: str) -> bool:
        with self._reads.connect() as conn:
            return bool(conn.execute(select(exists().where(models.c.id == key))).scalar_one())

    def search_by_attr(
        self,
        model_name: str | None = None,
        base_model: BaseModelType | None = None,
        model_type: ModelType | None = None,
        model_format: ModelFormat | None = None,
        order_by: ModelRecordOrderBy = ModelRecordOrderBy.Default,
        direction: SQLiteDirection = SQLiteDirection.Ascending,
    ) -> list[AnyModelConfig]:
        """Models matching every given filter (a falsy filter is no filter, as in stock).

        Configs that no longer validate (e.g. written by a newer InvokeAI before a rollback) are skipped with a
        warning, as stock does, so one bad row cannot take the model manager down.
        """
        statement = select(models.c.config).order_by(*_ordering(order_by, direction))
        if model_name:
            statement = statement.where(models.c.name == model_name)
        if base_model:
            statement = statement.where(models.c.base == _plain(base_model))
        if model_type:
            statement = statement.where(models.c.type == _plain(model_type))
        if model_format:
            statement = statement.where(models.c.format == _plain(model_format))
        with self._reads.connect() as conn:
            rows = conn.execute(statement).scalars().all()

        results: list[AnyModelConfig] = []
        for stored in rows:
            try:
                results.append(ModelConfigFactory.from_dict(stored))
            except pydantic.ValidationError as e:
                text = json.dumps(stored)
                row_data = f"{text[:64]}..." if len(text) > 64 else text
                name = stored.get("name", "<unknown>") if isinstance(stored, dict) else "<unknown>"
                self._logger.warning(
                    f"Skipping invalid model config in the database with name {name}. Ignoring this model. ({row_data})"
                )
                self._logger.warning(f"Validation error: {e}")
        return results

    def search_by_path(self, path: str | Path) -> list[AnyModelConfig]:
        with self._reads.connect() as conn:
            rows = conn.execute(select(models.c.config).where(models.c.path == str(path))).scalars().all()
        return [ModelConfigFactory.from_dict(stored) for stored in rows]

    def search_by_hash(self, hash: str) -> list[AnyModelConfig]:
        """Models with ``hash``, in insertion order (stock's table-scan order)."""
        with self._reads.connect() as conn:
            rows = (
                conn.execute(
                    select(models.c.config)
                    .where(models.c.hash == hash)
                    .order_by(models.c.created_at, _binary(models.c.id))
                )
                .scalars()
                .all()
            )
        return [ModelConfigFactory.from_dict(stored) for stored in rows]

    def list_models(
        self,
        page: int = 0,
        per_page: int = 10,
        order_by: ModelRecordOrderBy = ModelRecordOrderBy.Default,
        direction: SQLiteDirection = SQLiteDirection.Ascending,
    ) -> PaginatedResults[ModelSummary]:
        """A page of model summaries, in the orderings ``search_by_attr`` offers.

        Deliberate difference from stock, which cannot list a non-empty table: it selects only ``config`` and
        validates ``ModelSummary`` from ``{"config": ...}``, so every call with at least one model installed
        raises ``pydantic.ValidationError`` (``test_list_models_stock_cannot_list_models`` shows it). No caller
        in InvokeAI uses this method. Here each summary is built from the model's own fields; a model with no
        description gets ``""`` (the field is a required string) and ``tags`` is empty (model configs carry no
        tags). An empty table gives the same answer on both backends.

        The count and the page are read in one ``REPEATABLE READ`` transaction, so ``total`` describes the same
        snapshot as ``items`` — stock's lock gives it the same guarantee.
        """
        with self._engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            total = int(conn.execute(select(func.count()).select_from(models)).scalar_one())
            statement = select(
                models.c.id, models.c.type, models.c.base, models.c.format, models.c.name, models.c.description
            ).order_by(*_ordering(order_by, direction))
            # SQLite reads a negative LIMIT as "no limit" and a negative OFFSET as none.
            if per_page >= 0:
                statement = statement.limit(per_page)
            if page * per_page > 0:
                statement = statement.offset(page * per_page)
            rows = conn.execute(statement).all()
        items = [
            ModelSummary(
                key=row.id,
                type=ModelType(row.type),
                base=BaseModelType(row.base),
                format=ModelFormat(row.format),
                name=row.name,
                description=row.description or "",
                tags=set(),
            )
            for row in rows
        ]
        return PaginatedResults(page=page, pages=ceil(total / per_page), per_page=per_page, total=total, items=items)


def _violated_constraint(error: IntegrityError) -> str | None:
    diag = getattr(error.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


def _apply_changes(record: AnyModelConfig, changes: ModelRecordChanges, allow_class_change: bool) -> AnyModelConfig:
    """Stock's ``update_model`` change logic, verbatim in effect (see ``ModelRecordServiceSQL.update_model``)."""
    if not allow_class_change:
        # Assignment is validated: a change the config class cannot hold raises pydantic's ValidationError.
        for field_name in changes.model_fields_set:
            setattr(record, field_name, getattr(changes, field_name))
        return record

    record_as_dict = record.model_dump()
    for field_name in changes.model_fields_set:
        record_as_dict[field_name] = getattr(changes, field_name)
    type_changed = "type" in changes.model_fields_set and changes.type != record.type
    try:
        return ModelConfigFactory.from_dict(record_as_dict)
    except ValidationError:
        if not type_changed:
            raise
        # The old class's format/variant rarely fit the new type: let the new class apply its defaults.
        fallback_dict = dict(record_as_dict)
        for stale_field in ("format", "variant"):
            if stale_field not in changes.model_fields_set:
                fallback_dict.pop(stale_field, None)
        return _construct_config_for_type(fallback_dict, cast_type(ModelType, changes.type))
