"""ImageRecordStorage: stock SQLite vs PostgreSQL, same behaviour."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from invokeai.app.invocations.fields import MetadataField
from invokeai.app.services.image_records.image_records_base import ImageRecordStorageBase
from invokeai.app.services.image_records.image_records_common import (
    ASSETS_CATEGORIES,
    ImageCategory,
    ImageNamesResult,
    ImageRecord,
    ImageRecordChanges,
    ImageRecordNotFoundException,
    ResourceOrigin,
)
from invokeai.app.services.image_records.image_records_sqlite import SqliteImageRecordStorage
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.virtual_boards.virtual_boards_common import VirtualSubBoardDTO
from sqlalchemy import Engine

from invokeai_saas.services.image_records.image_records_postgres import PostgresImageRecordStorage
from tests.services.conftest import Backend
from tests.services.helpers_media import (
    add_board,
    capture_statements,
    execute,
    put_image_on_board,
    raw_column,
    set_created_at,
    shape,
    vacuum_until_all_visible,
)
from tests.support.sql_counter import count_statements

ASC = SQLiteDirection.Ascending
DESC = SQLiteDirection.Descending
GENERAL = ImageCategory.GENERAL


@pytest.fixture()
def service(backend: Backend) -> ImageRecordStorageBase:
    if backend.is_postgres:
        return PostgresImageRecordStorage(backend.engine)
    return SqliteImageRecordStorage(backend.db)


def save(service: ImageRecordStorageBase, name: str, **fields: Any) -> datetime:
    values: dict[str, Any] = {
        "image_origin": ResourceOrigin.INTERNAL,
        "image_category": GENERAL,
        "width": 64,
        "height": 48,
        "has_workflow": False,
    }
    values.update(fields)
    return service.save(image_name=name, **values)


def dto(record: ImageRecord) -> dict[str, Any]:
    """The whole DTO, its timestamps replaced by their shape (they are the only time-dependent fields)."""
    dumped = record.model_dump()
    for key in ("created_at", "updated_at", "deleted_at"):
        if key in dumped:
            dumped[key] = shape(dumped[key])
    return dumped


def expected_dto(name: str, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "image_name": name,
        "image_origin": ResourceOrigin.INTERNAL,
        "image_category": GENERAL,
        "width": 64,
        "height": 48,
        "is_intermediate": False,
        "starred": False,
        "has_workflow": False,
        "image_subfolder": "",
        "created_at": "<ms text>",
        "updated_at": "<ms text>",
    }
    values.update(fields)
    return {k: v for k, v in values.items() if v is not None}


def set_image_created_at(backend: Backend, name: str, stamp: str) -> None:
    set_created_at(backend, "images", "image_name", name, stamp)


# --- single records ---------------------------------------------------------------------------------------


def test_save_get_exists_user_id(service: ImageRecordStorageBase) -> None:
    created = save(
        service,
        "full.png",
        image_origin=ResourceOrigin.EXTERNAL,
        image_category=ImageCategory.CONTROL,
        width=512,
        height=768,
        has_workflow=True,
        is_intermediate=True,
        starred=True,
        session_id="session-1",
        node_id="node-1",
        metadata='{"a": 1}',
        user_id="alice",
        image_subfolder="2026/03",
    )
    record = service.get("full.png")
    assert dto(record) == expected_dto(
        "full.png",
        image_origin=ResourceOrigin.EXTERNAL,
        image_category=ImageCategory.CONTROL,
        width=512,
        height=768,
        has_workflow=True,
        is_intermediate=True,
        starred=True,
        session_id="session-1",
        node_id="node-1",
        image_subfolder="2026/03",
    )
    # Stock hands the stored text through: created_at == updated_at for a new record, and save() returns the
    # naive datetime parsed from that text.
    assert isinstance(record.created_at, str) and record.created_at == record.updated_at
    assert record.deleted_at is None
    assert created == datetime.fromisoformat(record.created_at) and created.tzinfo is None
    assert service.exists("full.png") is True
    assert service.get_user_id("full.png") == "alice"

    # Defaults: no user → stock's 'system', no metadata.
    save(service, "plain.png")
    assert dto(service.get("plain.png")) == expected_dto("plain.png")
    assert service.get_user_id("plain.png") == "system"
    assert service.get_metadata("plain.png") is None

    # Missing rows.
    with pytest.raises(ImageRecordNotFoundException):
        service.get("nope.png")
    with pytest.raises(ImageRecordNotFoundException):
        service.get_metadata("nope.png")
    assert service.exists("nope.png") is False
    assert service.get_user_id("nope.png") is None


def test_save_existing_name_is_ignored_and_metadata(backend: Backend, service: ImageRecordStorageBase) -> None:
    """Stock's INSERT OR IGNORE: the existing record is untouched and its own created_at returned."""
    first = save(service, "dup.png", width=10, metadata='{"v": 1}', user_id="alice")
    before = service.get("dup.png")
    time.sleep(0.003)
    again = save(service, "dup.png", width=99, metadata='{"v": 2}', user_id="bob", starred=True)
    assert again == first
    assert service.get("dup.png") == before
    assert service.get_metadata("dup.png") == MetadataField({"v": 1})
    assert service.get_user_id("dup.png") == "alice"

    # The metadata text is stored and handed back as written.
    stored = '{"prompt":  "\u00c9mile \\u00e9 \\\\ x", "seed": 1.50, "z": [1, {"b": null}], "a": true}'
    save(service, "meta.png", metadata=stored)
    assert raw_column(backend, "images", "image_name", "meta.png", "metadata") == stored
    metadata = service.get_metadata("meta.png")
    assert metadata == MetadataField(json.loads(stored))
    assert metadata is not None and list(metadata.root) == ["prompt", "seed", "z", "a"]  # key order kept


# --- update -------------------------------------------------------------------------------------------------


def test_update(service: ImageRecordStorageBase) -> None:
    save(service, "u.png", session_id="s0")
    original = service.get("u.png")
    time.sleep(0.003)
    service.update("u.png", ImageRecordChanges(starred=True))
    starred = service.get("u.png")
    assert dto(starred) == expected_dto("u.png", starred=True, session_id="s0")
    assert starred.created_at == original.created_at and starred.updated_at > original.updated_at

    service.update(
        "u.png",
        ImageRecordChanges(
            image_category=ImageCategory.MASK, session_id="s1", is_intermediate=True, starred=False, extra="x"
        ),
    )
    changed = service.get("u.png")
    assert dto(changed) == expected_dto(
        "u.png", image_category=ImageCategory.MASK, session_id="s1", is_intermediate=True
    )

    time.sleep(0.003)
    service.update("u.png", ImageRecordChanges())
    assert service.get("u.png") == changed  # nothing to change: no statement, updated_at unchanged
    service.update("missing.png", ImageRecordChanges(starred=True))  # no error, as stock
    assert service.exists("missing.png") is False


# --- delete -------------------------------------------------------------------------------------------------


def test_delete_and_delete_many(backend: Backend, service: ImageRecordStorageBase) -> None:
    for name in ("d1.png", "d2.png", "d3.png", "d4.png"):
        save(service, name)
    add_board(backend, "b")
    put_image_on_board(backend, "b", "d1.png")
    service.delete("d1.png")
    assert service.exists("d1.png") is False
    assert service.get_image_names(board_id="b").image_names == []  # membership cascades away
    service.delete("d1.png")  # already gone: no error
    service.delete_many([])
    service.delete_many(["d2.png", "d3.png", "never.png"])
    assert [service.exists(n) for n in ("d2.png", "d3.png", "d4.png")] == [False, False, True]


# --- intermediates ------------------------------------------------------------------------------------------


def test_intermediates(service: ImageRecordStorageBase) -> None:
    save(service, "i1.png", is_intermediate=True, user_id="alice", image_subfolder="tmp/a")
    save(service, "i2.png", is_intermediate=True, user_id="bob")
    save(service, "i3.png", is_intermediate=True, user_id="alice", image_subfolder="tmp/c")
    save(service, "keep.png", user_id="alice")
    assert sorted(service.get_intermediates()) == [("i1.png", "tmp/a"), ("i2.png", ""), ("i3.png", "tmp/c")]
    assert service.get_intermediates_count() == 3
    assert service.get_intermediates_count(user_id="alice") == 2
    assert service.get_intermediates_count(user_id="carol") == 0

    service.update("i2.png", ImageRecordChanges(is_intermediate=False))  # promoted after the snapshot
    deleted = service.delete_intermediates_by_names(["i3.png", "gone.png", "i2.png", "keep.png", "i1.png", "i3.png"])
    # The caller's order; missing and promoted names left out; a name repeated in one chunk reported twice.
    assert deleted == ["i3.png", "i1.png", "i3.png"]
    assert service.exists("i2.png") and service.exists("keep.png")
    assert not service.exists("i1.png") and not service.exists("i3.png")
    assert service.get_intermediates() == []
    assert service.get_intermediates_count() == 0
    assert service.delete_intermediates_by_names([]) == []

    # Stock deletes in chunks of 500 names: a name repeated in a later chunk is not reported again.
    save(service, "x.png", is_intermediate=True)
    names = ["x.png"] + [f"absent-{i}" for i in range(499)] + ["x.png", "x.png"]
    assert service.delete_intermediates_by_names(names) == ["x.png"]


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
    Seed("a1", "alice", GENERAL, ResourceOrigin.INTERNAL, False, False, None, '{"prompt": "A Red Cat"}',
         "2026-03-18 09:00:00.100"),
    Seed("a2", "alice", GENERAL, ResourceOrigin.EXTERNAL, False, True, None, '{"prompt": "blue dog_x"}',
         "2026-03-18 09:00:00.200"),
    Seed("a3", "alice", ImageCategory.MASK, ResourceOrigin.INTERNAL, False, False, None, None,
         "2026-03-18 23:59:59.999"),
    Seed("a5", "alice", ImageCategory.USER, ResourceOrigin.EXTERNAL, False, False, "B1",
         '{"prompt": "\u00c9mile \\\\ path"}', "2026-03-19 00:00:00.000"),
    Seed("a4", "alice", GENERAL, ResourceOrigin.INTERNAL, True, False, None, '{"prompt": "red"}',
         "2026-03-19 07:00:00.000"),
    Seed("a6", "alice", GENERAL, ResourceOrigin.INTERNAL, False, True, "B1", '{"prompt": "red fox"}',
         "2026-03-19 09:00:00.000"),
    Seed("b1", "bob", GENERAL, ResourceOrigin.INTERNAL, False, False, None, '{"prompt": "red"}',
         "2026-03-19 10:00:00.000"),
    Seed("b2", "bob", GENERAL, ResourceOrigin.INTERNAL, False, True, "B2", None, "2026-03-20 10:00:00.000"),
    Seed("b3", "bob", ImageCategory.CONTROL, ResourceOrigin.INTERNAL, True, False, None, None,
         "2026-03-20 11:00:00.000"),
]  # fmt: skip


@pytest.fixture()
def gallery(backend: Backend, service: ImageRecordStorageBase) -> ImageRecordStorageBase:
    add_board(backend, "B1", "alice")
    add_board(backend, "B2", "bob")
    for seed in SEEDS:
        save(
            service,
            seed.name,
            image_origin=seed.origin,
            image_category=seed.category,
            is_intermediate=seed.intermediate,
            starred=seed.starred,
            metadata=seed.metadata,
            user_id=seed.user,
        )
        set_image_created_at(backend, seed.name, seed.created)
        if seed.board is not None:
            put_image_on_board(backend, seed.board, seed.name)
    return service


ALICE = {"user_id": "alice"}
ADMIN = {"user_id": "admin", "is_admin": True}
EVERY = ["b2", "a6", "a2", "b3", "b1", "a4", "a5", "a3", "a1"]

# (query, expected names in order, expected starred count of get_image_names)
GALLERY_CASES: list[tuple[dict[str, Any], list[str], int]] = [
    (ALICE, ["a6", "a2", "a4", "a5", "a3", "a1"], 2),
    ({**ALICE, "starred_first": False}, ["a6", "a4", "a5", "a3", "a2", "a1"], 0),
    ({**ALICE, "order_dir": ASC}, ["a2", "a6", "a1", "a3", "a5", "a4"], 2),
    ({**ALICE, "order_dir": ASC, "starred_first": False}, ["a1", "a2", "a3", "a5", "a4", "a6"], 0),
    (ADMIN, EVERY, 3),
    ({"user_id": None}, EVERY, 3),  # no caller: stock does not scope
    ({}, EVERY, 3),
    ({"user_id": "carol"}, [], 0),
    ({**ALICE, "categories": [GENERAL], "is_intermediate": False}, ["a6", "a2", "a1"], 2),
    ({**ALICE, "categories": ASSETS_CATEGORIES}, ["a5", "a3"], 0),
    ({**ALICE, "categories": [GENERAL, GENERAL]}, ["a6", "a2", "a4", "a1"], 2),
    ({**ALICE, "categories": []}, [], 0),
    ({**ADMIN, "is_intermediate": True}, ["b3", "a4"], 0),
    ({**ADMIN, "image_origin": ResourceOrigin.EXTERNAL}, ["a2", "a5"], 1),
    ({**ALICE, "board_id": "none"}, ["a2", "a4", "a3", "a1"], 1),
    ({**ADMIN, "board_id": "none"}, ["a2", "b3", "b1", "a4", "a3", "a1"], 1),
    ({"board_id": "none"}, ["a2", "b3", "b1", "a4", "a3", "a1"], 1),
    ({"user_id": "bob", "board_id": "B1"}, ["a6", "a5"], 1),  # a board's images whoever asks
    ({**ALICE, "board_id": "B2"}, ["b2"], 1),
    ({**ALICE, "board_id": "no-such-board"}, [], 0),
    ({**ALICE, "search_term": "RED"}, ["a6", "a4", "a1"], 1),  # metadata, ASCII case folded
    ({**ALICE, "search_term": "2026-03-19"}, ["a6", "a4", "a5"], 1),  # created_at text
    ({**ADMIN, "search_term": "03-18 23:59:59.999"}, ["a3"], 0),  # ...to the millisecond
    ({**ADMIN, "search_term": "d_g"}, ["a2"], 1),  # '_' is a wildcard, as stock leaves it
    ({**ADMIN, "search_term": "red%fox"}, ["a6"], 1),  # so is '%'
    ({**ADMIN, "search_term": "\u00c9mile"}, [], 0),  # lowered to 'émile'; SQLite folds ASCII only
    ({**ADMIN, "search_term": "mile \\\\ path"}, ["a5"], 0),  # a backslash is literal (stored JSON-escaped)
    ({**ALICE, "search_term": "red", "board_id": "none"}, ["a4", "a1"], 0),
    ({**ALICE, "search_term": ""}, ["a6", "a2", "a4", "a5", "a3", "a1"], 2),
]


def test_gallery_lists(gallery: ImageRecordStorageBase) -> None:
    """Every filter, order and scoping case, through both list methods (one seeded gallery, many queries)."""
    for query, names, starred in GALLERY_CASES:
        assert gallery.get_image_names(**query) == ImageNamesResult(
            image_names=names, starred_count=starred, total_count=len(names)
        ), query
        page = gallery.get_many(offset=0, limit=100, **query)
        assert [r.image_name for r in page.items] == names, query
        assert page.items == [gallery.get(n) for n in names], query  # whole DTOs, as get() returns them
        assert (page.offset, page.limit, page.total) == (0, 100, len(names)), query


def test_get_many_pages(gallery: ImageRecordStorageBase) -> None:
    order = ["a6", "a2", "a4", "a5", "a3", "a1"]

    def page(offset: int, limit: int) -> tuple[list[str], int, int, int]:
        result = gallery.get_many(offset=offset, limit=limit, user_id="alice")
        return [r.image_name for r in result.items], result.offset, result.limit, result.total

    assert page(0, 2) == (order[0:2], 0, 2, 6)
    assert page(2, 2) == (order[2:4], 2, 2, 6)
    assert page(5, 10) == (order[5:], 5, 10, 6)
    assert page(10, 10) == ([], 10, 10, 6)
    assert page(0, 0) == ([], 0, 0, 6)
    assert page(0, -1) == (order, 0, -1, 6)  # SQLite: a negative LIMIT means no limit
    assert page(-3, 2) == (order[0:2], -3, 2, 6)  # ...and a negative OFFSET means zero
    default = gallery.get_many()  # stock's defaults: 10 per page, starred first, newest first, no scoping
    assert [r.image_name for r in default.items] == EVERY and default.total == 9

    record = gallery.get_many(limit=1, user_id="alice", starred_first=False, order_dir=ASC).items[0]
    assert dto(record) == expected_dto("a1")
    assert record.created_at == "2026-03-18 09:00:00.100"  # the text stock stores, to the millisecond
    assert isinstance(record.updated_at, str) and record.updated_at > record.created_at


def test_most_recent_image_for_board(backend: Backend, service: ImageRecordStorageBase) -> None:
    add_board(backend, "B")
    add_board(backend, "empty")
    for name, stamp, starred, intermediate in [
        ("old-starred", "2026-01-01 00:00:00.000", True, False),
        ("newer", "2026-01-02 00:00:00.000", False, False),
        ("newest-intermediate", "2026-01-03 00:00:00.000", True, True),
    ]:
        save(service, name, starred=starred, is_intermediate=intermediate)
        set_image_created_at(backend, name, stamp)
        put_image_on_board(backend, "B", name)
    save(service, "elsewhere")  # newest of all, on no board
    recent = service.get_most_recent_image_for_board("B")
    assert recent == service.get("old-starred")  # starred first, intermediates never
    service.update("old-starred", ImageRecordChanges(starred=False))
    assert service.get_most_recent_image_for_board("B") == service.get("newer")
    assert service.get_most_recent_image_for_board("empty") is None
    assert service.get_most_recent_image_for_board("no-such-board") is None


# --- dates --------------------------------------------------------------------------------------------------


def day(date: str, images: int, assets: int, cover: str) -> VirtualSubBoardDTO:
    return VirtualSubBoardDTO(
        virtual_board_id=f"by_date:{date}",
        board_name=date,
        date=date,
        image_count=images,
        asset_count=assets,
        cover_image_name=cover,
    )


def test_get_image_dates(backend: Backend, gallery: ImageRecordStorageBase) -> None:
    everyone = [day("2026-03-20", 1, 0, "b2"), day("2026-03-19", 2, 1, "b1"), day("2026-03-18", 2, 1, "a3")]
    assert gallery.get_image_dates(user_id="admin", is_admin=True) == everyone
    assert gallery.get_image_dates() == everyone
    assert gallery.get_image_dates(user_id="bob") == [day("2026-03-20", 1, 0, "b2"), day("2026-03-19", 1, 0, "b1")]
    assert gallery.get_image_dates(user_id="carol") == []
    # Stock's cover subquery ignores the owner: alice's 2026-03-19 gets bob's newer ``b1`` as its cover, a name
    # alice may not read. PostgreSQL picks alice's own newest image of that date (see get_image_dates).
    cover = "a6" if backend.is_postgres else "b1"
    assert gallery.get_image_dates(user_id="alice") == [day("2026-03-19", 1, 1, cover), day("2026-03-18", 2, 1, "a3")]


BY_DATE_CASES: list[tuple[str, dict[str, Any], list[str], int]] = [
    ("2026-03-19", ALICE, ["a6", "a5"], 1),  # a4 is an intermediate
    ("2026-03-19", ADMIN, ["a6", "b1", "a5"], 1),
    ("2026-03-19", {}, ["a6", "b1", "a5"], 1),
    ("2026-03-19", {**ADMIN, "categories": [GENERAL]}, ["a6", "b1"], 1),
    ("2026-03-19", {**ADMIN, "categories": ASSETS_CATEGORIES}, ["a5"], 0),
    ("2026-03-19", {**ADMIN, "categories": []}, [], 0),
    ("2026-03-19", {**ADMIN, "search_term": "FOX"}, ["a6"], 1),
    ("2026-03-19", {**ADMIN, "search_term": "09:00:00.000"}, ["a6"], 1),
    ("2026-03-19", {**ADMIN, "starred_first": False}, ["b1", "a6", "a5"], 0),
    ("2026-03-19", {**ADMIN, "order_dir": ASC}, ["a6", "a5", "b1"], 1),
    ("2026-03-18", ALICE, ["a2", "a3", "a1"], 1),  # 23:59:59.999 is still the 18th
    ("2026-03-18", {**ALICE, "starred_first": False, "order_dir": ASC}, ["a1", "a2", "a3"], 0),
    ("2026-03-18", {"user_id": "bob"}, [], 0),
    ("2026-03-20", ADMIN, ["b2"], 1),
    ("2026-3-19", ADMIN, [], 0),  # DATE() only ever yields the canonical spelling
    ("20260319", ADMIN, [], 0),
    ("2026-03-19 ", ADMIN, [], 0),
    ("2026-02-30", ADMIN, [], 0),
    ("garbage", ADMIN, [], 0),
    ("", ADMIN, [], 0),
    ("9999-12-31", ADMIN, [], 0),
]


def test_get_image_names_by_date(gallery: ImageRecordStorageBase) -> None:
    for date, query, names, starred in BY_DATE_CASES:
        assert gallery.get_image_names_by_date(date, **query) == ImageNamesResult(
            image_names=names, starred_count=starred, total_count=len(names)
        ), (date, query)


# --- PostgreSQL: statement counts and plans -----------------------------------------------------------------


def seed_many(backend: Backend, users: int, per_user: int) -> None:
    """Bulk rows for plan and statement-count checks, users' rows interleaved on disk and in time as real
    traffic leaves them: every 10th starred, every 7th an intermediate, every 5th a mask."""
    execute(
        backend,
        """
        INSERT INTO images (image_name, image_origin, image_category, width, height, is_intermediate, starred,
                            has_workflow, user_id, metadata, created_at, updated_at)
        SELECT 'bulk-' || u || '-' || i, 'internal', CASE WHEN i % 5 = 0 THEN 'mask' ELSE 'general' END, 8, 8,
               i % 7 = 0, i % 10 = 0, false, 'user-' || u, '{"i": ' || i || '}',
               timestamptz '2026-01-01 00:00:00+00' + (i * :users + u) * interval '1 second',
               timestamptz '2026-01-01 00:00:00+00'
        FROM generate_series(1, :per_user) AS i CROSS JOIN generate_series(1, :users) AS u
        ORDER BY i, u
        """,
        {"users": users, "per_user": per_user},
    )


def test_statement_counts_are_bounded(pg_engine: Engine) -> None:
    backend = Backend("postgres", pg_engine)
    service = PostgresImageRecordStorage(pg_engine)
    seed_many(backend, users=2, per_user=120)
    add_board(backend, "B", "user-1")
    execute(backend, "INSERT INTO board_images (board_id, image_name) SELECT 'B', image_name FROM images")
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
        lambda: service.get_image_names(user_id="user-1"),
        lambda: service.get_image_names(board_id="none", user_id="user-2", categories=[GENERAL]),
        lambda: service.get_image_names_by_date("2026-01-01", is_admin=True),
        lambda: service.get_image_dates(user_id="user-1"),
        lambda: service.get_most_recent_image_for_board("B"),
        lambda: service.get_intermediates(),
        lambda: service.delete_intermediates_by_names([f"bulk-1-{i}" for i in range(1, 121)]),
    ):
        with count_statements(backend.engine) as log:
            call()
        assert log.count == 1


def plan_of(backend: Backend, statement: str, parameters: Any) -> str:
    with backend.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars().all()
    return "\n".join(rows)


def test_gallery_queries_walk_an_index(pg_engine: Engine) -> None:
    """With the schema's gallery index, the gallery's hot reads walk one index range in ``ORDER BY`` order: a page
    reads its rows and stops, whatever the library's size, and the full name list and the page totals are
    index-only scans."""
    backend = Backend("postgres", pg_engine)
    service = PostgresImageRecordStorage(pg_engine)
    seed_many(backend, users=40, per_user=1000)
    for user in range(1, 41):
        add_board(backend, f"board-{user}", f"user-{user}")
    execute(
        backend,
        "INSERT INTO board_images (board_id, image_name) "
        "SELECT 'board-' || substr(user_id, 6), image_name FROM images "
        "WHERE extract(epoch FROM created_at)::bigint % 3 = 0",
    )
    # ix_images_gallery comes with the schema (migration 0003).
    vacuum_until_all_visible(pg_engine, "images", "board_images")
    hot = {"user_id": "user-7", "categories": [GENERAL], "is_intermediate": False}
    with capture_statements(backend.engine) as log:
        service.get_many(limit=50, **hot)
        service.get_many(limit=50, board_id="none", **hot)
        service.get_image_names(**hot)
        service.get_image_names(board_id="none", **hot)
    page, page_total, uncategorized_page, _, names, uncategorized_names = (
        plan_of(backend, statement, parameters) for statement, parameters in log.statements
    )
    for plan in (page, uncategorized_page, names):
        assert "ix_images_gallery" in plan and "Sort" not in plan, plan
    assert "Index Only Scan using ix_images_" in page_total, page_total
    assert "Index Only Scan using ix_images_" in names, names
    # Without a LIMIT the planner may prefer a hash anti-join to the board memberships, whose output it does
    # not treat as ordered; the images are still read from the index range alone.
    assert "Index Only Scan using ix_images_" in uncategorized_names, uncategorized_names
