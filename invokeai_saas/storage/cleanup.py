"""The storage cleanup pass: no object outlives its record by more than one pass, and no promised delete is
forgotten because S3 was down or a process died at the wrong moment.

Each pass, under a PostgreSQL advisory lock so that one process at a time runs it whatever the number of API
processes:

1. **Journal.** Promised deletes (``storage_pending_deletes``) older than the grace period: if the record the
   object belongs to is gone, delete the object and forget it; if the record is still there (the delete was
   rolled back), drop the promise.
2. **Orphans.** Indexed objects whose record is gone (a record deleted by a path that skips the storage, a
   deleted user's media, a failed create whose cleanup could not reach S3), once older than the grace period
   (so an object written just before its record commits is never taken for an orphan).
3. **Deleted users.** Media records of users that no longer exist are deleted (their objects then go in the
   same pass): stock's user delete leaves a deleted user's gallery behind, owned by nobody.
4. **Archives.** Bulk-download archives older than their time to live.
5. **Unindexed objects** (optional, it lists the bucket): keys under the prefix with no index row, older than the
   grace period — what a crash between an S3 put and its index row leaves.

S3 being down stops a pass without losing anything: entries stay where they are for the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from logging import Logger

from sqlalchemy import Engine, and_, column, delete, exists, func, select, table, text
from sqlalchemy.sql.expression import TableClause

from invokeai_saas.db.tables import (
    board_images,
    board_videos,
    boards,
    images,
    storage_objects,
    style_presets,
    users,
    videos,
    workflow_library,
)
from invokeai_saas.periodic import PeriodicTask
from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.object_store import ObjectStoreUnavailable

# pg_try_advisory_lock key for the pass (one bigint namespace per database; distinct from the services' keys).
CLEANUP_LOCK_KEY = 0x5AA5_0B1E_C7C1_EA01 - (1 << 63)
# Owners that are not users: shared objects (model images) and the single-user system account.
_NON_USER_OWNERS = ("system",)


@dataclass
class CleanupReport:
    ran: bool = True
    deleted_objects: int = 0
    dropped_promises: int = 0
    purged_records: int = 0
    errors: list[str] = field(default_factory=list)


def _record_table(kind: str) -> tuple[TableClause, str] | None:
    record = kinds.RECORD_OF_KIND.get(kind)
    if record is None:
        return None
    table_name, name_column = record
    return table(table_name, column(name_column)), name_column


class StorageCleanup:
    def __init__(
        self,
        storage: ObjectStorage,
        engine: Engine,
        *,
        grace: timedelta = timedelta(minutes=10),
        archive_ttl: timedelta = timedelta(hours=24),
        batch: int = 500,
    ) -> None:
        self._storage = storage
        self._engine = engine
        self._grace = grace
        self._archive_ttl = archive_ttl
        self._batch = batch

    # --- one pass ------------------------------------------------------------------------------------------------

    def run_once(self, *, list_bucket: bool = False, now: datetime | None = None) -> CleanupReport:
        """One pass; returns ``ran=False`` when another process holds the pass's lock."""
        now = now or datetime.now(UTC)
        with self._engine.connect() as lock_conn:
            if not lock_conn.execute(select(func.pg_try_advisory_lock(CLEANUP_LOCK_KEY))).scalar_one():
                lock_conn.rollback()
                return CleanupReport(ran=False)
            try:
                report = CleanupReport()
                try:
                    self._purge_deleted_users(report)
                    self._finish_promises(report, now)
                    self._delete_orphans(report, now)
                    self._expire_archives(report, now)
                    if list_bucket:
                        self._delete_unindexed(report, now)
                except ObjectStoreUnavailable as error:
                    report.errors.append(f"object store unavailable ({error})")
                return report
            finally:
                lock_conn.execute(select(func.pg_advisory_unlock(CLEANUP_LOCK_KEY)))
                lock_conn.commit()

    def _delete_objects(self, object_keys: list[str], report: CleanupReport) -> None:
        if not object_keys:
            return
        self._storage.store.delete_many(object_keys)
        self._storage.index.forget(object_keys)
        report.deleted_objects += len(object_keys)

    def _purge_deleted_users(self, report: CleanupReport) -> None:
        """Media records whose owner no longer exists; boards cascade to their links, images/videos are unlinked."""
        gone = ~exists().where(users.c.user_id == images.c.user_id)
        with self._engine.begin() as conn:
            purged = 0
            owned_images = select(images.c.image_name).where(gone, images.c.user_id.not_in(_NON_USER_OWNERS))
            purged += conn.execute(delete(board_images).where(board_images.c.image_name.in_(owned_images))).rowcount
            purged += conn.execute(delete(images).where(images.c.user_id.not_in(_NON_USER_OWNERS), gone)).rowcount
            video_gone = ~exists().where(users.c.user_id == videos.c.user_id)
            owned_videos = select(videos.c.video_name).where(video_gone, videos.c.user_id.not_in(_NON_USER_OWNERS))
            purged += conn.execute(delete(board_videos).where(board_videos.c.video_name.in_(owned_videos))).rowcount
            purged += conn.execute(delete(videos).where(videos.c.user_id.not_in(_NON_USER_OWNERS), video_gone)).rowcount
            for owned in (boards, style_presets, workflow_library):
                owner_gone = ~exists().where(users.c.user_id == owned.c.user_id)
                purged += conn.execute(
                    delete(owned).where(owned.c.user_id.not_in(_NON_USER_OWNERS), owner_gone)
                ).rowcount
        report.purged_records += purged

    def _existing_records(self, kind: str, names: list[str]) -> set[str]:
        """Which of these names still have their record (one query per kind, not one per name)."""
        record = _record_table(kind)
        if record is None or not names:
            return set()
        record_table, name_column = record
        with self._engine.connect() as conn:
            found = conn.execute(select(record_table.c[name_column]).where(record_table.c[name_column].in_(names)))
            return set(found.scalars())

    def _finish_promises(self, report: CleanupReport, now: datetime) -> None:
        cutoff = now - self._grace
        with self._engine.connect() as conn:
            keys = (
                conn.execute(
                    text(
                        "SELECT object_key FROM storage_pending_deletes WHERE created_at < :cutoff ORDER BY created_at"
                    ),
                    {"cutoff": cutoff},
                )
                .scalars()
                .all()
            )
        if not keys:
            return
        indexed = self._storage.index.find_by_keys(list(keys))
        names_by_kind: dict[str, list[str]] = {}
        for obj in indexed.values():
            names_by_kind.setdefault(obj.kind, []).append(obj.name)
        alive = {kind: self._existing_records(kind, names) for kind, names in names_by_kind.items()}
        to_delete: list[str] = []
        to_drop: list[str] = []
        for key in keys:
            obj = indexed.get(key)
            if obj is not None and obj.name in alive.get(obj.kind, set()):
                to_drop.append(key)
            else:
                to_delete.append(key)
        self._storage.index.unjournal(to_drop)
        report.dropped_promises += len(to_drop)
        for start in range(0, len(to_delete), self._batch):
            self._delete_objects(to_delete[start : start + self._batch], report)

    def _delete_orphans(self, report: CleanupReport, now: datetime) -> None:
        cutoff = now - self._grace
        for kind in kinds.RECORD_OF_KIND:
            record = _record_table(kind)
            assert record is not None
            record_table, name_column = record
            orphan = and_(
                storage_objects.c.kind == kind,
                storage_objects.c.created_at < cutoff,
                ~exists().where(record_table.c[name_column] == storage_objects.c.name),
            )
            while True:
                with self._engine.connect() as conn:
                    keys = list(
                        conn.execute(select(storage_objects.c.object_key).where(orphan).limit(self._batch)).scalars()
                    )
                if not keys:
                    break
                self._delete_objects(keys, report)
                if len(keys) < self._batch:
                    break

    def _expire_archives(self, report: CleanupReport, now: datetime) -> None:
        cutoff = now - self._archive_ttl
        with self._engine.connect() as conn:
            keys = list(
                conn.execute(
                    select(storage_objects.c.object_key).where(
                        storage_objects.c.kind == kinds.BULK_DOWNLOAD, storage_objects.c.created_at < cutoff
                    )
                ).scalars()
            )
        for start in range(0, len(keys), self._batch):
            self._delete_objects(keys[start : start + self._batch], report)

    def _delete_unindexed(self, report: CleanupReport, now: datetime) -> None:
        store = self._storage.store
        cutoff = now - self._grace
        for page in store.list_pages(self._storage.layout.prefix):
            keys = [item["Key"] for item in page if item["LastModified"] < cutoff]
            if not keys:
                continue
            known = self._storage.index.find_by_keys(keys)
            unknown = [key for key in keys if key not in known]
            if unknown:
                store.delete_many(unknown)
                report.deleted_objects += len(unknown)


class CleanupScheduler:
    """Runs the pass every ``interval`` in a daemon thread of this process (every process runs one; the lock
    makes them take turns). The bucket listing runs every ``list_every``-th pass: it is the expensive part."""

    def __init__(self, cleanup: StorageCleanup, interval: float, logger: Logger, list_every: int = 6) -> None:
        self._cleanup = cleanup
        self._logger = logger
        self._list_every = list_every
        self._task = PeriodicTask("invokeai-saas-storage-cleanup", interval, self._pass, logger)

    def start(self) -> None:
        self._task.start()

    def stop(self, timeout: float = 10) -> None:
        self._task.stop(timeout)

    def _pass(self, number: int) -> None:
        report = self._cleanup.run_once(list_bucket=number % self._list_every == 0)
        if report.errors:
            self._logger.warning(f"storage cleanup pass incomplete: {'; '.join(report.errors)}")
        elif report.deleted_objects or report.purged_records:
            self._logger.info(
                f"storage cleanup: {report.deleted_objects} objects deleted, "
                f"{report.purged_records} records of deleted users purged"
            )
