"""VideoRecordStorage: stock SQLite vs PostgreSQL, same behaviour."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from invokeai.app.invocations.fields import MetadataField
from invokeai.app.services.image_records.image_records_common import ASSETS_CATEGORIES, ImageCategory, ResourceOrigin
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.video_records.video_records_base import VideoRecordStorageBase
from invokeai.app.services.video_records.video_records_common import (
    VideoNamesResult,
    VideoRecord,
    VideoRecordChanges,
    VideoRecordNotFoundException,
)
from invokeai.app.services.video_records.video_records_sqlite import SqliteVideoRecordStorage
from sqlalchemy import Engine

from invokeai_saas.services.video_records.video_records_postgres import PostgresVideoRecordStorage
from tests.services.conftest import Backend
from tests.services.helpers_media import (
    add_board,
    capture_statements,
    execute,
    put_video_on_board,
    raw_column,
    set_created_at,
    shape,
    vacuum_until_all_visible,
)
from tests.support.sql_counter import count_statements

ASC = SQLiteDirection.Ascending
GENERAL = ImageCategory.GENERAL


@pytest.fixture()
def service(backend: Backend) -> VideoRecordStorageBase:
    if backend.is_postgres:
        return PostgresVideoRecordStorage(backend.engine)
    return SqliteVideoRecordStorage(backend.db)


def save(service: VideoRecordStorageBase, name: str, **fields: Any) -> datetime:
    values: dict[str, Any] = {
        "video_origin": ResourceOrigin.INTERNAL,
        "video_category": GENERAL,
        "width": 640,
        "height": 360,
        "duration": 2.5,
        "fps": None,
        "has_workflow": False,
    }
    values.update(fields)
    return service.save(video_name=name, **values)


def dto(record: VideoRecord) -> dict[str, Any]:
    """The whole DTO, its timestamps replaced by their shape (they are the only time-dependent fields)."""
    dumped = record.model_dump()
    for key in ("created_at", "updated_at", "deleted_at"):
        if key in dumped:
            dumped[key] = shape(dumped[key])
    return dumped


def expected_dto(name: str, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "video_name": name,
        "video_origin": ResourceOrigin.INTERNAL,
        "video_category": GENERAL,
        "width": 640,
        "height": 360,
        "duration": 2.5,
        "is_intermediate": False,
        "starred": False,
        "has_workflow": False,
        "video_subfolder": "",
        "created_at": "<ms text>",
        "updated_at": "<ms text>",
    }
    values.update(fields)
    return {k: v for k, v in values.items() if v is not None}


def set_video_created_at(backend: Backend, name: str, stamp: str) -> None:
    set_created_at(backend, "videos", "video_name", name, stamp)


# --- single records ---------------------------------------------------------------------------------------


def test_save_get_exists_user_id(service: VideoRecordStorageBase) -> None:
    created = save(
        service,
        "full.mp4",
        video_origin=ResourceOrigin.EXTERNAL,
        video_category=ImageCategory.USER,
        width=1920,
        height=1080,
        duration=12,
        fps=29.97,
        has_workflow=True,
        is_intermediate=True,
        starred=True,
        session_id="session-1",
        node_id="node-1",
        metadata='{"a": 1}',
        user_id="alice",
        video_subfolder="2026/03",
    )
    record = service.get("full.mp4")
    assert dto(record) == expected_dto(
        "full.mp4",
        video_origin=ResourceOrigin.EXTERNAL,
        video_category=ImageCategory.USER,
        width=1920,
        height=1080,
        duration=12.0,
        fps=29.97,
        has_workflow=True,
        is_intermediate=True,
        starred=True,
        session_id="session-1",
        node_id="node-1",
        video_subfolder="2026/03",
    )
    assert isinstance(record.duration, float) and isinstance(record.fps, float)
    # Stock hands the stored text through: created_at == updated_at for a new record, and save() returns the
    # naive datetime parsed from that text.
    assert isinstance(record.created_at, str) and record.created_at == record.updated_at
    assert record.deleted_at is None
    assert created == datetime.fromisoformat(record.created_at) and created.tzinfo is None
    assert service.exists("full.mp4") is True
    assert service.get_user_id("full.mp4") == "alice"

    save(service, "plain.mp4")  # defaults: no fps, no user → stock's 'system', no metadata
    assert dto(service.get("plain.mp4")) == expected_dto("plain.mp4")
    assert service.get("plain.mp4").fps is None
    assert service.get_user_id("plain.mp4") == "system"
    assert service.get_metadata("plain.mp4") is None

    with pytest.raises(VideoRecordNotFoundException):
        service.get("nope.mp4")
    with pytest.raises(VideoRecordNotFoundException):
        service.get_metadata("nope.mp4")
    assert service.exists("nope.mp4") is False
    assert service.get_user_id("nope.mp4") is None


def test_save_existing_name_is_ignored_and_metadata(backend: Backend, service: VideoRecordStorageBase) -> None:
    """Stock's INSERT OR IGNORE: the existing record is untouched and its own created_at returned."""
    first = save(service, "dup.mp4", width=10, metadata='{"v": 1}', user_id="alice")
    before = service.get("dup.mp4")
    time.sleep(0.003)
    again = save(service, "dup.mp4", width=99, metadata='{"v": 2}', user_id="bob", starred=True)
    assert again == first
    assert service.get("dup.mp4") == before
    assert service.get_metadata("dup.mp4") == MetadataField({"v": 1})
    assert service.get_user_id("dup.mp4") == "alice"

    stored = '{"prompt":  "\u00c9mile \\u00e9 \\\\ x", "seed": 1.50, "z": [1, {"b": null}], "a": true}'
    save(service, "meta.mp4", metadata=stored)
    assert raw_column(backend, "videos", "video_name", "meta.mp4", "metadata") == stored  # byte for byte
    metadata = service.get_metadata("meta.mp4")
    assert metadata == MetadataField(json.loads(stored))
    assert metadata is not None and list(metadata.root) == ["prompt", "seed", "z", "a"]


def test_storage_errors(backend: Backend, service: VideoRecordStorageBase) -> None:
    """Stock reports a storage error reading video metadata as "not found" (unlike ``get``, which lets it
    propagate); the PostgreSQL service keeps both behaviours."""
    save(service, "v.mp4")
    execute(backend, "ALTER TABLE videos RENAME TO videos_elsewhere")
    with pytest.raises(VideoRecordNotFoundException):
        service.get_metadata("v.mp4")
    with pytest.raises(Exception) as raised:  # noqa: B017 - sqlite3.OperationalError vs sqlalchemy's
        service.get("v.mp4")
    assert not isinstance(raised.value, VideoRecordNotFoundException)


def test_update(service: VideoRecordStorageBase) -> None:
    save(service, "u.mp4", session_id="s0")
    original = service.get("u.mp4")
    time.sleep(0.003)
    service.update("u.mp4", VideoRecordChanges(starred=True))
    starred = service.get("u.mp4")
    assert dto(starred) == expected_dto("u.mp4", starred=True, session_id="s0")
    assert starred.created_at == original.created_at and starred.updated_at > original.updated_at

    service.update(
        "u.mp4",
        VideoRecordChanges(
            video_category=ImageCategory.MASK, session_id="s1", is_intermediate=True, starred=False, extra="x"
        ),
    )
    changed = service.get("u.mp4")
    assert dto(changed) == expected_dto(
        "u.mp4", video_category=ImageCategory.MASK, session_id="s1", is_intermediate=True
    )

    time.sleep(0.003)
    service.update("u.mp4", VideoRecordChanges())
    assert service.get("u.mp4") == changed  # nothing to change: no statement, updated_at unchanged
    service.update("missing.mp4", VideoRecordChanges(starred=True))  # no error, as stock
    assert service.exists("missing.mp4") is False


def test_delete_and_delete_many(backend: Backend, service: VideoRecordStorageBase) -> None:
    for name in ("d1.mp4", "d2.mp4", "d3.mp4", "d4.mp4"):
        save(service, name)
    add_board(backend, "b")
    put_video_on_board(backend, "b", "d1.mp4")
    service.delete("d1.mp4")
    assert service.exists("d1.mp4") is False
    assert service.get_video_names(board_id="b").video_names == []  # membership cascades away
    service.delete("d1.mp4")  # already gone: no error
    service.delete_many([])
    service.delete_many(["d2.mp4", "d3.mp4", "never.mp4"])
    assert [service.exists(n) for n in ("d2.mp4", "d3.mp4", "d4.mp4")] == [False, False, True]


# --- the gallery --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    name: str
    user: str
    category: ImageCategory
    origin: ResourceOrigin
    intermediate: bool
    starred: bool
    board: str | None
    metadata: str | None
    created: str


SEEDS = [
    Seed("v1", "alice", GENERAL, ResourceOrigin.INTERNAL, False, False, None, '{"prompt": "A Red Cat"}',
         "2026-03-18 09:00:00.100"),
    Seed("v2", "alice", GENERAL, ResourceOrigin.EXTERNAL, False, True, None, '{"prompt": "blue dog_x"}',
         "2026-03-18 09:00:00.200"),
    Seed("v3", "alice", ImageCategory.USER, ResourceOrigin.INTERNAL, False, False, "B1", None,
         "2026-03-19 08:00:00.000"),
    Seed("v4", "alice", GENERAL, ResourceOrigin.INTERNAL, True, False, None, '{"prompt": "red"}',
         "2026-03-19 08:00:00.000"),  # same time as v3: stock breaks the tie by name
    Seed("v5", "alice", GENERAL, ResourceOrigin.INTERNAL, False, True, "B1", '{"prompt": "red fox"}',
         "2026-03-19 09:00:00.000"),
    Seed("w1", "bob", GENERAL, ResourceOrigin.INTERNAL, False, False, None, '{"prompt": "RED"}',
         "2026-03-19 10:00:00.000"),
    Seed("w2", "bob", GENERAL, ResourceOrigin.INTERNAL, False, True, "B2", None, "2026-03-20 10:00:00.000"),
]  # fmt: skip


@pytest.fixture()
def gallery(backend: Backend, service: VideoRecordStorageBase) -> VideoRecordStorageBase:
    add_board(backend, "B1", "alice")
    add_board(backend, "B2", "bob")
    for seed in SEEDS:
        save(
            service,
            seed.name,
            video_origin=seed.origin,
            video_category=seed.category,
            is_intermediate=seed.intermediate,
            starred=seed.starred,
            metadata=seed.metadata,
            user_id=seed.user,
        )
        set_video_created_at(backend, seed.name, seed.created)
        if seed.board is not None:
            put_video_on_board(backend, seed.board, seed.name)
    return service


ALICE = {"user_id": "alice"}
ADMIN = {"user_id": "admin", "is_admin": True}
EVERY = ["w2", "v5", "v2", "w1", "v4", "v3", "v1"]

# (query, expected names in order, expected starred count of get_video_names)
GALLERY_CASES: list[tuple[dict[str, Any], list[str], int]] = [
    (ALICE, ["v5", "v2", "v4", "v3", "v1"], 2),
    ({**ALICE, "starred_first": False}, ["v5", "v4", "v3", "v2", "v1"], 0),
    ({**ALICE, "order_dir": ASC}, ["v2", "v5", "v1", "v3", "v4"], 2),
    ({**ALICE, "order_dir": ASC, "starred_first": False}, ["v1", "v2", "v3", "v4", "v5"], 0),
    (ADMIN, EVERY, 3),
    ({"user_id": None}, EVERY, 3),  # no caller: stock does not scope
    ({}, EVERY, 3),
    ({"user_id": "carol"}, [], 0),
    ({**ALICE, "categories": [GENERAL], "is_intermediate": False}, ["v5", "v2", "v1"], 2),
    ({**ALICE, "categories": ASSETS_CATEGORIES}, ["v3"], 0),
    ({**ALICE, "categories": [GENERAL, GENERAL]}, ["v5", "v2", "v4", "v1"], 2),
    ({**ALICE, "categories": []}, [], 0),
    ({**ADMIN, "is_intermediate": True}, ["v4"], 0),
    ({**ADMIN, "video_origin": ResourceOrigin.EXTERNAL}, ["v2"], 1),
    ({**ALICE, "board_id": "none"}, ["v2", "v4", "v1"], 1),
    ({**ADMIN, "board_id": "none"}, ["v2", "w1", "v4", "v1"], 1),
    ({"board_id": "none"}, ["v2", "w1", "v4", "v1"], 1),
    ({"user_id": "bob", "board_id": "B1"}, ["v5", "v3"], 1),  # a board's videos whoever asks
    ({**ALICE, "board_id": "B2"}, ["w2"], 1),
    ({**ALICE, "board_id": "no-such-board"}, [], 0),
    ({**ALICE, "search_term": "RED"}, ["v5", "v4", "v1"], 1),  # metadata, ASCII case folded
    ({**ADMIN, "search_term": "red"}, ["v5", "w1", "v4", "v1"], 1),
    ({**ALICE, "search_term": "2026-03-19"}, ["v5", "v4", "v3"], 1),  # created_at text
    ({**ADMIN, "search_term": "18 09:00:00.200"}, ["v2"], 1),  # ...to the millisecond
    ({**ADMIN, "search_term": "d_g"}, ["v2"], 1),  # '_' is a wildcard, as stock leaves it
    ({**ALICE, "search_term": "red", "board_id": "none"}, ["v4", "v1"], 0),
    ({**ALICE, "search_term": ""}, ["v5", "v2", "v4", "v3", "v1"], 2),
]


def test_gallery_lists(gallery: VideoRecordStorageBase) -> None:
    """Every filter, order and scoping case, through both list methods (one seeded gallery, many queries)."""
    for query, names, starred in GALLERY_CASES:
        assert gallery.get_video_names(**query) == VideoNamesResult(
            video_names=names, starred_count=starred, total_count=len(names)
        ), query
        page = gallery.get_many(offset=0, limit=100, **query)
        assert [r.video_name for r in page.items] == names, query
        assert page.items == [gallery.get(n) for n in names], query  # whole DTOs, as get() returns them
        assert (page.offset, page.limit, page.total) == (0, 100, len(names)), query


def test_get_many_pages(gallery: VideoRecordStorageBase) -> None:
    order = ["v5", "v2", "v4", "v3", "v1"]

    def page(offset: int, limit: int) -> tuple[list[str], int, int, int]:
        result = gallery.get_many(offset=offset, limit=limit, user_id="alice")
        return [r.video_name for r in result.items], result.offset, result.limit, result.total

    assert page(0, 2) == (order[0:2], 0, 2, 5)
    assert page(2, 2) == (order[2:4], 2, 2, 5)  # the tie between v4 and v3 is ordered by name
    assert page(4, 10) == (order[4:], 4, 10, 5)
    assert page(10, 10) == ([], 10, 10, 5)
    assert page(0, 0) == ([], 0, 0, 5)
    assert page(0, -1) == (order, 0, -1, 5)  # SQLite: a negative LIMIT means no limit
    assert page(-3, 2) == (order[0:2], -3, 2, 5)  # ...and a negative OFFSET means zero
    default = gallery.get_many()  # stock's defaults: 10 per page, starred first, newest first, no scoping
    assert [r.video_name for r in default.items] == EVERY and default.total == 7

    record = gallery.get_many(limit=1, user_id="alice", starred_first=False, order_dir=ASC).items[0]
    assert dto(record) == expected_dto("v1")
    assert record.created_at == "2026-03-18 09:00:00.100"  # the text stock stores, to the millisecond
    assert isinstance(record.updated_at, str) and record.updated_at > record.created_at


def test_most_recent_video_for_board(backend: Backend, service: VideoRecordStorageBase) -> None:
    add_board(backend, "B")
    add_board(backend, "empty")
    for name, stamp, starred, intermediate in [
        ("old-starred", "2026-01-01 00:00:00.000", True, False),
        ("tie-a", "2026-01-02 00:00:00.000", False, False),
        ("tie-b", "2026-01-02 00:00:00.000", False, False),
        ("newest-intermediate", "2026-01-03 00:00:00.000", True, True),
    ]:
        save(service, name, starred=starred, is_intermediate=intermediate)
        set_video_created_at(backend, name, stamp)
        put_video_on_board(backend, "B", name)
    save(service, "elsewhere")  # newest of all, on no board
    assert service.get_most_recent_video_for_board("B") == service.get("old-starred")  # starred first
    service.update("old-starred", VideoRecordChanges(starred=False))
    assert service.get_most_recent_video_for_board("B") == service.get("tie-b")  # ties: name descending
    assert service.get_most_recent_video_for_board("empty") is None
    assert service.get_most_recent_video_for_board("no-such-board") is None


# --- PostgreSQL: statement counts and plans -----------------------------------------------------------------


def seed_many(backend: Backend, users: int, per_user: int) -> None:
    """Bulk rows, users interleaved on disk and in time: every 10th starred, every 7th an intermediate."""
    execute(
        backend,
        """
        INSERT INTO videos (video_name, video_origin, video_category, width, height, duration, is_intermediate,
                            starred, has_workflow, user_id, metadata, created_at, updated_at)
        SELECT 'bulk-' || u || '-' || i, 'internal', 'general', 8, 8, 1.0, i % 7 = 0, i % 10 = 0, false,
               'user-' || u, '{"i": ' || i || '}',
               timestamptz '2026-01-01 00:00:00+00' + (i * :users + u) * interval '1 second',
               timestamptz '2026-01-01 00:00:00+00'
        FROM generate_series(1, :per_user) AS i CROSS JOIN generate_series(1, :users) AS u
        ORDER BY i, u
        """,
        {"users": users, "per_user": per_user},
    )


def test_statement_counts_are_bounded(pg_engine: Engine) -> None:
    backend = Backend("postgres", pg_engine)
    service = PostgresVideoRecordStorage(pg_engine)
    seed_many(backend, users=2, per_user=120)
    add_board(backend, "B", "user-1")
    execute(backend, "INSERT INTO board_videos (board_id, video_name) SELECT 'B', video_name FROM videos")
    counts: dict[str, list[int]] = {}
    for limit in (3, 100):
        calls = {
            "get_many": lambda limit=limit: service.get_many(limit=limit, user_id="user-1", search_term="i"),
            "get_many_board": lambda limit=limit: service.get_many(limit=limit, board_id="B"),
        }
        for label, call in calls.items():
            with count_statements(backend.engine) as log:
                assert len(call().items) == limit
            counts.setdefault(label, []).append(log.count)
    assert counts == {"get_many": [2, 2], "get_many_board": [2, 2]}
    for call in (
        lambda: service.get_video_names(user_id="user-1"),
        lambda: service.get_video_names(board_id="none", user_id="user-2", categories=[GENERAL]),
        lambda: service.get_most_recent_video_for_board("B"),
        lambda: service.delete_many([f"bulk-1-{i}" for i in range(1, 121)]),
    ):
        with count_statements(backend.engine) as log:
            call()
        assert log.count == 1


# The index the video gallery's ORDER BY wants (see the report / migration owner).


def test_gallery_queries_walk_an_index(pg_engine: Engine) -> None:
    """With the proposed index, a gallery page reads its rows from one index range in order and stops, and
    the name list and the page total are index-only scans."""
    backend = Backend("postgres", pg_engine)
    service = PostgresVideoRecordStorage(pg_engine)
    seed_many(backend, users=40, per_user=1000)
    # ix_videos_gallery comes with the schema (migration 0003).
    vacuum_until_all_visible(pg_engine, "videos")
    hot = {"user_id": "user-7", "categories": [GENERAL], "is_intermediate": False}
    with capture_statements(backend.engine) as log:
        service.get_many(limit=50, **hot)
        service.get_many(limit=50, board_id="none", **hot)
        service.get_video_names(**hot)
    with backend.engine.connect() as conn:
        page, page_total, uncategorized_page, _, names = (
            "\n".join(conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars())
            for statement, parameters in log.statements
        )
    for plan in (page, uncategorized_page, names):
        assert "ix_videos_gallery" in plan and "Sort" not in plan, plan
    assert "Index Only Scan using ix_videos_" in page_total, page_total
    assert "Index Only Scan using ix_videos_" in names, names
