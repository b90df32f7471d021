"""Image subfolder moves: stock ``ImageMoveService`` on SQLite vs ``PostgresImageMoveService``, same behaviour.

Real files throughout: a ``DiskImageFileStorage`` in ``tmp_path`` writes real PNGs and thumbnails, the
services move them, and the tests look at the disk as well as the journal and the image records.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from shutil import copy2
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import pytest
from invokeai.app.services.config.config_default import InvokeAIAppConfig
from invokeai.app.services.image_files.image_files_disk import DiskImageFileStorage
from invokeai.app.services.image_moves.image_moves_default import (
    ImageMoveJob,
    ImageMoveJobAlreadyRunning,
    ImageMoveQueueActive,
    ImageMoveResult,
    ImageMoveService,
    PlannedImageMove,
)
from invokeai.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, SessionQueueStatus
from PIL import Image
from sqlalchemy import func, select, text

from invokeai_saas.services.image_moves.image_moves_postgres import (
    IMAGE_MUTATION_LOCK_KEY,
    MOVE_JOB_CREATION_LOCK_KEY,
    PostgresImageMoveService,
)
from tests.services.conftest import Backend
from tests.services.helpers_gallery import Media, add_media, execute, fetch_all, utc
from tests.support.sql_counter import count_statements

LOGGER = logging.getLogger("test.image_moves")


@dataclass
class Env:
    backend: Backend
    storage: DiskImageFileStorage
    config: InvokeAIAppConfig
    service: ImageMoveService

    def new_service(self) -> ImageMoveService:
        """A second service on the same database and files — another process, as far as locks go."""
        return make_service(self.backend, self.storage, self.config)

    def add_image(
        self,
        name: str,
        created_at: datetime,
        subfolder: str = "",
        *,
        with_file: bool = True,
        color: str = "red",
        **fields: Any,
    ) -> None:
        add_media(self.backend, Media("image", name, created_at, subfolder=subfolder, **fields))
        if with_file:
            self.storage.save(Image.new("RGB", (16, 16), color), image_name=name, image_subfolder=subfolder)

    def subfolder(self, name: str) -> str:
        return fetch_all(self.backend, "SELECT image_subfolder FROM images WHERE image_name = :n", {"n": name})[0][0]

    def item_states(self, job_id: int) -> dict[str, tuple[str, str | None]]:
        rows = fetch_all(
            self.backend,
            "SELECT image_name, state, error_message FROM image_subfolder_move_items WHERE job_id = :j",
            {"j": job_id},
        )
        return {name: (state, message) for name, state, message in rows}

    def job_states(self) -> list[tuple[int, str]]:
        return [(int(i), s) for i, s in fetch_all(self.backend, "SELECT id, state FROM image_subfolder_move_jobs")]

    def path(self, name: str, subfolder: str, thumbnail: bool = False) -> Path:
        return self.storage.get_path(name, thumbnail=thumbnail, image_subfolder=subfolder)


def make_service(backend: Backend, storage: DiskImageFileStorage, config: InvokeAIAppConfig) -> ImageMoveService:
    if backend.is_postgres:
        return PostgresImageMoveService(engine=backend.engine, image_files=storage, config=config, logger=LOGGER)
    return ImageMoveService(db=backend.db, image_files=storage, config=config, logger=LOGGER)


@pytest.fixture()
def env(backend: Backend, tmp_path: Path) -> Iterator[Env]:
    config = InvokeAIAppConfig(image_subfolder_strategy="date")
    storage = DiskImageFileStorage(tmp_path / "moves" / "images")
    storage.start(SimpleNamespace(services=SimpleNamespace(configuration=config)))  # type: ignore[arg-type]
    service = make_service(backend, storage, config)
    yield Env(backend, storage, config, service)
    service.stop()


def expected_move(env: Env, name: str, old: str, new: str, is_intermediate: bool = False) -> PlannedImageMove:
    return PlannedImageMove(
        image_name=name,
        old_subfolder=old,
        new_subfolder=new,
        is_intermediate=is_intermediate,
        old_path=env.path(name, old),
        new_path=env.path(name, new),
        old_thumbnail_path=env.path(name, old, thumbnail=True),
        new_thumbnail_path=env.path(name, new, thumbnail=True),
    )


def plan_and_journal(env: Env, limit: int = 100) -> tuple[list[PlannedImageMove], int]:
    moves = env.service.plan_batch(last_image_name="", limit=limit)
    return moves, env.service.create_move_job(moves)


# --- planning -----------------------------------------------------------------------------------------------


def test_plan_batch_pages_by_byte_order_and_skips_settled_images(env: Env) -> None:
    env.add_image("b.png", utc(2024, 2, 3, 4, 5, 6))
    env.add_image("B.png", utc(2024, 12, 31, 23, 59, 59, 999000))
    env.add_image("settled.png", utc(2024, 2, 4, 1, 0, 0), subfolder="2024/02/04")
    env.add_image("c-missing-intermediate.png", utc(2025, 1, 1), with_file=False, is_intermediate=True)
    env.add_image("deleted.png", utc(2024, 2, 3))
    execute(env.backend, "UPDATE images SET deleted_at = created_at WHERE image_name = 'deleted.png'")

    # 'B' (0x42) sorts before 'b' (0x62) and 'c' — SQLite's byte order, whatever the database collation.
    assert env.service.plan_batch(last_image_name="", limit=100) == [
        expected_move(env, "B.png", "", "2024/12/31"),
        expected_move(env, "b.png", "", "2024/02/03"),
        expected_move(env, "c-missing-intermediate.png", "", "2025/01/01", is_intermediate=True),
    ]
    assert env.service.plan_batch(last_image_name="", limit=1) == [expected_move(env, "B.png", "", "2024/12/31")]
    assert [m.image_name for m in env.service.plan_batch(last_image_name="B.png", limit=1)] == ["b.png"]
    # A batch whose rows are all settled plans nothing (move_all then skips ahead by name).
    assert env.service.plan_batch(last_image_name="deleted.png", limit=1) == []
    assert env.service.plan_batch(last_image_name="settled.png", limit=10) == []
    assert env.service.count_images_needing_move() == 3


NEEDS_MOVE_BY_STRATEGY = {
    "flat": {"in-type.png", "in-hash.png", "in-date.png", "interm.png"},
    "type": {"flat.png", "in-hash.png", "in-date.png"},
    "hash": {"flat.png", "in-type.png", "in-date.png", "interm.png"},
    "date": {"flat.png", "in-type.png", "in-hash.png", "interm.png"},
}


def test_count_images_needing_move_per_strategy(env: Env) -> None:
    """The count (SQL on PostgreSQL, Python in stock) agrees with what planning would move, for each strategy."""
    day = utc(2024, 3, 5, 23, 59, 59, 999900)  # still the 5th in UTC
    env.add_image("flat.png", day)
    env.add_image("in-type.png", day, subfolder="mask", category="mask")
    env.add_image("in-hash.png", day, subfolder="in", is_intermediate=False, category="user")
    env.add_image("in-date.png", day, subfolder="2024/03/05", category="control")
    env.add_image("interm.png", day, subfolder="intermediate", is_intermediate=True)
    env.add_image("gone.png", day, subfolder="x")
    execute(env.backend, "UPDATE images SET deleted_at = created_at WHERE image_name = 'gone.png'")
    for strategy, expected in NEEDS_MOVE_BY_STRATEGY.items():
        env.config.image_subfolder_strategy = strategy  # type: ignore[assignment]
        assert env.service.count_images_needing_move() == len(expected), strategy
        planned = {m.image_name for m in env.service.plan_batch(last_image_name="", limit=100)}
        assert planned == expected, strategy
    execute(env.backend, "DELETE FROM images")
    env.config.image_subfolder_strategy = "flat"  # type: ignore[assignment]
    assert env.service.count_images_needing_move() == 0


def test_unknown_category_raises_like_stock(env: Env) -> None:
    env.add_image("odd.png", utc(2024, 1, 1), category="not-a-category", with_file=False)
    with pytest.raises(ValueError, match="not-a-category"):
        env.service.count_images_needing_move()
    with pytest.raises(ValueError, match="not-a-category"):
        env.service.plan_batch(last_image_name="", limit=10)


def test_preflight_errors(env: Env) -> None:
    env.add_image("missing.png", utc(2024, 1, 2), with_file=False)
    with pytest.raises(FileNotFoundError, match="Source image does not exist"):
        env.service.plan_batch(last_image_name="", limit=10)
    execute(env.backend, "DELETE FROM images")

    env.add_image("taken.png", utc(2024, 1, 3))
    env.storage.save(Image.new("RGB", (8, 8), "blue"), image_name="taken.png", image_subfolder="2024/01/03")
    with pytest.raises(FileExistsError, match="Destination image already exists"):
        env.service.plan_batch(last_image_name="", limit=10)
    execute(env.backend, "DELETE FROM images")

    # Two names sharing a thumbnail name (same stem) cannot move into one folder.
    env.add_image("same.jpg", utc(2024, 1, 4))
    env.add_image("same.png", utc(2024, 1, 4))
    with pytest.raises(ValueError, match="Duplicate destination thumbnail path"):
        env.service.plan_batch(last_image_name="", limit=10)


def test_preflight_rejects_image_already_in_an_active_job(env: Env) -> None:
    env.add_image("busy.png", utc(2024, 5, 6))
    stale_plan = env.service.plan_batch(last_image_name="", limit=10)
    env.service.create_move_job(stale_plan)
    with pytest.raises(ValueError, match="already has an active image move job"):
        env.service.plan_batch(last_image_name="", limit=10)
    with pytest.raises(ValueError, match="another active image move job exists"):
        env.service.create_move_job(stale_plan)
    with pytest.raises(ValueError, match="no items"):
        env.service.create_move_job([])


# --- moving and committing ----------------------------------------------------------------------------------


def test_move_all_images_end_to_end(env: Env) -> None:
    env.add_image("a.png", utc(2024, 2, 3, 4, 5, 6), subfolder="old/nested", color="red")
    env.add_image("b.png", utc(2025, 6, 7, 8, 9, 10), color="blue")
    env.add_image("settled.png", utc(2024, 1, 1), subfolder="2024/01/01")
    env.add_image("interm.png", utc(2024, 2, 4), is_intermediate=True, with_file=False)
    assert env.service.get_latest_job() is None
    assert env.service.count_images_needing_move() == 3

    assert env.service.move_all_images() == ImageMoveResult(planned=3, committed=3, errors=0)

    for name, subfolder in (("a.png", "2024/02/03"), ("b.png", "2025/06/07"), ("interm.png", "2024/02/04")):
        assert env.subfolder(name) == subfolder
    for name, old, new in (("a.png", "old/nested", "2024/02/03"), ("b.png", "", "2025/06/07")):
        assert env.path(name, new).exists() and env.path(name, new, thumbnail=True).exists()
        assert not env.path(name, old).exists() and not env.path(name, old, thumbnail=True).exists()
    with Image.open(env.path("a.png", "2024/02/03")) as moved:
        assert moved.getpixel((0, 0)) == (255, 0, 0)
    # Emptied source folders are removed, the roots are kept.
    assert not env.path("a.png", "old/nested").parent.exists()
    assert not env.path("a.png", "old/nested", thumbnail=True).parent.exists()
    assert env.storage.image_root.exists() and env.storage.thumbnail_root.exists()

    job = env.service.get_latest_job()
    assert job == ImageMoveJob(id=job.id, state="committed", error_message=None)  # type: ignore[union-attr]
    assert env.item_states(job.id) == {  # type: ignore[union-attr]
        "a.png": ("committed", None),
        "b.png": ("committed", None),
        "interm.png": ("committed", None),
    }
    assert env.service.count_images_needing_move() == 0
    assert env.service.move_all_images() == ImageMoveResult(planned=0, committed=0, errors=0)
    assert len(env.job_states()) == 1


def test_move_all_journals_missing_sources_as_error_jobs_and_goes_on(env: Env) -> None:
    env.add_image("a-missing.png", utc(2024, 2, 4), with_file=False)
    env.add_image("b-valid.png", utc(2024, 2, 5))

    assert env.service.move_all_images() == ImageMoveResult(planned=1, committed=1, errors=1)

    assert env.subfolder("a-missing.png") == "" and env.subfolder("b-valid.png") == "2024/02/05"
    states = dict(env.job_states())
    assert sorted(states.values()) == ["committed", "error"]
    error_job_id = next(i for i, s in states.items() if s == "error")
    message = f"Source image does not exist: {env.path('a-missing.png', '')}"
    assert env.service.get_job(error_job_id) == ImageMoveJob(id=error_job_id, state="error", error_message=message)
    assert env.item_states(error_job_id) == {"a-missing.png": ("error", message)}
    # Error jobs are terminal: nothing is active, and the next job can be created.
    assert env.service.is_maintenance_active() is False


def test_step_by_step_job_lifecycle(env: Env) -> None:
    env.add_image("a.png", utc(2024, 7, 8))
    env.add_image("b.png", utc(2024, 7, 9))
    moves, job_id = plan_and_journal(env)
    assert env.service.get_job(job_id) == ImageMoveJob(id=job_id, state="planned", error_message=None)
    assert env.service.get_latest_job() == env.service.get_job(job_id)
    assert env.item_states(job_id) == {"a.png": ("planned", None), "b.png": ("planned", None)}
    assert env.service.is_maintenance_active() is True

    env.service.perform_filesystem_moves(job_id)
    assert env.service.get_job(job_id).state == "moved"
    assert env.item_states(job_id) == {"a.png": ("moved", None), "b.png": ("moved", None)}
    assert env.subfolder("a.png") == ""  # records are repointed only at commit

    assert env.service.commit_database_updates(job_id) == 2
    assert env.service.get_job(job_id).state == "committed"
    assert (env.subfolder("a.png"), env.subfolder("b.png")) == ("2024/07/08", "2024/07/09")
    assert env.service.is_maintenance_active() is False
    # Committing again changes nothing and counts nothing.
    assert env.service.commit_database_updates(job_id) == 0
    assert env.service.get_job(job_id).state == "committed"


def test_commit_validation_failure_rolls_back(env: Env) -> None:
    env.add_image("a.png", utc(2024, 7, 8))
    env.add_image("b.png", utc(2024, 7, 9))
    _, job_id = plan_and_journal(env)
    env.service.perform_filesystem_moves(job_id)
    execute(env.backend, "UPDATE images SET image_subfolder = 'elsewhere' WHERE image_name = 'b.png'")

    with pytest.raises(RuntimeError, match=f"Image move job {job_id} failed commit validation"):
        env.service.commit_database_updates(job_id)

    # Nothing of the commit survived: a.png still points at its old folder, the journal still says moved.
    assert (env.subfolder("a.png"), env.subfolder("b.png")) == ("", "elsewhere")
    assert env.service.get_job(job_id).state == "moved"
    assert env.item_states(job_id) == {"a.png": ("moved", None), "b.png": ("moved", None)}


def test_job_and_item_error_bookkeeping(env: Env) -> None:
    with pytest.raises(ValueError, match="Image move job not found: 999"):
        env.service.get_job(999)
    env.add_image("a.png", utc(2024, 7, 8))
    env.add_image("b.png", utc(2024, 7, 9))
    _, job_id = plan_and_journal(env)

    env.service.record_job_error_message(job_id, "disk hiccup")
    assert env.service.get_job(job_id) == ImageMoveJob(id=job_id, state="planned", error_message="disk hiccup")
    env.service.mark_item_unrecoverable(job_id, "b.png", "b.png: corrupt")
    assert env.item_states(job_id) == {"a.png": ("planned", None), "b.png": ("error", "b.png: corrupt")}

    env.service.perform_filesystem_moves(job_id)  # only non-terminal items move
    assert env.path("b.png", "").exists() and not env.path("b.png", "2024/07/09").exists()
    assert env.service.commit_database_updates(job_id) == 1
    assert env.service.get_job(job_id) == ImageMoveJob(id=job_id, state="error", error_message="b.png: corrupt")
    assert env.item_states(job_id) == {"a.png": ("committed", None), "b.png": ("error", "b.png: corrupt")}

    env.service.mark_job_unrecoverable(job_id, "operator gave up")
    assert env.service.get_job(job_id) == ImageMoveJob(id=job_id, state="error", error_message="operator gave up")
    assert env.item_states(job_id) == {"a.png": ("error", "operator gave up"), "b.png": ("error", "operator gave up")}
    env.service.record_job_error_message(12345, "no such job")  # a no-op, as stock
    env.service.mark_item_moved(12345, "a.png")


# --- crash recovery -----------------------------------------------------------------------------------------


def test_recovery_finishes_a_job_interrupted_mid_move(env: Env) -> None:
    env.add_image("f.png", utc(2024, 4, 5, 6, 7, 8), subfolder="old")
    env.add_image("g.png", utc(2024, 4, 6, 6, 7, 8), subfolder="old")
    moves, job_id = plan_and_journal(env)
    # The crash: the job was marked moving and the first image's files had been relocated, nothing more.
    execute(env.backend, "UPDATE image_subfolder_move_jobs SET state = 'moving' WHERE id = :j", {"j": job_id})
    first = moves[0]
    first.new_path.parent.mkdir(parents=True)
    first.new_thumbnail_path.parent.mkdir(parents=True)
    first.old_path.replace(first.new_path)
    first.old_thumbnail_path.replace(first.new_thumbnail_path)

    assert env.service.startup_recovery() == ImageMoveResult(planned=0, committed=2, errors=0)
    assert env.service.startup_recovery() == ImageMoveResult(planned=0, committed=0, errors=0)
    assert (env.subfolder("f.png"), env.subfolder("g.png")) == ("2024/04/05", "2024/04/06")
    assert env.service.get_job(job_id).state == "committed"
    assert env.item_states(job_id) == {"f.png": ("committed", None), "g.png": ("committed", None)}
    for move in moves:
        assert move.new_path.exists() and move.new_thumbnail_path.exists()
        assert not move.old_path.exists() and not move.old_thumbnail_path.exists()
    assert not env.path("f.png", "old").parent.exists()


def test_start_recovers_a_job_whose_files_moved_but_records_did_not(env: Env) -> None:
    env.add_image("h.png", utc(2025, 6, 7, 8, 9, 10))
    _, job_id = plan_and_journal(env)
    env.service.perform_filesystem_moves(job_id)
    assert env.subfolder("h.png") == ""

    env.service.start(SimpleNamespace(services=SimpleNamespace()))  # type: ignore[arg-type]

    assert env.subfolder("h.png") == "2025/06/07"
    assert env.service.get_job(job_id).state == "committed"
    assert env.service.is_maintenance_active() is False


def test_recovery_of_a_planned_job_and_of_an_already_repointed_record(env: Env) -> None:
    env.add_image("planned.png", utc(2024, 3, 4))
    _, job_id = plan_and_journal(env)
    assert env.service.startup_recovery() == ImageMoveResult(committed=1)
    assert env.subfolder("planned.png") == "2024/03/04"

    env.add_image("repointed.png", utc(2024, 5, 6))
    _, job_id = plan_and_journal(env)
    env.service.perform_filesystem_moves(job_id)
    # Crash after the records were repointed but before the journal was closed.
    execute(env.backend, "UPDATE images SET image_subfolder = '2024/05/06' WHERE image_name = 'repointed.png'")
    assert env.service.startup_recovery() == ImageMoveResult(committed=1)
    assert env.service.get_job(job_id).state == "committed"
    assert env.item_states(job_id) == {"repointed.png": ("committed", None)}


def test_recovery_marks_conflicting_files_unrecoverable(env: Env) -> None:
    env.add_image("both.png", utc(2024, 7, 8))
    moves, job_id = plan_and_journal(env)
    moves[0].new_path.parent.mkdir(parents=True)
    copy2(moves[0].old_path, moves[0].new_path)

    assert env.service.startup_recovery() == ImageMoveResult(committed=0, errors=1)
    message = "both.png: Both old and new image files exist for both.png"
    assert env.service.get_job(job_id) == ImageMoveJob(id=job_id, state="error", error_message=message)
    assert env.item_states(job_id) == {"both.png": ("error", message)}
    assert env.subfolder("both.png") == ""
    assert env.service.is_maintenance_active() is False


def test_recovery_isolates_a_corrupt_image(env: Env) -> None:
    env.add_image("a-good.png", utc(2024, 9, 10))
    env.add_image("b-corrupt.png", utc(2024, 9, 11))
    corrupt = env.path("b-corrupt.png", "")
    env.path("b-corrupt.png", "", thumbnail=True).unlink()
    corrupt.write_bytes(b"")
    _, job_id = plan_and_journal(env)

    assert env.service.startup_recovery() == ImageMoveResult(committed=1, errors=1)
    job = env.service.get_job(job_id)
    assert job.state == "error" and job.error_message is not None and "b-corrupt.png" in job.error_message
    states = env.item_states(job_id)
    assert states["a-good.png"] == ("committed", None) and states["b-corrupt.png"][0] == "error"
    assert (env.subfolder("a-good.png"), env.subfolder("b-corrupt.png")) == ("2024/09/10", "")
    assert corrupt.exists() and not env.path("b-corrupt.png", "2024/09/11").exists()


def test_recovery_keeps_a_job_resumable_after_an_ordinary_error(env: Env) -> None:
    env.add_image("k.png", utc(2024, 9, 10))
    _, job_id = plan_and_journal(env)
    with patch.object(env.service, "complete_partial_filesystem_moves", side_effect=OSError("temporary failure")):
        assert env.service.startup_recovery() == ImageMoveResult(committed=0, errors=1)
    assert env.service.get_job(job_id) == ImageMoveJob(id=job_id, state="planned", error_message="temporary failure")
    assert env.service.is_maintenance_active() is True

    assert env.service.startup_recovery() == ImageMoveResult(committed=1, errors=0)
    assert env.service.get_job(job_id) == ImageMoveJob(id=job_id, state="committed", error_message=None)
    assert env.subfolder("k.png") == "2024/09/10"


def test_failed_move_leaves_source_and_is_finished_by_recovery(env: Env) -> None:
    env.add_image("t.png", utc(2024, 2, 5))
    env.path("t.png", "", thumbnail=True).unlink()
    moves, job_id = plan_and_journal(env)
    with patch.object(env.service, "_regenerate_thumbnail", side_effect=OSError("thumbnail unavailable")):
        with pytest.raises(OSError, match="thumbnail unavailable"):
            env.service.perform_filesystem_moves(job_id)
    assert moves[0].old_path.exists() and not moves[0].new_path.exists()
    assert env.service.get_job(job_id).state == "moving"
    assert env.service.get_background_status().active_job_id == job_id

    assert env.service.startup_recovery() == ImageMoveResult(committed=1, errors=0)
    assert moves[0].new_path.exists() and moves[0].new_thumbnail_path.exists()
    assert env.subfolder("t.png") == "2024/02/05"


# --- background operations ----------------------------------------------------------------------------------


def _queue_status(pending: int) -> SessionQueueStatus:
    return SessionQueueStatus(
        queue_id=DEFAULT_QUEUE_ID,
        item_id=None,
        batch_id=None,
        session_id=None,
        pending=pending,
        in_progress=0,
        waiting=0,
        completed=0,
        failed=0,
        canceled=0,
        total=pending,
    )


def test_background_move_all_and_status(env: Env) -> None:
    env.add_image("a.png", utc(2024, 2, 3))
    env.add_image("b.png", utc(2024, 2, 4))
    queue = SimpleNamespace(get_queue_status=lambda queue_id: _queue_status(pending=0))
    env.service.start(SimpleNamespace(services=SimpleNamespace(session_queue=queue)))  # type: ignore[arg-type]
    idle = env.service.get_background_status()
    assert (idle.is_running, idle.operation, idle.active_job_id, idle.latest_job, idle.last_error) == (
        False,
        None,
        None,
        None,
        None,
    )
    assert idle.needs_move_count == 2

    started = env.service.start_background_move_all()
    assert started.operation == "move_all"
    assert env.service._future is not None
    env.service._future.result(timeout=30)

    done = env.service.get_background_status()
    assert (done.is_running, done.operation, done.active_job_id, done.last_error, done.needs_move_count) == (
        False,
        None,
        None,
        None,
        0,
    )
    assert done.latest_job is not None and done.latest_job.state == "committed"
    assert (env.subfolder("a.png"), env.subfolder("b.png")) == ("2024/02/03", "2024/02/04")


def test_background_move_refused_while_queue_busy_or_job_active(env: Env) -> None:
    env.add_image("a.png", utc(2024, 2, 3))
    queue = SimpleNamespace(get_queue_status=lambda queue_id: _queue_status(pending=1))
    env.service.set_session_queue(queue)
    with pytest.raises(ImageMoveQueueActive, match="queue work is active"):
        env.service.start_background_move_all()
    assert env.service.is_maintenance_active() is False

    _, job_id = plan_and_journal(env)
    with pytest.raises(ImageMoveJobAlreadyRunning, match="already active"):
        env.service.start_background_move_all()
    # Recovery may start while a journal job is active, and finishes it.
    env.service.start_background_recovery()
    assert env.service._future is not None
    env.service._future.result(timeout=30)
    assert env.service.get_job(job_id).state == "committed"


def test_background_error_is_recorded_on_the_active_job(env: Env) -> None:
    env.add_image("a.png", utc(2024, 2, 3))
    _, job_id = plan_and_journal(env)
    with patch.object(env.service, "complete_partial_filesystem_moves", side_effect=RuntimeError("boom")):
        env.service.start_background_recovery()
        assert env.service._future is not None
        env.service._future.result(timeout=30)
    status = env.service.get_background_status()
    assert status.active_job_id == job_id and status.is_running is False
    assert env.service.get_job(job_id).error_message == "boom"


# --- PostgreSQL only ----------------------------------------------------------------------------------------


def _postgres_only(env: Env) -> PostgresImageMoveService:
    if not env.backend.is_postgres:
        pytest.skip("about the PostgreSQL implementation only")
    assert isinstance(env.service, PostgresImageMoveService)
    return env.service


@pytest.mark.postgres_only
def test_every_sql_touching_method_is_overridden(env: Env) -> None:
    service = _postgres_only(env)
    touching = {
        name
        for name, function in inspect.getmembers(ImageMoveService, inspect.isfunction)
        if "self._db" in inspect.getsource(function) or "image_mutation_lock()" in inspect.getsource(function)
    }
    assert "commit_database_updates" in touching and "startup_recovery" in touching
    not_overridden = {name for name in touching if PostgresImageMoveService.__dict__.get(name) is None}
    assert not_overridden == set()
    with pytest.raises(RuntimeError, match="must not use SQLite"):
        service._db.transaction()


@pytest.mark.postgres_only
def test_list_like_reads_run_bounded_statements(env: Env) -> None:
    service = _postgres_only(env)
    for i in range(6):
        env.add_image(f"img-{i}.png", utc(2024, 1, 1 + i))
    counts = []
    for limit in (2, 6):
        with count_statements(env.backend.engine) as log:
            assert len(service.plan_batch(last_image_name="", limit=limit)) == limit
            service.count_images_needing_move()
        counts.append(log.count)
    assert counts[0] == counts[1] == 3  # the page, the active-job lookup for the whole page, the count


def _lock_waiters(env: Env, key: int) -> int:
    with env.backend.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND ((classid::bigint << 32) | objid::bigint) = :key"
            ),
            {"key": key},
        ).scalar_one()


def _wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _start(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``target`` in a thread; its result or exception lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = target()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _join(thread: threading.Thread) -> None:
    thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.mark.postgres_only
def test_mutation_lock_spans_processes(env: Env) -> None:
    """A create/delete unit in one process holds off a move cycle in another; units do not block each other."""
    service = _postgres_only(env)
    other = env.new_service()
    env.add_image("a.png", utc(2024, 2, 3))

    with service.image_mutation_lock():
        with service.image_mutation_lock():  # reentrant
            with other.image_mutation_lock():  # shared with another process's create/delete
                pass
        thread, outcome = _start(other.move_all_images)
        _wait_until(lambda: _lock_waiters(env, IMAGE_MUTATION_LOCK_KEY) == 1)
        time.sleep(0.2)
        assert outcome == {} and env.subfolder("a.png") == ""  # the move cycle waits for the unit to end
    _join(thread)
    assert outcome["result"] == ImageMoveResult(planned=1, committed=1, errors=0)
    assert env.subfolder("a.png") == "2024/02/03"


@pytest.mark.postgres_only
def test_mutation_lock_is_released_after_an_error(env: Env) -> None:
    service = _postgres_only(env)
    with pytest.raises(RuntimeError, match="inside"):
        with service.image_mutation_lock():
            raise RuntimeError("inside")
    with env.backend.engine.connect() as conn:
        assert conn.execute(select(func.pg_try_advisory_lock(IMAGE_MUTATION_LOCK_KEY))).scalar_one() is True
        conn.execute(select(func.pg_advisory_unlock(IMAGE_MUTATION_LOCK_KEY)))
    assert service._mutation_lock_conn is None and service._mutation_lock_depth == 0


@pytest.mark.postgres_only
def test_only_one_of_two_concurrent_job_creations_wins(env: Env) -> None:
    service = _postgres_only(env)
    other = env.new_service()
    env.add_image("a.png", utc(2024, 2, 3))
    plan = service.plan_batch(last_image_name="", limit=10)
    with env.backend.engine.connect() as gate:
        # Hold the creation lock so both creations are in flight together before either can check.
        gate.execute(select(func.pg_advisory_lock(MOVE_JOB_CREATION_LOCK_KEY)))
        first_thread, first = _start(lambda: service.create_move_job(plan))
        second_thread, second = _start(lambda: other.create_move_job(plan))
        _wait_until(lambda: _lock_waiters(env, MOVE_JOB_CREATION_LOCK_KEY) == 2)
        gate.execute(select(func.pg_advisory_unlock(MOVE_JOB_CREATION_LOCK_KEY)))
        gate.commit()
    _join(first_thread)
    _join(second_thread)
    outcomes = [first, second]
    assert sorted("result" in o for o in outcomes) == [False, True]
    error = next(o["error"] for o in outcomes if "error" in o)
    assert isinstance(error, ValueError) and "another active image move job exists" in str(error)
    assert len(env.job_states()) == 1


@pytest.mark.postgres_only
def test_recovery_skips_a_job_another_process_finished_meanwhile(env: Env) -> None:
    service = _postgres_only(env)
    other = env.new_service()
    env.add_image("both.png", utc(2024, 7, 8))
    moves, job_id = plan_and_journal(env)
    moves[0].new_path.parent.mkdir(parents=True)
    copy2(moves[0].old_path, moves[0].new_path)  # recovery will end this job in 'error'
    real_lock = service._move_cycle_lock

    @contextmanager
    def lock_after_the_other_process() -> Iterator[None]:
        # This process listed the job, then waited for the lock while the other process recovered it.
        assert other.startup_recovery() == ImageMoveResult(committed=0, errors=1)
        with real_lock():
            yield

    with patch.object(service, "_move_cycle_lock", lock_after_the_other_process):
        assert service.startup_recovery() == ImageMoveResult(committed=0, errors=0)
    assert env.service.get_job(job_id).state == "error"
