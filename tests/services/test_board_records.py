"""BoardRecordStorage: stock SQLite vs PostgreSQL, same behaviour."""

from __future__ import annotations

import string
import time
from datetime import UTC, datetime, timedelta

import pytest
from invokeai.app.services.board_records.board_records_base import BoardRecordStorageBase
from invokeai.app.services.board_records.board_records_common import (
    BoardChanges,
    BoardRecord,
    BoardRecordNotFoundException,
    BoardRecordOrderBy,
    BoardRecordSaveException,
    BoardVisibility,
)
from invokeai.app.services.board_records.board_records_sqlite import SqliteBoardRecordStorage
from invokeai.app.services.shared.pagination import OffsetPaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection

from invokeai_saas.services.board_records.board_records_postgres import PostgresBoardRecordStorage
from tests.services.conftest import Backend
from tests.services.helpers import add_user
from tests.services.helpers_boards import add_image, execute, scalar, shape, share_board
from tests.support.sql_counter import count_statements

ASC = SQLiteDirection.Ascending
DESC = SQLiteDirection.Descending
BY_DATE = BoardRecordOrderBy.CreatedAt
BY_NAME = BoardRecordOrderBy.Name


@pytest.fixture()
def service(backend: Backend) -> BoardRecordStorageBase:
    if backend.is_postgres:
        return PostgresBoardRecordStorage(backend.engine)
    return SqliteBoardRecordStorage(backend.db)


@pytest.fixture()
def users(backend: Backend) -> tuple[str, str, str]:
    return add_user(backend, "alice"), add_user(backend, "bob"), add_user(backend, "carol")


def normal(record: BoardRecord) -> BoardRecord:
    """The record with its timestamps replaced by their text shape (the values are time-dependent)."""
    return record.model_copy(update={"created_at": shape(record.created_at), "updated_at": shape(record.updated_at)})


def expected(
    board: BoardRecord,
    *,
    name: str | None = None,
    user_id: str = "alice",
    updated: bool = False,
    cover: str | None = None,
    archived: bool = False,
    visibility: BoardVisibility = BoardVisibility.Private,
) -> BoardRecord:
    return BoardRecord(
        board_id=board.board_id,
        board_name=name if name is not None else board.board_name,
        user_id=user_id,
        created_at="ms",
        updated_at="seconds" if updated else "ms",
        deleted_at=None,
        cover_image_name=cover,
        archived=archived,
        board_visibility=visibility,
    )


def ids(records: list[BoardRecord]) -> list[str]:
    return [r.board_id for r in records]


def names(records: list[BoardRecord]) -> list[str]:
    return [r.board_name for r in records]


def save_spaced(service: BoardRecordStorageBase, board_name: str, user_id: str) -> BoardRecord:
    """Save with a pause first, so successive boards get distinct millisecond ``created_at`` values (stock's
    order between equal timestamps is undefined)."""
    time.sleep(0.003)
    return service.save(board_name, user_id)


# --- save / get -------------------------------------------------------------------------------------------


def test_save_returns_the_stored_record(service: BoardRecordStorageBase, users: tuple[str, str, str]) -> None:
    before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    board = service.save("My Board", "alice")
    after = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
    assert normal(board) == expected(board, name="My Board")
    assert len(board.board_id) == 36
    # One instant for both columns, in UTC, as SQLite's 'NOW' default writes it.
    assert board.created_at == board.updated_at
    assert before <= datetime.strptime(str(board.created_at), "%Y-%m-%d %H:%M:%S.%f") <= after
    assert service.get(board.board_id) == board


def test_save_for_unknown_user_is_allowed(service: BoardRecordStorageBase) -> None:
    """``boards.user_id`` has no foreign key (deleting a user leaves their boards for admins to review)."""
    board = service.save("orphan", "nobody")
    assert normal(service.get(board.board_id)) == expected(board, user_id="nobody")


def test_save_keeps_the_name_verbatim(service: BoardRecordStorageBase) -> None:
    for name in ("", "  spaced  ", "ünïcödé ✓", "quote ' \" %_\\"):
        board = service.save(name, "alice")
        assert service.get(board.board_id).board_name == name


def test_save_without_a_name_reports_not_found(service: BoardRecordStorageBase) -> None:
    """Stock's ``INSERT OR IGNORE`` drops a row that breaks ``NOT NULL`` and its read then finds nothing."""
    with pytest.raises(BoardRecordNotFoundException):
        service.save(None, "alice")  # type: ignore[arg-type]
    assert service.get_all("admin", True, BY_DATE, ASC, include_archived=True) == []


def test_get_unknown_board(service: BoardRecordStorageBase) -> None:
    with pytest.raises(BoardRecordNotFoundException):
        service.get("no-such-board")


# --- update -----------------------------------------------------------------------------------------------


def test_update_each_field(backend: Backend, service: BoardRecordStorageBase, users: tuple[str, str, str]) -> None:
    add_image(backend, "cover.png")
    board = service.save("before", "alice")
    other = service.save("untouched", "alice")

    renamed = service.update(board.board_id, BoardChanges(board_name="after"))
    # Stock's trigger rewrites updated_at with current_timestamp: second precision from the first update on.
    assert normal(renamed) == expected(board, name="after", updated=True)
    assert renamed.created_at == board.created_at

    covered = service.update(board.board_id, BoardChanges(cover_image_name="cover.png"))
    assert normal(covered) == expected(board, name="after", updated=True, cover="cover.png")

    archived = service.update(board.board_id, BoardChanges(archived=True))
    assert normal(archived) == expected(board, name="after", updated=True, cover="cover.png", archived=True)

    public = service.update(board.board_id, BoardChanges(board_visibility=BoardVisibility.Public))
    assert normal(public) == expected(
        board, name="after", updated=True, cover="cover.png", archived=True, visibility=BoardVisibility.Public
    )

    unarchived = service.update(board.board_id, BoardChanges(archived=False))
    assert unarchived.archived is False
    assert service.get(board.board_id) == unarchived
    assert service.get(other.board_id) == other


def test_update_several_fields_at_once(backend: Backend, service: BoardRecordStorageBase) -> None:
    add_image(backend, "cover.png")
    board = service.save("before", "alice")
    changed = service.update(
        board.board_id,
        BoardChanges(
            board_name="after", cover_image_name="cover.png", archived=True, board_visibility=BoardVisibility.Shared
        ),
    )
    assert normal(changed) == expected(
        board, name="after", updated=True, cover="cover.png", archived=True, visibility=BoardVisibility.Shared
    )
    assert service.get(board.board_id) == changed


def test_update_without_changes_changes_nothing(service: BoardRecordStorageBase) -> None:
    board = service.save("same", "alice")
    assert service.update(board.board_id, BoardChanges()) == board
    assert service.get(board.board_id).updated_at == board.created_at


def test_update_unknown_board(service: BoardRecordStorageBase) -> None:
    with pytest.raises(BoardRecordNotFoundException):
        service.update("no-such-board", BoardChanges(board_name="x"))
    with pytest.raises(BoardRecordNotFoundException):
        service.update("no-such-board", BoardChanges())


def test_update_with_unknown_cover_changes_nothing(service: BoardRecordStorageBase) -> None:
    """The cover references ``images``: an unknown image fails the whole update, the rename included."""
    board = service.save("before", "alice")
    with pytest.raises(BoardRecordSaveException):
        service.update(board.board_id, BoardChanges(board_name="after", cover_image_name="missing.png"))
    assert service.get(board.board_id) == board


def test_deleting_the_cover_image_clears_it(backend: Backend, service: BoardRecordStorageBase) -> None:
    add_image(backend, "cover.png")
    board = service.save("b", "alice")
    service.update(board.board_id, BoardChanges(cover_image_name="cover.png"))
    execute(backend, "DELETE FROM images WHERE image_name = 'cover.png'")
    assert normal(service.get(board.board_id)) == expected(board, updated=True)


# --- delete -----------------------------------------------------------------------------------------------


def test_delete(backend: Backend, service: BoardRecordStorageBase, users: tuple[str, str, str]) -> None:
    board = service.save("doomed", "alice")
    keep = service.save("keep", "alice")
    add_image(backend, "on-board.png")
    execute(
        backend, "INSERT INTO board_images (board_id, image_name) VALUES (:b, 'on-board.png')", {"b": board.board_id}
    )
    share_board(backend, board.board_id, "bob")

    service.delete(board.board_id)
    with pytest.raises(BoardRecordNotFoundException):
        service.get(board.board_id)
    assert service.get(keep.board_id) == keep
    # Memberships and shares go with the board; the image stays.
    assert scalar(backend, "SELECT COUNT(*) FROM board_images") == 0
    assert scalar(backend, "SELECT COUNT(*) FROM shared_boards") == 0
    assert scalar(backend, "SELECT COUNT(*) FROM images") == 1

    service.delete(board.board_id)  # again: no error, as stock
    service.delete("never-existed")


# --- visibility -------------------------------------------------------------------------------------------


@pytest.fixture()
def landscape(backend: Backend, service: BoardRecordStorageBase, users: tuple[str, str, str]) -> dict[str, str]:
    """Boards of every kind, created in this order (distinct milliseconds)."""
    boards: dict[str, str] = {}

    def make(key: str, owner: str, visibility: BoardVisibility | None = None, archived: bool = False) -> None:
        board = save_spaced(service, key, owner)
        if visibility is not None or archived:
            service.update(board.board_id, BoardChanges(board_visibility=visibility, archived=archived or None))
        boards[key] = board.board_id

    make("alice-private", "alice")
    make("alice-shared", "alice", BoardVisibility.Shared)
    make("alice-public", "alice", BoardVisibility.Public)
    make("alice-archived", "alice", archived=True)
    make("bob-private", "bob")
    make("bob-to-alice", "bob")
    make("bob-legacy-public", "bob")
    make("bob-public-archived", "bob", BoardVisibility.Public, archived=True)
    make("carol-to-alice-and-bob", "carol")
    make("system-board", "system")
    share_board(backend, boards["bob-to-alice"], "alice")
    share_board(backend, boards["carol-to-alice-and-bob"], "alice", can_edit=True)
    share_board(backend, boards["carol-to-alice-and-bob"], "bob")
    # The legacy flag alone does not publish a board: stock looks at board_visibility only.
    execute(
        backend, "UPDATE boards SET is_public = :t WHERE board_id = :b", {"t": True, "b": boards["bob-legacy-public"]}
    )
    return boards


ALL_KEYS = [
    "alice-private",
    "alice-shared",
    "alice-public",
    "alice-archived",
    "bob-private",
    "bob-to-alice",
    "bob-legacy-public",
    "bob-public-archived",
    "carol-to-alice-and-bob",
    "system-board",
]
ARCHIVED = {"alice-archived", "bob-public-archived"}
VISIBLE = {
    "alice": [
        "alice-private",
        "alice-shared",
        "alice-public",
        "alice-archived",
        "bob-to-alice",
        "bob-public-archived",
        "carol-to-alice-and-bob",
    ],
    "bob": [
        "alice-shared",
        "alice-public",
        "bob-private",
        "bob-to-alice",
        "bob-legacy-public",
        "bob-public-archived",
        "carol-to-alice-and-bob",
    ],
    "carol": ["alice-shared", "alice-public", "bob-public-archived", "carol-to-alice-and-bob"],
    "nobody": ["alice-shared", "alice-public", "bob-public-archived"],
}


def test_visibility_for_users(service: BoardRecordStorageBase, landscape: dict[str, str]) -> None:
    for user_id in VISIBLE:
        for include_archived in (False, True):
            keys = [k for k in VISIBLE[user_id] if include_archived or k not in ARCHIVED]
            case = (user_id, include_archived)
            every = service.get_all(user_id, False, BY_DATE, ASC, include_archived=include_archived)
            assert names(every) == keys, case
            page = service.get_many(
                user_id, False, BY_DATE, ASC, offset=0, limit=100, include_archived=include_archived
            )
            assert names(page.items) == keys, case
            assert (page.total, page.offset, page.limit) == (len(keys), 0, 100), case


def test_admins_see_every_board(service: BoardRecordStorageBase, landscape: dict[str, str]) -> None:
    for include_archived in (False, True):
        keys = [k for k in ALL_KEYS if include_archived or k not in ARCHIVED]
        # The admin's own id plays no part.
        for admin_id in ("carol", "admin"):
            case = (admin_id, include_archived)
            every = service.get_all(admin_id, True, BY_DATE, ASC, include_archived=include_archived)
            assert names(every) == keys, case
            page = service.get_many(
                admin_id, True, BY_DATE, ASC, offset=0, limit=100, include_archived=include_archived
            )
            assert names(page.items) == keys and page.total == len(keys), case


def test_lists_return_the_same_records_as_get(service: BoardRecordStorageBase, landscape: dict[str, str]) -> None:
    every = service.get_all("admin", True, BY_DATE, ASC, include_archived=True)
    assert every == [service.get(landscape[k]) for k in ALL_KEYS]
    page = service.get_many("admin", True, BY_DATE, ASC, offset=0, limit=100, include_archived=True)
    assert page.items == every
    alice = service.get_all("alice", False, BY_DATE, ASC)
    assert normal(alice[0]) == expected(alice[0], name="alice-private")
    assert normal(alice[1]) == expected(alice[1], name="alice-shared", updated=True, visibility=BoardVisibility.Shared)


def test_a_board_shared_twice_is_listed_once(
    backend: Backend, service: BoardRecordStorageBase, landscape: dict[str, str]
) -> None:
    # Shared with its own owner too: stock's LEFT JOIN yields duplicates that its DISTINCT removes.
    share_board(backend, landscape["alice-private"], "alice")
    page = service.get_many("alice", False, BY_DATE, ASC, offset=0, limit=100)
    assert names(page.items) == [k for k in VISIBLE["alice"] if k not in ARCHIVED]
    assert page.total == len(page.items)
    assert names(service.get_all("alice", False, BY_DATE, ASC)) == names(page.items)


# --- ordering ---------------------------------------------------------------------------------------------


def ascii_lower(value: str) -> str:
    """SQLite's ``LOWER()`` without ICU: ASCII letters only."""
    return value.translate(str.maketrans(string.ascii_uppercase, string.ascii_lowercase))


ODD_NAMES = ["b", "C", "a", "Éb", "éa", "z", "B2", "_x", "10", "9"]


def test_order_by_name(service: BoardRecordStorageBase) -> None:
    for name in ODD_NAMES:
        service.save(name, "alice")
    by_code_point = sorted(ODD_NAMES)
    by_ascii_lower = sorted(ODD_NAMES, key=ascii_lower)
    # ``get_many`` sorts with SQLite's BINARY collation; ``get_all`` by LOWER() that folds ASCII only, so
    # "Éb" stays before "éa" (a Unicode-aware lower() would swap them).
    assert by_ascii_lower.index("Éb") < by_ascii_lower.index("éa")
    for user_id, is_admin in (("alice", False), ("admin", True)):
        page = service.get_many(user_id, is_admin, BY_NAME, ASC, offset=0, limit=100)
        assert names(page.items) == by_code_point
        page = service.get_many(user_id, is_admin, BY_NAME, DESC, offset=0, limit=100)
        assert names(page.items) == by_code_point[::-1]
        assert names(service.get_all(user_id, is_admin, BY_NAME, ASC)) == by_ascii_lower
        assert names(service.get_all(user_id, is_admin, BY_NAME, DESC)) == by_ascii_lower[::-1]


def test_order_by_created_at(service: BoardRecordStorageBase) -> None:
    created = [save_spaced(service, name, "alice").board_id for name in ("m", "a", "z", "b")]
    for user_id, is_admin in (("alice", False), ("admin", True)):
        assert ids(service.get_all(user_id, is_admin, BY_DATE, ASC)) == created
        assert ids(service.get_all(user_id, is_admin, BY_DATE, DESC)) == created[::-1]
        assert ids(service.get_many(user_id, is_admin, BY_DATE, ASC, offset=0, limit=10).items) == created
        assert ids(service.get_many(user_id, is_admin, BY_DATE, DESC, offset=0, limit=10).items) == created[::-1]


def test_renaming_does_not_reorder_by_date(service: BoardRecordStorageBase) -> None:
    first = save_spaced(service, "first", "alice")
    second = save_spaced(service, "second", "alice")
    service.update(first.board_id, BoardChanges(board_name="renamed"))
    assert ids(service.get_all("alice", False, BY_DATE, DESC)) == [second.board_id, first.board_id]


# --- pagination -------------------------------------------------------------------------------------------


def test_pagination(service: BoardRecordStorageBase, landscape: dict[str, str]) -> None:
    for is_admin in (False, True):
        full = service.get_all("alice", is_admin, BY_DATE, DESC, include_archived=True)
        total = len(full)
        assert total == (len(ALL_KEYS) if is_admin else len(VISIBLE["alice"]))
        pages = [
            service.get_many("alice", is_admin, BY_DATE, DESC, offset=offset, limit=3, include_archived=True)
            for offset in range(0, total + 3, 3)
        ]
        for index, page in enumerate(pages):
            assert page == OffsetPaginatedResults[BoardRecord](
                items=full[index * 3 : index * 3 + 3], offset=index * 3, limit=3, total=total
            ), (is_admin, index)
        assert pages[-1].items == []
        # Unarchived only: the total follows the filter.
        page = service.get_many("alice", is_admin, BY_DATE, DESC, offset=2, limit=3)
        unarchived = service.get_all("alice", is_admin, BY_DATE, DESC)
        assert (page.items, page.total) == (unarchived[2:5], len(unarchived))


def test_default_page_is_ten(service: BoardRecordStorageBase) -> None:
    for number in range(12):
        service.save(f"board {number:02}", "alice")
    page = service.get_many("alice", False, BY_NAME, ASC)
    assert names(page.items) == [f"board {n:02}" for n in range(10)]
    assert (page.offset, page.limit, page.total) == (0, 10, 12)


def test_sqlite_limit_and_offset_edge_values(service: BoardRecordStorageBase) -> None:
    """As in SQLite, a negative limit means no limit and a negative offset means none; both are echoed."""
    for number in range(5):
        service.save(f"b{number}", "alice")
    every = [f"b{n}" for n in range(5)]
    page = service.get_many("alice", False, BY_NAME, ASC, offset=0, limit=-1)
    assert (names(page.items), page.offset, page.limit, page.total) == (every, 0, -1, 5)
    page = service.get_many("alice", False, BY_NAME, ASC, offset=2, limit=-1)
    assert names(page.items) == every[2:]
    page = service.get_many("alice", True, BY_NAME, ASC, offset=-3, limit=2)
    assert (names(page.items), page.offset, page.limit, page.total) == (every[:2], -3, 2, 5)
    page = service.get_many("alice", False, BY_NAME, ASC, offset=1, limit=0)
    assert (page.items, page.total) == ([], 5)


def test_empty_lists(service: BoardRecordStorageBase) -> None:
    assert service.get_all("alice", False, BY_NAME, ASC) == []
    assert service.get_many("alice", True, BY_DATE, DESC, offset=0, limit=5) == OffsetPaginatedResults[BoardRecord](
        items=[], offset=0, limit=5, total=0
    )


# --- statement counts (PostgreSQL only) -------------------------------------------------------------------


@pytest.mark.postgres_only
def test_lists_run_a_bounded_number_of_statements(
    backend: Backend, service: BoardRecordStorageBase, landscape: dict[str, str]
) -> None:
    for number in range(20):
        service.save(f"extra {number}", "alice")
    for is_admin in (False, True):
        counts = []
        for limit in (2, 25):
            with count_statements(backend.engine) as log:
                page = service.get_many("alice", is_admin, BY_NAME, ASC, offset=0, limit=limit)
            assert len(page.items) == limit
            counts.append(log.count)
        assert counts == [2, 2]
        with count_statements(backend.engine) as log:
            assert len(service.get_all("alice", is_admin, BY_NAME, ASC)) > 20
        assert log.count == 1


@pytest.mark.postgres_only
def test_name_order_does_not_depend_on_the_database_collation(
    backend: Backend, service: BoardRecordStorageBase
) -> None:
    """Production databases usually default to a linguistic collation (``en_US.UTF-8``), unlike the test
    server's C locale: give ``board_name`` one and check the orders still match stock's."""
    collation = scalar(
        backend,
        "SELECT collname FROM pg_collation WHERE collname IN ('und-x-icu', 'en-x-icu', 'en_US.utf8', 'en_US') "
        "ORDER BY collname = 'und-x-icu' DESC, collname LIMIT 1",
    )
    if collation is None:
        pytest.skip("this PostgreSQL has no linguistic collation")
    execute(backend, f'ALTER TABLE boards ALTER COLUMN board_name TYPE text COLLATE "{collation}"')
    for name in ODD_NAMES:
        service.save(name, "alice")
    assert names(service.get_many("alice", False, BY_NAME, ASC, offset=0, limit=100).items) == sorted(ODD_NAMES)
    assert names(service.get_all("alice", False, BY_NAME, ASC)) == sorted(ODD_NAMES, key=ascii_lower)
