"""PostgreSQL implementation of stock's ``ImageMoveService`` (``image_moves_default.py``).

Moving images between output subfolders is mostly file work — thumbnails, ``os.replace``, fsyncs,
crash-state reconciliation — and that stays stock's: this class subclasses ``ImageMoveService`` and
overrides exactly the methods that touch the database (every one that used ``self._db``; stock is handed
a stand-in that raises if anything still does), plus the two lock-taking loops.

Where a single SQLite process could rely on its process-wide locks, several processes share this
database, so:

- **One active job.** ``create_move_job``'s "no other active job" check and its insert run under a
  transaction-scoped advisory lock, so two processes cannot both pass the check.
- **Image mutations vs. moves.** Stock's ``image_mutation_lock`` (a process-local ``RLock``) keeps an
  image delete or create from interleaving with a relocate-and-repoint cycle; stock documents that it does
  not cover a second process. Here the same lock also takes a PostgreSQL advisory lock: *shared* for
  callers of ``image_mutation_lock()`` (``ImageService`` creates and deletes, which may run side by side
  in any number of processes) and *exclusive* for the move service's own plan/relocate/repoint and
  recovery cycles, so no process's create or delete runs inside another process's move cycle.
- **Recovery.** Two processes starting at once both list the unfinished jobs; each job is re-checked
  under the exclusive lock, so one finishes it and the other skips it instead of re-running it.

Text order is SQLite's byte order (``COLLATE "C"``) wherever stock pages or orders by ``image_name``, and
``created_at`` is read as UTC, as stock's text is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, cast

from invokeai.app.services.config import InvokeAIAppConfig
from invokeai.app.services.image_files.image_files_base import ImageFileStorageBase
from invokeai.app.services.image_moves.image_moves_default import (
    ImageMoveJob,
    ImageMoveResult,
    ImageMoveService,
    MoveJobState,
    PlannedImageMove,
)
from invokeai.app.services.image_records.image_records_common import ImageCategory
from invokeai.app.services.shared.sqlite.sqlite_database import SqliteDatabase
from sqlalchemy import Connection, Engine, Row, and_, case, false, func, insert, literal, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from invokeai_saas.db.convert import utc_naive
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import image_subfolder_move_items as items
from invokeai_saas.db.tables import image_subfolder_move_jobs as jobs
from invokeai_saas.db.tables import images

# Advisory lock keys (one bigint namespace per database). Distinct keys: the job-creation lock is taken on
# a second connection while the same thread holds the mutation lock, so sharing a key would self-deadlock.
IMAGE_MUTATION_LOCK_KEY = 0x1A6E_4D0F_0001
MOVE_JOB_CREATION_LOCK_KEY = 0x1A6E_4D0F_0002

_ACTIVE_JOB_STATES = ("planned", "moving", "moved")
_TERMINAL_JOB_STATES = ("committed", "error")
_SUBFOLDER_STRATEGIES = ("flat", "type", "hash", "date")


class _NoSqliteDatabase:
    """Handed to stock's constructor as ``db``: any use means a SQL path was not overridden."""

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(f"PostgresImageMoveService must not use SQLite (attempted db.{name})")


def _by_name(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """SQLite's byte-wise text order, whatever the database collation."""
    return column.collate("C")


class PostgresImageMoveService(ImageMoveService):
    def __init__(
        self,
        engine: Engine,
        image_files: ImageFileStorageBase,
        config: InvokeAIAppConfig,
        logger: Any,
    ) -> None:
        super().__init__(
            db=cast(SqliteDatabase, _NoSqliteDatabase()), image_files=image_files, config=config, logger=logger
        )
        self._engine = engine
        self._reads = autocommit_reads(engine)
        # The cross-process half of the image-mutation lock. Only the thread holding stock's RLock
        # (``self._image_mutation_lock``) touches these, so they need no lock of their own.
        self._mutation_lock_depth = 0
        self._mutation_lock_conn: Connection | None = None
        self._mutation_lock_exclusive = False
        # Images with an active job, looked up once per ``preflight_moves`` call (see there).
        self._preflight = threading.local()

    # --- locks ------------------------------------------------------------------------------------------

    @contextmanager
    def image_mutation_lock(self) -> Iterator[None]:
        """Stock's lock for image create/delete units, extended across processes (shared mode).

        Creates and deletes in any number of processes can hold it together; a move cycle in any process
        (exclusive mode) waits for them and holds them off. Reentrant, like stock's.
        """
        with self._mutation_lock(exclusive=False):
            yield

    @contextmanager
    def _move_cycle_lock(self) -> Iterator[None]:
        """The lock around one plan/relocate/repoint (or recovery) cycle: exclusive across processes."""
        with self._mutation_lock(exclusive=True):
            yield

    @contextmanager
    def _mutation_lock(self, exclusive: bool) -> Iterator[None]:
        """Stock's process-local ``RLock`` first (threads of this process), then a transaction-scoped
        advisory lock on a connection held for the outermost unit (other processes).

        Transaction-scoped rather than session-scoped: closing the connection rolls the transaction back
        and so always releases the lock, even after an error, and a lock can never be handed back to the
        pool still held.
        """
        with self._image_mutation_lock:
            if self._mutation_lock_depth == 0:
                conn = self._engine.connect()
                try:
                    self._take_advisory_lock(conn, exclusive)
                except BaseException:
                    conn.close()
                    raise
                self._mutation_lock_conn = conn
                self._mutation_lock_exclusive = exclusive
            elif exclusive and not self._mutation_lock_exclusive:
                # A move cycle inside a create/delete unit of the same thread: upgrade in place (the same
                # transaction never conflicts with itself); the lock stays exclusive until the unit ends.
                assert self._mutation_lock_conn is not None
                self._take_advisory_lock(self._mutation_lock_conn, exclusive=True)
                self._mutation_lock_exclusive = True
            self._mutation_lock_depth += 1
            try:
                yield
            finally:
                self._mutation_lock_depth -= 1
                if self._mutation_lock_depth == 0:
                    conn, self._mutation_lock_conn = self._mutation_lock_conn, None
                    self._mutation_lock_exclusive = False
                    if conn is not None:
                        conn.close()

    @staticmethod
    def _take_advisory_lock(conn: Connection, exclusive: bool) -> None:
        lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
        conn.execute(select(lock(IMAGE_MUTATION_LOCK_KEY)))

    # --- the lock-taking loops (stock's logic, with the cross-process exclusive lock) ---------------------

    def move_all_images(self) -> ImageMoveResult:
        recovered = self.startup_recovery()
        last_image_name = ""
        planned = 0
        committed = recovered.committed
        errors = recovered.errors

        while True:
            # As stock: the whole cycle — plan, journal, relocate, repoint — is one locked unit, so no
            # image create or delete (in any process, here) observes it half done.
            with self._move_cycle_lock():
                moves, plan_errors = self._plan_batch(
                    last_image_name=last_image_name, limit=100, record_missing_errors=True
                )
                errors += plan_errors
                if not moves:
                    next_name = self._next_image_name(last_image_name)
                    if next_name is None:
                        break
                    last_image_name = next_name
                    continue

                job_id = self.create_move_job(moves)
                planned += len(moves)
                try:
                    self.perform_filesystem_moves(job_id)
                    committed += self.commit_database_updates(job_id)
                    errors += self._count_job_errors(job_id)
                except Exception as e:
                    errors += 1
                    self.record_job_error_message(job_id, str(e))
                    raise
            last_image_name = moves[-1].image_name

        return ImageMoveResult(planned=planned, committed=committed, errors=errors)

    def startup_recovery(self) -> ImageMoveResult:
        with self._reads.connect() as conn:
            job_ids = list(
                conn.execute(select(jobs.c.id).where(jobs.c.state.in_(_ACTIVE_JOB_STATES)).order_by(jobs.c.id))
                .scalars()
                .all()
            )

        committed = 0
        errors = 0
        for job_id in job_ids:
            try:
                with self._move_cycle_lock():
                    if not self._is_job_active(job_id):
                        # Another process finished (or failed) it while this one waited for the lock.
                        continue
                    self.complete_partial_filesystem_moves(job_id)
                    self.cleanup_empty_source_dirs(job_id)
                    committed += self.commit_database_updates(job_id)
            except Exception as e:
                if self._is_unrecoverable_error(e):
                    self.mark_job_unrecoverable(job_id, str(e))
                    errors += max(1, self._count_job_errors(job_id))
                else:
                    errors += 1
                    self.record_job_error_message(job_id, str(e))
            else:
                errors += self._count_job_errors(job_id)
        return ImageMoveResult(committed=committed, errors=errors)

    # --- planning ---------------------------------------------------------------------------------------

    def count_images_needing_move(self) -> int:
        """Stock loads every image row and compares subfolders in Python; this counts in the database
        (the status endpoint calls it on every poll). The same rules as ``_get_new_subfolder``, and the same
        ``ValueError`` stock raises for an unknown category or strategy."""
        strategy = self._config.image_subfolder_strategy
        current = func.coalesce(images.c.image_subfolder, "")
        valid_categories = [category.value for category in ImageCategory]
        statement = select(
            func.count().filter(current != self._new_subfolder_sql(strategy)).label("needs_move"),
            func.count().label("total"),
            func.min(images.c.image_category)
            .filter(images.c.image_category.not_in(valid_categories))
            .label("bad_category"),
        ).where(images.c.deleted_at.is_(None))
        with self._reads.connect() as conn:
            row = conn.execute(statement).one()
        if row.bad_category is not None:
            ImageCategory(row.bad_category)  # raises stock's ValueError
        if strategy not in _SUBFOLDER_STRATEGIES and row.total:
            raise ValueError(f"Unknown image subfolder strategy: {strategy}")
        return int(row.needs_move)

    @staticmethod
    def _new_subfolder_sql(strategy: str) -> ColumnElement[Any]:
        """``_get_new_subfolder`` as SQL (``created_at`` read as UTC, the year unpadded like stock's f-string)."""
        if strategy == "type":
            return case(
                (func.coalesce(images.c.is_intermediate, false()), literal("intermediate")),
                else_=images.c.image_category,
            )
        if strategy == "hash":
            return func.left(images.c.image_name, 2)
        if strategy == "date":
            return func.to_char(func.timezone("UTC", images.c.created_at), "FMYYYY/MM/DD")
        return literal("")  # "flat" (an unknown strategy is reported by the caller)

    def _plan_batch(
        self, last_image_name: str, limit: int, record_missing_errors: bool
    ) -> tuple[list[PlannedImageMove], int]:
        statement = (
            select(
                images.c.image_name,
                images.c.image_subfolder,
                images.c.image_category,
                images.c.is_intermediate,
                images.c.created_at,
            )
            .where(_by_name(images.c.image_name) > last_image_name, images.c.deleted_at.is_(None))
            .order_by(_by_name(images.c.image_name))
        )
        if limit >= 0:  # SQLite: a negative LIMIT is no limit
            statement = statement.limit(limit)
        with self._reads.connect() as conn:
            rows = conn.execute(statement).all()

        moves: list[PlannedImageMove] = []
        for row in rows:
            image_name = cast(str, row.image_name)
            old_subfolder = cast(str, row.image_subfolder or "")
            new_subfolder = self._get_new_subfolder(
                image_name=image_name,
                image_category=ImageCategory(row.image_category),
                is_intermediate=bool(row.is_intermediate),
                created_at=utc_naive(row.created_at),
            )
            if new_subfolder == old_subfolder:
                continue
            moves.append(self._planned(image_name, old_subfolder, new_subfolder, bool(row.is_intermediate)))
        errors = 0
        if record_missing_errors:
            moves, errors = self._record_missing_source_errors(moves)
        self.preflight_moves(moves)
        return moves, errors

    def preflight_moves(self, moves: Sequence[PlannedImageMove]) -> None:
        """Stock's checks, with the per-image "already in an active job?" lookups answered by one query.

        Stock asks the database once per planned image; here the answer for the whole batch is fetched up
        front and ``_has_active_job_for_image`` reads it while stock's loop runs.
        """
        self._preflight.active_images = self._images_with_active_jobs([move.image_name for move in moves])
        try:
            super().preflight_moves(moves)
        finally:
            self._preflight.active_images = None

    def _has_active_job_for_image(self, image_name: str) -> bool:
        prefetched: set[str] | None = getattr(self._preflight, "active_images", None)
        if prefetched is not None:
            return image_name in prefetched
        return bool(self._images_with_active_jobs([image_name]))

    def _images_with_active_jobs(self, image_names: list[str]) -> set[str]:
        if not image_names:
            return set()
        statement = (
            select(items.c.image_name)
            .distinct()
            .select_from(items.join(jobs, jobs.c.id == items.c.job_id))
            .where(items.c.image_name.in_(image_names), jobs.c.state.not_in(_TERMINAL_JOB_STATES))
        )
        with self._reads.connect() as conn:
            return set(conn.execute(statement).scalars())

    def _next_image_name(self, last_image_name: str) -> str | None:
        statement = (
            select(images.c.image_name)
            .where(_by_name(images.c.image_name) > last_image_name, images.c.deleted_at.is_(None))
            .order_by(_by_name(images.c.image_name))
            .limit(1)
        )
        with self._reads.connect() as conn:
            return conn.execute(statement).scalar_one_or_none()

    def _planned(
        self, image_name: str, old_subfolder: str, new_subfolder: str, is_intermediate: bool
    ) -> PlannedImageMove:
        get_path = self.image_files.get_path
        return PlannedImageMove(
            image_name=image_name,
            old_subfolder=old_subfolder,
            new_subfolder=new_subfolder,
            is_intermediate=is_intermediate,
            old_path=get_path(image_name, image_subfolder=old_subfolder),
            new_path=get_path(image_name, image_subfolder=new_subfolder),
            old_thumbnail_path=get_path(image_name, thumbnail=True, image_subfolder=old_subfolder),
            new_thumbnail_path=get_path(image_name, thumbnail=True, image_subfolder=new_subfolder),
        )

    # --- the journal ------------------------------------------------------------------------------------

    def create_move_job(self, moves: Sequence[PlannedImageMove]) -> int:
        if not moves:
            raise ValueError("Cannot create an image move job with no items")
        with self._engine.begin() as conn:
            # Serializes "is another job active?" + insert across processes (stock relied on SQLite's lock).
            conn.execute(select(func.pg_advisory_xact_lock(MOVE_JOB_CREATION_LOCK_KEY)))
            active = conn.execute(select(jobs.c.id).where(jobs.c.state.not_in(_TERMINAL_JOB_STATES)).limit(1)).first()
            if active is not None:
                raise ValueError("Cannot create image move job while another active image move job exists")
            job_id = conn.execute(insert(jobs).values(state="planned").returning(jobs.c.id)).scalar_one()
            conn.execute(insert(items), [self._item_values(job_id, move, "planned") for move in moves])
        return int(job_id)

    def create_error_move_job(self, move: PlannedImageMove, message: str) -> int:
        with self._engine.begin() as conn:
            job_id = conn.execute(
                insert(jobs).values(state="error", error_message=message).returning(jobs.c.id)
            ).scalar_one()
            conn.execute(insert(items).values(**self._item_values(job_id, move, "error"), error_message=message))
        return int(job_id)

    @staticmethod
    def _item_values(job_id: int, move: PlannedImageMove, state: str) -> dict[str, Any]:
        return {
            "job_id": job_id,
            "image_name": move.image_name,
            "old_subfolder": move.old_subfolder,
            "new_subfolder": move.new_subfolder,
            "is_intermediate": bool(move.is_intermediate),
            "old_path": str(move.old_path),
            "new_path": str(move.new_path),
            "old_thumbnail_path": str(move.old_thumbnail_path),
            "new_thumbnail_path": str(move.new_thumbnail_path),
            "state": state,
        }

    def _reconcile_destination_subfolder(self, item: PlannedImageMove) -> None:
        old_path = self.image_files.get_path(item.image_name, image_subfolder=item.old_subfolder)
        new_path = self.image_files.get_path(item.image_name, image_subfolder=item.new_subfolder)
        if old_path.exists() or not new_path.exists():
            return
        with self._engine.begin() as conn:
            conn.execute(
                update(images)
                .where(images.c.image_name == item.image_name, images.c.image_subfolder == item.old_subfolder)
                .values(image_subfolder=item.new_subfolder)
            )

    def commit_database_updates(self, job_id: int) -> int:
        """Repoint the moved images' records and close the job, in one transaction (as stock).

        The job row is locked first so two processes committing the same job take turns.
        """
        with self._engine.begin() as conn:
            conn.execute(select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())
            conn.execute(
                update(images)
                .where(
                    items.c.job_id == job_id,
                    items.c.state == "moved",
                    items.c.image_name == images.c.image_name,
                    images.c.image_subfolder == items.c.old_subfolder,
                )
                .values(image_subfolder=items.c.new_subfolder)
            )
            invalid_count = conn.execute(
                select(func.count())
                .select_from(items.outerjoin(images, images.c.image_name == items.c.image_name))
                .where(
                    items.c.job_id == job_id,
                    items.c.state == "moved",
                    or_(
                        images.c.image_name.is_(None),
                        images.c.deleted_at.is_not(None),
                        images.c.image_subfolder != items.c.new_subfolder,
                    ),
                )
            ).scalar_one()
            if invalid_count:
                raise RuntimeError(f"Image move job {job_id} failed commit validation")
            error_messages = (
                conn.execute(
                    select(items.c.error_message)
                    .where(items.c.job_id == job_id, items.c.state == "error")
                    .order_by(_by_name(items.c.image_name))
                )
                .scalars()
                .all()
            )
            moved_count = conn.execute(
                update(items).where(items.c.job_id == job_id, items.c.state == "moved").values(state="committed")
            ).rowcount
            if not error_messages:
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(state="committed", error_message=None))
            else:
                message = (
                    "\n".join(m for m in error_messages if m) or "One or more image move items could not be completed"
                )
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(state="error", error_message=message))
        return moved_count

    def _count_job_errors(self, job_id: int) -> int:
        with self._reads.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(items).where(items.c.job_id == job_id, items.c.state == "error")
            ).scalar_one()

    def mark_item_moved(self, job_id: int, image_name: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(items).where(items.c.job_id == job_id, items.c.image_name == image_name).values(state="moved")
            )

    def record_job_error_message(self, job_id: int, message: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(error_message=message))

    def mark_item_unrecoverable(self, job_id: int, image_name: str, message: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(items)
                .where(items.c.job_id == job_id, items.c.image_name == image_name)
                .values(state="error", error_message=message)
            )

    def mark_job_unrecoverable(self, job_id: int, message: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(state="error", error_message=message))
            conn.execute(update(items).where(items.c.job_id == job_id).values(state="error", error_message=message))

    def get_job(self, job_id: int) -> ImageMoveJob:
        with self._reads.connect() as conn:
            row = conn.execute(
                select(jobs.c.id, jobs.c.state, jobs.c.error_message).where(jobs.c.id == job_id)
            ).one_or_none()
        if row is None:
            raise ValueError(f"Image move job not found: {job_id}")
        return self._job(row)

    def get_latest_job(self) -> ImageMoveJob | None:
        with self._reads.connect() as conn:
            row = conn.execute(
                select(jobs.c.id, jobs.c.state, jobs.c.error_message).order_by(jobs.c.id.desc()).limit(1)
            ).one_or_none()
        return None if row is None else self._job(row)

    @staticmethod
    def _job(row: Row[Any]) -> ImageMoveJob:
        return ImageMoveJob(id=int(row.id), state=cast(MoveJobState, row.state), error_message=row.error_message)

    def _get_items(self, job_id: int, include_terminal: bool = True) -> list[PlannedImageMove]:
        statement = select(items.c.image_name, items.c.old_subfolder, items.c.new_subfolder, items.c.is_intermediate)
        conditions = [items.c.job_id == job_id]
        if not include_terminal:
            conditions.append(items.c.state.not_in(("committed", "error")))
        statement = statement.where(and_(*conditions)).order_by(_by_name(items.c.image_name))
        with self._reads.connect() as conn:
            rows = conn.execute(statement).all()
        return [
            self._planned(row.image_name, row.old_subfolder, row.new_subfolder, bool(row.is_intermediate))
            for row in rows
        ]

    def _set_job_state(self, job_id: int, state: MoveJobState) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(state=state))

    def _get_active_job_id(self) -> int | None:
        with self._reads.connect() as conn:
            job_id = conn.execute(
                select(jobs.c.id).where(jobs.c.state.not_in(_TERMINAL_JOB_STATES)).order_by(jobs.c.id).limit(1)
            ).scalar_one_or_none()
        return None if job_id is None else int(job_id)

    def _is_job_active(self, job_id: int) -> bool:
        with self._reads.connect() as conn:
            state = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar_one_or_none()
        return state in _ACTIVE_JOB_STATES
