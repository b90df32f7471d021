"""Write the benchmark's data set into stock's SQLite database and into our PostgreSQL database.

Both sides go through the same routine (:func:`seed`), which writes the *sample* users' rows through the record
services each backend really runs (stock's ``Sqlite*`` classes, our ``Postgres*`` classes) and bulk-inserts the
rest with SQL (``executemany`` on SQLite, ``COPY`` on PostgreSQL): per-row service calls would take many minutes
at 200,000 images, while the bulk rows are shaped exactly like the rows the services write (same columns, stock's
timestamp text on SQLite, ``updated_at`` equal to ``created_at`` as for a never-updated row).

Bulk users reuse the password hash the users service computed for the first sample user, so every user logs in
with the same password without paying bcrypt once per seeded user.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _bench_data import ADMIN_EMAIL, BENCH_PASSWORD, Dataset, workflow_json
from sqlalchemy import Engine, text

from invokeai_saas.db.convert import stock_ms

__all__ = [
    "PostgresBulk",
    "RecordServices",
    "SeededIds",
    "SqliteBulk",
    "missing_postgres_services",
    "postgres_services",
    "seed",
    "sqlite_services",
    "write_stock_root",
]

_ID_NAMESPACE = uuid.UUID("5b0c5d3e-8f0a-4d7e-9a51-6c2f7d3b9e10")

# module, class: the PostgreSQL services the seeding uses (the saas server needs these and more to start).
POSTGRES_SERVICE_CLASSES: dict[str, tuple[str, str]] = {
    "users": ("invokeai_saas.services.users.users_postgres", "UserServicePostgres"),
    "boards": ("invokeai_saas.services.board_records.board_records_postgres", "PostgresBoardRecordStorage"),
    "board_images": (
        "invokeai_saas.services.board_image_records.board_image_records_postgres",
        "PostgresBoardImageRecordStorage",
    ),
    "images": ("invokeai_saas.services.image_records.image_records_postgres", "PostgresImageRecordStorage"),
    "workflows": (
        "invokeai_saas.services.workflow_records.workflow_records_postgres",
        "PostgresWorkflowRecordsStorage",
    ),
}


@dataclass
class RecordServices:
    """The record services one backend runs; typed loosely because each side has its own classes."""

    users: Any
    boards: Any
    board_images: Any
    images: Any
    workflows: Any


@dataclass
class SeededIds:
    """Per-backend ids of the logical users and boards (the services choose ids for the sample)."""

    admin_user_id: str
    user_ids: list[str]
    board_ids: list[list[str]]
    service_rows: int
    bulk_rows: int
    seconds: float


def _bulk_id(*parts: object) -> str:
    """Deterministic ids for bulk rows, so both backends hold the very same ids."""
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(str(p) for p in parts)))


class Bulk(ABC):
    """Set-based inserts of rows the services would have written one by one."""

    @abstractmethod
    def password_hash(self, user_id: str) -> str: ...

    @abstractmethod
    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int: ...

    @abstractmethod
    def finish(self) -> None: ...


class SqliteBulk(Bulk):
    """``executemany`` in one transaction on stock's own ``SqliteDatabase`` connection; times as stock's text."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def password_hash(self, user_id: str) -> str:
        with self._db.transaction() as cursor:
            cursor.execute("SELECT password_hash FROM users WHERE user_id = ?", (user_id,))
            return str(cursor.fetchone()[0])

    @staticmethod
    def _value(value: object) -> object:
        if isinstance(value, dt.datetime):
            return stock_ms(value)
        if isinstance(value, bool):
            return int(value)
        return value

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        converted = [tuple(self._value(v) for v in row) for row in rows]
        with self._db.transaction() as cursor:
            cursor.executemany(statement, converted)
        return len(converted)

    def finish(self) -> None:
        """Checkpoint the WAL into the main file so the server starts from a compact, settled database. No
        ANALYZE: stock never runs it, so the benchmark measures SQLite the way it runs in the field."""
        with self._db.transaction() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class PostgresBulk(Bulk):
    """``COPY ... FROM STDIN`` through the engine's psycopg connection (tens of thousands of rows a second)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def password_hash(self, user_id: str) -> str:
        with self._engine.connect() as conn:
            return str(
                conn.execute(text("SELECT password_hash FROM users WHERE user_id = :u"), {"u": user_id}).scalar_one()
            )

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
        count = 0
        raw = self._engine.raw_connection()
        try:
            connection = raw.driver_connection
            assert connection is not None
            with connection.cursor() as cursor:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        count += 1
            raw.commit()
        finally:
            raw.close()
        return count

    def finish(self) -> None:
        """ANALYZE, as autovacuum would shortly after a load this size: without statistics the planner guesses
        and the first minutes of a fresh database are not what production sees."""
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))


def sqlite_services(db: Any) -> RecordServices:
    """Stock's own SQLite record services, the ones ``invokeai-web`` builds in ``ApiDependencies``."""
    from invokeai.app.services.board_image_records.board_image_records_sqlite import SqliteBoardImageRecordStorage
    from invokeai.app.services.board_records.board_records_sqlite import SqliteBoardRecordStorage
    from invokeai.app.services.image_records.image_records_sqlite import SqliteImageRecordStorage
    from invokeai.app.services.users.users_default import UserService
    from invokeai.app.services.workflow_records.workflow_records_sqlite import SqliteWorkflowRecordsStorage

    return RecordServices(
        users=UserService(db),
        boards=SqliteBoardRecordStorage(db),
        board_images=SqliteBoardImageRecordStorage(db),
        images=SqliteImageRecordStorage(db),
        workflows=SqliteWorkflowRecordsStorage(db),
    )


def missing_postgres_services() -> list[str]:
    """The PostgreSQL service modules that do not exist (yet); the benchmark cannot seed or serve without them."""
    missing = []
    for module, class_name in POSTGRES_SERVICE_CLASSES.values():
        try:
            getattr(importlib.import_module(module), class_name)
        except (ImportError, AttributeError):
            missing.append(f"{module}.{class_name}")
    return missing


def postgres_services(engine: Engine) -> RecordServices:
    classes = {
        key: getattr(importlib.import_module(module), name) for key, (module, name) in POSTGRES_SERVICE_CLASSES.items()
    }
    return RecordServices(**{key: cls(engine) for key, cls in classes.items()})


def write_stock_root(root: Path) -> Any:
    """Create stock's root: ``invokeai.yaml`` with multiuser on (saas mode forces it on, so both sides take the
    same authentication path), and the SQLite database built by InvokeAI's own ``init_db`` (its real migrator).
    Returns the open ``SqliteDatabase``; close it (``db._conn.close()``) before starting the server."""
    from invokeai.app.services.config.config_default import InvokeAIAppConfig
    from invokeai.app.services.image_files.image_files_disk import DiskImageFileStorage
    from invokeai.app.services.shared.sqlite.sqlite_util import init_db

    root.mkdir(parents=True, exist_ok=True)
    config = InvokeAIAppConfig(multiuser=True)
    config._root = root
    config.write_file(root / "invokeai.yaml")
    outputs = config.outputs_path
    assert outputs is not None
    return init_db(
        config=config, logger=logging.getLogger("bench-seed"), image_files=DiskImageFileStorage(outputs / "images")
    )


def _chunks(rows: Iterable[Sequence[object]], size: int = 20_000) -> Iterator[list[Sequence[object]]]:
    chunk: list[Sequence[object]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def seed(data: Dataset, services: RecordServices, bulk: Bulk) -> SeededIds:
    """Write ``data``: the admin and the sample users' rows through ``services``, everything else through ``bulk``.

    The order follows the foreign keys (users, boards, images, board memberships, workflows)."""
    from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
    from invokeai.app.services.users.users_common import UserCreateRequest
    from invokeai.app.services.workflow_records.workflow_records_common import Workflow, WorkflowWithoutID

    started = time.monotonic()
    service_rows = 0
    bulk_rows = 0

    admin = services.users.create_admin(
        UserCreateRequest(email=ADMIN_EMAIL, display_name="Bench admin", password=BENCH_PASSWORD)
    )
    service_rows += 1

    # -- users
    user_ids: list[str] = []
    for u in data.sample_users:
        created = services.users.create(
            UserCreateRequest(email=data.emails[u], display_name=f"User {u}", password=BENCH_PASSWORD)
        )
        user_ids.append(created.user_id)
        service_rows += 1
    password_hash = bulk.password_hash(user_ids[0] if user_ids else admin.user_id)
    bulk_user_ids = [_bulk_id("user", data.emails[u]) for u in data.bulk_users]
    user_ids.extend(bulk_user_ids)
    bulk_rows += bulk.insert(
        "users",
        ("user_id", "email", "display_name", "password_hash", "is_admin", "is_active", "created_at", "updated_at"),
        (
            (
                user_ids[u],
                data.emails[u],
                f"User {u}",
                password_hash,
                False,
                True,
                data.user_times[u],
                data.user_times[u],
            )
            for u in data.bulk_users
        ),
    )

    # -- boards
    board_ids: list[list[str]] = []
    for u in data.sample_users:
        ids = []
        for name, _created in data.boards[u]:
            ids.append(services.boards.save(board_name=name, user_id=user_ids[u]).board_id)
            service_rows += 1
        board_ids.append(ids)
    for u in data.bulk_users:
        board_ids.append([_bulk_id("board", data.emails[u], b) for b in range(len(data.boards[u]))])
    bulk_rows += bulk.insert(
        "boards",
        ("board_id", "board_name", "user_id", "created_at", "updated_at"),
        (
            (board_ids[u][b], name, user_ids[u], created, created)
            for u in data.bulk_users
            for b, (name, created) in enumerate(data.boards[u])
        ),
    )

    # -- images and their boards
    for u in data.sample_users:
        for i in data.images_by_user[u]:
            name, _user, _created, starred, board, metadata = data.images[i]
            services.images.save(
                image_name=name,
                image_origin=ResourceOrigin.INTERNAL,
                image_category=ImageCategory.GENERAL,
                width=512,
                height=512,
                has_workflow=False,
                is_intermediate=False,
                starred=starred,
                metadata=metadata,
                user_id=user_ids[u],
            )
            service_rows += 1
            if board >= 0:
                services.board_images.add_image_to_board(board_id=board_ids[u][board], image_name=name)
                service_rows += 1
    bulk_images = [row for row in data.images if not data.is_sampled(row[1])]
    image_columns = (
        "image_name",
        "image_origin",
        "image_category",
        "width",
        "height",
        "metadata",
        "is_intermediate",
        "starred",
        "has_workflow",
        "user_id",
        "image_subfolder",
        "created_at",
        "updated_at",
    )
    for chunk in _chunks(
        (name, "internal", "general", 512, 512, metadata, False, starred, False, user_ids[u], "", created, created)
        for name, u, created, starred, _board, metadata in bulk_images
    ):
        bulk_rows += bulk.insert("images", image_columns, chunk)
    for chunk in _chunks(
        (board_ids[u][board], name, created, created)
        for name, u, created, _starred, board, _metadata in bulk_images
        if board >= 0
    ):
        bulk_rows += bulk.insert("board_images", ("board_id", "image_name", "created_at", "updated_at"), chunk)

    # -- workflows
    for u in data.sample_users:
        for _workflow_id, name, _created in data.workflows[u]:
            services.workflows.create(WorkflowWithoutID(**workflow_json(None, name)), user_id=user_ids[u])
            service_rows += 1
    bulk_rows += bulk.insert(
        "workflow_library",
        ("workflow_id", "workflow", "user_id", "is_public", "created_at", "updated_at"),
        (
            (workflow_id, Workflow(**workflow_json(workflow_id, name)).model_dump_json(), user_ids[u], False, t, t)
            for u in data.bulk_users
            for workflow_id, name, t in data.workflows[u]
        ),
    )

    bulk.finish()
    return SeededIds(
        admin_user_id=admin.user_id,
        user_ids=user_ids,
        board_ids=board_ids,
        service_rows=service_rows,
        bulk_rows=bulk_rows,
        seconds=time.monotonic() - started,
    )
